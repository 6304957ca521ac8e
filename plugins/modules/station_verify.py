#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: station_verify
short_description: Check the Loader of each of a station's flashed devices, in one run
version_added: 1.1.0
description:
  - The verify phase of a station (C(docs/provisioning-flow.md), step 7), for all its devices
    at once, at most O(parallel) at a time.
  - For each device, checks its Loader (C(loader_url) of its device context) exactly as
    M(azaion.jetson.loader_check) does, with the credentials of its C(device_conf), the
    device.conf it was flashed with. The passwords are read from the files on the station and
    are in no result or message.
  - A device whose state file records the phase C(verify) as V(done) passed before and has
    usually left the factory's network since, so it is not checked again unless O(force=true).
  - A device without C(jetson_loader_url) fails.
  - The phase C(verify) is recorded in each device's state file (outside check mode).
  - One device's failure does not fail the task; RV(devices) holds each device's result.
author: Azaion engineering (@azaion)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - azaion.jetson.devices
  - azaion.jetson.verify
options:
  force:
    description:
      - Check again the devices whose state says they passed before.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details:
      - As M(azaion.jetson.loader_check) in check mode, for each device; no state file is written.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
notes:
  - Run it on the station that holds the devices' staging rootfs (delegate the task to the
    devices' station), which must reach the devices over the network.
seealso:
  - module: azaion.jetson.loader_check
'''

EXAMPLES = r'''
- name: Check that each device's Loader is healthy and logs in with its credentials
  azaion.jetson.station_verify:
    devices: "{{ verify_devices }}"
    parallel: 16
    health_timeout: 900
  delegate_to: "{{ verify_devices[0].station }}"
  register: verify_result
'''

RETURN = r'''
devices:
  description:
    - Each device's result, by device name, as M(azaion.jetson.loader_check) returns it
      (C(health), C(login), C(email), C(msg)), with C(failed) (and C(msg) naming the device)
      when it failed, and C(seconds) it took. C(changed) is always V(false).
    - A device that passed before and was not checked again has only C(changed), C(msg) and
      C(seconds).
  returned: always
  type: dict
  sample:
    jetson-0042:
      changed: false
      email: azaion-jetson-0042@azaion.com
      health: {status_code: 200, status: healthy, seconds_waited: 42.5, attempts: 9}
      login: {status_code: 200, status: ok}
      msg: the Loader at http://10.20.0.42:8080 is healthy (after 42.5 s, 9 requests to /health) and logged in as
        azaion-jetson-0042@azaion.com with the password from
        /var/lib/azaion-jetson/ports/1-3/Linux_for_Tegra/rootfs/etc/azaion/device.conf (status "ok")
      seconds: 42.6
failed_devices:
  description: The names of the devices whose check failed, sorted.
  returned: always
  type: list
  elements: str
  sample: []
msg:
  description: A summary, for a person.
  returned: always
  type: str
  sample: "verify: 4 device(s), 0 changed, 0 failed"
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.azaion.jetson.plugins.module_utils._device_state import DeviceState, DeviceStateError
from ansible_collections.azaion.jetson.plugins.module_utils._loader import VERIFY_OPTIONS, run
from ansible_collections.azaion.jetson.plugins.module_utils._station_run import StationRun, station_argument_spec

PHASE = 'verify'


def main():
    module = AnsibleModule(argument_spec=station_argument_spec(force=dict(type='bool', default=False), **VERIFY_OPTIONS),
                           supports_check_mode=True)
    force = module.params['force']

    def verify(shared, device):
        name = device['name']
        if not force:
            try:
                passed = DeviceState(device['state_file']).phase(PHASE)
            except DeviceStateError as exc:
                return dict(failed=True, msg=str(exc))
            if passed.get('status') == 'done':
                return dict(msg='%s: its Loader passed the check before; not checked again (force=true checks it again)'
                            % name)
        if not device.get('loader_url'):
            return dict(failed=True, msg='no Loader URL to check: set jetson_loader_url (the base URL of the device\'s'
                                         ' Loader after its first boot, such as http://10.20.0.42:8080)')
        if not device.get('device_conf'):
            return dict(failed=True, msg='no staging rootfs, so no device.conf to log in with: set jetson_usb_instance or'
                                         ' jetson_rootfs_dir')
        return run(shared, device)

    station_run = StationRun(module, core=verify, shared_options=VERIFY_OPTIONS, phase=PHASE)
    station_run.exit(station_run.run(), PHASE)


if __name__ == '__main__':
    main()
