"""A fake NVIDIA ``Linux_for_Tegra`` bundle made of real programs, for the flash and fuse roles.

The roles call NVIDIA's tools by their real names with their real argument syntax, so the lab
gives them a tree laid out like the r36 board support package whose tools are bash scripts
(``tests/lab/l4t_scripts/``) that validate arguments as the real ones do and behave like them
where it matters to the roles:

* ``flash.sh`` and ``l4t_initrd_flash.sh`` rewrite shared files of the tree IN PLACE
  (``bootloader/system.img`` keeps its inode), so a hard-linked clone of the bundle writes
  through to the original, and two flashes in one tree are detected and recorded as collisions;
* a flash writes what ``system.img`` holds (a tar archive standing in for the ext4 image) to a
  per-port "device storage" and takes the device out of the fake USB sysfs, as a flashed
  device leaves recovery mode;
* ``odmfuse.sh`` has no port option and records when several devices were in recovery mode;
  a burn over burned fuses leaves the OR of the values (fuse bits only go from 0 to 1) unless
  SecurityMode is burned, which locks them; a planted silent failure reports success and burns
  nothing, which ``odmfuseread.sh`` shows (it reads NVIDIA's fixed list of Orin fuses only);
* ``l4t_initrd_flash.sh`` and ``l4t_initrd_flash_internal.sh`` are as unkind as NVIDIA's about
  HOST-WIDE state: device instances and USB gadget interfaces, NFS exports, udev rules and
  board probes are shared by every run on the station, whatever tree it runs from. They act on
  the lab station's host root (``l4t_host.make_host_root``), which every bundle of one station
  shares, as the trees of a real station share ``/`` (see docs/l4t-parallel-flash.md).

The tools need no lab environment variables (they read NVIDIA's own, such as BOARDSKU, FAB and
FUSELEVEL, as the real ones do): ``make_bundle`` writes the lab settings into
``Linux_for_Tegra/.lab/config`` (read-only), which every tool reads through ``lab_common.sh``
of the tree it was run from. What the tools did lands in ``lab_state``, a directory outside the
bundle; the helpers below read it (see ``lab_common.sh`` for the layout). Standard library only.
"""

import io
import os
import shlex
import shutil
import tarfile
import time
from xml.etree import ElementTree

from . import l4t_host
# What the station's host did, re-exported for the tests' convenience.
from .l4t_host import (exports, gadget_interfaces, host_events, power_cycle_into_recovery,  # noqa: F401 pylint: disable=unused-import
                       probes, udev_rules)

SCRIPTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'l4t_scripts')

# Where each script goes in the bundle, as in NVIDIA's r36 tree.
SCRIPT_PLACES = {
    'flash.sh': 'flash.sh',
    'odmfuse.sh': 'odmfuse.sh',
    'odmfuseread.sh': 'odmfuseread.sh',
    'apply_binaries.sh': 'apply_binaries.sh',
    'lab_common.sh': 'lab_common.sh',
    'l4t_create_default_user.sh': 'tools/l4t_create_default_user.sh',
    'l4t_initrd_flash.sh': 'tools/kernel_flash/l4t_initrd_flash.sh',
    'l4t_initrd_flash_internal.sh': 'tools/kernel_flash/l4t_initrd_flash_internal.sh',
}

# Board configs and the recovery-mode USB product ids of the modules each one supports; the
# fake flash tools refuse a module the config does not support, like a board-id mismatch.
BOARD_MODULES = {
    'jetson-orin-nano-devkit': ('7523', '7623', '7323', '7423'),
    'jetson-agx-orin-devkit': ('7023', '7223'),
}
RECOVERY_PRODUCTS = ('7523', '7623', '7323', '7423', '7023', '7223')
FAILURE_KINDS = ('usb-timeout', 'boot-timeout', 'hang')
DEFAULT_FILLER_DIRS = ('kernel', 'bootloader/payloads', 'nv_tegra/l4t_deb_packages')
FILES_PER_FILLER_SUBDIR = 500
FUSE_MAGIC = '0x45535546'
MAX_MASSFLASH = 10  # what NVIDIA's board configs say, and get_max_flash's default
SAMPLE_ROOTFS_NAME = 'Tegra_Linux_Sample-Root-Filesystem_R36.4.0_aarch64.tbz2'
NV_TEGRA_RELEASE = ('# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, '
                    'DATE: Fri Sep 13 04:36:44 UTC 2024\n'
                    '# KERNEL_VARIANT: oot\n'
                    'INSTALL_TYPE=\n')

_STATIC_FILES = {
    'tools/kernel_flash/flash_l4t_t234_nvme.xml':
        '<?xml version="1.0"?>\n<partition_layout version="01.00.0000">\n'
        '  <device type="external" instance="0" sector_size="512" num_sectors="INT_NUM_SECTORS">\n'
        '    <partition name="APP" id="1" type="data"><filename>system.img</filename></partition>\n'
        '  </device>\n</partition_layout>\n',
    'tools/kernel_flash/flash_l4t_external.xml':
        '<?xml version="1.0"?>\n<partition_layout version="01.00.0000">\n'
        '  <device type="external" instance="0" sector_size="512" num_sectors="EXT_NUM_SECTORS">\n'
        '    <partition name="APP" id="1" type="data"><filename>system.img</filename></partition>\n'
        '  </device>\n</partition_layout>\n',
    'bootloader/generic/cfg/flash_t234_qspi.xml':
        '<?xml version="1.0"?>\n<partition_layout version="01.00.0000">\n'
        '  <device type="spi" instance="0" sector_size="512" num_sectors="131072"/>\n'
        '</partition_layout>\n',
    'bootloader/t186ref/cfg/flash_t234_qspi.xml':
        '<?xml version="1.0"?>\n<partition_layout version="01.00.0000">\n'
        '  <device type="spi" instance="0" sector_size="512" num_sectors="131072"/>\n'
        '</partition_layout>\n',
    'bootloader/flashcmd.txt':
        './tegraflash.py --chip 0x23 --cfg flash.xml --cmd "flash; reboot" (shipped, stale)\n',
    'nv_tegra/nv_tegra_release': NV_TEGRA_RELEASE,
    'rootfs/README.txt':
        'Extract the sample root filesystem here, as root: tar xpf <sample rootfs>.tbz2\n',
}


def make_bundle(top, lab_state, usb_sysfs_root, flash_seconds=0.0, fuse_seconds=0.0,  # pylint: disable=too-many-arguments
                filler_files=0, filler_dirs=None, host_root=None, boot_seconds=0.2, generate_seconds=0.0,
                apply_seconds=0.0):
    """Create ``top/Linux_for_Tegra`` and return its path.

    ``lab_state`` (outside the bundle) receives the tools' records; ``usb_sysfs_root`` is the
    fake ``/sys/bus/usb/devices`` they look for devices in; ``host_root`` is the lab station's
    ``/`` (see l4t_host.make_host_root; created or completed here, by default beside
    ``lab_state`` as ``<lab_state>-host``). ``flash_seconds`` and ``fuse_seconds`` are how long
    a flash and a fuse burn take, ``boot_seconds`` how long the RCM boot of the flashing initrd
    keeps a device busy in recovery mode, ``generate_seconds`` how long an initrd flash image
    generation takes, ``apply_seconds`` how long apply_binaries.sh installs. ``filler_files`` small files spread over ``filler_dirs`` (paths inside
    the bundle) give a benchmark a bundle with the file count of a real one (~50,000) without
    its gigabytes.
    """
    for name, value in (('flash_seconds', flash_seconds), ('fuse_seconds', fuse_seconds),
                        ('boot_seconds', boot_seconds), ('generate_seconds', generate_seconds),
                        ('apply_seconds', apply_seconds)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ValueError('%s must be a number of seconds, 0 or more' % name)
    tree = os.path.join(os.path.abspath(top), 'Linux_for_Tegra')
    lab_state = os.path.abspath(lab_state)
    if host_root is None:
        host_root = lab_state.rstrip(os.sep) + '-host'
    host_root = os.path.abspath(str(host_root))
    for name, path in (('lab_state', lab_state), ('host_root', host_root)):
        if _is_inside(os.path.realpath(path), os.path.realpath(tree)):
            raise ValueError('%s must be outside the bundle, or flashes would copy it around' % name)
    os.makedirs(tree)  # fails if it exists: a test must not flash a half-old bundle
    for sub in ('', 'storage', 'fuses', 'fail', 'fail-fuse', 'busy', 'disrupted', 'recovery-product'):
        os.makedirs(os.path.join(lab_state, sub), exist_ok=True)
    host_root = l4t_host.make_host_root(host_root, lab_state)

    for script, place in SCRIPT_PLACES.items():
        target = os.path.join(tree, place)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(SCRIPTS_DIR, script), target)
        os.chmod(target, 0o644 if script == 'lab_common.sh' else 0o755)
    for place, text in _STATIC_FILES.items():
        _write(os.path.join(tree, place), text)
    for name, text in l4t_host.NVIDIA_UDEV_RULES.items():
        _write(os.path.join(tree, 'tools', 'kernel_flash', 'host_udev', name), text)
    for board, products in BOARD_MODULES.items():
        _write(os.path.join(tree, board + '.conf'),
               '# %s.conf (lab bundle)\nCHIPID=0x23\nMAX_MASSFLASH=%d\n'
               '# The recovery-mode USB product ids of the modules this config supports.\n'
               'LAB_RCM_PRODUCTS="%s"\n' % (board, MAX_MASSFLASH, ' '.join(products)))
    _write_stale_system_img(os.path.join(tree, 'bootloader', 'system.img'))

    lab_dir = os.path.join(tree, '.lab')
    os.makedirs(lab_dir)
    config = os.path.join(lab_dir, 'config')
    settings = (('LAB_STATE', lab_state),
                ('LAB_USB_SYSFS_ROOT', os.path.abspath(usb_sysfs_root)),
                ('LAB_HOST_ROOT', host_root),
                ('LAB_FLASH_SECONDS', '%.6f' % flash_seconds),
                ('LAB_FUSE_SECONDS', '%.6f' % fuse_seconds),
                ('LAB_BOOT_SECONDS', '%.6f' % boot_seconds),
                ('LAB_GENERATE_SECONDS', '%.6f' % generate_seconds),
                ('LAB_APPLY_SECONDS', '%.6f' % apply_seconds))
    _write(config, '# The lab settings of this fake Linux_for_Tegra (tests/lab/l4t_bundle.py).\n'
           + ''.join('%s=%s\n' % (key, shlex.quote(value)) for key, value in settings))
    os.chmod(config, 0o444)

    _make_filler(tree, filler_files, DEFAULT_FILLER_DIRS if filler_dirs is None else filler_dirs)
    # The tools log the physical path of the tree they ran from; return the same spelling.
    return os.path.realpath(tree)


def make_sample_rootfs_tarball(path):
    """Write a small sample root filesystem like NVIDIA's (tar.bz2, uid 0) and return its path.

    Extracted as root with ``tar xpf`` it passes apply_binaries.sh; its ``etc/resolv.conf`` is
    an ABSOLUTE symlink, which followed from the station leads into the station's own /run.
    """
    if os.path.isdir(path):
        path = os.path.join(path, SAMPLE_ROOTFS_NAME)
    entries = [
        ('etc', tarfile.DIRTYPE, 0o755, None),
        ('etc/passwd', tarfile.REGTYPE, 0o644,
         'root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n'),
        ('etc/group', tarfile.REGTYPE, 0o644,
         'root:x:0:\ndaemon:x:1:\nadm:x:4:\nsudo:x:27:\naudio:x:29:\nvideo:x:44:\nshadow:x:42:\n'),
        ('etc/shadow', tarfile.REGTYPE, 0o640, 'root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n'),
        ('etc/hostname', tarfile.REGTYPE, 0o644, 'localhost\n'),
        ('etc/hosts', tarfile.REGTYPE, 0o644, '127.0.0.1\tlocalhost\n'),
        ('etc/resolv.conf', tarfile.SYMTYPE, 0o777, '/run/systemd/resolve/stub-resolv.conf'),
        ('usr', tarfile.DIRTYPE, 0o755, None),
        ('usr/bin', tarfile.DIRTYPE, 0o755, None),
        ('usr/bin/true', tarfile.REGTYPE, 0o755, '#!/bin/sh\nexit 0\n'),
        ('usr/lib', tarfile.DIRTYPE, 0o755, None),
        ('home', tarfile.DIRTYPE, 0o755, None),
        ('root', tarfile.DIRTYPE, 0o700, None),
        ('tmp', tarfile.DIRTYPE, 0o1777, None),
    ]
    mtime = time.time()
    with tarfile.open(path, 'w:bz2') as archive:
        for name, kind, mode, data in entries:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = kind, mode, mtime
            info.uid = info.gid = 0
            info.uname = info.gname = 'root'
            payload = None
            if kind == tarfile.SYMTYPE:
                info.linkname = data
            elif kind == tarfile.REGTYPE:
                payload = data.encode()
                info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def write_fuse_config(path, fuses=None):
    """Write an NVIDIA genericfuse XML (``fuses``: name -> value, in order) and return its path."""
    fuses = fuses or {'PublicKeyHash': '0x' + '5a' * 32, 'SecurityMode': '0x1'}
    sizes = {'PublicKeyHash': 64, 'SecureBootKey': 32, 'OemK1': 32, 'OemK2': 32}
    lines = ['<genericfuse MagicId="%s" version="1.0.0">' % FUSE_MAGIC]
    lines += ['    <fuse name="%s" size="%d" value="%s"/>' % (name, sizes.get(name, 4), value)
              for name, value in fuses.items()]
    lines.append('</genericfuse>')
    _write(path, '\n'.join(lines) + '\n')
    return path


# -- what the tools did ---------------------------------------------------------------------------

def tool_calls(lab_state):
    """Every tool invocation, oldest first.

    Each is a dict: tool, argv (list), cwd, tree (the Linux_for_Tegra it ran from), pid,
    start, end (epoch floats) and exit. A run killed with SIGKILL has end and exit None.
    """
    calls = _paired_records(lab_state, 'tool-calls.log')
    return [{key: call.get(key) for key in ('tool', 'argv', 'cwd', 'tree', 'pid', 'start', 'end', 'exit')}
            for call in calls]


def flash_runs(lab_state):
    """Every device a flash tool worked on, oldest first.

    Each is a dict: tool, usb_instance (the port the run asked for), tree, start, end, exit,
    instance (the initrd flash's device instance, else None) and device (the port whose storage
    the run wrote, None if none: for an initrd flash that may be ANOTHER port than
    usb_instance). Only runs that reached a device count (not image generations, argument
    errors or collisions); an initrd flash counts in l4t_initrd_flash_internal.sh, one run per
    device, also under a massflash.
    """
    runs = _paired_records(lab_state, 'flash-runs.log')
    return [{key: run.get(key) for key in ('tool', 'usb_instance', 'tree', 'start', 'end', 'exit',
                                           'instance', 'device')}
            for run in runs]


def collisions(lab_state):
    """Runs that found another flash running in their tree: dicts with time, tool, pid, tree,
    usb_instance (as requested, may be empty), holder_pid and holder_tool."""
    return l4t_host.read_records(lab_state, 'collisions.log')


def fuse_events(lab_state):
    """odmfuse/odmfuseread events, oldest first: dicts with time, event ('test', 'burn',
    'silent', 'refused', 'read', 'multi-device', 'noburn'), tool, tree, devices (the ports in
    recovery mode then) and usb_instance (the device acted on)."""
    return l4t_host.read_records(lab_state, 'fuse-events.log')


def device_storage(lab_state, usb_instance):
    """The directory holding what was flashed to the device on that port (may not exist)."""
    return os.path.join(lab_state, 'storage', _port(usb_instance))


def device_meta(lab_state, usb_instance):
    """The last flash of that port as a dict (board, tree, tool, rootdev, image, time, instance,
    usb_instance: the port the writing run asked for), or {}."""
    try:
        with open(device_storage(lab_state, usb_instance) + '.meta') as meta:
            return dict(line.rstrip('\n').split('=', 1) for line in meta if '=' in line)
    except FileNotFoundError:
        return {}


def burned_fuses(lab_state, usb_instance):
    """The fuses really burned into the device on that port: {name: value} ({} if none)."""
    path = os.path.join(lab_state, 'fuses', _port(usb_instance) + '.xml')
    try:
        with open(path) as config:
            text = config.read()
    except FileNotFoundError:
        return {}
    return {fuse.get('name'): fuse.get('value') for fuse in ElementTree.fromstring(text).iter('fuse')}


def plant_failure(lab_state, usb_instance, times=1, kind='usb-timeout'):
    """Make the next ``times`` flashes of that port fail the way real floors do.

    'usb-timeout' and 'boot-timeout' print NVIDIA's messages and exit 1; 'hang' sleeps an hour,
    so the caller's timeout has to kill it. The device stays in recovery mode, ready for a retry.
    """
    if kind not in FAILURE_KINDS:
        raise ValueError('kind must be one of %s' % ', '.join(FAILURE_KINDS))
    _plant(lab_state, 'fail', usb_instance, times, kind)


def pending_failure(lab_state, usb_instance):
    """The planted flash failures still to fire on that port: ``(count, kind)``, or None."""
    try:
        with open(os.path.join(lab_state, 'fail', _port(usb_instance))) as planted:
            count, kind = planted.read().split()
    except FileNotFoundError:
        return None
    return int(count), kind


def prefuse_device(lab_state, usb_instance, fuses):
    """Make the device on that port arrive fused (by another station: no tool of this one ran, no
    event is recorded): it holds ``fuses`` ({name: value}), as if burned into an unfused device."""
    os.makedirs(os.path.join(lab_state, 'fuses'), exist_ok=True)
    write_fuse_config(os.path.join(lab_state, 'fuses', _port(usb_instance) + '.xml'), fuses)


def plant_silent_fuse_failure(lab_state, usb_instance, times=1):
    """Make the next ``times`` burns on that port report success and burn nothing."""
    _plant(lab_state, 'fail-fuse', usb_instance, times, 'silent')


# -- internals ------------------------------------------------------------------------------------

def _port(usb_instance):
    if not usb_instance or '/' in usb_instance or usb_instance.startswith('.'):
        raise ValueError('not a USB port path: %r' % (usb_instance,))
    return usb_instance


def _plant(lab_state, kind_dir, usb_instance, times, kind):
    if not isinstance(times, int) or times < 1:
        raise ValueError('times must be a positive integer')
    directory = os.path.join(lab_state, kind_dir)
    os.makedirs(directory, exist_ok=True)
    _write(os.path.join(directory, _port(usb_instance)), '%d %s\n' % (times, kind))


def _paired_records(lab_state, name):
    """Merge start/end records by id into one dict each (start, end, exit), in start order."""
    by_id = {}
    for record in l4t_host.read_records(lab_state, name):
        if record.get('event') == 'start':
            entry = dict(record, start=record.get('time'), end=None, exit=None)
            by_id[record['id']] = entry
        elif record.get('event') == 'end' and record.get('id') in by_id:
            by_id[record['id']].update({key: value for key, value in record.items()
                                        if key not in ('event', 'id', 'time')},
                                       end=record.get('time'), exit=record.get('exit'))
    return sorted(by_id.values(), key=lambda entry: entry['start'])


def _is_inside(path, directory):
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write(text)


def _write_stale_system_img(path):
    """The real tree may hold an old system.img; ours is a tiny image with a marker file, so a
    test sees when a flash reused (``-r``) what it should have rebuilt."""
    marker = b'a stale system.img shipped with the bundle\n'
    with tarfile.open(path, 'w', format=tarfile.GNU_FORMAT) as archive:
        for name in ('.', './etc'):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(info)
        info = tarfile.TarInfo('./etc/lab-stale-image')
        info.size, info.mode = len(marker), 0o644
        archive.addfile(info, io.BytesIO(marker))


def _make_filler(tree, count, directories):
    """``count`` small files spread over ``directories``, 500 to a subdirectory. Written with
    os.open/os.write: 50,000 files take a couple of seconds."""
    directories = list(directories)
    if count <= 0:
        return
    if not directories:
        raise ValueError('filler_files needs at least one filler directory')
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    made = set()
    for index in range(count):
        directory = directories[index % len(directories)]
        bucket = os.path.join(tree, directory, 'lab-filler-%03d' % (index // len(directories)
                                                                    // FILES_PER_FILLER_SUBDIR))
        if bucket not in made:
            os.makedirs(bucket, exist_ok=True)
            made.add(bucket)
        handle = os.open(os.path.join(bucket, 'file-%06d.bin' % index), flags, 0o644)
        try:
            os.write(handle, b'lab filler %d\n' % index)
        finally:
            os.close(handle)
