#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: station_fuse
short_description: Burn the fuses of those of a station's devices that ask for it, one device at a time
version_added: 1.1.0
description:
  - The fuse phase of a station, for all its devices in one run. B(Burning fuses is irreversible.)
  - A device whose C(fuse_enabled) is not true is not fused; its state file records the phase
    C(fuse) as V(skipped) (outside check mode), unless it records an earlier burn, which is kept.
  - Each other device is fused exactly as M(azaion.jetson.l4t_fuse) does, in its USB port's
    working tree (C(port_tree)), with its C(fuse_config), C(usb_instance), C(pkc_key),
    C(sbk_key), C(ekb_file), C(state_file) and C(serial). So never twice, a fuse configuration naming only
    fuses Jetson Orin has, the fuses read before the first burn (a device that already holds
    the configured values is recorded as fused with nothing burned; one holding other values,
    or part of them, fails with nothing burned), a C(--test) dry run, the fuses read back after
    the burn, and nothing at all unless it is the only Jetson in recovery mode on the station.
    Its board configuration is C(board) looked up in O(board_configs) (or C(board) itself when it
    is not there), or V(auto) when C(board) is empty.
  - A device to be fused without C(jetson_fuse_config) or C(jetson_usb_instance) fails, and
    nothing is burned.
  - The devices are fused one after the other, whatever O(parallel) says, because C(odmfuse.sh)
    has no option to choose a USB port.
  - One device's failure does not fail the task; RV(devices) holds each device's result.
author: Azaion engineering (@azaion)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - azaion.jetson.devices
options:
  board_configs:
    description:
      - Board name (C(jetson_board)) -> the board configuration to fuse it with, the name of a
        C(.conf) file in the tree without the suffix.
    type: dict
    default:
      orin-nano-8gb: jetson-orin-nano-devkit
      orin-nano-4gb: jetson-orin-nano-devkit
      orin-nx-16gb: jetson-orin-nano-devkit
      orin-nx-8gb: jetson-orin-nano-devkit
      agx-orin-64gb: jetson-agx-orin-devkit
      agx-orin-32gb: jetson-agx-orin-devkit
      agx-orin-industrial: jetson-agx-orin-devkit-industrial
  chip_id:
    description:
      - The Tegra chip id passed to the tools with C(-i); V(0x23) is Orin.
    type: str
    default: '0x23'
  usb_sysfs_root:
    description:
      - Where the station's USB devices are listed. Tests point it at a fake tree.
    type: path
    default: /sys/bus/usb/devices
  log_dir:
    description:
      - The directory for the tools' log files on the station; created when missing.
    type: path
    required: true
  slots_dir:
    description:
      - The station's flash slot directory. Each device is fused holding its station lock,
        exclusive, which every flash slot also takes, so no flash runs meanwhile.
    type: path
  timeout:
    description:
      - Seconds each tool may run before it is killed with its whole process group.
    type: int
    default: 600
attributes:
  check_mode:
    support: full
    details:
      - As M(azaion.jetson.l4t_fuse) in check mode, for each device (no tool runs, nothing is
        burned or written); a device that is not to be fused is not recorded as skipped.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
notes:
  - Run it on the station that has the USB cables and the port trees, as root (NVIDIA's tools
    need it).
  - O(parallel) is ignored, one device is fused at a time.
seealso:
  - module: azaion.jetson.l4t_fuse
'''

EXAMPLES = r'''
- name: Fuse the station's devices that ask for it (irreversible)
  become: true
  azaion.jetson.station_fuse:
    devices: "{{ fuse_devices }}"
    log_dir: "{{ fuse_devices[0].settings.logs }}"
    usb_sysfs_root: "{{ fuse_devices[0].settings.usb_sysfs_root }}"
  delegate_to: "{{ fuse_devices[0].station }}"
  register: fuse_result
'''

RETURN = r'''
devices:
  description:
    - Each device's result, by device name. For a device that was to be fused, as
      M(azaion.jetson.l4t_fuse) returns it (C(fused), C(dry_run_ok), C(mismatches), C(log_path),
      C(commands), C(msg)), with C(failed) (and C(msg) naming the device) when it failed.
    - For a device that was not to be fused, C(skipped) V(true), C(changed) V(false) and C(msg).
    - C(seconds) it took.
  returned: always
  type: dict
  sample:
    jetson-0042:
      changed: true
      fused: true
      dry_run_ok: true
      mismatches: []
      log_path: /var/lib/azaion-jetson/logs/AZJN-0042-fuse-20250101T120000Z.log
      msg: fused AZJN-0042 on 1-3 and verified 2 fuses by reading them back
      seconds: 95.2
    jetson-0043:
      changed: false
      skipped: true
      msg: "jetson-0043: not to be fused (jetson_fuse_enabled is not true); recorded as skipped"
      seconds: 0.01
failed_devices:
  description: The names of the devices whose fusing failed, sorted.
  returned: always
  type: list
  elements: str
  sample: []
msg:
  description: A summary, for a person.
  returned: always
  type: str
  sample: "fuse: 2 device(s), 1 changed, 0 failed"
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.azaion.jetson.plugins.module_utils._device_state import DeviceState
from ansible_collections.azaion.jetson.plugins.module_utils._fuse import FUSE_PHASE, Fuser, fuse_argument_spec
from ansible_collections.azaion.jetson.plugins.module_utils._station_run import (
    StationRun,
    record_phase,
    run_device_core,
    shared_options,
    station_argument_spec,
)
from ansible_collections.azaion.jetson.plugins.module_utils._usb import BOARD_CONFIGS

# The options given once for all devices; the others are each device's.
SHARED_OPTIONS = ('chip_id', 'timeout', 'usb_sysfs_root', 'log_dir', 'slots_dir')


def burn_recorded(record):
    """Whether a fuse phase record tells of a burn (done, or started): such a record is never
    replaced by a skip, since it is what stops a second burn."""
    return record.get('status') == 'done' or bool(record.get('fused')) or bool(record.get('burn_started'))


def skip(module, proxy, device):
    """A device that is not to be fused: its fuse phase is recorded as skipped."""
    name = device['name']
    state = DeviceState(device['state_file'], serial=device['serial'])
    try:
        record = state.phase(FUSE_PHASE)
        if burn_recorded(record):
            proxy.exit_json(changed=False, skipped=True,
                            msg='%s: not to be fused (jetson_fuse_enabled is not true); its record of an earlier burn'
                                ' (status %s) is kept' % (name, record.get('status')))
        if not module.check_mode:
            record_phase(state, FUSE_PHASE, 'skipped', time.time(), previous=record, unchanged=True)
    except (IOError, OSError, ValueError) as exc:
        proxy.fail_json('%s: cannot record its fuse phase as skipped in %s: %s'
                        % (name, device['state_file'], getattr(exc, 'strerror', None) or exc))
    proxy.exit_json(changed=False, skipped=True, msg='%s: not to be fused (jetson_fuse_enabled is not true); %s'
                    % (name, 'would be recorded as skipped' if module.check_mode else 'recorded as skipped'))


def main():
    fuse_spec = fuse_argument_spec()
    options = shared_options(fuse_spec, SHARED_OPTIONS)
    options['board_configs'] = dict(type='dict', default=dict(BOARD_CONFIGS))
    module = AnsibleModule(argument_spec=station_argument_spec(**options), supports_check_mode=True)
    # odmfuse.sh has no USB port option: it burns whichever Jetson is in recovery mode, so the
    # station burns one device at a time.
    module.params['parallel'] = 1

    def work(proxy, device):
        name = device['name']
        if not device['fuse_enabled']:
            skip(module, proxy, device)
        missing = []
        if not device.get('fuse_config'):
            missing.append('no fuse configuration is given: set jetson_fuse_config to the fuse XML on the station')
        if not device.get('usb_instance'):
            missing.append('jetson_usb_instance (the USB port the device is on) is not set')
        elif not device.get('port_tree'):
            missing.append('no working tree to run the tools in: its USB port has no port tree')
        if missing:
            proxy.fail_json('%s: jetson_fuse_enabled is true, so this device would be fused (irreversible), but %s.'
                            ' Nothing was burned.' % (name, '; '.join(missing)))
        board = device.get('board')
        own = dict(l4t_dir=device['port_tree'], fuse_config=device['fuse_config'], usb_instance=device['usb_instance'],
                   state_file=device['state_file'], serial=device['serial'], pkc_key=device.get('pkc_key') or None,
                   sbk_key=device.get('sbk_key') or None, ekb_file=device.get('ekb_file') or None,
                   board_config=module.params['board_configs'].get(board, board) if board else 'auto')
        run_device_core(proxy, fuse_spec, SHARED_OPTIONS, own, lambda device_module: Fuser(device_module).main(),
                        refused='. Nothing was burned.')

    # Fuser records the fuse phase itself. A burn cut short could leave a device half fused, so a
    # stopped run (Ctrl-C) lets the burns under way finish: the module does not end with it.
    run = StationRun(module, work, ends_with_the_run=False)
    run.exit(run.run(), FUSE_PHASE)


if __name__ == '__main__':
    main()
