#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: device_state
short_description: Read or record a provisioning phase in a Jetson's state file on the station
version_added: 1.1.0
description:
  - Each device of a batch has a state file on its station (usually
    C(<jetson_workdir>/devices/<serial>/state.json)) that says, per phase (C(rootfs), C(fuse),
    C(identity), C(flash), C(verify)), whether it is done or failed, when, for how long, and the
    error. It holds no secret.
  - The phases read it to resume a batch where it stopped, and
    M(azaion.jetson.batch_report) turns the state files into the batch report.
  - Recording V(done) (or V(skipped)) for a phase that is already recorded so, with the same
    O(details), changes nothing. The record keeps the time and duration of the run that did
    the work, and a re-run of a finished batch reports no change.
  - Without O(status), the module only reads the file.
author: Azaion engineering (@azaion)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  path:
    description: The device's state file. Written atomically; parent directories are created.
    type: path
    required: true
  phase:
    description: The phase to record. Required with O(status).
    type: str
  status:
    description: What happened to O(phase). Leave it out to read the file only.
    type: str
    choices: [done, failed, running, skipped]
  started:
    description:
      - When the phase started, in seconds since the epoch (for example
        C({{ now(utc=true).timestamp() }})), to record its duration.
    type: float
  error:
    description: Why the phase failed, for O(status=failed). It must not hold a secret.
    type: str
  details:
    description: More facts about the phase to keep in its record (no secret).
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
'''

EXAMPLES = r'''
- name: Record that the identity phase is done
  azaion.jetson.device_state:
    path: /var/lib/azaion-jetson/devices/AZJN-0042/state.json
    phase: identity
    status: done
    started: "{{ phase_started }}"

- name: Read where a device stands
  azaion.jetson.device_state:
    path: /var/lib/azaion-jetson/devices/AZJN-0042/state.json
  register: device_state

- name: Skip the check of a device already verified
  ansible.builtin.debug:
    msg: verified before
  when: (device_state.phases.verify | default({})).status | default('') == 'done'
'''

RETURN = r'''
phases:
  description: Every phase's record, after this call.
  returned: always
  type: dict
  sample: {"identity": {"status": "done", "started": 1764316800.0, "finished": 1764316803.2, "seconds": 3.2, "error": null}}
phase:
  description: The record of O(phase), after this call.
  returned: when O(phase) is given
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.azaion.jetson.plugins.module_utils._device_state import DeviceState
from ansible_collections.azaion.jetson.plugins.module_utils._station_run import keeps_record, phase_fields, record_phase


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            phase=dict(type='str'),
            status=dict(type='str', choices=['done', 'failed', 'running', 'skipped']),
            started=dict(type='float'),
            error=dict(type='str'),
            details=dict(type='dict', default={}),
        ),
        required_by=dict(status='phase'),
        supports_check_mode=True,
    )
    params = module.params
    state = DeviceState(module.params['path'])
    try:
        phases = state.load().get('phases', {})
    except ValueError as exc:
        module.fail_json(msg='%s is not a device state file (%s): move it aside; the next run starts the '
                             'device from the beginning' % (params['path'], exc))
    phase_name = params['phase']
    current = dict(phases.get(phase_name, {})) if phase_name else {}
    result = dict(changed=False, phases=phases)
    if phase_name:
        result['phase'] = current
    if not params['status']:
        module.exit_json(**result)

    if keeps_record(current, params['status'], params['details']):
        module.exit_json(**result)
    updated = dict(current, **phase_fields(params['status'], params['started'], params['error'], params['details']))
    if not module.check_mode:
        try:
            updated = record_phase(state, phase_name, params['status'], params['started'], previous=current,
                                   error=params['error'], details=params['details'])
        except (IOError, OSError) as exc:
            module.fail_json(msg='cannot write %s: %s' % (params['path'], exc.strerror or exc))
    result.update(changed=True, phase=updated)
    result['phases'] = dict(phases, **{phase_name: updated})
    module.exit_json(**result)


if __name__ == '__main__':
    main()
