# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""The work of azaion.jetson.companion_user: the device's account on the admin API, with the
password from its device.conf, and the sync record that spares the requests next time."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import hashlib
import hmac
import json
import os
import re

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


def companion_user_argument_spec():
    """The options of azaion.jetson.companion_user (a fresh dict); station modules validate with it too."""
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
    return argument_spec


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
    """One device's account; ``run()`` ends with ``module.exit_json``/``fail_json``.

    ``module``: the AnsibleModule of azaion.jetson.companion_user, or one device's stand-in in a
    station run (options of :func:`companion_user_argument_spec`). ``connect``: returns the
    AdminAPIClient to use (raising AdminAPIError), so that a station run shares one client;
    by default a client is made from ``module.params``.
    """

    def __init__(self, module, connect=None):
        self.module = module
        self.params = module.params
        self._connect = connect or (lambda: AdminAPIClient.from_params(self.params))
        self.client = None
        self.calls = []  # this device's requests (a shared client logs every device's)
        self.secrets = set()
        self.result = {'changed': False, 'email': self.params.get('email'), 'role': None,
                       'requests': [], 'msg': ''}

    # -- plumbing ---------------------------------------------------------------------------

    def scrub(self, text):
        for secret in self.secrets:
            text = text.replace(secret, '********')
        return self.client.scrub(text) if self.client else text

    def fail(self, msg, **extra):
        self.result['requests'] = [dict(call) for call in self.calls]
        self.result.update(extra)
        self.result['msg'] = self.scrub(msg)
        self.module.fail_json(**self.result)

    def done(self, action, changed, msg, before=None, after=None):
        self.result['requests'] = [dict(call) for call in self.calls]
        self.result.update(action=action, changed=changed, msg=self.scrub(msg))
        if self.module._diff and before is not None:
            self.result['diff'] = {'before': before, 'after': after}
        self.module.exit_json(**self.result)

    def connect(self):
        try:
            self.client = self._connect()
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
                                           expected=(200,), want_json=True, calls=self.calls)
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
                                           expected=(200, 201, 409), calls=self.calls)
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
                                               expected=(200, 204, 404), calls=self.calls)
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
