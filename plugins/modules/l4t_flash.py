#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: l4t_flash
short_description: Flash a Jetson in recovery mode from its own Linux_for_Tegra working tree
version_added: 1.0.0
description:
  - Flashes the root file system of the working tree O(l4t_dir) (made by
    M(azaion.jetson.l4t_workspace), holding this device's C(etc/azaion/device.conf)) to the
    Jetson in recovery mode on the station's USB port O(usb_instance), with NVIDIA's
    C(tools/kernel_flash/l4t_initrd_flash.sh) (the default) or C(flash.sh), run from O(l4t_dir).
  - Re-running is cheap. The image's identity (a SHA-256 fingerprint of the working tree's
    source identity, a digest of its device.conf, the board, the board config, the tool, the
    full command and O(fingerprint_extra)) is kept in the device's state file O(state_file).
    When the last flash of this device succeeded with the same fingerprint, nothing is done and
    the USB bus is not even looked at (a flashed device has left recovery mode). Any change,
    such as a new device.conf, flashes again.
  - Several devices flash at the same time, each from its own working tree; at most
    O(concurrency) at once per station, whatever Ansible's C(forks), through slot lock files in
    O(slots_dir).
  - The tool runs in its own process group with a time limit (O(timeout)); on timeout the whole
    group is stopped (SIGTERM, then SIGKILL). Its output goes to
    C(<log_dir>/<serial>-flash-<UTC time>.log). The outcome, timings, board, log and any error
    are recorded in O(state_file) (never a secret). On failure the task fails with the device,
    the port, the exit status or the time limit, the log path and the log's last lines.
  - Cross-talk guard. With O(expected_email), the working tree's device.conf must belong to
    this device, else nothing is flashed. The password in that file is never read into the
    result, the state or a message.
author: Azaion engineering (@azaion)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  l4t_dir:
    description:
      - The device's working tree (a C(Linux_for_Tegra) tree), on the station. The tool runs with
        this directory as its working directory and flashes its C(rootfs).
    type: path
    required: true
  usb_instance:
    description:
      - The USB port path of the device, C(<busnum>-<devpath>), such as V(1-3) or V(1-8.4)
        behind a hub; passed to the tool as C(--usb-instance).
    type: str
    required: true
  board:
    description:
      - The Jetson module. When omitted, it is detected from the USB product id of the device in
        recovery mode on O(usb_instance) (or taken from the last flash recorded in
        O(state_file)).
      - When given, the device on the port must be this module, else nothing is flashed (a wrong
        device on the port, or a wrong inventory).
    type: str
    choices: [orin-nano-8gb, orin-nano-4gb, orin-nx-16gb, orin-nx-8gb, agx-orin-64gb, agx-orin-32gb]
  board_config:
    description:
      - The board config of the tree to flash with, a C(.conf) name without the suffix.
      - Default, from the board, V(jetson-orin-nano-devkit) for the Orin Nano and Orin NX
        modules (as in L4T r36) and V(jetson-agx-orin-devkit) for the AGX Orin modules.
    type: str
  tool:
    description:
      - V(initrd) runs C(tools/kernel_flash/l4t_initrd_flash.sh) with NVIDIA's external-device
        (NVMe) options, the way to flash Orin Nano and NX modules.
      - V(flash.sh) runs C(./flash.sh --usb-instance <port> <board_config> <rootdev>).
    type: str
    choices: [initrd, flash.sh]
    default: initrd
  l4t_release:
    description:
      - The L4T release family of the tree, which chooses the partition layouts of the initrd
        flash. V(r36) passes C(-c tools/kernel_flash/flash_l4t_t234_nvme.xml
        -p "-c bootloader/generic/cfg/flash_t234_qspi.xml"), V(r35) passes
        C(-c tools/kernel_flash/flash_l4t_external.xml
        -p "-c bootloader/t186ref/cfg/flash_t234_qspi.xml").
      - Not used with O(tool=flash.sh).
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
      - The last argument of the tool, the root device.
      - Default V(internal) with O(tool=initrd) (as in NVIDIA's standard NVMe command) and
        V(nvme0n1p1) with O(tool=flash.sh).
    type: str
  rootfs_dir:
    description:
      - The device's own staging rootfs, when it is not C(<l4t_dir>/rootfs) (the inventory's
        C(jetson_rootfs_dir)). Passed to C(flash.sh) as C(-R); the initrd flasher hands it on
        through C(-p). The cross-talk guard and the image fingerprint then read its
        device.conf.
    type: path
  extra_args:
    description:
      - More options for the tool, inserted before the board config (for example
        V(-u), V(/path/to/pkc.pem) for a PKC-fused device). Each item is one argument.
      - They are part of the image fingerprint; they must not hold a secret (key files are
        passed by path).
    type: list
    elements: str
    default: []
  timeout:
    description:
      - Seconds the tool may run before it is stopped and the flash counted as failed.
    type: int
    default: 3600
  usb_sysfs_root:
    description:
      - Where the station's USB devices are listed (the recovery-mode scan reads
        C(idVendor), C(idProduct), C(busnum) and C(devpath) of each entry). Tests point it at a
        fake tree.
    type: path
    default: /sys/bus/usb/devices
  log_dir:
    description:
      - Directory of the flash logs on the station, created when missing.
    type: path
    required: true
  state_file:
    description:
      - The device's state file on the station (JSON); its C(flash) phase is read and written.
    type: path
    required: true
  serial:
    description:
      - The device's serial, for the log's name and the state file.
    type: str
    required: true
  expected_email:
    description:
      - The device's account email. When given, the working tree's
        C(rootfs/etc/azaion/device.conf) must hold it as C(AZAION_DEVICE_EMAIL), else the task
        fails without flashing (the tree holds another device's identity, or none).
    type: str
  fingerprint_extra:
    description:
      - More inputs of the image identity (for example the version of an application baked
        into the rootfs); a change flashes the device again.
    type: dict
  force:
    description:
      - Flash even when the device's last flash succeeded with the same image.
    type: bool
    default: false
  concurrency:
    description:
      - How many devices this station flashes at once, across all Ansible processes that use
        the same O(slots_dir).
    type: int
    default: 4
  slots_dir:
    description:
      - Directory of the station's flash slot lock files (C(slot-<n>.lock)), created when
        missing. Every flash of the station must use the same one.
    type: path
    required: true
attributes:
  check_mode:
    support: full
    details:
      - Never runs the tool. A device missing from the USB bus is reported as a warning.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
notes:
  - Run it on the station that has the USB cable to the device (the device host itself is not
    reachable while in recovery mode), usually as root, as NVIDIA's tools need.
  - After a failed flash the device usually has to re-enter recovery mode (power-cycle with
    the REC button held) before a retry.
seealso:
  - module: azaion.jetson.l4t_workspace
  - module: azaion.jetson.device_conf
'''

EXAMPLES = r'''
- name: Flash the device from its port's working tree
  azaion.jetson.l4t_flash:
    l4t_dir: "{{ jetson_workdir }}/ports/{{ jetson_usb_instance }}/Linux_for_Tegra"
    usb_instance: "{{ jetson_usb_instance }}"
    serial: "{{ jetson_serial }}"
    expected_email: "{{ jetson_serial | azaion.jetson.device_email }}"
    log_dir: "{{ jetson_workdir }}/logs"
    state_file: "{{ jetson_workdir }}/devices/{{ jetson_serial }}/state.json"
    slots_dir: "{{ jetson_workdir }}/flash-slots"
    concurrency: "{{ jetson_flash_concurrency }}"
  delegate_to: "{{ jetson_station }}"

- name: Flash an Orin NX with flash.sh on an r35 tree, signed with the PKC key
  azaion.jetson.l4t_flash:
    l4t_dir: /var/lib/azaion-jetson/ports/1-8.4/Linux_for_Tegra
    usb_instance: 1-8.4
    board: orin-nx-16gb
    tool: flash.sh
    l4t_release: r35
    extra_args: [-u, /srv/azaion/keys/pkc.pem]
    serial: AZJN-0042
    log_dir: /var/lib/azaion-jetson/logs
    state_file: /var/lib/azaion-jetson/devices/AZJN-0042/state.json
    slots_dir: /var/lib/azaion-jetson/flash-slots
    timeout: 1800
'''

RETURN = r'''
board:
  description: The Jetson module flashed (given, detected from the USB product id, or recorded).
  returned: always
  type: str
  sample: orin-nano-8gb
board_config:
  description: The board config the tool was given.
  returned: always
  type: str
  sample: jetson-orin-nano-devkit
command:
  description: The tool's argument list, run in O(l4t_dir). It holds no secret.
  returned: always
  type: list
  elements: str
  sample:
    - tools/kernel_flash/l4t_initrd_flash.sh
    - --usb-instance
    - 1-3
    - --external-device
    - nvme0n1p1
    - -c
    - tools/kernel_flash/flash_l4t_t234_nvme.xml
    - -p
    - -c bootloader/generic/cfg/flash_t234_qspi.xml
    - --showlogs
    - --network
    - usb0
    - jetson-orin-nano-devkit
    - internal
log_path:
  description:
    - The log of this run's flash; when nothing was flashed, the log of the flash that put this
      image on the device (null in check mode).
  returned: always
  type: str
  sample: /var/lib/azaion-jetson/logs/AZJN-0042-flash-20250301T101500Z.log
seconds:
  description: How long the tool ran (0 when nothing was flashed).
  returned: always
  type: float
  sample: 312.4
slot_wait_seconds:
  description: How long the flash waited for a free slot (0 when nothing was flashed).
  returned: always
  type: float
  sample: 0.0
slot:
  description: The flash slot used (null when nothing was flashed).
  returned: always
  type: int
  sample: 0
fingerprint:
  description: The SHA-256 identity of the image (see the description).
  returned: always
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
skipped_reason:
  description: Why nothing was flashed, or null when the device was flashed (or would be).
  returned: always
  type: str
  sample: already flashed with this image
msg:
  description: What happened, for a person.
  returned: always
  type: str
  sample: flashed AZJN-0042 on USB port 1-3 (orin-nano-8gb, jetson-orin-nano-devkit) in 312.4 s
'''

import hashlib
import json
import os
import re
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.azaion.jetson.plugins.module_utils._device_conf import (
    DEVICE_CONF_RELPATH,
    DeviceConfError,
    read_credentials,
    resolve_in_rootfs,
)
from ansible_collections.azaion.jetson.plugins.module_utils._l4t import (
    BOARD_CONFIGS,
    RECOVERY_PRODUCTS,
    USB_PORT_PATTERN,
    DeviceState,
    DeviceStateError,
    FlashSlots,
    log_tail,
    read_workspace_marker,
    recovery_devices,
    run_tool,
    source_stamp,
)

INITRD_SCRIPT = 'tools/kernel_flash/l4t_initrd_flash.sh'
FLASH_SCRIPT = 'flash.sh'
# The partition layouts of NVIDIA's standard NVMe command, per release family.
RELEASE_LAYOUTS = {
    'r36': ('tools/kernel_flash/flash_l4t_t234_nvme.xml', '-c bootloader/generic/cfg/flash_t234_qspi.xml'),
    'r35': ('tools/kernel_flash/flash_l4t_external.xml', '-c bootloader/t186ref/cfg/flash_t234_qspi.xml'),
}
SERIAL_PATTERN = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]*$')
PHASE = 'flash'
LOG_TAIL_LINES = 20
RECOVERY_HINT = 'put the device in recovery mode (hold REC, power on) and re-run'


class FlashError(Exception):
    """The device cannot be flashed; the message names it, the port and the fix."""


def _argument_spec():
    return dict(
        l4t_dir=dict(type='path', required=True),
        usb_instance=dict(type='str', required=True),
        board=dict(type='str', choices=['orin-nano-8gb', 'orin-nano-4gb', 'orin-nx-16gb', 'orin-nx-8gb',
                                        'agx-orin-64gb', 'agx-orin-32gb']),
        board_config=dict(type='str'),
        tool=dict(type='str', choices=['initrd', 'flash.sh'], default='initrd'),
        l4t_release=dict(type='str', choices=['r36', 'r35'], default='r36'),
        external_device=dict(type='str', default='nvme0n1p1'),
        rootdev=dict(type='str'),
        extra_args=dict(type='list', elements='str', default=[]),
        timeout=dict(type='int', default=3600),
        usb_sysfs_root=dict(type='path', default='/sys/bus/usb/devices'),
        log_dir=dict(type='path', required=True),
        state_file=dict(type='path', required=True),
        serial=dict(type='str', required=True),
        expected_email=dict(type='str'),
        rootfs_dir=dict(type='path'),
        fingerprint_extra=dict(type='dict'),
        force=dict(type='bool', default=False),
        concurrency=dict(type='int', default=4),
        slots_dir=dict(type='path', required=True),
    )


def build_command(tool, usb_instance, board_config, rootdev, l4t_release='r36', external_device='nvme0n1p1',
                  extra_args=(), rootfs_dir=None):
    """The tool's argv, relative to the Linux_for_Tegra directory, as in NVIDIA's documentation.

    A ``rootfs_dir`` other than the tree's own ``rootfs`` is flash.sh's ``-R``; the initrd
    flasher hands it to flash.sh through ``-p``.
    """
    rootfs_option = ['-R', rootfs_dir] if rootfs_dir else []
    if tool == 'initrd':
        layout, qspi = RELEASE_LAYOUTS[l4t_release]
        flash_sh_options = ' '.join([qspi] + rootfs_option)
        return ([INITRD_SCRIPT, '--usb-instance', usb_instance, '--external-device', external_device,
                 '-c', layout, '-p', flash_sh_options, '--showlogs', '--network', 'usb0']
                + list(extra_args) + [board_config, rootdev])
    return (['./' + FLASH_SCRIPT, '--usb-instance', usb_instance] + rootfs_option + list(extra_args)
            + [board_config, rootdev])


def image_fingerprint(stamp, device_conf_digest, board, board_config, tool, argv, extra=None):
    """SHA-256 over everything that makes the image and the command (no secret goes in)."""
    identity = {
        'source_stamp': stamp,
        'device_conf_sha256': device_conf_digest,
        'board': board,
        'board_config': board_config,
        'tool': tool,
        'argv': list(argv),
        'extra': extra or {},
    }
    data = json.dumps(identity, sort_keys=True, separators=(',', ':'), default=str)
    return hashlib.sha256(data.encode('utf-8')).hexdigest()


def _device_conf(module, rootfs, expected_email):
    """Return the SHA-256 of the rootfs's device.conf (None when there is none), after the
    cross-talk guard. The password is only registered as a value to hide."""
    try:
        target = resolve_in_rootfs(rootfs, DEVICE_CONF_RELPATH)
    except DeviceConfError as exc:
        raise FlashError(str(exc))
    if not target.exists:
        if expected_email:
            raise FlashError('the rootfs %s holds no %s: run the identity phase first'
                             % (rootfs, DEVICE_CONF_RELPATH))
        return None
    try:
        email, password = read_credentials(target.path)
    except DeviceConfError as exc:
        if expected_email:
            raise FlashError(str(exc))
        email = None
    else:
        module.no_log_values.add(password)
    if expected_email and email != expected_email:
        raise FlashError('the rootfs %s holds the device.conf of %s, not this device\'s (%s): run the'
                         ' identity phase first' % (rootfs, email, expected_email))
    try:
        with open(target.path, 'rb') as conf:
            return hashlib.sha256(conf.read()).hexdigest()
    except (IOError, OSError) as exc:
        raise FlashError('cannot read %s: %s' % (target.path, exc.strerror or exc))


def _describe_devices(devices):
    if not devices:
        return 'no Jetson in recovery mode at all'
    return 'Jetsons in recovery mode on %s' % ', '.join(
        '%s (%s)' % (port, RECOVERY_PRODUCTS[product]) for port, product in devices.items())


def _find_device(params):
    """The product id of the Jetson in recovery on the port, or raise FlashError."""
    root = params['usb_sysfs_root']
    devices = recovery_devices(root)
    port = params['usb_instance']
    if port in devices:
        return devices[port]
    where = ('the station\'s USB sysfs root %s does not exist' % root if not os.path.isdir(root)
             else 'the station\'s USB sysfs root %s shows %s' % (root, _describe_devices(devices)))
    raise FlashError('no Jetson in recovery mode on USB port %s for %s (%s): %s'
                     % (port, params['serial'], where, RECOVERY_HINT))


def _result(**fields):
    result = dict(changed=False, board=None, board_config=None, command=None, log_path=None, seconds=0.0,
                  slot_wait_seconds=0.0, slot=None, fingerprint=None, skipped_reason=None, msg='')
    result.update(fields)
    return result


def main():
    module = AnsibleModule(argument_spec=_argument_spec(), supports_check_mode=True)
    params = module.params
    l4t_dir = os.path.abspath(params['l4t_dir'])
    port = params['usb_instance']
    serial = params['serial']
    tool = params['tool']
    rootdev = params['rootdev'] or ('internal' if tool == 'initrd' else 'nvme0n1p1')
    state = DeviceState(params['state_file'], serial=serial)

    # -- inputs, before anything else ---------------------------------------------------------
    if not SERIAL_PATTERN.match(serial):
        module.fail_json(msg='serial %r is not usable in a file name; use letters, digits, ".", "_" and "-"' % serial)
    if not USB_PORT_PATTERN.match(port):
        module.fail_json(msg='usb_instance %r is not a USB port path <busnum>-<devpath> such as 1-3 or 1-8.4' % port)
    if params['timeout'] < 1:
        module.fail_json(msg='timeout must be 1 second or more, not %d' % params['timeout'])
    if params['concurrency'] < 1:
        module.fail_json(msg='concurrency must be 1 or more, not %d' % params['concurrency'])
    script = INITRD_SCRIPT if tool == 'initrd' else FLASH_SCRIPT
    rootfs_dir = os.path.abspath(params['rootfs_dir']) if params['rootfs_dir'] else None
    rootfs = rootfs_dir or os.path.join(l4t_dir, 'rootfs')
    if not os.path.isdir(l4t_dir):
        if module.check_mode:
            # In a check run, the task that makes the working tree did not run either.
            module.exit_json(changed=True, msg='would flash %s on USB port %s once its working tree %s is made'
                                               % (serial, port, l4t_dir), skipped_reason=None)
        module.fail_json(msg='l4t_dir %s does not exist; make the working tree first with'
                             ' azaion.jetson.l4t_workspace' % l4t_dir)
    if not os.path.isfile(os.path.join(l4t_dir, FLASH_SCRIPT)) or not os.path.isfile(os.path.join(l4t_dir, script)):
        module.fail_json(msg='l4t_dir %s is not a Linux_for_Tegra tree with %s; give the device\'s working tree'
                             % (l4t_dir, script))

    try:
        previous = state.phase(PHASE)
    except DeviceStateError as exc:
        module.fail_json(msg=str(exc))
    try:
        conf_digest = _device_conf(module, rootfs, params['expected_email'])
    except FlashError as exc:
        if module.check_mode:
            # In a check run, the identity phase wrote no device.conf either.
            module.warn('%s on USB port %s: %s' % (serial, port, exc))
            module.exit_json(changed=True, skipped_reason=None,
                             msg='would flash %s on USB port %s once its device.conf is written' % (serial, port))
        module.fail_json(msg='not flashing %s on USB port %s: %s' % (serial, port, exc))

    marker = read_workspace_marker(l4t_dir)
    if marker is None:
        module.warn('%s was not made by azaion.jetson.l4t_workspace: flashing in it writes into it, and no other'
                    ' flash may use it at the same time' % l4t_dir)
        try:
            stamp = source_stamp(l4t_dir)
        except (IOError, OSError) as exc:
            module.fail_json(msg='cannot read the identity of %s: %s' % (l4t_dir, exc.strerror or exc))
    else:
        stamp = marker.get('source_stamp')

    def plan(board):
        board_config = params['board_config'] or (BOARD_CONFIGS[board] if board else None)
        if board_config is None:
            return None, None, None
        argv = build_command(tool, port, board_config, rootdev, params['l4t_release'], params['external_device'],
                             params['extra_args'], rootfs_dir)
        fingerprint = image_fingerprint(stamp, conf_digest, board, board_config, tool, argv,
                                        params['fingerprint_extra'])
        return board_config, argv, fingerprint

    # -- already flashed with this image? (the device has left recovery mode: no bus scan) --
    recorded_board = previous.get('board') if previous.get('board') in BOARD_CONFIGS else None
    board = params['board'] or recorded_board
    board_config, argv, fingerprint = plan(board)
    if (not params['force'] and previous.get('status') == 'done' and fingerprint is not None
            and previous.get('fingerprint') == fingerprint):
        module.exit_json(**_result(
            board=board, board_config=board_config, command=argv, fingerprint=fingerprint,
            log_path=previous.get('log_path'), skipped_reason='already flashed with this image',
            msg='%s on USB port %s is already flashed with this image (%s); nothing to do'
                % (serial, port, fingerprint[:12])))

    # -- the device must be waiting in recovery mode on its port ------------------------------
    def fail(message, **fields):
        if not module.check_mode:
            now = time.time()
            record = dict(status='failed', started=now, finished=now, seconds=0.0, error=message, rc=None,
                          timed_out=False, usb_instance=port, board=board, board_config=board_config, tool=tool,
                          command=argv, fingerprint=fingerprint, log_path=None)
            record.update(fields)
            state.record(PHASE, **record)
        module.fail_json(**_result(board=board, board_config=board_config, command=argv, fingerprint=fingerprint,
                                   msg=message))

    try:
        product = _find_device(params)
    except FlashError as exc:
        if module.check_mode:
            module.warn(str(exc))
            module.exit_json(**_result(
                changed=True, board=board, board_config=board_config, command=argv, fingerprint=fingerprint,
                msg='would flash %s on USB port %s, but it is not in recovery mode now' % (serial, port)))
        fail(str(exc))
    detected = RECOVERY_PRODUCTS[product]
    if params['board'] and params['board'] != detected:
        fail('the device in recovery mode on USB port %s is a %s (0955:%s), not the %s given for %s: check which'
             ' device is on this port, or fix its board' % (port, detected, product, params['board'], serial))
    board = detected
    board_config, argv, fingerprint = plan(board)

    if module.check_mode:
        module.exit_json(**_result(
            changed=True, board=board, board_config=board_config, command=argv, fingerprint=fingerprint,
            msg='would flash %s on USB port %s (%s, %s)' % (serial, port, board, board_config)))

    # -- flash, one of at most `concurrency` on this station ----------------------------------
    log_path = os.path.join(params['log_dir'], '%s-flash-%s.log' % (serial, time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())))
    common = dict(board=board, board_config=board_config, tool=tool, command=argv, fingerprint=fingerprint,
                  log_path=log_path, usb_instance=port)
    slots = FlashSlots(params['slots_dir'], params['concurrency'], label='%s %s' % (serial, port))
    with slots:
        try:
            _find_device(params)  # it may have gone while waiting for a slot
        except FlashError as exc:
            fail(str(exc), slot=slots.slot, slot_wait_seconds=round(slots.wait_seconds, 3))
        started = time.time()
        state.record(PHASE, status='running', started=started, finished=None, seconds=None, error=None, rc=None,
                     timed_out=False, slot=slots.slot, slot_wait_seconds=round(slots.wait_seconds, 3), **common)
        run = run_tool(argv, cwd=l4t_dir, log_path=log_path, timeout=params['timeout'])
    seconds = round(run.seconds, 3)
    if run.rc == 0 and not run.timed_out:
        state.record(PHASE, status='done', finished=time.time(), seconds=seconds, error=None, rc=0)
        module.exit_json(**_result(
            changed=True, board=board, board_config=board_config, command=argv, fingerprint=fingerprint,
            log_path=log_path, seconds=seconds, slot=slots.slot, slot_wait_seconds=round(slots.wait_seconds, 3),
            msg='flashed %s on USB port %s (%s, %s) in %.1f s' % (serial, port, board, board_config, seconds)))

    how = ('timed out after %d s' % params['timeout'] if run.timed_out else 'exit code %s' % run.rc)
    error = 'flashing %s on USB port %s failed: %s' % (serial, port, how)
    state.record(PHASE, status='failed', finished=time.time(), seconds=seconds, error=error, rc=run.rc,
                 timed_out=run.timed_out)
    module.fail_json(**_result(
        board=board, board_config=board_config, command=argv, fingerprint=fingerprint, log_path=log_path,
        seconds=seconds, slot=slots.slot, slot_wait_seconds=round(slots.wait_seconds, 3),
        msg='%s; log: %s; the device usually has to re-enter recovery mode before a retry. Last lines of the log:\n%s'
            % (error, log_path, log_tail(log_path, LOG_TAIL_LINES))))


if __name__ == '__main__':
    main()
