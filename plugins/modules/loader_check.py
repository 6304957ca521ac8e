#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: loader_check
short_description: Check that a flashed Jetson's Loader is healthy and logs in with the device's credentials
version_added: 1.1.0
description:
  - The smoke verification of the provisioning flow (C(docs/provisioning-flow.md), step 7),
    after the device's first boot.
  - Polls C(GET <url>/health) until the Loader answers HTTP 200 (and, when the answer is JSON,
    its C(status) field is V(healthy) or V(ok)). Refused connections, timeouts, HTTP 5xx, 408
    and 429 and host names that do not resolve yet are expected while the device boots and are
    tolerated for O(health_timeout) seconds.
  - Then sends C(POST <url>/login) with the JSON body C({"email", "password"}) read from
    O(device_conf), and succeeds when the Loader answers HTTP 200 with a JSON C(status) equal to
    O(expected_status).
  - The password is read from O(device_conf) on the host the module runs on (the station whose
    staging rootfs was flashed to the device). It is never a module option and is never in the
    result or in an error message.
  - The module never changes anything, so RV(ignore:changed) is always V(false). Errors name the
    cause and the fix.
author: Azaion engineering (@azaion)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - azaion.jetson.verify
options:
  url:
    description:
      - Base URL of the device's Loader, for example V(http://10.20.0.42:8080). C(/health) and
        C(/login) are appended to it; a trailing slash is removed.
    type: str
    required: true
  device_conf:
    description:
      - Path of the C(device.conf) the device was flashed with, on the host the module runs on,
        usually C(<rootfs>/etc/azaion/device.conf) in the device's staging rootfs. It must hold
        C(AZAION_DEVICE_EMAIL) and C(AZAION_DEVICE_PASSWORD).
      - In check mode a missing file is not an error (the phase that writes it ran in check mode
        too).
    type: path
    required: true
attributes:
  check_mode:
    support: full
    details:
      - A login is an authentication event on the customer's resource API, so check mode makes
        no C(POST /login). It sends a single C(GET /health) (no waiting, never a failure) and
        reports what would be checked.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
notes:
  - Run it on the station that holds the device's staging rootfs (delegate the task to the
    device's station), which must reach the device over the network. Only the Python standard
    library and ansible-core are needed there.
  - Redirects are not followed, so the password is only ever sent to O(url).
seealso:
  - module: azaion.jetson.device_conf
  - module: azaion.jetson.companion_user
'''

EXAMPLES = r'''
- name: Check the Loader of a freshly flashed device
  azaion.jetson.loader_check:
    url: "{{ jetson_loader_url }}"
    device_conf: "{{ jetson_rootfs_dir }}/etc/azaion/device.conf"
  delegate_to: "{{ jetson_station }}"
  register: loader

- name: Give a slow first boot 15 minutes, over TLS with a private CA
  azaion.jetson.loader_check:
    url: https://jetson-0042.factory.example.com:8443
    device_conf: /srv/jetson/AZJN-0042/rootfs/etc/azaion/device.conf
    health_timeout: 900
    health_interval: 10
    ca_path: /etc/azaion/loader-ca.pem
'''

RETURN = r'''
health:
  description: The last answer to C(GET /health).
  returned: always
  type: dict
  contains:
    status_code:
      description: HTTP status of the last answer, V(null) when no answer came (connection refused, timeout).
      type: int
      sample: 200
    status:
      description: The C(status) field of the last JSON answer, V(null) when there was none.
      type: str
      sample: healthy
    seconds_waited:
      description: Seconds from the first request until the Loader was healthy (or the module gave up).
      type: float
      sample: 42.5
    attempts:
      description: How many C(GET /health) requests were sent.
      type: int
      sample: 9
login:
  description: The answer to C(POST /login).
  returned: when the login was attempted (never in check mode)
  type: dict
  contains:
    status_code:
      description: HTTP status of the answer, V(null) when no answer came.
      type: int
      sample: 200
    status:
      description: The C(status) field of the JSON answer, V(null) when there was none.
      type: str
      sample: ok
email:
  description: The device's e-mail, from O(device_conf); V(null) when the file could not be read.
  returned: always
  type: str
  sample: azaion-jetson-0042@azaion.com
msg:
  description: What was checked and what came out of it, for a person.
  returned: always
  type: str
  sample: the Loader at http://10.20.0.42:8080 is healthy (after 42.5 s) and logged in as azaion-jetson-0042@azaion.com (status "ok")
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.azaion.jetson.plugins.module_utils._loader import VERIFY_OPTIONS, run
from ansible_collections.azaion.jetson.plugins.module_utils._station_run import exit_with_core_result, shared_values


def main():
    module = AnsibleModule(argument_spec=dict(url=dict(type='str', required=True), device_conf=dict(type='path', required=True),
                                              **VERIFY_OPTIONS),
                           supports_check_mode=True)
    device = dict(loader_url=module.params['url'], device_conf=module.params['device_conf'])
    exit_with_core_result(module, run(shared_values(module, VERIFY_OPTIONS), device))


if __name__ == '__main__':
    main()
