#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: station_identity
short_description: Give every device of a station its device.conf and its CompanionPC account, in one run
version_added: 1.1.0
description:
  - The identity phase of a station, for all its devices at once, at most O(parallel) at a time.
  - For each device, first writes the C(device.conf) into the device's staging rootfs
    (C(rootfs) of its device context) exactly as M(azaion.jetson.device_conf) does, then, only
    if that worked, makes sure its account on the admin API has the password of that file,
    exactly as M(azaion.jetson.companion_user) does, with the device's C(sync_record).
  - The device passwords are born in the files and never travel through Ansible; they are in no
    result, message or diff.
  - All devices share one admin API client that keeps one connection open per thread, so a
    station makes at most O(parallel) connections to the admin API, not one per request.
  - The phase C(identity) is recorded in each device's state file (outside check mode). A re-run
    over finished devices changes nothing, makes no request (the sync records match) and writes
    no file.
  - One device's failure does not fail the task; RV(devices) holds each device's result.
  - With O(rotate), before a device's C(device.conf) changes, its state file records the identity
    phase as running and a flash and Loader check recorded as done as failed (to do again), so a
    run stopped half-way never leaves a device recorded as finished with an image or an account
    that does not hold its new password.
  - Once the admin API refuses the token (HTTP 401 or 403), the devices not started yet fail
    without anything being written for them (no C(device.conf), no request), because the token
    is the same for every device. Fix the token and run again.
  - The admin API URL and token come from the inventory variables C(azaion_admin_api_url) and
    C(azaion_admin_api_token), else from E(AZAION_ADMIN_API_URL) and E(AZAION_ADMIN_API_TOKEN) on
    the controller; leave O(api_url) and O(api_token) unset in playbooks.
author: Azaion engineering (@azaion)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - azaion.jetson.devices
  - azaion.jetson.admin_api
  - azaion.jetson.admin_api.tls_content
options:
  owner:
    description:
      - Owner of each C(device.conf), as a user name (looked up in the device's rootfs) or a
        numeric uid; see M(azaion.jetson.device_conf).
    type: str
    default: root
  group:
    description:
      - Group of each C(device.conf), as a group name (looked up in the device's rootfs) or a
        numeric gid.
    type: str
    default: root
  mode:
    description:
      - Permissions of each C(device.conf), as an octal string such as V('0600') (quote it in YAML).
    type: raw
    default: '0600'
  rotate:
    description:
      - Generate a new password for every device even when its file holds a valid one; the
        accounts are then updated with the new passwords.
    type: bool
    default: false
  role:
    description:
      - Role of the accounts; a name such as V(CompanionPC) is sent as a JSON string, an integer
        or a string of digits such as V('30') as a JSON number. See M(azaion.jetson.companion_user).
    type: raw
    default: CompanionPC
  update_password:
    description:
      - V(always) sets the password of an existing account to the one in the device's file;
        V(on_create) leaves an existing account alone.
    type: str
    choices: [always, on_create]
    default: always
  force_sync:
    description:
      - Ignore matching sync records and call the admin API for every device anyway.
    type: bool
    default: false
  lookup:
    description:
      - In check mode, look each account up with C(GET /users?searchEmail=) to predict whether it
        would be created or would have its password updated. No effect outside check mode.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details:
      - No file is written and no C(POST) or C(PATCH) is sent; with O(lookup=true) one C(GET)
        request per device predicts the action.
  diff_mode:
    support: full
    details:
      - One diff per device and part; the password is masked in the C(device.conf) diff.
  platform:
    support: full
    platforms: posix
notes:
  - Run it on the station that holds the devices' staging rootfs trees, usually as root.
seealso:
  - module: azaion.jetson.device_conf
  - module: azaion.jetson.companion_user
'''

EXAMPLES = r'''
- name: Give every device of the station its device.conf and account
  azaion.jetson.station_identity:
    devices: "{{ station_devices }}"
    owner: azaion-loader
    group: azaion-loader
  register: identity

- name: Show each device's outcome (the passwords themselves are never returned)
  ansible.builtin.debug:
    msg: "{{ item.key }}: {{ item.value.msg }}"
  loop: "{{ identity.devices | dict2items }}"
'''

RETURN = r'''
devices:
  description:
    - Each device's result, by device name.
    - C(changed) when its file or its account changed; C(failed) and C(msg) (naming the device)
      when either part failed; C(seconds) it took.
    - C(device_conf) is the result of the file's part, as M(azaion.jetson.device_conf) returns it
      (C(path), C(password_state), C(owner_uid), C(group_gid), C(mode), C(msg)).
    - C(account) is the result of the account's part, as M(azaion.jetson.companion_user) returns it
      (C(action), C(requests), C(email), C(role), C(msg)); absent when the file's part failed.
  returned: always
  type: dict
  sample:
    jetson-0042:
      changed: true
      msg: "device.conf: wrote /srv/jetson/AZJN-0042/rootfs/etc/azaion/device.conf (new file; password generated);
        account: created the account azaion-jetson-0042@azaion.com (role CompanionPC) on https://admin.example.com"
      seconds: 0.41
      device_conf:
        path: /srv/jetson/AZJN-0042/rootfs/etc/azaion/device.conf
        password_state: generated
      account:
        action: created
        requests:
          - method: POST
            path: /users
            status: 201
failed_devices:
  description: The names of the devices whose identity failed, sorted.
  returned: always
  type: list
  elements: str
  sample: []
msg:
  description: A summary, for a person.
  returned: always
  type: str
  sample: "identity: 20 device(s), 20 changed, 0 failed"
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.azaion.jetson.plugins.module_utils._admin_api import (
    AdminAPIClient,
    AdminAPIError,
    admin_api_argument_spec,
)
from ansible_collections.azaion.jetson.plugins.module_utils._companion_user import (
    CompanionUser,
    companion_user_argument_spec,
)
from ansible_collections.azaion.jetson.plugins.module_utils._device_conf import (
    device_conf_argument_spec,
    write_device_conf,
)
from ansible_collections.azaion.jetson.plugins.module_utils._device_state import DeviceState, DeviceStateError
from ansible_collections.azaion.jetson.plugins.module_utils._station_run import (
    DeviceExit,
    DeviceParamsError,
    StationRun,
    device_params,
    station_argument_spec,
)

# The options the station module takes once for all its devices; the others come from each
# device's context.
DEVICE_CONF_OPTIONS = ('owner', 'group', 'mode', 'rotate')
ACCOUNT_OPTIONS = ('role', 'update_password', 'force_sync', 'lookup') + tuple(admin_api_argument_spec())


def argument_spec():
    device_conf_spec = device_conf_argument_spec()
    account_spec = companion_user_argument_spec()
    options = dict((key, device_conf_spec[key]) for key in DEVICE_CONF_OPTIONS)
    options.update((key, account_spec[key]) for key in ACCOUNT_OPTIONS)
    return station_argument_spec(**options)


def run_part(proxy, spec, values, work):
    """One single-device module's ``work`` for this device, with ``values`` checked against its
    ``spec``: what that module would have returned."""
    try:
        proxy.params = device_params(spec, values)
    except DeviceParamsError as exc:
        return dict(failed=True, changed=False, msg='invalid options: %s' % exc)
    try:
        work(proxy)
    except DeviceExit as done:
        return done.result
    return dict(failed=True, changed=False, msg='the work ended without a result')


class Identity(object):
    """One device's identity: its device.conf, then its account (only if the file is right)."""

    def __init__(self, module, client, client_error):
        self.params = module.params
        self.check_mode = module.check_mode
        self.client = client
        self.client_error = client_error
        # Set once the admin API refuses the token (401/403): the token is the same for every
        # device, so the devices not reached yet are left untouched instead of each failing alike.
        self.token_refused = None

    def connect(self):
        if self.client_error is not None:
            raise AdminAPIError(self.client_error.message, kind=self.client_error.kind)
        return self.client

    def __call__(self, proxy, device):
        name = device['name']
        if self.token_refused is not None:
            proxy.fail_json('%s: not attempted, nothing changed: the admin API refused the token (%s); fix the token '
                            '(azaion_admin_api_token or AZAION_ADMIN_API_TOKEN) and run again' % (name, self.token_refused))
        if not device.get('rootfs'):
            proxy.fail_json('%s: no staging rootfs to write its device.conf into; set jetson_rootfs_dir or '
                            'jetson_usb_instance for this device' % name)
        if self.params['rotate'] and not self.check_mode:
            try:
                self.reopen_phases(device)
            except (DeviceStateError, IOError, OSError) as exc:
                proxy.fail_json('%s: its state file could not be written before the rotation: %s'
                                % (name, getattr(exc, 'strerror', None) or exc))
        values = dict((key, self.params[key]) for key in DEVICE_CONF_OPTIONS)
        values.update(rootfs_dir=device['rootfs'], email=device['email'])
        conf = run_part(proxy, device_conf_argument_spec(), values, write_device_conf)
        diffs = [conf.pop('diff')] if conf.get('diff') else []
        if conf.get('failed'):
            proxy.fail_json('%s: device.conf: %s' % (name, conf['msg']), changed=bool(conf.get('changed')),
                            device_conf=conf)

        values = dict((key, self.params[key]) for key in ACCOUNT_OPTIONS)
        values.update(device_conf=conf['path'], email=device['email'], sync_record=device.get('sync_record'))
        account = run_part(proxy, companion_user_argument_spec(), values,
                           lambda module: CompanionUser(module, connect=self.connect).run())
        if account.get('diff'):
            header = 'account %s' % account.get('email')
            diffs.append(dict(account.pop('diff'), before_header=header, after_header=header))
        changed = bool(conf.get('changed') or account.get('changed'))
        extra = dict(diff=diffs) if diffs else {}
        if account.get('failed'):
            refused = [call['status'] for call in account.get('requests', []) if call.get('status') in (401, 403)]
            if refused and self.token_refused is None:
                self.token_refused = 'HTTP %d for %s' % (refused[-1], name)
            proxy.fail_json('%s: account: %s' % (name, account['msg']), changed=changed, device_conf=conf,
                            account=account, **extra)
        proxy.exit_json(changed=changed, msg='device.conf: %s; account: %s' % (conf['msg'], account['msg']),
                        device_conf=conf, account=account, **extra)

    @staticmethod
    def reopen_phases(device):
        """Before a rotation rewrites a finished device's device.conf: its identity is in progress
        again, and its flash (an image with the old password) and Loader check are to do again.
        Without this, a run killed between the new device.conf and the reflash leaves the device
        recorded as finished: the next run would do nothing, with the account, the station's
        device.conf and the device each holding a different password."""
        state = DeviceState(device['state_file'], serial=device['serial'])
        phases = state.load().get('phases', {})
        if phases.get('identity', {}).get('status') == 'done':
            state.record('identity', status='running', finished=None, seconds=None, error=None)
        for phase in ('flash', 'verify'):
            if phases.get(phase, {}).get('status') == 'done':
                state.record(phase, status='failed', error='the device.conf was rotated since: %s again' % (
                    'flash' if phase == 'flash' else 'check the Loader'))


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    # One client for all devices: one kept-alive connection per thread instead of one per request.
    client = client_error = None
    try:
        client = AdminAPIClient.from_params(module.params, keep_alive=True)
    except AdminAPIError as exc:
        client_error = exc  # each device that needs the admin API fails with it
    run = StationRun(module, Identity(module, client, client_error), phase='identity')
    results = run.run()
    if client is not None:
        client.close()
    run.exit(results, 'identity')


if __name__ == '__main__':
    main()
