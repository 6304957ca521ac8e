#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: station_state
short_description: Tell which of a station's devices have finished which provisioning phases
version_added: 1.1.0
description:
  - Reads the state file of each of the station's devices (C(state_file) of its device context)
    and tells, for the phases in O(phases), which ones each device has finished and which are
    still to do, so that a run over a finished batch can leave finished devices alone.
  - A phase is finished when its recorded status is V(done) or V(skipped). The phase V(fuse) of
    a device that is not to be fused (C(fuse_enabled) false or unset) is finished also when it
    never ran; a device to be fused must have it V(done). The batch report's statuses follow
    the same rule.
  - Never writes anything. A state file that cannot be read fails that device only; the message
    names the file and the fix.
author: Azaion engineering (@azaion)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - azaion.jetson.devices
options:
  phases:
    description:
      - The phases this run does, in order. RV(devices) lists each device's pending phases in this order.
    type: list
    elements: str
    choices: [rootfs, fuse, identity, flash, verify]
    default: [rootfs, fuse, identity, flash, verify]
attributes:
  check_mode:
    support: full
    details:
      - The module only reads, so check mode does the same as a real run.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
notes:
  - Run it on the station (delegate the task to the station of the devices).
  - O(parallel) is accepted for the likeness of the station modules; reading the state files is
    quick either way.
seealso:
  - module: azaion.jetson.device_state
'''

EXAMPLES = r'''
- name: Find the devices of the station that still have work to do
  azaion.jetson.station_state:
    devices: "{{ station_devices }}"
    phases: [rootfs, identity, flash, verify]
  delegate_to: "{{ station_devices[0].station }}"
  register: station_state

- name: Show what is left
  ansible.builtin.debug:
    msg: "{{ station_state.pending_devices | join(', ') }} still have phases to do"
'''

RETURN = r'''
devices:
  description:
    - Each device's state, by device name.
    - C(phases) is its state file's C(phases) as recorded (status, times, error... of each phase
      that ran), empty when the file does not exist yet.
    - C(pending) lists the phases of O(phases) that are not finished for the device, in the
      order of O(phases); C(finished) is V(true) when there is none.
    - C(interrupted) lists its phases recorded as V(running) (see RV(interrupted_phases)).
    - C(failed) and C(msg) (naming the device, the file and the fix) when its state file could
      not be read; C(seconds) it took.
  returned: always
  type: dict
  sample:
    jetson-0042:
      changed: false
      finished: false
      pending: [identity, flash, verify]
      interrupted: []
      phases:
        rootfs: {status: done, started: 1767225600.0, finished: 1767225604.2, seconds: 4.2, error: null}
      msg: "jetson-0042: to do: identity, flash, verify"
      seconds: 0.001
finished_devices:
  description: The devices that have finished every phase of O(phases), in the order of O(devices).
  returned: always
  type: list
  elements: str
  sample: [jetson-0041]
pending_devices:
  description:
    - The devices that have phases of O(phases) to do, in the order of O(devices).
    - A device whose state file could not be read is in neither list, only in RV(failed_devices).
  returned: always
  type: list
  elements: str
  sample: [jetson-0042]
pending_phases:
  description:
    - Device name -> the phases of O(phases) still to do for it (its RV(devices) entry's
      C(pending)), for every device whose state file could be read. What the station check
      (M(azaion.jetson.l4t_station_check)) takes to know which devices must be in recovery mode.
  returned: always
  type: dict
  sample: {jetson-0041: [], jetson-0042: [identity, flash, verify]}
interrupted_phases:
  description:
    - Device name -> the phases recorded as V(running), as a run that was stopped (Ctrl-C, a
      killed controller, a station that went down) leaves them. This run does them again when
      they are among O(phases), and the batch report says they were interrupted.
    - Only devices with such phases are listed.
  returned: always
  type: dict
  sample: {jetson-0042: [flash]}
failed_devices:
  description: The devices whose state file could not be read, sorted.
  returned: always
  type: list
  elements: str
  sample: []
msg:
  description: A summary, for a person.
  returned: always
  type: str
  sample: "state: 2 device(s), 0 changed, 0 failed"
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.azaion.jetson.plugins.module_utils._device_state import (
    FINISHED,
    PHASES,
    DeviceState,
    DeviceStateError,
    phase_status,
)
from ansible_collections.azaion.jetson.plugins.module_utils._station_run import StationRun, station_argument_spec


def main():
    module = AnsibleModule(
        argument_spec=station_argument_spec(
            phases=dict(type='list', elements='str', choices=list(PHASES), default=list(PHASES)),
        ),
        supports_check_mode=True,
    )
    wanted = module.params['phases']

    def work(proxy, device):
        name = device['name']
        try:
            phases = DeviceState(device['state_file']).load().get('phases', {})
        except DeviceStateError as exc:
            message = str(exc)
            if 'move it aside' not in message:
                message += '; fix it or move it aside (the device\'s phases will then run again)'
            proxy.fail_json('%s: %s' % (name, message))
        pending = [phase for phase in wanted if phase_status(phase, phases.get(phase), device['fuse_enabled']) not in FINISHED]
        # A phase still recorded as running when a run starts: the run that started it was stopped.
        interrupted = [phase for phase in PHASES if (phases.get(phase) or {}).get('status') == 'running']
        proxy.exit_json(phases=phases, finished=not pending, pending=pending, interrupted=interrupted,
                        msg='%s: %s' % (name, ('to do: %s' % ', '.join(pending)) if pending else 'finished'))

    run = StationRun(module, work)
    results = run.run()
    ok = [device['name'] for device in module.params['devices'] if not results[device['name']].get('failed')]
    run.exit(results, 'state',
             finished_devices=[name for name in ok if results[name]['finished']],
             pending_devices=[name for name in ok if not results[name]['finished']],
             pending_phases=dict((name, results[name]['pending']) for name in ok),
             interrupted_phases=dict((name, results[name]['interrupted']) for name in ok if results[name]['interrupted']))


if __name__ == '__main__':
    main()
