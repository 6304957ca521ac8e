# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""The flash of one device from its USB port's working tree (:class:`Flasher`, the work of
azaion.jetson.l4t_flash and of each device of azaion.jetson.station_flash).

Several Flashers may run at once in one process, one thread per device: each has its own tree,
state file, log and lock file descriptors; what the station's devices share (the flash and
generation slots, the station's host-wide state) is shared through the station's files and
``flock``, which hold between threads as between processes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import hashlib
import json
import os
import re
import shlex
import time

from ansible_collections.azaion.jetson.plugins.module_utils._device_conf import (
    DEVICE_CONF_RELPATH,
    DeviceConfError,
    read_credentials,
    resolve_in_rootfs,
)
from ansible_collections.azaion.jetson.plugins.module_utils._files import write_file_atomic
from ansible_collections.azaion.jetson.plugins.module_utils._device_state import (
    SERIAL_PATTERN,
    DeviceState,
    DeviceStateError,
)
from ansible_collections.azaion.jetson.plugins.module_utils._progress import WAITING_TO_FLASH, WAITING_TO_GENERATE, no_progress
from ansible_collections.azaion.jetson.plugins.module_utils._slots import FlashSlots
from ansible_collections.azaion.jetson.plugins.module_utils._tool_runner import log_tail, run_tool
from ansible_collections.azaion.jetson.plugins.module_utils._usb import (
    BOARD_CONFIGS,
    BOARD_IDENTITY,
    BOARD_IDENTITY_KEYS,
    CHIP_SKU_PATTERN,
    DEFAULT_FUSELEVEL,
    RECOVERY_PRODUCTS,
    USB_PORT_PATTERN,
    ambiguous_fix,
    board_of_product,
    describe_product,
    recovery_devices,
)
from ansible_collections.azaion.jetson.plugins.module_utils._workspace import (
    read_workspace_marker,
    remove_tree,
    source_stamp,
)
from ansible_collections.azaion.jetson.plugins.module_utils._station_host import (
    INTERNAL_SCRIPT,
    StationHost,
    StationHostError,
)

FLASH_SCRIPT = 'flash.sh'
# What image generation leaves in the tree: the saved flash parameters, and the record of which
# image it generated (this collection's).
SAVED_PARAMS = 'tools/kernel_flash/initrdflashparam.txt'
IMAGES_RECORD = 'tools/kernel_flash/.azaion-images.json'
# The images a generation leaves in the tree: tens of gigabytes, each holding the device.conf.
GENERATED_IMAGES = ('tools/kernel_flash/images', 'bootloader/system.img', 'bootloader/system.img.raw')
# The partition layouts of NVIDIA's standard NVMe command, per release family.
RELEASE_LAYOUTS = {
    'r36': ('tools/kernel_flash/flash_l4t_t234_nvme.xml', '-c bootloader/generic/cfg/flash_t234_qspi.xml'),
    'r35': ('tools/kernel_flash/flash_l4t_external.xml', '-c bootloader/t186ref/cfg/flash_t234_qspi.xml'),
}
# Where NVIDIA's Orin board configs take the EKB the flash writes to the EKS partition (EKSFILE of
# p3701.conf.common and p3767.conf.common; docs/l4t-fusing.md).
EKB_RELPATH = 'bootloader/eks_t234.img'
# NVIDIA's massflash stops at MAX_MASSFLASH (10): no boot image exists for a higher instance.
MAX_INSTANCES = 10
IDENTITY_VALUE_PATTERN = re.compile(r'^[A-Za-z0-9._-]+$')
PHASE = 'flash'
# The steps of a device's flash, as its progress shows them (the waiting ones are in _progress.py).
CHECKING = 'checking the device'
GENERATING = 'generating images'
FLASHING = 'flashing'
FLASHING_AS = 'flashing as instance %d'
CHECKING_OUTCOME = 'checking the outcome'
LOG_TAIL_LINES = 20
SETTLE_POLL = 0.5
RECOVERY_HINT = 'put the device in recovery mode (hold REC, power on) and re-run'
BOOT_TIMEOUT_CAUSE = (
    'the flashing initrd did not come up on the device: check the cable, and that the images are this module\'s'
    ' (its board, and the CHIP_SKU of its board identity, which picks the BPMP firmware: a wrong one hangs the'
    ' module; docs/l4t-board-identity.md); then ' + RECOVERY_HINT)
# What a failed run's log says -> the cause and the fix, for a person on the floor.
FAILURE_CAUSES = (
    ('cannot mount the NFS server',
     'the device lost the NFS export of its tree during the flash: something restarted the station\'s NFS server or'
     ' rewrote its exports (NVIDIA\'s l4t_initrd_flash.sh run by hand or by another tool on this station); let'
     ' nothing else flash on the station, ' + RECOVERY_HINT),
    ('Boot Rom communication failed',
     'the device was reset while it booted the flashing initrd, usually by a board probe of another flash tool on'
     ' this station (flash.sh or l4t_initrd_flash.sh run without BOARDID/FAB in its environment), or by a loose'
     ' cable; let nothing else flash on the station, ' + RECOVERY_HINT),
    ('expose ssh',
     'the station never reached the flashing initrd over USB networking: check that IPv6 is on, that NetworkManager'
     ' leaves the Jetson\'s USB network alone (the udev rules in etc/udev/rules.d) and the cable; ' + RECOVERY_HINT),
    ('nfs-kernel-server not found', 'install nfs-kernel-server on the station (apt-get install nfs-kernel-server)'),
    ('timeout in USB write',
     'a USB write timed out: use a direct USB 3 port and a good cable; a device fused with PublicKeyHash or'
     ' SecureBootKey answers so too to images not signed or encrypted with its own keys (jetson_pkc_key,'
     ' jetson_sbk_key); ' + RECOVERY_HINT),
    ('Waiting for target to boot-up... Timeout', BOOT_TIMEOUT_CAUSE),
    # NVIDIA's wait_for_booting prints its Timeout on a line of its own.
    ('Waiting for target to boot-up...\nTimeout', BOOT_TIMEOUT_CAUSE),
)


class FlashError(Exception):
    """The device cannot be flashed; the message names it, the port and the fix."""


def flash_argument_spec():
    """The options of azaion.jetson.l4t_flash: one device's flash."""
    return dict(
        l4t_dir=dict(type='path', required=True),
        usb_instance=dict(type='str', required=True),
        board=dict(type='str', choices=sorted(BOARD_CONFIGS)),
        board_identity=dict(type='dict', default={}),
        board_config=dict(type='str'),
        tool=dict(type='str', choices=['initrd', 'flash.sh'], default='initrd'),
        l4t_release=dict(type='str', choices=['r36', 'r35'], default='r36'),
        external_device=dict(type='str', default='nvme0n1p1'),
        rootdev=dict(type='str'),
        extra_args=dict(type='list', elements='str', default=[]),
        timeout=dict(type='int', default=3600),
        settle_timeout=dict(type='int', default=60),
        usb_sysfs_root=dict(type='path', default='/sys/bus/usb/devices'),
        station_root=dict(type='path', default='/'),
        log_dir=dict(type='path', required=True),
        state_file=dict(type='path', required=True),
        serial=dict(type='str', required=True),
        expected_email=dict(type='str'),
        rootfs_dir=dict(type='path'),
        fingerprint_extra=dict(type='dict'),
        ekb_file=dict(type='path'),
        force=dict(type='bool', default=False),
        concurrency=dict(type='int', default=4),
        slots_dir=dict(type='path', required=True),
    )


def generate_command(board_config, rootdev, instances, l4t_release='r36', external_device='nvme0n1p1',
                     extra_args=()):
    """Image generation in the tree for ``instances`` device instances, as NVIDIA's massflash
    generates (``--no-flash --massflash N``), with NVIDIA's standard NVMe options."""
    layout, qspi = RELEASE_LAYOUTS[l4t_release]
    return ([INTERNAL_SCRIPT, '--no-flash', '--massflash', str(instances), '--external-device', external_device,
             '-c', layout, '-p', qspi, '--network', 'usb0'] + list(extra_args) + [board_config, rootdev])


def flash_command(usb_instance, instance, saved_params, extra_args=()):
    """The flash of one device as device instance ``instance``, as NVIDIA's massflash loop runs
    it. Options come first: the script stops parsing at the first non-option, the board config
    at the end of the saved parameters."""
    return ([INTERNAL_SCRIPT, '--usb-instance', usb_instance, '--device-instance', str(instance), '--flash-only']
            + list(extra_args) + list(saved_params))


def flash_sh_command(usb_instance, board_config, rootdev, extra_args=(), rootfs_dir=None):
    """flash.sh's argv; a ``rootfs_dir`` other than the tree's own ``rootfs`` is its ``-R``."""
    rootfs_option = ['-R', rootfs_dir] if rootfs_dir else []
    return (['./' + FLASH_SCRIPT, '--usb-instance', usb_instance] + rootfs_option + list(extra_args)
            + [board_config, rootdev])


def board_identity(board, overrides):
    """The environment that keeps image generation off the station's other devices and builds
    the images for the module: its board identity with CHIP_SKU (docs/l4t-board-identity.md)."""
    identity = dict(BOARD_IDENTITY[board], FUSELEVEL=DEFAULT_FUSELEVEL)
    identity.update((key, str(value)) for key, value in (overrides or {}).items())
    return identity


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


def failure_cause(log_text):
    """The cause and fix of a failed run, read from its log ('' when none is recognised)."""
    for needle, cause in FAILURE_CAUSES:
        if needle in log_text:
            return cause
    return ''


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
        '%s (%s)' % (port, describe_product(product)) for port, product in devices.items())


def _find_device(params):
    """The product id of the Jetson in recovery on the port, or raise FlashError."""
    root = params['usb_sysfs_root']
    devices = recovery_devices(root, shared=True)
    port = params['usb_instance']
    if port in devices:
        return devices[port]
    where = ('the station\'s USB sysfs root %s does not exist' % root if not os.path.isdir(root)
             else 'the station\'s USB sysfs root %s shows %s' % (root, _describe_devices(devices)))
    raise FlashError('no Jetson in recovery mode on USB port %s for %s (%s): %s'
                     % (port, params['serial'], where, RECOVERY_HINT))


def _result(**fields):
    result = dict(changed=False, board=None, board_config=None, command=None, generate_command=None,
                  board_identity=None, generated=False, log_path=None, seconds=0.0, slot_wait_seconds=0.0,
                  slot=None, fingerprint=None, skipped_reason=None, msg='')
    result.update(fields)
    return result


def _read_json(path):
    try:
        with open(path, 'rb') as record:
            data = json.loads(record.read().decode('utf-8'))
    except (IOError, OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class Flasher(object):
    """One device's flash: the inputs, the plan, the runs and what is recorded of them."""

    def __init__(self, module):
        self.module = module
        self.params = params = module.params
        self.l4t_dir = os.path.abspath(params['l4t_dir'])
        self.port = params['usb_instance']
        self.serial = params['serial']
        self.tool = params['tool']
        self.rootdev = params['rootdev'] or ('internal' if self.tool == 'initrd' else 'nvme0n1p1')
        self.rootfs_dir = os.path.abspath(params['rootfs_dir']) if params['rootfs_dir'] else None
        self.rootfs = self.rootfs_dir or os.path.join(self.l4t_dir, 'rootfs')
        self.state = DeviceState(params['state_file'], serial=self.serial)
        self.host = StationHost(params['station_root'])
        self.board = self.board_config = self.argv = self.generate_argv = self.identity = self.fingerprint = None
        self.stamp = self.conf_digest = None
        self.log_path = None
        self.fields = {}
        # report(step, log_path=None): a station run gives each device's flash its reporter.
        self.report = no_progress

    def at(self, step):
        """The device's flash is now at ``step`` (for the people watching; see _progress.py)."""
        self.report(step, self.log_path)

    # -- results --------------------------------------------------------------------------------

    def result(self, **fields):
        base = dict(board=self.board, board_config=self.board_config, command=self.argv,
                    generate_command=self.generate_argv, board_identity=self.identity, fingerprint=self.fingerprint,
                    log_path=self.log_path)
        base.update(self.fields)
        base.update(fields)
        return _result(**base)

    def fail(self, message, **fields):
        """Record the failure (never in check mode) and fail the task."""
        if not self.module.check_mode:
            now = time.time()
            entry = dict(status='failed', finished=now, error=message.split('\n', 1)[0], rc=None, timed_out=False,
                         usb_instance=self.port, board=self.board, board_config=self.board_config, tool=self.tool,
                         command=self.argv, fingerprint=self.fingerprint, log_path=self.log_path)
            phase = self.state.phase(PHASE)
            if phase.get('status') == 'running' and isinstance(phase.get('started'), (int, float)):
                entry['seconds'] = round(now - phase['started'], 3)
            else:
                entry.update(started=now, seconds=0.0)
            entry.update(fields)
            self.state.record(PHASE, **entry)
        self.module.fail_json(**self.result(msg=message))

    # -- inputs -----------------------------------------------------------------------------------

    def check_inputs(self):
        params, module = self.params, self.module
        if not SERIAL_PATTERN.match(self.serial):
            module.fail_json(msg='serial %r is not usable in a file name; use letters, digits, ".", "_" and "-"'
                                 % self.serial)
        if not USB_PORT_PATTERN.match(self.port):
            module.fail_json(msg='usb_instance %r is not a USB port path <busnum>-<devpath> such as 1-3 or 1-8.4'
                                 % self.port)
        if params['timeout'] < 1:
            module.fail_json(msg='timeout must be 1 second or more, not %d' % params['timeout'])
        if params['settle_timeout'] < 0:
            module.fail_json(msg='settle_timeout must be 0 or more, not %d' % params['settle_timeout'])
        limit = MAX_INSTANCES if self.tool == 'initrd' else None
        if params['concurrency'] < 1 or (limit and params['concurrency'] > limit):
            module.fail_json(msg='concurrency must be between 1 and %d (NVIDIA\'s massflash limit), not %d'
                                 % (limit, params['concurrency']) if limit else
                             'concurrency must be 1 or more, not %d' % params['concurrency'])
        for key, value in params['board_identity'].items():
            if key not in BOARD_IDENTITY_KEYS:
                module.fail_json(msg='board_identity has an unknown key %r; use %s' % (key, ', '.join(BOARD_IDENTITY_KEYS)))
            if key == 'CHIP_SKU' and not CHIP_SKU_PATTERN.match(str(value)):
                module.fail_json(msg='board_identity CHIP_SKU=%r is not a chip SKU as NVIDIA writes it (four fields of'
                                     ' two upper-case hex digits, such as 00:00:00:D5, as chkbdinfo -C prints it; see'
                                     ' docs/l4t-board-identity.md)' % (value,))
            if key != 'CHIP_SKU' and not IDENTITY_VALUE_PATTERN.match(str(value)):
                module.fail_json(msg='board_identity %s=%r is not a plain value (letters, digits, ".", "_", "-")'
                                     % (key, value))
        self.ekb = None
        if params['ekb_file']:
            try:
                with open(params['ekb_file'], 'rb') as ekb:
                    self.ekb = ekb.read()
            except (IOError, OSError) as exc:
                module.fail_json(msg='cannot read the EKB %s (ekb_file, jetson_ekb_file): %s; put the EKB image made with'
                                     ' the device\'s OEM key there' % (params['ekb_file'], exc.strerror or exc))
        script = INTERNAL_SCRIPT if self.tool == 'initrd' else FLASH_SCRIPT
        if not os.path.isdir(self.l4t_dir):
            if module.check_mode:
                # In a check run, the task that makes the working tree did not run either.
                module.exit_json(**self.result(changed=True, msg='would flash %s on USB port %s once its working tree'
                                                                 ' %s is made' % (self.serial, self.port, self.l4t_dir)))
            module.fail_json(msg='l4t_dir %s does not exist; make the working tree first with'
                                 ' azaion.jetson.l4t_workspace' % self.l4t_dir)
        if not os.path.isfile(os.path.join(self.l4t_dir, FLASH_SCRIPT)) or not os.path.isfile(
                os.path.join(self.l4t_dir, script)):
            module.fail_json(msg='l4t_dir %s is not a Linux_for_Tegra tree with %s; give the device\'s working tree'
                                 % (self.l4t_dir, script))

    def read_tree(self):
        """The device.conf guard and the identity of the tree's source."""
        module = self.module
        try:
            self.previous = self.state.phase(PHASE)
        except DeviceStateError as exc:
            module.fail_json(msg=str(exc))
        try:
            self.conf_digest = _device_conf(module, self.rootfs, self.params['expected_email'])
        except FlashError as exc:
            if module.check_mode:
                # In a check run, the identity phase wrote no device.conf either.
                module.warn('%s on USB port %s: %s' % (self.serial, self.port, exc))
                module.exit_json(**self.result(changed=True, msg='would flash %s on USB port %s once its device.conf'
                                                                 ' is written' % (self.serial, self.port)))
            module.fail_json(msg='not flashing %s on USB port %s: %s' % (self.serial, self.port, exc))
        marker = read_workspace_marker(self.l4t_dir)
        if marker is None:
            module.warn('%s was not made by azaion.jetson.l4t_workspace: flashing in it writes into it, and no other'
                        ' flash may use it at the same time' % self.l4t_dir)
            try:
                self.stamp = source_stamp(self.l4t_dir)
            except (IOError, OSError) as exc:
                module.fail_json(msg='cannot read the identity of %s: %s' % (self.l4t_dir, exc.strerror or exc))
        else:
            self.stamp = marker.get('source_stamp')

    def plan(self, board):
        """Work out the commands and the image fingerprint for ``board`` (None: not known yet)."""
        params = self.params
        self.board = board
        self.board_config = params['board_config'] or (BOARD_CONFIGS[board] if board else None)
        if self.board_config is None or (board is None and self.tool == 'initrd'):
            return  # not known before the device on the port is seen
        extra_args = params['extra_args']
        if self.tool == 'initrd':
            self.identity = board_identity(board, params['board_identity'])
            self.generate_argv = generate_command(self.board_config, self.rootdev, params['concurrency'],
                                                  params['l4t_release'], params['external_device'], extra_args)
            # The image does not depend on how many instances the tree has boot images for: a
            # new concurrency regenerates a tree that lacks one, but re-flashes no device.
            identity_argv = generate_command(self.board_config, self.rootdev, 'N', params['l4t_release'],
                                             params['external_device'], extra_args)
            self.argv = flash_command(self.port, 0, self.saved_params_or_placeholder(), extra_args)
        else:
            self.argv = identity_argv = flash_sh_command(self.port, self.board_config, self.rootdev, extra_args,
                                                         self.rootfs_dir)
        extra = dict(params['fingerprint_extra'] or {})
        if self.identity:
            extra['board_identity'] = self.identity
        if self.rootfs_dir:
            extra['rootfs_dir'] = self.rootfs_dir
        if self.ekb is not None:
            extra['ekb_sha256'] = hashlib.sha256(self.ekb).hexdigest()
        self.fingerprint = image_fingerprint(self.stamp, self.conf_digest, board, self.board_config, self.tool,
                                             identity_argv, extra)

    def saved_params_or_placeholder(self):
        try:
            return self.saved_params()
        except FlashError:
            return ['<saved parameters of the image generation>']

    def saved_params(self):
        path = os.path.join(self.l4t_dir, SAVED_PARAMS)
        try:
            with open(path) as saved:
                params = shlex.split(saved.read())
        except (IOError, OSError, ValueError) as exc:
            raise FlashError('the image generation left no usable %s (%s)' % (path, getattr(exc, 'strerror', exc)))
        if len(params) < 2:
            raise FlashError('%s does not end in <board config> <rootdev>' % path)
        return params

    # -- the runs ---------------------------------------------------------------------------------

    def run(self, argv, env=None):
        environment = None
        if env:
            # The board identity is exactly ``env``: a key it leaves out (BOARDREV where NVIDIA's
            # table has none) is not set, whatever the station's own environment holds.
            environment = dict((key, value) for key, value in os.environ.items() if key not in BOARD_IDENTITY_KEYS)
            environment.update(env)
        return run_tool(argv, cwd=self.l4t_dir, log_path=self.log_path, timeout=self.params['timeout'],
                        env=environment)

    def failed_run(self, what, run, **fields):
        how = 'timed out after %d s' % self.params['timeout'] if run.timed_out else 'exit code %s' % run.rc
        tail = log_tail(self.log_path, LOG_TAIL_LINES)
        cause = failure_cause(log_tail(self.log_path, 200))
        error = '%s %s on USB port %s failed: %s%s' % (what, self.serial, self.port, how,
                                                       ('; ' + cause) if cause else '')
        self.fail('%s; log: %s; the device usually has to re-enter recovery mode before a retry. Last lines of the'
                  ' log:\n%s' % (error, self.log_path, tail), error=error, rc=run.rc, timed_out=run.timed_out,
                  **fields)

    def link_rootfs(self):
        """Make the tree's ``rootfs`` the device's own staging rootfs: the images are built from
        the tree's rootfs whatever ``-R`` says (r36.2's NVMe image)."""
        link = os.path.join(self.l4t_dir, 'rootfs')
        if os.path.realpath(link) == os.path.realpath(self.rootfs_dir):
            return
        if os.path.lexists(link):
            remove_tree(link)
        os.symlink(self.rootfs_dir, link)

    def place_ekb(self):
        """The device's own EKB, where the board config takes it, in its tree only: the file is
        replaced (a new inode), never written through the hard link into the bundle."""
        if self.ekb is None:
            return
        path = os.path.join(self.l4t_dir, EKB_RELPATH)
        try:
            with open(path, 'rb') as placed:
                if placed.read() == self.ekb:
                    return
        except (IOError, OSError):
            pass
        write_file_atomic(path, self.ekb, mode=0o644)

    def generate(self):
        """Generate the tree's images for every device instance, unless it holds them already."""
        record_path = os.path.join(self.l4t_dir, IMAGES_RECORD)
        record = _read_json(record_path)
        if (not self.params['force'] and record.get('fingerprint') == self.fingerprint
                and isinstance(record.get('instances'), int) and record['instances'] >= self.params['concurrency']
                and os.path.isfile(os.path.join(self.l4t_dir, SAVED_PARAMS))):
            return False
        if self.rootfs_dir:
            self.link_rootfs()
        try:
            os.unlink(record_path)
        except FileNotFoundError:
            pass
        generation = FlashSlots(self.params['slots_dir'], self.params['concurrency'], name='generate',
                                label='%s %s' % (self.serial, self.port))
        self.at(WAITING_TO_GENERATE)
        with generation:
            self.at(GENERATING)
            # The tree's own run would otherwise restart the NFS server under the flashes in flight.
            self.host.write_service_shim(self.l4t_dir)
            self.state.record(PHASE, step='generate')
            run = self.run(self.generate_argv, env=self.identity)
        for package in glob.glob(os.path.join(self.l4t_dir, 'mfi_*')):
            # NVIDIA's massflash package: gigabytes, and more copies of the device.conf.
            remove_tree(package)
        if run.rc != 0 or run.timed_out:
            self.failed_run('generating the images of', run)
        write_file_atomic(record_path, (json.dumps({'fingerprint': self.fingerprint, 'instances':
                                                    self.params['concurrency'], 'generated': time.time()},
                                                   sort_keys=True) + '\n').encode('utf-8'), mode=0o644)
        return True

    def flash_initrd(self, slots):
        """The flash in slot ``slots.slot`` as that device instance, with the station's host state
        set up around it and taken down after it."""
        instance = slots.slot
        stale = self.host.interfaces_of_instance(instance)
        if stale:
            self.host.remove_gadget_addresses(instance)
            self.fail('not flashing %s on USB port %s as device instance %d: a Jetson is still in NVIDIA\'s flashing'
                      ' initrd as that instance (%s), left by an interrupted flash, and the flash would go to it:'
                      ' power-cycle the device on USB port %s into recovery mode, then re-run'
                      % (self.serial, self.port, instance,
                         ', '.join('%s on USB port %s' % (item['name'], item['port']) for item in stale),
                         ', '.join(sorted(set(str(item['port']) for item in stale)))))
        # Exports left by flashes that were killed, in slots nobody holds now.
        slots.for_each_free(self.host.unexport)
        self.host.install_udev_rules(self.l4t_dir)
        self.host.write_service_shim(self.l4t_dir)
        self.host.ensure_nfs_server()
        self.argv = flash_command(self.port, instance, self.saved_params(), self.params['extra_args'])
        try:
            self.host.export_tree(instance, self.l4t_dir)
            self.state.record(PHASE, step='flash', slot=instance, command=self.argv)
            self.at(FLASHING_AS % instance)
            return self.run(self.argv)
        finally:
            self.host.unexport(instance)
            self.host.remove_gadget_addresses(instance)

    def remove_images(self):
        """After a successful flash the tree's images are of no more use (another flash of this
        device means a new image), and each holds a copy of the device.conf: remove them."""
        for relpath in (IMAGES_RECORD,) + GENERATED_IMAGES:
            remove_tree(os.path.join(self.l4t_dir, relpath))

    def settled(self):
        """After a reported success: wait until this port's device has left the flashing initrd
        and recovery mode; return what still holds it, or None."""
        deadline = time.monotonic() + self.params['settle_timeout']
        while True:
            left = [item['name'] for item in self.host.gadget_interfaces() if item['port'] == self.port]
            where = None
            if left:
                where = 'is still in NVIDIA\'s flashing initrd (%s)' % ', '.join(left)
            elif self.port in recovery_devices(self.params['usb_sysfs_root'], shared=True):
                where = 'is still in recovery mode'
            if where is None or time.monotonic() >= deadline:
                return where
            time.sleep(SETTLE_POLL)

    def main(self):
        module, params = self.module, self.params
        self.check_inputs()
        self.read_tree()

        # -- already flashed with this image? (the device has left recovery mode: no bus scan) --
        recorded_board = self.previous.get('board') if self.previous.get('board') in BOARD_CONFIGS else None
        self.plan(params['board'] or recorded_board)
        if (not params['force'] and self.previous.get('status') == 'done' and self.fingerprint is not None
                and self.previous.get('fingerprint') == self.fingerprint):
            module.exit_json(**self.result(
                log_path=self.previous.get('log_path'), skipped_reason='already flashed with this image',
                msg='%s on USB port %s is already flashed with this image (%s); nothing to do'
                    % (self.serial, self.port, self.fingerprint[:12])))

        # -- the device must be waiting in recovery mode on its port ------------------------------
        try:
            product = _find_device(params)
        except FlashError as exc:
            if module.check_mode:
                module.warn(str(exc))
                module.exit_json(**self.result(changed=True, msg='would flash %s on USB port %s, but it is not in'
                                                                 ' recovery mode now' % (self.serial, self.port)))
            self.fail(str(exc))
        if params['board'] and params['board'] not in RECOVERY_PRODUCTS[product]:
            self.fail('the device in recovery mode on USB port %s is %s (0955:%s), not the %s given for %s: check'
                      ' which device is on this port, or fix its board'
                      % (self.port, describe_product(product), product, params['board'], self.serial))
        detected = params['board'] or board_of_product(product, params['board_identity'])
        if detected is None:
            self.fail('not flashing %s on USB port %s: the device in recovery mode there is %s (0955:%s), and its USB'
                      ' id does not tell which: its images need the board\'s own board config and identity; %s'
                      % (self.serial, self.port, describe_product(product), product, ambiguous_fix(product, 'its board (jetson_board)')))
        self.plan(detected)
        if module.check_mode:
            module.exit_json(**self.result(changed=True, msg='would flash %s on USB port %s (%s, %s)'
                                                             % (self.serial, self.port, self.board, self.board_config)))

        self.log_path = os.path.join(params['log_dir'], '%s-flash-%s.log'
                                     % (self.serial, time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())))
        started = time.time()
        self.state.record(PHASE, status='running', started=started, finished=None, seconds=None, error=None,
                          rc=None, timed_out=False, slot=None, slot_wait_seconds=None, usb_instance=self.port,
                          board=self.board, board_config=self.board_config, tool=self.tool, command=self.argv,
                          fingerprint=self.fingerprint, log_path=self.log_path)
        try:
            self.place_ekb()
            generated = self.generate() if self.tool == 'initrd' else False
            self.fields['generated'] = generated
            slots = FlashSlots(params['slots_dir'], params['concurrency'], label='%s %s' % (self.serial, self.port),
                               holds_station=True)
            self.at(WAITING_TO_FLASH)
            with slots:
                self.fields.update(slot=slots.slot, slot_wait_seconds=round(slots.wait_seconds, 3))
                self.state.record(PHASE, slot=slots.slot, slot_wait_seconds=round(slots.wait_seconds, 3))
                try:
                    _find_device(params)  # it may have gone while waiting for a slot
                except FlashError as exc:
                    self.fail(str(exc))
                if self.tool == 'initrd':
                    run = self.flash_initrd(slots)
                else:
                    self.at(FLASHING)
                    run = self.run(self.argv)
        except (StationHostError, FlashError) as exc:
            self.fail('flashing %s on USB port %s failed on the station: %s' % (self.serial, self.port, exc))
        seconds = round(time.time() - started, 3)
        self.fields['seconds'] = seconds
        if run.rc != 0 or run.timed_out:
            self.failed_run('flashing', run)
        if self.tool == 'initrd':
            self.at(CHECKING_OUTCOME)
            holding = self.settled()
            if holding:
                self.fail('NVIDIA\'s tool reported success, but the device on USB port %s %s: the flash in device'
                          ' instance %d went to another device, and %s was not written. Let nothing else flash on'
                          ' this station, then %s' % (self.port, holding, self.fields['slot'], self.serial,
                                                      RECOVERY_HINT))
            self.remove_images()
        self.state.record(PHASE, status='done', finished=time.time(), seconds=seconds, error=None, rc=0)
        module.exit_json(**self.result(
            changed=True, msg='flashed %s on USB port %s (%s, %s) in %.1f s'
                              % (self.serial, self.port, self.board, self.board_config, seconds)))
