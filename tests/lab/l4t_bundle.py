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
  device leaves recovery mode. The initrd flash follows NVIDIA's r36.2 APP image format (public
  copy: github.com/johnnynunez/Linux_for_Tegra): its generation writes
  ``tools/kernel_flash/images/<internal|external>/system.img`` (an uncompressed tar of the
  rootfs), ``system.img.sha1sum`` and ``APP=``/``APP_ext=system.img`` in that directory's
  ``flash.cfg`` (package_images of l4t_create_images_for_kernel_flash.sh), and its flash writes
  the image flash.cfg names, never the tree's rootfs (do_write_APP of l4t_flash_from_kernel.sh:
  a tar empties the storage and is unpacked by GNU tar, anything else is a raw image);
* ``odmfuse.sh`` has no port option and records when several devices were in recovery mode;
  the device's fuse burner applies the XML in order and stops silently (odmfuse.sh exits 0,
  the verdict is only on the device's UART log, ``uart_log``) at a fuse it cannot burn: a value
  that would clear a burned bit, an OdmLock-locked ReservedOdm, any fuse once SecurityMode is
  burned, a value longer than the fuse; ``--test`` is a dry run only if the MagicId is spelled
  exactly 0x45535546. A planted silent failure reports success and burns nothing, which
  ``odmfuseread.sh`` shows (NVIDIA's fixed list of Orin fuses, zero-padded hex without 0x). The
  keys given must be the device's (``keys.py``; ``bootloader/tegrasign_v3.py`` gives the lab's
  PublicKeyHash of a key), and ``bootloader/tegrarcm_v2 --uid`` prints a device's BR_CID;
* the flash tools build images for one chip, as NVIDIA's r36.2 flash.sh does: the BPMP firmware
  the board config's ``process_chip_sku_version`` picks from CHIP_SKU, else from the chip read
  off the first device in recovery mode (only without FUSELEVEL), else from its
  DEFAULT_CHIP_SKU (the lab's ``p3767.conf.common``/``p3701.conf.common``); images made with
  ``-u``/``-v`` are signed/encrypted with those keys. A module whose chip needs other firmware
  hangs and its flash times out; a fused device rejects images not signed or encrypted with its
  keys (``boot_failures`` says why, ``images_record`` what the images were made for);
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
    'tegrasign_v3.py': 'bootloader/tegrasign_v3.py',
    'tegrarcm_v2': 'bootloader/tegrarcm_v2',
    'l4t_create_default_user.sh': 'tools/l4t_create_default_user.sh',
    'l4t_initrd_flash.sh': 'tools/kernel_flash/l4t_initrd_flash.sh',
    'l4t_initrd_flash_internal.sh': 'tools/kernel_flash/l4t_initrd_flash_internal.sh',
}

# Board configs and the recovery-mode USB product ids of the modules each one supports; the
# fake flash tools refuse a module the config does not support, like a board-id mismatch. The
# AGX Orin Industrial (p3701-0008) answers on 7023 like the AGX Orin 32GB and 64GB.
BOARD_MODULES = {
    'jetson-orin-nano-devkit': ('7523', '7623', '7323', '7423'),
    'jetson-agx-orin-devkit': ('7023', '7223'),
    'jetson-agx-orin-devkit-industrial': ('7023',),
}
# The module family file each board config sources, as NVIDIA's do (jetson-orin-nano-devkit.conf
# -> p3768-0000-p3767-0000-a0.conf -> p3767.conf.common; jetson-agx-orin-devkit.conf ->
# p3737-0000-p3701-0000.conf -> p3701.conf.common; jetson-agx-orin-devkit-industrial.conf ->
# p3737-0000-p3701-0008.conf -> p3701.conf.common).
BOARD_FAMILIES = {
    'jetson-orin-nano-devkit': 'p3767',
    'jetson-agx-orin-devkit': 'p3701',
    'jetson-agx-orin-devkit-industrial': 'p3701',
}
# What the lab's family files hold of NVIDIA's r36.2 p3767.conf.common and p3701.conf.common
# (public copy: github.com/johnnynunez/Linux_for_Tegra): the default BPMP firmware, the chip SKU
# flash.sh falls back to when it did not read the chip (FUSELEVEL given, no CHIP_SKU), and
# process_chip_sku_version's chip SKU -> BPMP firmware table.
FAMILY_FIRMWARE = {
    'p3767': ('TE980M-A1', '00:00:00:D3',
              (('D3', 'TE980M-A1'), ('D4', 'TE980M-A1'), ('D5', 'TE950M-A1'), ('D6', 'TE950M-A1'))),
    'p3701': ('TE990M-A1', '00:00:00:D0',
              (('90', 'TE992M-A1'), ('97', 'TA990SA-A1'), ('9E', 'TA990SA-A1'), ('D0', 'TE990M-A1'),
               ('D2', 'TE990M-A1'))),
}
# p3737-0000-p3701-0008.conf's update_flash_args_common: an INT-fused (chip SKU 00) p3701-0008
# takes the Industrial's firmware, which process_chip_sku_version leaves alone for SKU 00.
INDUSTRIAL_UPDATE_FLASH_ARGS = '''
# p3737-0000-p3701-0008.conf (r36.2): special handling of INT-fused "p3701-0008".
update_flash_args_common()
{
    if [ "${chip_SKU}" = "00" ]; then
        BPFFILE=`echo "${BPFFILE}" | sed "s|T.*-A1|TE992M-A1|"`;
    fi;
}

update_flash_args()
{
    update_flash_args_common
}
'''
PYTHON_SHEBANG = '#!/usr/bin/env python3\n'
RECOVERY_PRODUCTS = ('7523', '7623', '7323', '7423', '7023', '7223')
FAILURE_KINDS = ('usb-timeout', 'boot-timeout', 'hang')
DEFAULT_FILLER_DIRS = ('kernel', 'bootloader/payloads', 'nv_tegra/l4t_deb_packages')
FILES_PER_FILLER_SUBDIR = 500
FUSE_MAGIC = '0x45535546'
FUSE_TEST_MAGIC = '0x54534554'  # what odmfuse.sh --test substitutes (generate_fskp_blob)
# T234 fuse sizes in bytes that are not 4 (lab_fuse_size in lab_common.sh).
FUSE_SIZES = {'PublicKeyHash': 64, 'SecureBootKey': 32, 'OemK1': 32, 'OemK2': 32, 'Kdk0': 32, 'OdmId': 8}
# The fuses odmfuseread.sh reads on Orin, in its order (odmfuse.func: FUSES_KEYS_T234,
# FUSES_MANUFACTURING_T234, FUSES_ODM_RESERVED).
READABLE_FUSES = ('PublicKeyHash', 'BootSecurityInfo', 'ArmJtagDisable', 'SecurityMode', 'SwReserved',
                  'DebugAuthentication', 'OdmId', 'OdmLock') + tuple('ReservedOdm%d' % index for index in range(8))
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
    for sub in ('', 'storage', 'fuses', 'fail', 'fail-fuse', 'busy', 'disrupted', 'recovery-product', 'uart', 'chip'):
        os.makedirs(os.path.join(lab_state, sub), exist_ok=True)
    host_root = l4t_host.make_host_root(host_root, lab_state)

    for script, place in SCRIPT_PLACES.items():
        target = os.path.join(tree, place)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if script.endswith('.py'):
            # Python doubles carry no shebang in the repository (ansible-test's shebang test
            # refuses python3's), so the bundle gets the real tools' one here.
            with open(os.path.join(SCRIPTS_DIR, script), encoding='utf-8') as source:
                _write(target, PYTHON_SHEBANG + source.read())
        else:
            shutil.copyfile(os.path.join(SCRIPTS_DIR, script), target)
        os.chmod(target, 0o644 if script == 'lab_common.sh' else 0o755)
    for place, text in _STATIC_FILES.items():
        _write(os.path.join(tree, place), text)
    for name, text in l4t_host.NVIDIA_UDEV_RULES.items():
        _write(os.path.join(tree, 'tools', 'kernel_flash', 'host_udev', name), text)
    for family in FAMILY_FIRMWARE:
        _write(os.path.join(tree, family + '.conf.common'), _family_conf(family))
    for board, products in BOARD_MODULES.items():
        industrial = INDUSTRIAL_UPDATE_FLASH_ARGS if board.endswith('-industrial') else ''
        _write(os.path.join(tree, board + '.conf'),
               '# %s.conf (lab bundle)\nsource "${LDK_DIR}/%s.conf.common";\nCHIPID=0x23\nMAX_MASSFLASH=%d\n'
               '# The recovery-mode USB product ids of the modules this config supports.\n'
               'LAB_RCM_PRODUCTS="%s"\n%s' % (board, BOARD_FAMILIES[board], MAX_MASSFLASH, ' '.join(products), industrial))
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


def write_fuse_config(path, fuses=None, magic=FUSE_MAGIC):
    """Write an NVIDIA genericfuse XML (``fuses``: name -> value, in order; None: a sample) with
    MagicId ``magic`` and return its path. Each fuse's size attribute is its T234 size."""
    if fuses is None:
        fuses = {'PublicKeyHash': '0x' + '5a' * 32, 'SecurityMode': '0x1'}
    lines = ['<genericfuse MagicId="%s" version="1.0.0">' % magic]
    lines += ['    <fuse name="%s" size="%d" value="%s"/>' % (name, fuse_size(name), value)
              for name, value in fuses.items()]
    lines.append('</genericfuse>')
    _write(path, '\n'.join(lines) + '\n')
    return path


def fuse_size(name):
    """The size in bytes of a T234 fuse, as the device's burner checks it (lab_fuse_size)."""
    return FUSE_SIZES.get(name, 4)


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
    'stopped', 'silent', 'refused', 'read', 'multi-device', 'noburn'), tool, tree, devices (the
    ports in recovery mode then) and usb_instance (the device acted on).

    'test' and 'burn' carry the device's verdict ('burned', 'dry-run', 'stopped', 'bad-magic'),
    which odmfuse.sh itself never learns (it exits 0); a 'stopped' event before them names the
    fuse the device's burner stopped at ('fuse', 'reason', 'dry_run')."""
    return l4t_host.read_records(lab_state, 'fuse-events.log')


def uart_log(lab_state, usb_instance):
    """The lines the device on that port printed on its serial console, oldest first: what its
    fuse burner said ("I> 1. Start PublicKeyHash burn", "I> Fuse is already burned with the
    same value", "I> Dry run detected, returning now.", "E> FUSE: Failed to burn fuse ...")."""
    try:
        with open(os.path.join(lab_state, 'uart', _port(usb_instance) + '.log'), encoding='utf-8') as log:
            return log.read().splitlines()
    except FileNotFoundError:
        return []


def device_ecid(lab_state, usb_sysfs_root, usb_instance):
    """The chip identity (ECID) of the device on that port, '0x' + 32 hex digits, as
    ``tegrarcm_v2 --uid`` prints it for an unfused chip (see ``br_cid``); stable across power
    cycles, new for another device added on the port. None if the lab never saw one there."""
    ecid = l4t_host.chip_identity(lab_state, usb_sysfs_root, _port(usb_instance))[0]
    return None if ecid is None else '0x' + ecid


def device_chip_sku(lab_state, usb_sysfs_root, usb_instance):
    """The chip SKU of the device on that port ('D5' for an Orin Nano 8GB...), or None."""
    return l4t_host.chip_identity(lab_state, usb_sysfs_root, _port(usb_instance))[1]


def br_cid(lab_state, usb_sysfs_root, usb_instance):
    """What ``tegrarcm_v2 --uid`` prints as BR_CID for the device on that port now: its ECID
    with the fuse level (digit 0: 8 production) and boot authentication (digit 1: BootSecurityInfo
    bits 0-2, else 1 for RSA 3K when only PublicKeyHash is burned; +8 with SecureBootKey) its
    fuses give, as flash.sh get_fuse_level decodes them (lab_br_cid in lab_common.sh)."""
    ecid = device_ecid(lab_state, usb_sysfs_root, usb_instance)
    if ecid is None:
        return None
    fuses = {name: _fuse_int(value) for name, value in burned_fuses(lab_state, usb_instance).items()}
    info = fuses.get('BootSecurityInfo', 0) & 0xf
    auth = info & 7 or (1 if fuses.get('PublicKeyHash') else 0)
    if info & 8 or fuses.get('SecureBootKey'):
        auth |= 8
    level = 8 if auth or fuses.get('SecurityMode') else 0
    return '0x%X%X%s' % (level, auth, ecid[4:])


def boot_failures(lab_state):
    """Flashes whose images the device would not run, oldest first: dicts with time, tool, tree,
    usb_instance, reason ('signature', 'encryption': the boot ROM rejected them; 'bpmp-firmware':
    the module's chip needs other BPMP firmware, it hung and left recovery mode) and why; a
    'bpmp-firmware' record also has chip_sku (the module's), needs and images (the firmware)."""
    return l4t_host.read_records(lab_state, 'boot-failures.log')


def images_record(tree):
    """What the images of an initrd flash generation in ``tree`` were made for (its
    tools/kernel_flash/images/lab_identity): board, sku, chip_sku, bpmp, pkc_hash, sbk_digest..."""
    with open(os.path.join(tree, 'tools', 'kernel_flash', 'images', 'lab_identity')) as record:
        return dict(line.rstrip('\n').split('=', 1) for line in record if '=' in line)


def app_image_dir(tree, location='internal'):
    """Where an initrd flash generation in ``tree`` leaves the APP image of the internal storage
    or of the external device (``location``), its .sha1sum and the flash.cfg naming it."""
    if location not in ('internal', 'external'):
        raise ValueError('location must be internal or external')
    return os.path.join(tree, 'tools', 'kernel_flash', 'images', location)


def flash_cfg(tree, location='internal'):
    """The NAME=value lines of that images directory's flash.cfg as a dict ({} without one)."""
    try:
        with open(os.path.join(app_image_dir(tree, location), 'flash.cfg')) as cfg:
            return dict(line.rstrip('\n').split('=', 1) for line in cfg if '=' in line)
    except FileNotFoundError:
        return {}


def device_storage(lab_state, usb_instance):
    """The directory holding what was flashed to the device on that port (may not exist)."""
    return os.path.join(lab_state, 'storage', _port(usb_instance))


def device_meta(lab_state, usb_instance):
    """The last flash of that port as a dict (board, tree, tool, rootdev, image, time, instance,
    usb_instance: the port the writing run asked for; app: how the APP partition was written,
    'tar', 'raw' or 'partial', '' when that flash did not write it), or {}."""
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


def set_device_fuses(lab_state, usb_instance, fuses):
    """Give the device on that port fuse values it holds from the factory (no tool ran, no event
    is recorded): ``fuses`` ({name: value}) replace or join what it holds. A fresh Orin module
    reads BootSecurityInfo 0x1e0 (reserved bits), which a burn of BootSecurityInfo must keep:
    ``set_device_fuses(lab_state, port, {'BootSecurityInfo': '0x1e0'})``."""
    held = burned_fuses(lab_state, usb_instance)
    held.update(fuses)
    os.makedirs(os.path.join(lab_state, 'fuses'), exist_ok=True)
    write_fuse_config(os.path.join(lab_state, 'fuses', _port(usb_instance) + '.xml'), held)


def plant_silent_fuse_failure(lab_state, usb_instance, times=1):
    """Make the next ``times`` burns on that port report success and burn nothing."""
    _plant(lab_state, 'fail-fuse', usb_instance, times, 'silent')


# -- internals ------------------------------------------------------------------------------------

def _fuse_int(value):
    """A fuse value as an integer: hex words ("0x00000001 0x000000ab" is one value), 0 if unreadable."""
    digits = ''.join(word[2:] if word.lower().startswith('0x') else word for word in str(value).split())
    try:
        return int(digits or '0', 16)
    except ValueError:
        return 0


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


def _family_conf(family):
    """A lab ``<family>.conf.common``: the part of NVIDIA's that picks the BPMP firmware from the
    chip SKU (process_chip_sku_version, as in r36.2), sourced by the lab's tools like flash.sh
    sources the board config."""
    firmware, default_sku, table = FAMILY_FIRMWARE[family]
    entries = ''.join('\tbpmp_fw_binary[\'%s\']="%s";\n' % (sku, binary) for sku, binary in table)
    return ('# %s.conf.common (lab bundle): from NVIDIA\'s r36.2 %s.conf.common (public copy:\n'
            '# github.com/johnnynunez/Linux_for_Tegra), what picks the BPMP firmware.\n'
            'CHIPID=0x23;\n'
            'BPFFILE="bootloader/bpmp_t234-%s_prod.bin";\n'
            'DEFAULT_CHIP_SKU="%s";\n\n'
            'process_chip_sku_version()\n{\n'
            '\tlocal chip_sku="${1}";\n'
            '\tlocal ramcode="${4}";\n'
            '\tlocal fuselevel="${5}";\n'
            '\tlocal board_FAB="${6}";\n'
            '\tdeclare -A bpmp_fw_binary;\n%s\n'
            '\tchip_sku="${chip_sku:-${DEFAULT_CHIP_SKU}}"\n\n'
            '\tif [[ "${chip_sku}" =~ ":" ]]; then\n'
            '\t\tchip_SKU=`echo "${chip_sku}" | awk -F ":" \'{print $4}\'`;\n'
            '\tfi;\n\n'
            '\t# do not override BPFFILE for INT SKU "00"\n'
            '\tif [ "${chip_SKU}" != "00" ]; then\n'
            '\t\tBPFFILE=`echo "${BPFFILE}" | sed "s|T.*-A1|${bpmp_fw_binary[${chip_SKU}]}|"`;\n'
            '\tfi;\n\n'
            '\techo "Chip SKU(${chip_sku}) ramcode(${ramcode}) fuselevel(${fuselevel}) board_FAB(${board_FAB})"\n'
            '}\n' % (family, family, firmware, default_sku, entries))


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
