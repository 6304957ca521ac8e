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
version_added: 1.1.0
description:
  - Makes sure the admin API has an account for the device whose C(device.conf) is O(device_conf),
    and that the account's password is the one in that file.
  - The e-mail and the password are read from O(device_conf) on the host the module runs on
    (usually the factory station, after M(azaion.jetson.device_conf) wrote it). The password is
    never a module option and never leaves the module, not in the result, not in an error
    message, not in the diff.
  - The flow is step 4 of C(docs/provisioning-flow.md); C(POST /users) with
    C({"email", "password", "role"}); HTTP 201 or 200 means the account was created. On
    HTTP 409 (the account exists) and with
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
  - azaion.jetson.admin_api.tls_content
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
# No api_url or api_token here: the controller takes them from azaion_admin_api_url and
# azaion_admin_api_token (vaulted), or from AZAION_ADMIN_API_URL and AZAION_ADMIN_API_TOKEN_FILE,
# so the token is never a task argument (which every callback receives).
- name: Create the device's CompanionPC account with the password from its device.conf
  azaion.jetson.companion_user:
    device_conf: "{{ jetson_rootfs_dir }}/etc/azaion/device.conf"
    email: "{{ jetson_serial | azaion.jetson.device_email }}"
    sync_record: "{{ jetson_workdir }}/devices/{{ jetson_serial }}/identity-sync.json"
  delegate_to: "{{ jetson_station }}"
  register: companion_user

- name: Use the role code the customer's admin UI sends, over mutual TLS with files on the station
  azaion.jetson.companion_user:
    device_conf: /var/lib/azaion-jetson/ports/1-3/Linux_for_Tegra/rootfs/etc/azaion/device.conf
    role: 30
    ca_path: /etc/azaion/admin-ca.pem
    client_cert: /etc/azaion/station.crt
    client_key: /etc/azaion/station.key
  delegate_to: "{{ jetson_station }}"

- name: Create the account if missing, but never change the password of an existing one
  azaion.jetson.companion_user:
    device_conf: /var/lib/azaion-jetson/ports/1-3/Linux_for_Tegra/rootfs/etc/azaion/device.conf
    update_password: on_create
  delegate_to: "{{ jetson_station }}"
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.azaion.jetson.plugins.module_utils._companion_user import (
    CompanionUser,
    companion_user_argument_spec,
)


def main():
    module = AnsibleModule(argument_spec=companion_user_argument_spec(), supports_check_mode=True)
    CompanionUser(module).run()


if __name__ == '__main__':
    main()
