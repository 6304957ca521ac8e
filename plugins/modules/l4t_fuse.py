#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: l4t_fuse
short_description: Burn a Jetson Orin's fuses once, dry run first, and verify them by reading them back
version_added: 1.0.0
description:
  - Burns the fuses listed in O(fuse_config) into the one Jetson in recovery mode on the
    station, with NVIDIA's C(odmfuse.sh), then reads them back with C(odmfuseread.sh) and
    compares. B(Burning fuses is irreversible.) A wrong fuse can make the module unusable.
  - Never burns twice. When the device's state file (O(state_file), phase C(fuse)) records it
    as fused, the module returns at once without running any tool or looking at the USB bus.
    When a previous run recorded that the burn had started but did not record a verified
    result (a crash, a timeout, a failed or differing read-back), the module does not burn
    again; it only reads the fuses back, records the device as fused when they match, and
    otherwise fails and asks a person to look at the device.
  - Checks its own inputs before running any tool, because C(odmfuse.sh) prints its usage
    for conflicting arguments and burns anyway. The fuse configuration must be an NVIDIA
    C(genericfuse) XML with C(MagicId="0x45535546"), name each fuse once, hold hexadecimal
    values that fit their sizes (an Orin C(SecureBootKey) is 32 bytes) and name at least one
    fuse that a read-back can verify. The key files must exist, and a configuration that
    burns C(PublicKeyHash) (or C(SecureBootKey)) needs O(pkc_key) (or O(sbk_key)), without
    which the device no longer answers the read-back. O(l4t_dir) must hold C(odmfuse.sh),
    C(odmfuseread.sh) and C(<board_config>.conf).
  - C(odmfuse.sh) has no option to choose a USB port. The module scans the station's USB
    bus (O(usb_sysfs_root)) and burns nothing unless exactly one Jetson is in recovery mode
    and it is on O(usb_instance).
  - Runs C(odmfuse.sh --test) first (NVIDIA's dry run, which burns nothing) and burns only when
    it succeeds, with one C(odmfuse.sh) call for all fuses. The state file records the start
    of the burn before it starts.
  - Always reads the fuses back after a burn, whatever C(odmfuse.sh) returned. Its exit
    status alone cannot be trusted (it has been seen to exit 0 with nothing burned, the
    failure showing only on the serial console). Secret key fuses (C(SecureBootKey),
    C(OemK1), C(OemK2), C(Kek*)) are never read back, so they are not compared; every other
    fuse must read back the configured value (compared as numbers, so case, C(0x) and leading
    zeros do not matter).
  - The output of every tool goes to C(<log_dir>/<serial>-fuse-<UTC time>.log), with the
    values of secret key fuses masked. The module never reads or returns the content of the
    key files, nor the values of secret key fuses.
author: Azaion engineering (@azaion)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  l4t_dir:
    description:
      - The C(Linux_for_Tegra) working tree to run NVIDIA's tools in, on the station. The
        read-back writes C(bootloader/fuse_info.txt) inside it.
    type: path
    required: true
  fuse_config:
    description:
      - The fuse configuration to burn, an NVIDIA C(genericfuse) XML file on the station,
        passed to C(odmfuse.sh -X). Burn all fuses in one file, as NVIDIA recommends.
    type: path
    required: true
  board_config:
    description:
      - The board configuration, the name of a C(.conf) file in O(l4t_dir) without the
        suffix, for example V(jetson-orin-nano-devkit) or V(jetson-agx-orin-devkit).
      - V(auto) picks NVIDIA's developer-kit configuration for the module found in recovery
        mode on O(usb_instance) (from its USB product id). A custom carrier board needs its own
        configuration named here.
    type: str
    required: true
  chip_id:
    description:
      - The Tegra chip id passed to the tools with C(-i); V(0x23) is Orin.
    type: str
    default: '0x23'
  pkc_key:
    description:
      - The PKC key pair (C(.pem)) passed to C(odmfuse.sh) and C(odmfuseread.sh) with C(-k).
      - Needed when the device is already PKC-fused, and when O(fuse_config) burns
        C(PublicKeyHash), since the read-back then needs it. The file must exist; its
        content is never read by the module.
    type: path
  sbk_key:
    description:
      - The SBK key file passed to C(odmfuseread.sh) with C(-S).
      - Needed when the device is already SBK-fused, and when O(fuse_config) burns
        C(SecureBootKey). The file must exist; its content is never read by the module.
    type: path
  usb_instance:
    description:
      - The USB port the device is on, as C(<busnum>-<devpath>) such as V(1-3) or V(1-8.4).
      - The module refuses to run any tool unless the only Jetson in recovery mode on the
        station is on this port.
    type: str
    required: true
  usb_sysfs_root:
    description:
      - Where the station's USB devices are listed. Tests point it at a fake tree.
    type: path
    default: /sys/bus/usb/devices
  state_file:
    description:
      - The device's state file (JSON) on the station. The module reads and records the phase
        C(fuse) in it (status, times, whether the device is fused, the read-back mismatches,
        the log file). The file is created when missing.
    type: path
    required: true
  serial:
    description:
      - The device's serial, used in the name of the log file. Letters, digits, C(.), C(_)
        and C(-) only.
    type: str
    required: true
  log_dir:
    description:
      - The directory for the tools' log files on the station; created when missing.
    type: path
    required: true
  timeout:
    description:
      - Seconds each tool may run before it is killed with its whole process group.
    type: int
    default: 600
attributes:
  check_mode:
    support: full
    details:
      - In check mode the module reads the state file, checks its inputs and scans the USB bus,
        then stops. It runs no tool at all (not even the C(--test) dry run or the read-back),
        burns nothing and writes nothing. C(changed) says whether a real run would fuse.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
notes:
  - Run it on the station that has the USB cable and the L4T tree, as root (NVIDIA's tools
    need it), for one device at a time.
  - After PKC or SBK fusing, every later flash of the device must pass its keys.
  - To fuse a device whose earlier burn could not be verified, a person checks the device
    (serial console, C(odmfuseread.sh)) and, when it still needs fusing, burns it by hand with
    C(odmfuse.sh); the next run of the module reads the fuses back and records the device as
    fused when they match.
seealso:
  - name: Jetson Linux Developer Guide, Secure Boot
    description: NVIDIA's fuse configuration file and C(odmfuse.sh).
    link: https://docs.nvidia.com/jetson/archives/r36.4/DeveloperGuide/SD/Security/SecureBoot.html
'''

EXAMPLES = r'''
- name: Fuse the device on port 1-3, once (irreversible)
  become: true
  azaion.jetson.l4t_fuse:
    l4t_dir: /var/lib/azaion-jetson/ports/1-3/Linux_for_Tegra
    fuse_config: /srv/jetson/keys/fuse_config.xml
    board_config: jetson-orin-nano-devkit
    pkc_key: /srv/jetson/keys/pkc.pem
    sbk_key: /srv/jetson/keys/sbk.key
    usb_instance: 1-3
    state_file: /var/lib/azaion-jetson/devices/AZJN-0042/state.json
    serial: AZJN-0042
    log_dir: /var/lib/azaion-jetson/logs
  register: fuse

- name: Show what happened
  ansible.builtin.debug:
    msg: "{{ fuse.msg }} (log: {{ fuse.log_path }})"

- name: Only check what would happen (runs no tool at all)
  azaion.jetson.l4t_fuse:
    l4t_dir: "{{ jetson_l4t_dir }}"
    fuse_config: "{{ jetson_fuse_config }}"
    board_config: auto
    usb_instance: "{{ jetson_usb_instance }}"
    state_file: "{{ jetson_workdir }}/devices/{{ jetson_serial }}/state.json"
    serial: "{{ jetson_serial }}"
    log_dir: "{{ jetson_workdir }}/logs"
  check_mode: true
'''

RETURN = r'''
fused:
  description:
    - Whether the device is fused as configured, verified by reading the fuses back (now or
      in the run that recorded it).
  returned: always
  type: bool
  sample: true
dry_run_ok:
  description: Whether the C(odmfuse.sh --test) dry run of this run succeeded (false when none ran).
  returned: always
  type: bool
  sample: true
mismatches:
  description:
    - The fuses whose read-back differs from O(fuse_config), in its order. Secret key fuses
      are never compared, so never listed.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The fuse's name.
      type: str
      sample: PublicKeyHash
    expected:
      description: The value in O(fuse_config).
      type: str
      sample: '0x5a5a5a5a'
    read_back:
      description: The value C(odmfuseread.sh) printed, or null when it printed none.
      type: str
      sample: '0x0'
  sample: []
log_path:
  description: The log file of the tools run by this call; null when no tool ran.
  returned: always
  type: str
  sample: /var/lib/azaion-jetson/logs/AZJN-0042-fuse-20250101T120000Z.log
commands:
  description: The commands run, in order, each as its argument list (empty when none ran).
  returned: always
  type: list
  elements: list
  sample:
    - [/var/lib/azaion-jetson/ports/1-3/Linux_for_Tegra/odmfuse.sh, --test, -X, /srv/jetson/keys/fuse_config.xml,
       -i, '0x23', -k, /srv/jetson/keys/pkc.pem, jetson-orin-nano-devkit]
msg:
  description: What happened, for a person.
  returned: always
  type: str
  sample: fused AZJN-0042 on 1-3 and verified 2 fuses by reading them back
'''

import os
import re
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.azaion.jetson.plugins.module_utils._fuse import (
    FUSE_INFO_RELPATH,
    FuseError,
    compare_fuses,
    describe_mismatches,
    keys_needed,
    parse_fuse_config,
    parse_fuse_info,
    redact_file,
    secret_values,
    unverifiable_fuses,
    verifiable_fuses,
)
from ansible_collections.azaion.jetson.plugins.module_utils._device_state import SERIAL_PATTERN, DeviceState
from ansible_collections.azaion.jetson.plugins.module_utils._tool_runner import log_tail, run_tool
from ansible_collections.azaion.jetson.plugins.module_utils._usb import (
    BOARD_CONFIGS,
    RECOVERY_PRODUCTS,
    USB_PORT_PATTERN,
    recovery_devices,
)

PHASE = 'fuse'
_CHIP_ID = re.compile(r'^0[xX][0-9a-fA-F]+$')
_BOARD = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._+-]*$')


def _argument_spec():
    return dict(
        l4t_dir=dict(type='path', required=True),
        fuse_config=dict(type='path', required=True),
        board_config=dict(type='str', required=True),
        chip_id=dict(type='str', default='0x23'),
        pkc_key=dict(type='path', no_log=False),
        sbk_key=dict(type='path', no_log=False),
        usb_instance=dict(type='str', required=True),
        usb_sysfs_root=dict(type='path', default='/sys/bus/usb/devices'),
        state_file=dict(type='path', required=True),
        serial=dict(type='str', required=True),
        log_dir=dict(type='path', required=True),
        timeout=dict(type='int', default=600),
    )


def _utc(epoch):
    """An epoch time of the state file, for a person (UTC)."""
    try:
        return time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(float(epoch)))
    except (TypeError, ValueError):
        return str(epoch)


class Fuser(object):
    """One call of the module: the checks, the tools and the state records."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.commands = []
        self.log_path = None
        self.dry_run_ok = False
        self.secrets = []
        self.state = None
        self.started = None

    # -- results -------------------------------------------------------------------------------

    def _result(self, **fields):
        result = dict(changed=False, fused=False, dry_run_ok=self.dry_run_ok, mismatches=[],
                      log_path=self.log_path, commands=self.commands)
        result.update(fields)
        return result

    def fail(self, msg, **fields):
        self.module.fail_json(msg=msg, **self._result(**fields))

    def exit(self, msg, **fields):
        self.module.exit_json(msg=msg, **self._result(**fields))

    def _with_log(self, msg):
        if self.log_path:
            tail = log_tail(self.log_path)
            if tail:
                msg += '\nLast lines of %s:\n%s' % (self.log_path, tail)
        return msg

    # -- state ---------------------------------------------------------------------------------

    def record(self, status, **fields):
        record = dict(status=status, started=self.started, log_path=self.log_path)
        if status == 'running':
            record.update(finished=None, seconds=None)
        else:
            finished = time.time()
            record.update(finished=finished, seconds=round(finished - self.started, 3))
        record.update(fields)
        try:
            self.state.record(PHASE, **record)
        except (IOError, OSError, ValueError) as exc:
            self.fail(self._with_log('cannot record the fuse phase in %s: %s'
                                     % (self.params['state_file'], exc)),
                      fused=record.get('fused', False))

    # -- checks --------------------------------------------------------------------------------

    def check_inputs(self):
        """Everything odmfuse.sh would not check for us, before any tool runs."""
        params = self.params
        if not SERIAL_PATTERN.match(params['serial']):
            self.fail('serial %r may hold letters, digits, ".", "_" and "-" only (it names the log file)'
                      % params['serial'])
        if not USB_PORT_PATTERN.match(params['usb_instance']):
            self.fail('usb_instance %r is not a USB port path such as 1-3 or 1-8.4' % params['usb_instance'])
        if not _CHIP_ID.match(params['chip_id']):
            self.fail('chip_id %r is not a hexadecimal Tegra id such as 0x23 (Orin)' % params['chip_id'])
        if params['timeout'] <= 0:
            self.fail('timeout must be a positive number of seconds, not %d' % params['timeout'])
        board = params['board_config']
        if board != 'auto' and (not _BOARD.match(board) or board.endswith('.conf')):
            self.fail('board_config %r is not a board configuration name: give the name of a .conf '
                      'file in l4t_dir without the suffix, such as jetson-orin-nano-devkit' % board)

        try:
            fuses = parse_fuse_config(params['fuse_config'])
        except FuseError as exc:
            self.fail('refusing to fuse: %s' % exc)
        self.secrets = secret_values(fuses)
        for secret in self.secrets:
            self.module.no_log_values.add(secret)
        if not verifiable_fuses(fuses):
            self.fail('refusing to fuse: %s names only secret key fuses (%s), which odmfuseread.sh never '
                      'reads back, so the burn could not be verified; burn them together with the other '
                      'fuses (SecurityMode, BootSecurityInfo...) in one configuration'
                      % (params['fuse_config'], ', '.join(unverifiable_fuses(fuses))))

        for option, flag in (('pkc_key', '-k'), ('sbk_key', '-S')):
            path = params[option]
            if path is not None and not os.path.isfile(path):
                self.fail('refusing to fuse: %s %s does not exist or is not a file (it is passed to the '
                          'tools as %s)' % (option, path, flag))
        for fuse, option in keys_needed(fuses):
            if params[option] is None:
                self.fail('refusing to fuse: %s burns %s, after which the device answers only tools given '
                          'its key: give %s so that the fuses can be read back'
                          % (params['fuse_config'], fuse, option))

        l4t_dir = params['l4t_dir']
        if not os.path.isdir(l4t_dir):
            self.fail('refusing to fuse: l4t_dir %s is not a directory; give the device\'s Linux_for_Tegra '
                      'working tree' % l4t_dir)
        for tool in ('odmfuse.sh', 'odmfuseread.sh'):
            path = os.path.join(l4t_dir, tool)
            if not os.path.isfile(path) or not os.access(path, os.X_OK):
                self.fail('refusing to fuse: %s has no executable %s; is it a Linux_for_Tegra tree?'
                          % (l4t_dir, tool))
        if board != 'auto':
            self.check_board(board)
        return fuses

    def check_board(self, board):
        if not os.path.isfile(os.path.join(self.params['l4t_dir'], board + '.conf')):
            self.fail('refusing to fuse: %s has no %s.conf; give the board configuration of this device'
                      % (self.params['l4t_dir'], board))

    def check_usb(self):
        """The only Jetson in recovery mode must be on usb_instance; its product id is returned."""
        wanted = self.params['usb_instance']
        root = self.params['usb_sysfs_root']
        if not os.path.isdir(root):
            self.fail('refusing to fuse: usb_sysfs_root %s is not a directory' % root)
        try:
            found = recovery_devices(root)
        except (IOError, OSError) as exc:
            self.fail('refusing to fuse: cannot scan %s for Jetsons in recovery mode: %s' % (root, exc))
        ports = list(found)  # in port order
        if not ports:
            self.fail('refusing to fuse: no Jetson is in recovery mode on this station (expected one on '
                      'USB port %s); put the device in recovery mode' % wanted)
        if len(ports) > 1:
            self.fail('refusing to fuse %s: %d Jetsons are in recovery mode on this station (USB ports %s); '
                      'odmfuse.sh cannot choose a USB port: disconnect or power off the others '
                      'and keep only the one on %s. Nothing was burned.'
                      % (self.params['serial'], len(ports), ', '.join(ports), wanted))
        if ports[0] != wanted:
            self.fail('refusing to fuse %s: the Jetson in recovery mode is on USB port %s, not on %s '
                      '(usb_instance); odmfuse.sh cannot choose a USB port: disconnect or power off the '
                      'others and put this device in recovery mode on %s. Nothing was burned.'
                      % (self.params['serial'], ports[0], wanted, wanted))
        return found[wanted]

    def resolve_board(self, product):
        board = self.params['board_config']
        if board != 'auto':
            return board
        key = RECOVERY_PRODUCTS.get(product)
        config = BOARD_CONFIGS.get(key) if key else None
        if not config:
            self.fail('refusing to fuse: board_config is auto but the module on %s (USB product 0955:%s) '
                      'has no known board configuration; name it in board_config'
                      % (self.params['usb_instance'], product))
        self.check_board(config)
        return config

    # -- tools ---------------------------------------------------------------------------------

    def open_log(self):
        log_dir = self.params['log_dir']
        try:
            if not os.path.isdir(log_dir):
                os.makedirs(log_dir, 0o750)
        except OSError as exc:
            self.fail('cannot create log_dir %s: %s' % (log_dir, exc.strerror or exc))
        stamp = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(self.started))
        self.log_path = os.path.join(log_dir, '%s-fuse-%s.log' % (self.params['serial'], stamp))

    def run(self, argv):
        self.commands.append(list(argv))
        try:
            result = run_tool(argv, cwd=self.params['l4t_dir'], log_path=self.log_path,
                              timeout=self.params['timeout'])
        except (IOError, OSError) as exc:
            self.fail('cannot run %s (log %s): %s' % (os.path.basename(argv[0]), self.log_path, exc))
        finally:
            redact_file(self.log_path, self.secrets)
        return result

    def tool_args(self, board, with_sbk):
        args = ['-i', self.params['chip_id']]
        if self.params['pkc_key']:
            args += ['-k', self.params['pkc_key']]
        if with_sbk and self.params['sbk_key']:
            args += ['-S', self.params['sbk_key']]
        return args + [board]

    @staticmethod
    def describe_run(name, run, timeout):
        if run.timed_out:
            return '%s did not finish within %d seconds and was killed' % (name, timeout)
        return '%s exited with %s' % (name, run.rc)

    def read_back(self, fuses, board):
        """Run odmfuseread.sh and compare: (mismatches, error message or None)."""
        info_path = os.path.join(self.params['l4t_dir'], FUSE_INFO_RELPATH)
        try:
            os.unlink(info_path)  # a stale read-back must never pass for this one
        except OSError:
            pass
        argv = [os.path.join(self.params['l4t_dir'], 'odmfuseread.sh')] + self.tool_args(board, True)
        run = self.run(argv)
        if run.rc != 0 or run.timed_out:
            return None, self.describe_run('odmfuseread.sh', run, self.params['timeout'])
        try:
            read = parse_fuse_info(info_path)
        except FuseError as exc:
            return None, str(exc)
        return compare_fuses(fuses, read), None

    # -- the flow ------------------------------------------------------------------------------

    def main(self):
        params = self.params
        # The tools run in l4t_dir: every path they are given must not depend on the cwd.
        for option in ('l4t_dir', 'fuse_config', 'pkc_key', 'sbk_key', 'usb_sysfs_root', 'state_file', 'log_dir'):
            if params[option] is not None:
                params[option] = os.path.abspath(params[option])
        serial, port = params['serial'], params['usb_instance']
        self.state = DeviceState(params['state_file'], serial=serial)
        try:
            self.state.load()
            phase = self.state.phase(PHASE) or {}
        except (IOError, OSError, ValueError) as exc:
            self.fail('cannot read the state file %s: %s; fix or move it, the module never fuses '
                      'without knowing whether the device is fused' % (params['state_file'], exc))

        if phase.get('status') == 'done' and phase.get('fused'):
            self.exit('%s is already fused (recorded in %s at %s); a device is never fused twice'
                      % (serial, params['state_file'], _utc(phase['finished']) if phase.get('finished') else 'an earlier run'), fused=True)

        if self.module.check_mode and not os.path.isdir(params['l4t_dir']):
            # In a check run, the task that makes the device's working tree did not run either.
            self.exit('would fuse %s once its working tree %s is made; nothing was run in check mode'
                      % (serial, params['l4t_dir']), changed=True)
        fuses = self.check_inputs()
        product = self.check_usb()
        board = self.resolve_board(product)
        burn_started = phase.get('burn_started')
        verify_only = bool(burn_started)
        verifiable = verifiable_fuses(fuses)

        if self.module.check_mode:
            if verify_only:
                self.exit('an earlier run started burning %s at %s without a verified result: a real run '
                          'would only read the fuses back (never burn again); nothing was run in check mode'
                          % (serial, _utc(burn_started)))
            self.exit('would fuse %s on %s with %s (%s): odmfuse.sh --test, the burn, then a read-back; '
                      'nothing was run in check mode' % (serial, port, params['fuse_config'], board),
                      changed=True)

        self.started = time.time()
        self.open_log()

        if verify_only:
            self.verify_earlier_burn(fuses, board, burn_started, verifiable)

        self.record('running', fused=False, burn_started=None, dry_run_ok=False, mismatches=[], error=None)
        common = ['-X', params['fuse_config']] + self.tool_args(board, False)
        odmfuse = os.path.join(params['l4t_dir'], 'odmfuse.sh')

        dry_run = self.run([odmfuse, '--test'] + common)
        if dry_run.rc != 0 or dry_run.timed_out:
            error = 'the dry run failed (%s); nothing was burned' % self.describe_run(
                'odmfuse.sh --test', dry_run, params['timeout'])
            self.record('failed', fused=False, error=error)
            self.fail(self._with_log('%s: %s. Fix the cause and run again.' % (serial, error)))
        self.dry_run_ok = True

        # From here on the burn may happen: a crash leaves this record, and the next run refuses
        # to burn blindly.
        self.record('running', fused=False, dry_run_ok=True, burn_started=time.time())
        burn = self.run([odmfuse] + common)
        burn_ok = burn.rc == 0 and not burn.timed_out
        burn_said = self.describe_run('odmfuse.sh', burn, params['timeout'])

        mismatches, read_error = self.read_back(fuses, board)
        if read_error is not None:
            error = ('%s, then the read-back failed (%s): whether fuses were burned is unknown'
                     % ('odmfuse.sh reported success' if burn_ok else burn_said, read_error))
            self.record('failed', fused=False, error=error)
            self.fail(self._with_log('%s: %s; do not retry blindly: check the device (serial console, '
                                     'odmfuseread.sh) before anything else. The next run only reads the '
                                     'fuses back.' % (serial, error)))
        if mismatches:
            what = describe_mismatches(mismatches)
            if burn_ok:
                error = 'odmfuse.sh reported success but the read-back differs: %s' % what
            else:
                error = '%s and the read-back differs: %s' % (burn_said, what)
            self.record('failed', fused=False, error=error, mismatches=mismatches)
            self.fail(self._with_log('%s: %s; do not retry blindly: check the device (serial console, '
                                     'odmfuseread.sh). The next run never burns it again, it only reads '
                                     'the fuses back.' % (serial, error)), mismatches=mismatches)

        self.record('done', fused=True, error=None, mismatches=[])
        msg = 'fused %s on %s and verified %d fuse%s by reading them back' % (
            serial, port, len(verifiable), '' if len(verifiable) == 1 else 's')
        if not burn_ok:
            msg += ' (%s, but the device holds the configured fuses: it was fused already)' % burn_said
        unverified = unverifiable_fuses(fuses)
        if unverified:
            msg += '; %s never read back and were not compared' % ', '.join(unverified)
        self.exit(msg, changed=burn_ok, fused=True)

    def verify_earlier_burn(self, fuses, board, burn_started, verifiable):
        """An earlier run started the burn and recorded no verified result: read back only."""
        serial = self.params['serial']
        self.record('running', fused=False, burn_started=burn_started, readback_only=True)
        mismatches, read_error = self.read_back(fuses, board)
        if read_error is None and not mismatches:
            self.record('done', fused=True, burn_started=burn_started, error=None, mismatches=[])
            self.exit('%s: an earlier run started burning at %s; the read-back now matches %d fuse%s, so the '
                      'device is recorded as fused (nothing was burned by this run)'
                      % (serial, _utc(burn_started), len(verifiable), '' if len(verifiable) == 1 else 's'),
                      fused=True)
        if read_error is not None:
            error = 'an earlier run started burning at %s and the read-back failed (%s)' % (_utc(burn_started), read_error)
        else:
            error = ('an earlier run started burning at %s and the read-back differs: %s'
                     % (_utc(burn_started), describe_mismatches(mismatches)))
        self.record('failed', fused=False, burn_started=burn_started, error=error, mismatches=mismatches or [])
        self.fail(self._with_log(
            '%s: %s. The module never burns a device twice: a person must check it (serial console, '
            'odmfuseread.sh) and, if it still needs fusing, burn it by hand with odmfuse.sh; a re-run then '
            'verifies it and records it as fused.' % (serial, error)), mismatches=mismatches or [])


def main():
    module = AnsibleModule(argument_spec=_argument_spec(), supports_check_mode=True)
    Fuser(module).main()


if __name__ == '__main__':
    main()
