#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: companion_user
short_description: Create a Jetson's CompanionPC account on the admin API, with the password from its device.conf
version_added: 1.0.0
description:
  - Makes sure the admin API has an account for the device whose C(device.conf) is O(device_conf),
    and that the account's password is the one in that file.
  - The e-mail and the password are read from O(device_conf) on the host the module runs on
    (usually the factory station, after M(azaion.jetson.device_conf) wrote it). The password is
    never a module option and never leaves the module, not in the result, not in an error
    message, not in the diff.
  - The flow is the runbook's; C(POST /users) with C({"email", "password", "role"}); HTTP 201 or
    200 means the account was created. On HTTP 409 (the account exists) and with
    O(update_password=always), C(PATCH /users/password) sets the password from the file, so
    re-provisioning a device always ends with an account that matches its file.
  - With O(sync_record), a small JSON file records what was last synchronised (e-mail, API URL,
    role, a SHA-256 digest of e-mail and password; no secret). When the record matches, the
    module makes no request at all and reports V(unchanged); re-running a finished batch is
    therefore cheap and rotates nothing. O(force_sync=true) ignores the record.
  - Connection errors, timeouts, HTTP 429 and HTTP 5xx are retried (see O(retries)); a reply
    lost after the server created the account is harmless, since the retry gets HTTP 409 and the
    password is set with C(PATCH).
  - If O(api_url) is not set, the environment variable E(AZAION_ADMIN_API_URL) is used; if
    O(api_token) is not set, E(AZAION_ADMIN_API_TOKEN) is used.
author: Azaion engineering (@azaion)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - azaion.jetson.admin_api
options:
  device_conf:
    description:
      - Path of the device's C(device.conf) on the host the module runs on, for example
        C(<rootfs>/etc/azaion/device.conf). It must hold C(AZAION_DEVICE_EMAIL) and
        C(AZAION_DEVICE_PASSWORD).
      - In check mode a missing file is not an error (the task that writes it ran in check mode
        too); the module then reports a change, since a password will be generated.
    type: path
    required: true
  email:
    description:
      - The account e-mail the caller expects, for example from the
        P(azaion.jetson.device_email#filter) filter.
      - When set, it must equal the e-mail in O(device_conf); a mismatch fails before any
        request, as it means the file belongs to another device.
      - The account is always created with the e-mail in O(device_conf).
    type: str
  role:
    description:
      - Role of the account, sent as the C(role) field of C(POST /users).
      - A name such as V(CompanionPC) is sent as a JSON string; an integer, or a string of digits
        such as V('30'), is sent as a JSON number. The customer's admin UI sends V(30) for
        CompanionPC; use it if the admin API rejects the name with HTTP 400.
    type: raw
    default: CompanionPC
  update_password:
    description:
      - V(always) sets the password of an existing account (HTTP 409 on create) to the one in
        O(device_conf) with C(PATCH /users/password).
      - V(on_create) leaves an existing account alone and reports V(exists); its password may
        then not match the file, and no sync record is written.
    type: str
    choices: [always, on_create]
    default: always
  sync_record:
    description:
      - Path of a JSON file (mode C(0600), written atomically, parent directories created) that
        records the last successful synchronisation; usually in the device's state directory
        on the station.
      - When it matches the e-mail, password, O(api_url) and O(role), nothing is sent to the
        admin API.
      - Not written in check mode, nor when the result is V(exists).
    type: path
  force_sync:
    description:
      - Ignore a matching O(sync_record) and call the admin API anyway.
    type: bool
    default: false
  lookup:
    description:
      - In check mode, look the account up with C(GET /users?searchEmail=<email>) to predict
        whether it would be created or would have its password updated.
      - With V(false), or when the admin API has no such endpoint, check mode makes no request
        and predicts V(created).
      - Outside check mode this option has no effect.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details:
      - No C(POST) or C(PATCH) is sent and no sync record is written; with O(lookup=true) one
        C(GET) request is made to predict the action.
  diff_mode:
    support: full
    details:
      - The diff holds non-secret state only, C(email), C(role), C(exists) and C(password_synced).
  platform:
    support: full
    platforms: posix
notes:
  - Run it on the station that holds the staged rootfs (where O(device_conf) is), which must
    reach the admin API. Only the Python standard library and ansible-core are needed there.
seealso:
  - module: azaion.jetson.device_conf
'''

EXAMPLES = r'''
- name: Create the device's CompanionPC account with the password from its device.conf
  azaion.jetson.companion_user:
    api_url: "{{ azaion_admin_api_url }}"
    api_token: "{{ azaion_admin_api_token }}"
    device_conf: "{{ jetson_rootfs_dir }}/etc/azaion/device.conf"
    email: "{{ jetson_serial | azaion.jetson.device_email }}"
    sync_record: "{{ jetson_workdir }}/state/{{ jetson_serial }}/companion_user.json"
  register: companion_user

- name: Use the role code the customer's admin UI sends, over mutual TLS
  azaion.jetson.companion_user:
    api_url: https://admin.internal.example.com
    device_conf: /srv/jetson/AZJN-0042/rootfs/etc/azaion/device.conf
    role: 30
    ca_path: /etc/azaion/admin-ca.pem
    client_cert: /etc/azaion/station.crt
    client_key: /etc/azaion/station.key

- name: Create the account if missing, but never change the password of an existing one
  azaion.jetson.companion_user:
    device_conf: /srv/jetson/AZJN-0042/rootfs/etc/azaion/device.conf
    update_password: on_create
  environment:
    AZAION_ADMIN_API_URL: https://admin.internal.example.com
'''

RETURN = r'''
email:
  description: The account e-mail (from O(device_conf), or O(email) when the file does not exist yet in check mode).
  returned: always
  type: str
  sample: azaion-jetson-0042@azaion.com
role:
  description: The role as sent, a string or an integer.
  returned: always
  type: raw
  sample: CompanionPC
action:
  description:
    - V(created) when the account was created; V(password_updated) when it existed and its
      password was set from the file; V(unchanged) when O(sync_record) showed it was already in
      sync and no request was made; V(exists) when it existed and O(update_password=on_create).
    - In check mode, the predicted action.
  returned: success
  type: str
  choices: [created, password_updated, unchanged, exists]
  sample: created
requests:
  description:
    - The requests made to the admin API, in order, one per attempt (retries included).
    - RV(requests[].status) is V(null) when no answer came (connection error, timeout).
  returned: always
  type: list
  elements: dict
  contains:
    method:
      description: HTTP method.
      type: str
      sample: POST
    path:
      description: Path below O(api_url), with its query string.
      type: str
      sample: /users
    status:
      description: HTTP status of the answer.
      type: int
      sample: 201
  sample:
    - method: POST
      path: /users
      status: 409
    - method: PATCH
      path: /users/password
      status: 200
msg:
  description: What happened, for a person.
  returned: always
  type: str
  sample: created the account azaion-jetson-0042@azaion.com (role CompanionPC) on https://admin.internal.example.com
'''

import datetime
import hashlib
import hmac
import json
import os
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.azaion.jetson.plugins.module_utils._admin_api import (
    AdminAPIClient,
    AdminAPIError,
    admin_api_argument_spec,
    display_url,
    normalize_api_url,
)
from ansible_collections.azaion.jetson.plugins.module_utils._device_conf import (
    DeviceConfError,
    read_credentials,
)
from ansible_collections.azaion.jetson.plugins.module_utils._files import write_file_atomic

RECORD_VERSION = 1
_DIGITS = re.compile(r'^[0-9]+$')


def coerce_role(value):
    """The role to send: a name stays a string, an integer or a string of digits becomes an int.

    Raises ValueError for anything else (booleans, empty strings, lists...).
    """
    if isinstance(value, bool):
        raise ValueError('a boolean')
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if _DIGITS.match(text):
            return int(text)
        if text:
            return text
        raise ValueError('an empty string')
    raise ValueError('of type %s' % type(value).__name__)


def password_digest(email, password):
    """SHA-256 over ``email NUL password``, hex: tells a changed password apart, reveals nothing."""
    return hashlib.sha256(email.encode('utf-8') + b'\0' + password.encode('utf-8')).hexdigest()


def same_role(left, right):
    """Roles are equal only with the same JSON type: 30 and "30" differ, and so do True and 1."""
    return type(left) is type(right) and left == right


def record_matches(record, email, api_url, role, digest):
    """Whether a sync record (dict) says this account is already in sync."""
    if not isinstance(record, dict) or record.get('version') != RECORD_VERSION:
        return False
    stored = record.get('password_sha256')
    if not isinstance(stored, str):
        return False
    return (record.get('email') == email and record.get('api_url') == api_url
            and same_role(record.get('role'), role)
            and hmac.compare_digest(stored.encode('ascii', 'replace'), digest.encode('ascii')))


def build_record(email, api_url, role, digest, action, now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return {
        'version': RECORD_VERSION,
        'email': email,
        'api_url': api_url,
        'role': role,
        'password_sha256': digest,
        'action': action,
        'timestamp': now.strftime('%Y-%m-%dT%H:%M:%SZ'),
    }


def read_record(path):
    """The sync record at ``path`` as a dict, or None when missing, unreadable or not JSON."""
    try:
        with open(path, 'rb') as record_file:
            return json.loads(record_file.read().decode('utf-8'))
    except (IOError, OSError, ValueError):
        return None


def write_record(path, record):
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    data = (json.dumps(record, indent=2, sort_keys=True) + '\n').encode('utf-8')
    write_file_atomic(path, data, mode=0o600)


def user_in_search(data, email):
    """Whether a ``GET /users?searchEmail=`` answer lists exactly ``email`` (a search may match more)."""
    if isinstance(data, dict):  # tolerate a paged envelope
        for key in ('items', 'data', 'users', 'results'):
            if isinstance(data.get(key), list):
                data = data[key]
                break
    if not isinstance(data, list):
        raise ValueError('not a JSON array')
    wanted = email.lower()
    return any(isinstance(user, dict) and str(user.get('email', '')).lower() == wanted for user in data)


def state(email, role, exists, synced):
    return {'email': email, 'role': role if exists else None, 'exists': exists, 'password_synced': synced}


class CompanionUser(object):

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.client = None
        self.secrets = set()
        self.result = {'changed': False, 'email': self.params.get('email'), 'role': None,
                       'requests': [], 'msg': ''}

    # -- plumbing ---------------------------------------------------------------------------

    def scrub(self, text):
        for secret in self.secrets:
            text = text.replace(secret, '********')
        return self.client.scrub(text) if self.client else text

    def fail(self, msg, **extra):
        if self.client is not None:
            self.result['requests'] = self.client.requests
        self.result.update(extra)
        self.result['msg'] = self.scrub(msg)
        self.module.fail_json(**self.result)

    def done(self, action, changed, msg, before=None, after=None):
        if self.client is not None:
            self.result['requests'] = self.client.requests
        self.result.update(action=action, changed=changed, msg=self.scrub(msg))
        if self.module._diff and before is not None:
            self.result['diff'] = {'before': before, 'after': after}
        self.module.exit_json(**self.result)

    def connect(self):
        try:
            self.client = AdminAPIClient.from_params(self.params)
        except AdminAPIError as exc:
            self.fail(str(exc))
        for secret in self.secrets:
            self.client.add_secret(secret)

    # -- the flow -------------------------------------------------------------------------

    def run(self):
        params = self.params
        try:
            role = coerce_role(params['role'])
        except ValueError as exc:
            self.fail('role must be a role name such as CompanionPC or a role code such as 30, not %s' % exc)
        self.result['role'] = role
        api_url = normalize_api_url(params['api_url'])
        shown_url = display_url(api_url)
        device_conf = params['device_conf']

        if self.module.check_mode and not os.path.lexists(device_conf):
            self.predict_without_file(role, device_conf, shown_url)

        try:
            email, password = read_credentials(device_conf)
        except DeviceConfError as exc:
            self.fail(str(exc))
        self.module.no_log_values.add(password)
        self.secrets.add(password)
        self.result['email'] = email
        if params['email'] is not None and params['email'] != email:
            self.fail('%s holds the e-mail %s but email=%s was expected: this device.conf belongs to another '
                      'device; fix device_conf or email (or rewrite the file with azaion.jetson.device_conf)'
                      % (device_conf, email, params['email']))

        digest = password_digest(email, password)
        record_path = params['sync_record']
        if record_path and not params['force_sync']:
            if record_matches(read_record(record_path), email, api_url, role, digest):
                synced = state(email, role, True, True)
                self.done('unchanged', False,
                          'the sync record %s shows that the account %s on %s already has the password of %s; '
                          'no request was made (force_sync=true calls the admin API anyway)'
                          % (record_path, email, shown_url, device_conf), synced, synced)

        self.connect()
        if self.module.check_mode:
            self.predict(email, role, shown_url)
        self.sync(email, password, role, api_url, shown_url, digest, device_conf, record_path)

    def predict_without_file(self, role, device_conf, shown_url):
        email = self.params['email']
        found = None
        if email and self.params['lookup']:
            self.connect()
            found = self.lookup(email)
        if found and self.params['update_password'] == 'on_create':
            existing = state(email, role, True, False)
            self.done('exists', False, '%s does not exist yet: it will be written with a new password, but the '
                      'account %s already exists on %s and update_password=on_create leaves it alone'
                      % (device_conf, email, shown_url), existing, existing)
        action = 'password_updated' if found else 'created'
        what = {None: 'the account would be created, or its password updated if it exists',
                True: 'the existing account %s would get that password' % email,
                False: 'the account %s would be created with it' % email}[found]
        self.done(action, True, '%s does not exist yet (check mode): a password will be generated when it is '
                  'written, and %s on %s' % (device_conf, what, shown_url),
                  state(email, role, bool(found), False), state(email, role, True, True))

    def lookup(self, email):
        """True/False whether the account exists, None when the admin API cannot search."""
        try:
            response = self.client.request('GET', '/users', query={'searchEmail': email},
                                           expected=(200,), want_json=True)
        except AdminAPIError as exc:
            if exc.status in (404, 405):
                self.module.warn('the admin API cannot search users (HTTP %d on GET /users?searchEmail=); '
                                 'check mode cannot tell a new account from an existing one; lookup=false '
                                 'skips the search' % exc.status)
                return None
            self.fail(str(exc))
        try:
            return user_in_search(response.data, email)
        except ValueError:
            self.fail('GET /users?searchEmail= answered JSON that is not a list of users; set lookup=false '
                      'to skip the search in check mode')

    def predict(self, email, role, shown_url):
        found = self.lookup(email) if self.params['lookup'] else None
        if found is None:
            reason = 'lookup=false' if not self.params['lookup'] else 'the admin API cannot search users'
            self.done('created', True, 'would POST /users for %s on %s (and set the password with PATCH if it '
                      'exists); %s, so created and existing accounts are not told apart'
                      % (email, shown_url, reason), state(email, role, False, False), state(email, role, True, True))
        if not found:
            self.done('created', True, 'would create the account %s (role %s) on %s' % (email, role, shown_url),
                      state(email, role, False, False), state(email, role, True, True))
        if self.params['update_password'] == 'on_create':
            existing = state(email, role, True, False)
            self.done('exists', False, 'the account %s already exists on %s; update_password=on_create would '
                      'leave its password alone' % (email, shown_url), existing, existing)
        self.done('password_updated', True, 'the account %s already exists on %s; would set its password to the '
                  'one in %s' % (email, shown_url, self.params['device_conf']),
                  state(email, role, True, False), state(email, role, True, True))

    def sync(self, email, password, role, api_url, shown_url, digest, device_conf, record_path):
        try:
            response = self.client.request('POST', '/users', body={'email': email, 'password': password, 'role': role},
                                           expected=(200, 201, 409))
        except AdminAPIError as exc:
            msg = str(exc)
            if exc.status == 400:
                msg += ('; check the role (role=%s was sent as a JSON %s; the customer\'s admin UI sends 30 '
                        'for CompanionPC)' % (role, 'number' if isinstance(role, int) else 'string'))
            self.fail(msg)
        if response.status != 409:
            action, msg = 'created', 'created the account %s (role %s) on %s' % (email, role, shown_url)
            before = state(email, role, False, False)
        elif self.params['update_password'] == 'on_create':
            existing = state(email, role, True, False)
            self.done('exists', False, 'the account %s already exists on %s; its password was left alone '
                      '(update_password=on_create), so it may not match %s'
                      % (email, shown_url, device_conf), existing, existing)
        else:
            try:
                response = self.client.request('PATCH', '/users/password',
                                               body={'email': email, 'password': password},
                                               expected=(200, 204, 404))
            except AdminAPIError as exc:
                self.fail(str(exc))
            if response.status == 404:
                self.fail('HTTP 404 from PATCH /users/password: the account %s exists on %s (POST answered 409) but '
                          'the admin API has no PATCH /users/password: enable it, or use update_password=on_create '
                          '(then the password in %s may not match the account)' % (email, shown_url, device_conf))
            action = 'password_updated'
            msg = 'the account %s already existed on %s; set its password to the one in %s' % (
                email, shown_url, device_conf)
            before = state(email, role, True, False)
        if record_path:
            try:
                write_record(record_path, build_record(email, api_url, role, digest, action))
            except (IOError, OSError) as exc:
                self.fail('%s, but the sync record %s could not be written (%s); fix its directory or '
                          'permissions; the next run will call the admin API again'
                          % (msg, record_path, exc.strerror or exc), changed=True, action=action)
        self.done(action, True, msg, before, state(email, role, True, True))


def main():
    argument_spec = admin_api_argument_spec()
    argument_spec.update(
        device_conf=dict(type='path', required=True),
        email=dict(type='str'),
        role=dict(type='raw', default='CompanionPC'),
        update_password=dict(type='str', default='always', choices=['always', 'on_create'], no_log=False),
        sync_record=dict(type='path'),
        force_sync=dict(type='bool', default=False),
        lookup=dict(type='bool', default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    CompanionUser(module).run()


if __name__ == '__main__':
    main()
