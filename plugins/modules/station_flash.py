#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: station_flash
short_description: Flash every Jetson of a station in recovery mode, in one run, several ports at once
version_added: 1.1.0
description:
  - The flash phase of a station, for all its devices at once. Each device is flashed from the
    working tree of its USB port (C(port_tree) of its device context, made by
    M(azaion.jetson.station_trees)) to the device in recovery mode on that port
    (C(usb_instance)), exactly as M(azaion.jetson.l4t_flash) flashes one device; see there for
    how initrd flashes of one station are kept apart.
  - Every device has its own thread unless O(parallel) is smaller. How many devices flash at once
    is bounded by the station's flash slots (O(concurrency)), and how many image generations run
    at once by their own slots, across all the processes on the station that use O(slots_dir).
  - Per device, C(serial), C(state_file), C(board) (detected from the USB product id when
    empty, except on C(0955:7023), an AGX Orin 32GB, 64GB or Industrial, where a device fails
    unless its C(board_identity) names its C(BOARDSKU)), C(board_identity) and C(own_rootfs)
    come from its device context, and its C(email)
    is the one its device.conf must hold (the cross-talk guard). A device with C(pkc_key) is
    signed with it (C(-u <pkc_key>)) and one with C(sbk_key) encrypted with it (C(-v <sbk_key>)),
    unless the device is to be fused (C(fuse_enabled)) with a C(fuse_config) that burns no
    C(SecureBootKey), since a PKC-only device does not boot encrypted images; key files are passed
    by path, never read. Its C(ekb_file) replaces the tree's EKB.
  - A device already flashed with its image costs no tool run and no look at the USB bus. Its
    C(flash) phase is recorded in its state file by the flash itself (outside check mode).
  - One device's failure does not fail the task; RV(devices) holds each device's result, whose
    C(msg) names the device, its port, the cause and the fix.
author: Azaion engineering (@azaion)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - azaion.jetson.devices
  - azaion.jetson.progress
options:
  parallel:
    description:
      - How many devices' work runs at once. Default (null), all of them; the flash slots
        (O(concurrency)) bound how many of them flash at once.
    type: int
    default: null
  tool:
    description:
      - V(initrd) uses NVIDIA's initrd flasher, V(flash.sh) runs C(./flash.sh); see
        M(azaion.jetson.l4t_flash).
    type: str
    choices: [initrd, flash.sh]
    default: initrd
  l4t_release:
    description:
      - The L4T release family of the trees, which chooses the partition layouts of the initrd
        flash. Not used with O(tool=flash.sh).
    type: str
    choices: [r36, r35]
    default: r36
  external_device:
    description:
      - The external storage the initrd flash writes the root file system to
        (C(--external-device)). Not used with O(tool=flash.sh).
    type: str
    default: nvme0n1p1
  rootdev:
    description:
      - The last argument of the tool, the root device. Default V(internal) with O(tool=initrd)
        and V(nvme0n1p1) with O(tool=flash.sh).
    type: str
  board_config:
    description:
      - The board config to flash with, a C(.conf) name without the suffix. Default, from each
        device's board.
    type: str
  timeout:
    description:
      - Seconds each tool run (image generation, flash) may take before it is stopped and that
        device's flash counted as failed.
    type: int
    default: 3600
  settle_timeout:
    description:
      - Seconds to wait, after the tool reported success, for the device to leave NVIDIA's
        flashing initrd.
    type: int
    default: 60
  usb_sysfs_root:
    description:
      - Where the station's USB devices are listed. Tests point it at a fake tree.
    type: path
    default: /sys/bus/usb/devices
  station_root:
    description:
      - The station's file system root for the host-wide state the initrd flash touches. Tests
        point it at a fake host root.
    type: path
    default: /
  log_dir:
    description:
      - Directory of the flash logs on the station (C(<serial>-flash-<UTC time>.log)), created
        when missing.
    type: path
    required: true
  slots_dir:
    description:
      - Directory of the station's flash and generation slot lock files, created when missing.
        Every flash of the station must use the same one.
    type: path
    required: true
  concurrency:
    description:
      - How many devices this station flashes at once (the flash slots); with O(tool=initrd) also
        the number of device instances every tree is generated for and of image generations at
        once, so at most 10.
    type: int
    default: 4
  force:
    description:
      - Flash every device even when its last flash succeeded with the same image.
    type: bool
    default: false
  fingerprint_extra:
    description:
      - More inputs of every device's image identity; a change flashes the devices again.
    type: dict
  image_mode:
    description:
      - How the devices' images are made; see M(azaion.jetson.l4t_flash). V(auto) generates once
        per image group and gives each flash its own APP image in bytes, falling back to images
        of the device's own where they cannot be shared; V(shared) refuses those devices;
        V(per_device) generates in every device's port tree.
    type: str
    choices: [auto, shared, per_device]
    default: auto
  images_dir:
    description:
      - Directory of the station's image groups (C(<jetson_workdir>/images)).
    type: path
  extra_args:
    description:
      - More options for NVIDIA's tool, for every device, before each device's own signing
        options (for example V(--sparse)). Each item is one argument. With O(tool=initrd) they
        go to both the generation and the flash, and they are part of the image fingerprint.
        They must not hold a secret.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    details:
      - Never runs a tool and changes nothing on the station. A device missing from the USB bus is
        reported as a warning.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
notes:
  - Run it on the station that has the USB cables to the devices, as root, as NVIDIA's tools need.
  - After a failed flash the device usually has to re-enter recovery mode (power-cycle with the
    REC button held) before a retry; the devices flashed already are not flashed again.
seealso:
  - module: azaion.jetson.l4t_flash
  - module: azaion.jetson.station_trees
  - module: azaion.jetson.l4t_station_check
'''

EXAMPLES = r'''
- name: Flash the station's devices, at most four at once
  azaion.jetson.station_flash:
    devices: "{{ station_devices }}"
    log_dir: /var/lib/azaion-jetson/logs
    slots_dir: /var/lib/azaion-jetson/flash-slots
    concurrency: 4
  register: flash

- name: Show each device's flash
  ansible.builtin.debug:
    msg: "{{ item.key }}: {{ item.value.msg }}"
  loop: "{{ flash.devices | dict2items }}"
'''

RETURN = r'''
devices:
  description:
    - Each device's result, by device name, as M(azaion.jetson.l4t_flash) returns it (C(board),
      C(board_config), C(command), C(generate_command), C(board_identity), C(generated),
      C(log_path), C(seconds), C(slot_wait_seconds), C(slot), C(fingerprint),
      C(skipped_reason), C(msg)), with C(failed) when its flash failed.
  returned: always
  type: dict
  sample:
    jetson-0042:
      changed: true
      board: orin-nano-8gb
      board_config: jetson-orin-nano-devkit
      slot: 0
      generated: true
      log_path: /var/lib/azaion-jetson/logs/AZJN-0042-flash-20250301T101500Z.log
      fingerprint: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
      skipped_reason: null
      msg: flashed AZJN-0042 on USB port 1-3 (orin-nano-8gb, jetson-orin-nano-devkit) in 312.4 s
failed_devices:
  description: The names of the devices whose flash failed, sorted.
  returned: always
  type: list
  elements: str
  sample: []
msg:
  description: A summary, for a person.
  returned: always
  type: str
  sample: "flash: 6 device(s), 6 changed, 0 failed"
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.azaion.jetson.plugins.module_utils._flash import CHECKING, Flasher, flash_argument_spec
from ansible_collections.azaion.jetson.plugins.module_utils._fuse import FuseError, parse_fuse_config
from ansible_collections.azaion.jetson.plugins.module_utils._progress import run_progress
from ansible_collections.azaion.jetson.plugins.module_utils._station_run import (
    StationRun,
    devices_by,
    run_device_core,
    shared_options,
    station_argument_spec,
)

# The options given once for all devices; the others come from each device's context.
SHARED_OPTIONS = ('tool', 'l4t_release', 'external_device', 'rootdev', 'board_config', 'timeout', 'settle_timeout',
                  'usb_sysfs_root', 'station_root', 'log_dir', 'slots_dir', 'concurrency', 'force',
                  'fingerprint_extra', 'image_mode', 'images_dir', 'extra_args')


def argument_spec():
    # No default: every device gets a thread of its own; the flash slots bound the flashes.
    return station_argument_spec(parallel=dict(type='int'), progress_interval=dict(type='int', default=30),
                                 **shared_options(flash_argument_spec(), SHARED_OPTIONS))


def signing_args(device):
    """The tool's signing options of a fused device: its key files, by path. The SBK encrypts
    the images only for a device that holds one: not when its own fuse configuration burns no
    SecureBootKey (a PKC-only device does not boot encrypted images)."""
    args = []
    if device.get('pkc_key'):
        args += ['-u', device['pkc_key']]
    if device.get('sbk_key') and not (device.get('fuse_enabled') and not burns_sbk(device.get('fuse_config'))):
        args += ['-v', device['sbk_key']]
    return args


def burns_sbk(fuse_config):
    """Whether the fuse configuration burns a SecureBootKey (True when it cannot be read: the
    key given is then taken at its word)."""
    try:
        return any(fuse['name'] == 'SecureBootKey' for fuse in parse_fuse_config(fuse_config or ''))
    except FuseError:
        return True


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    devices = module.params['devices']
    if module.params['parallel'] is None:
        module.params['parallel'] = len(devices)
    flash_spec = flash_argument_spec()
    by_port = devices_by(devices, 'usb_instance')
    progress = run_progress(module.params['log_dir'], 'flash', [device['name'] for device in devices],
                            module.params['progress_interval'], module.check_mode)

    def flash(device_module, report):
        flasher = Flasher(device_module)
        flasher.report = report
        flasher.main()

    def work(proxy, device):
        report = progress.reporter(device['name'])
        report(CHECKING)
        flash_device(proxy, device, lambda device_module: flash(device_module, report))

    def flash_device(proxy, device, core):
        name = device['name']
        if not device.get('usb_instance') or not device.get('port_tree'):
            proxy.fail_json('%s: it has no USB port, so nothing to flash it through; set jetson_usb_instance (the USB'
                            ' port of its cable)' % name)
        sharing = by_port[device['usb_instance']]
        if len(sharing) > 1:
            # Two flashes of one port (one tree) at once would write over each other.
            proxy.fail_json('%s: devices %s are all on USB port %s; give each device the jetson_usb_instance of its'
                            ' own cable' % (name, ', '.join(sharing), device['usb_instance']))
        own = dict(l4t_dir=device['port_tree'], usb_instance=device['usb_instance'], serial=device['serial'],
                   state_file=device['state_file'], expected_email=device['email'],
                   rootfs_dir=device.get('own_rootfs') or None, board=device.get('board') or None,
                   board_identity=device.get('board_identity') or {},
                   extra_args=list(module.params['extra_args']) + signing_args(device),
                   ekb_file=device.get('ekb_file') or None)
        run_device_core(proxy, flash_spec, SHARED_OPTIONS, own, core)

    # The flash records its phase in the state file itself (with its fingerprint, slot and log).
    run = StationRun(module, work, phase=None, progress=progress)
    run.exit(run.run(), 'flash')


if __name__ == '__main__':
    main()
