"""The lab station's host root: the parts of a station's ``/`` that NVIDIA's initrd flash shares.

Separate ``Linux_for_Tegra`` trees do not make two initrd flashes independent (see
docs/l4t-parallel-flash.md): NVIDIA's scripts meet on the station itself, through

* the NFS server: ``etc/exports``, ``etc/exports.d/*.exports`` and the runtime export table
  ``var/lib/nfs/etab`` (one export a line, ``<dir> <client>(<options>)``, the client without
  brackets), changed by the fake ``usr/sbin/exportfs`` and ``usr/sbin/service`` in it;
* the udev rules in ``etc/udev/rules.d`` (``usr/bin/udevadm`` records and succeeds);
* the addresses of the gadget interfaces (``usr/sbin/ip -6 addr show|del``);
* the USB gadget network interfaces in ``sys/class/net`` that a device running NVIDIA's
  flashing initrd brings up: one directory per interface (``usb0``, ``usb1``..., the lowest
  free number), with ``configuration`` (``RNDIS+L4T<instance>``), ``serial``, ``operstate``,
  ``lab_addresses`` (one address a line, what ``ip addr add`` put there) and a ``device``
  symlink whose target's name is ``<usb port>:1.0``;
* ``proc/sys/net/ipv6/conf/all/disable_ipv6`` (``0``: the flash runs over IPv6).

``make_host_root`` builds that directory; ``l4t_bundle.make_bundle`` points each bundle at one
(``LAB_HOST_ROOT`` in its ``.lab/config``), so that trees on one lab station share it as trees
on a real station share ``/``. The fake host programs are bash scripts
(``tests/lab/host_scripts``) that find the host root from their own location and record every
call in the lab state's ``host-events.log``. Standard library only.
"""

import fcntl
import glob
import json
import os
import shlex
import shutil

from . import usb_sysfs

HOST_SCRIPTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'host_scripts')
# Where each fake host program goes in the host root, as on Ubuntu.
HOST_PROGRAMS = {
    'exportfs.sh': 'usr/sbin/exportfs',
    'service.sh': 'usr/sbin/service',
    'udevadm.sh': 'usr/bin/udevadm',
    'ip.sh': 'usr/sbin/ip',
}
EXPORTS_HEADER = ('# /etc/exports: the access control list for filesystems which may be exported\n'
                  '#\t\tto NFS clients.  See exports(5).\n#\n')
# The marker NVIDIA's tools put above the lines they add to /etc/exports; the outer
# l4t_initrd_flash.sh deletes every marker and the line after it when it exits.
NVIDIA_EXPORTS_MARK = '# Entry added by NVIDIA initrd flash tool'
# How NVIDIA's l4t_network_flash.func exports a tree to the flashing initrd, and to whom.
NFS_EXPORT_OPTIONS = 'rw,nohide,insecure,no_subtree_check,async,no_root_squash'
FLASH_NETWORK = 'fc00:1:1::/48'
# The host udev rules NVIDIA ships in tools/kernel_flash/host_udev (lab wording, same effect):
# NetworkManager must leave the flashing gadget alone, udisks must not mount its disks.
NVIDIA_UDEV_RULES = {
    '99-l4t-host.rules':
        '# Lab copy of NVIDIA tools/kernel_flash/host_udev/99-l4t-host.rules: keep NetworkManager\n'
        '# off the RNDIS gadget of a Jetson running the flashing initrd (0955:7035).\n'
        'SUBSYSTEM=="net", ACTION=="add|move", ATTRS{idVendor}=="0955", ATTRS{idProduct}=="7035", '
        'ENV{NM_UNMANAGED}="1"\n',
    '10-l4t-usb-msd.rules':
        '# Lab copy of NVIDIA tools/kernel_flash/host_udev/10-l4t-usb-msd.rules: keep udisks off\n'
        '# the mass storage a Jetson running the flashing initrd exposes (0955:7035).\n'
        'SUBSYSTEM=="block", SUBSYSTEMS=="usb", ATTRS{idVendor}=="0955", ATTRS{idProduct}=="7035", '
        'ENV{UDISKS_IGNORE}="1", ENV{UDISKS_PRESENTATION_HIDE}="1"\n',
}
_LAB_DIR = '.lab'


def make_host_root(host_root, lab_state, nfs_server=True):
    """Create (or complete) the host root at ``host_root`` and return its real path.

    Idempotent: an existing host root keeps its tables, rules and interfaces, since every tree
    of a station shares it. ``lab_state`` receives ``host-events.log``; one host root serves
    one lab state. ``nfs_server=False`` gives a station without nfs-kernel-server: no
    ``usr/sbin/exportfs`` (``service`` is part of every station).
    """
    host_root = os.path.abspath(str(host_root))
    lab_state = os.path.abspath(str(lab_state))
    for sub in ('etc/udev/rules.d', 'etc/exports.d', 'var/lib/nfs', 'sys/class/net', 'sys/devices/lab',
                'proc/sys/net/ipv6/conf/all', 'usr/sbin', 'usr/bin', _LAB_DIR):
        os.makedirs(os.path.join(host_root, sub), exist_ok=True)
    os.makedirs(lab_state, exist_ok=True)

    config = os.path.join(host_root, _LAB_DIR, 'config')
    if os.path.exists(config):
        with open(config) as config_file:
            if 'LAB_STATE=%s\n' % shlex.quote(lab_state) not in config_file.read():
                raise ValueError('%s already serves another lab state' % host_root)
    else:
        _write(config, '# The lab settings of this lab station host root (tests/lab/l4t_host.py).\n'
               'LAB_STATE=%s\n' % shlex.quote(lab_state))
    for place, text in (('etc/exports', EXPORTS_HEADER), ('var/lib/nfs/etab', ''),
                        ('proc/sys/net/ipv6/conf/all/disable_ipv6', '0\n'),
                        (os.path.join(_LAB_DIR, 'nfs-server'), 'running\n')):
        if not os.path.exists(os.path.join(host_root, place)):
            _write(os.path.join(host_root, place), text)

    shutil.copyfile(os.path.join(HOST_SCRIPTS_DIR, 'host_common.sh'),
                    os.path.join(host_root, _LAB_DIR, 'host_common.sh'))
    for script, place in HOST_PROGRAMS.items():
        target = os.path.join(host_root, place)
        if script == 'exportfs.sh' and not nfs_server:
            if os.path.exists(target):
                os.remove(target)
            continue
        shutil.copyfile(os.path.join(HOST_SCRIPTS_DIR, script), target)
        os.chmod(target, 0o755)
    return os.path.realpath(host_root)


# -- what happened on the station -----------------------------------------------------------------

def probes(lab_state):
    """Every board probe the fake flash.sh runs made, oldest first: dicts with time, tool, pid,
    tree, kind ('fuselevel' or 'eeprom'), usb_instance (the device probed) and disrupted (True
    when an EEPROM probe rebooted a device another run was RCM-booting)."""
    return read_records(lab_state, 'probes.log')


def host_events(lab_state):
    """Every call of the fake host programs, oldest first: dicts with time, program
    ('exportfs', 'service', 'udevadm'), pid and argv (list)."""
    return read_records(lab_state, 'host-events.log')


def exports(host_root):
    """The runtime export table: a list of dicts with dir, client and options (a string)."""
    return _parse_table(os.path.join(host_root, 'var', 'lib', 'nfs', 'etab'))


def gadget_interfaces(host_root):
    """The flashing initrds' network interfaces on the station, in ``ls /sys/class/net`` order:
    dicts with name, configuration (``RNDIS+L4T<instance>``), port (the USB port of the device
    behind it), serial and addresses (list)."""
    net = os.path.join(host_root, 'sys', 'class', 'net')
    found = []
    for name in sorted(os.listdir(net)) if os.path.isdir(net) else ():
        directory = os.path.join(net, name)
        link = os.path.join(directory, 'device')
        port = None
        if os.path.islink(link):
            port = os.path.basename(os.readlink(link)).rsplit(':', 1)[0]
        found.append({'name': name, 'configuration': _read(directory, 'configuration'), 'port': port,
                      'serial': _read(directory, 'serial'),
                      'addresses': _read(directory, 'lab_addresses').split()})
    return found


def udev_rules(host_root):
    """The names in the station's etc/udev/rules.d, sorted."""
    return sorted(os.listdir(os.path.join(host_root, 'etc', 'udev', 'rules.d')))


def power_cycle_into_recovery(lab_state, host_root, usb_sysfs_root, port, product=None):
    """What the operator does to a device left in the flashing initrd (or anywhere else): hold
    recovery and power-cycle it. Its gadget interfaces go away and it re-enumerates on ``port``
    in recovery mode with ``product`` (default: the product it had in recovery before the lab's
    tools booted it, else 7523). It is the same chip: it keeps its identity (ECID, chip SKU;
    see ``chip_identity``), which the lab keeps in ``lab_state/chip/<port>/``."""
    ecid, chip_sku = chip_identity(lab_state, usb_sysfs_root, port)
    for interface in gadget_interfaces(host_root):
        if interface['port'] == port:
            shutil.rmtree(os.path.join(host_root, 'sys', 'class', 'net', interface['name']), ignore_errors=True)
    if product is None:
        product = _read(os.path.join(lab_state, 'recovery-product'), port) or '7523'
    for kind in ('busy', 'disrupted'):
        try:
            os.remove(os.path.join(lab_state, kind, port))
        except FileNotFoundError:
            pass
    ecid = usb_sysfs.add_device(usb_sysfs_root, port, product, ecid=ecid, chip_sku=chip_sku)
    chip_sku = usb_sysfs.chip_identity(usb_sysfs_root, port)[1]
    kept = os.path.join(lab_state, 'chip', port)
    for name, value in ((usb_sysfs.ECID_ATTRIBUTE, ecid), (usb_sysfs.CHIP_SKU_ATTRIBUTE, chip_sku or '')):
        _write(os.path.join(kept, name), value + '\n')


def chip_identity(lab_state, usb_sysfs_root, port):
    """The chip identity ``(ecid, chip_sku)`` of the device on ``port`` (ECID: 32 hex digits,
    no 0x): from its sysfs entry while it is on the bus, else the copy the lab's tools kept in
    ``lab_state/chip/<port>/`` when they last saw it (lab_chip_identity in lab_common.sh), else
    ``(None, None)``."""
    ecid, chip_sku = usb_sysfs.chip_identity(usb_sysfs_root, port)
    if ecid is None:
        kept = os.path.join(lab_state, 'chip', port)
        ecid = _read(kept, usb_sysfs.ECID_ATTRIBUTE) or None
        chip_sku = _read(kept, usb_sysfs.CHIP_SKU_ATTRIBUTE) or None
    return ecid, chip_sku


# -- internals ------------------------------------------------------------------------------------

def _parse_table(path):
    entries = []
    try:
        with open(path) as table:
            lines = table.read().splitlines()
    except FileNotFoundError:
        return entries
    for line in lines:
        directory, _space, spec = line.partition(' ')
        client, _paren, options = spec.partition('(')
        if directory and client:
            entries.append({'dir': directory, 'client': client, 'options': options.rstrip(')')})
    return entries


def read_records(lab_state, name):
    """The JSON lines of a log in the lab state; a line torn by a killed process is skipped, not
    fatal. Every lab log is read with it."""
    try:
        with open(os.path.join(lab_state, name), encoding='utf-8', errors='replace') as log:
            lines = log.read().splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def _read(directory, name):
    try:
        with open(os.path.join(directory, name)) as attribute:
            return attribute.read().strip()
    except (FileNotFoundError, NotADirectoryError):
        return ''


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write(text)


def station_is_clean(host_root, workdir):
    """Nothing of a flash is left on the station (``host_root``, the collection's ``workdir``):
    exports, gadget interfaces, held slots, NVIDIA's udev rule names, massflash packages."""
    assert exports(host_root) == []
    assert os.listdir(os.path.join(host_root, 'etc', 'exports.d')) == []
    assert gadget_interfaces(host_root) == []
    assert udev_rules(host_root) == ['10-azaion-jetson-l4t-usb-msd.rules', '99-azaion-jetson-l4t-host.rules']
    assert glob.glob(os.path.join(workdir, 'ports', '*', 'Linux_for_Tegra', 'mfi_*')) == []
    assert glob.glob(os.path.join(workdir, 'images', '*', 'Linux_for_Tegra', 'mfi_*')) == []
    for lock in glob.glob(os.path.join(workdir, 'flash-slots', '*.lock')):
        with open(lock) as slot:
            fcntl.flock(slot, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises when a slot is still held
    return True
