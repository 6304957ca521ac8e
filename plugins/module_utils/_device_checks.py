# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""What only the station can tell about its devices' inputs, checked before anything is written.

The controller checks each variable's form (plugin_utils/_inputs.py); this checks what the
values point at on the station: real paths (symbolic links resolved), key files, fuse
configurations, and the Jetson in recovery mode on each device's USB port. Each problem names
the device, the variable and the fix, as ``<device>: <variable> ...; <fix>``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.azaion.jetson.plugins.module_utils._fuse import FuseError, key_problems, keys_needed, parse_fuse_config
from ansible_collections.azaion.jetson.plugins.module_utils._usb import (
    NVIDIA_VENDOR,
    RECOVERY_PRODUCTS,
    ambiguous_fix,
    board_of_product,
    describe_product,
    recovery_devices,
)
from ansible_collections.azaion.jetson.plugins.module_utils._workdir import STATION_TREES

RECOVERY_FIX = 'put the device in recovery mode (hold REC, power on) on that port, or fix jetson_usb_instance'


def inside(path, top):
    """Whether ``path`` is ``top`` or under it (both normalized absolute paths; never when one is empty)."""
    return bool(path) and bool(top) and (path == top or path.startswith(top.rstrip('/') + '/'))


def needs_recovery(device, pending):
    """Whether ``device``'s pending phases need it in recovery mode on its port."""
    return 'flash' in pending or ('fuse' in pending and device.get('fuse_enabled'))


def path_problems(devices, pending_phases, l4t_dir, workdir):
    """Staging rootfs and workdir where the run would write what it must not: the station's own
    root, the bundle, the station's own trees, or another device's rootfs (two paths that are
    one directory); and a staging rootfs that is not there when a phase will write into it."""
    problems = []
    bundle = os.path.realpath(l4t_dir) if l4t_dir else None
    if bundle and workdir and inside(os.path.realpath(workdir), bundle):
        problems.append('jetson_workdir %s is inside the bundle jetson_l4t_dir %s once symbolic links are resolved;'
                        ' set jetson_workdir outside the bundle, which is never to be written' % (workdir, l4t_dir))
    station_trees = [os.path.join(os.path.realpath(workdir), tree) for tree in STATION_TREES] if workdir else []
    by_rootfs = {}
    for device in devices:
        if not device.get('own_rootfs'):
            continue  # the port tree's own rootfs: its path is the port's, made by the run
        name, own = device['name'], device['own_rootfs']
        real = os.path.realpath(own)
        if real == '/':
            problems.append("%s: jetson_rootfs_dir %s is the station's own root once symbolic links are resolved; set"
                            " it to the device's staging rootfs" % (name, own))
        elif bundle and inside(real, bundle):
            problems.append('%s: jetson_rootfs_dir %s is inside the bundle jetson_l4t_dir %s once symbolic links are'
                            ' resolved; set it to a rootfs outside the bundle' % (name, own, l4t_dir))
        elif any(inside(real, tree) for tree in station_trees):
            problems.append("%s: jetson_rootfs_dir %s is inside the station's own trees under jetson_workdir once"
                            ' symbolic links are resolved; set it to a rootfs outside them' % (name, own))
        elif set(pending_phases.get(name, ())) & set(('identity', 'flash')) and not os.path.isdir(real):
            problems.append("%s: jetson_rootfs_dir %s is not a directory on the station; make the device's staging"
                            ' rootfs there (or fix jetson_rootfs_dir) before its identity and flash' % (name, own))
        by_rootfs.setdefault(real, []).append(device)
    for real, sharing in sorted(by_rootfs.items()):
        if len(sharing) > 1:
            problems.append('%s: jetson_rootfs_dir %s are one directory (%s) once symbolic links are resolved, so one'
                            " device.conf would overwrite the other; give each device a staging rootfs of its own"
                            % (', '.join(device['name'] for device in sharing),
                               ' and '.join(device['own_rootfs'] for device in sharing), real))
    return problems


def file_problems(devices, pending_phases, l4t_dir=None):
    """Key files and fuse configurations the devices' pending phases will use; a fuse
    configuration is checked against the keys with the tools of the bundle in ``l4t_dir``."""
    problems = []
    # The devices of a batch mostly share one configuration and one set of keys: each pair is
    # checked once (key_problems runs the bundle's tegrasign_v3.py and ssh-keygen).
    checked = {}
    for device in devices:
        name, pending = device['name'], pending_phases.get(device['name'], ())
        fusing = 'fuse' in pending and device.get('fuse_enabled')
        unreadable = False
        if fusing or 'flash' in pending:
            for variable, key in (('jetson_pkc_key', 'pkc_key'), ('jetson_sbk_key', 'sbk_key'),
                                  ('jetson_ekb_file', 'ekb_file')):
                path = device.get(key)
                if path and not (os.path.isfile(path) and os.access(path, os.R_OK)):
                    unreadable = True
                    problems.append('%s: %s %s is not a readable file on the station; put the file there or fix'
                                    ' %s' % (name, variable, path, variable))
        if not fusing:
            continue
        try:
            fuses = parse_fuse_config(device.get('fuse_config') or '')
        except FuseError as exc:
            problems.append('%s: jetson_fuse_config: %s; fix the file or set jetson_fuse_config to a valid NVIDIA'
                            ' fuse XML on the station' % (name, exc))
            continue
        missing = False
        for fuse, key in keys_needed(fuses):
            if not device.get(key):
                missing = True
                problems.append('%s: jetson_fuse_config burns %s, after which the device answers only tools given its'
                                ' key; set jetson_%s to the key file' % (name, fuse, key))
        if l4t_dir and not (missing or unreadable):  # a key already refused is not looked into
            files = (device['fuse_config'], device.get('pkc_key'), device.get('sbk_key'), device.get('ekb_file'))
            if files not in checked:
                checked[files] = key_problems(fuses, l4t_dir, *files[1:])
            problems.extend('%s: jetson_fuse_config %s: %s' % (name, device['fuse_config'], problem)
                            for problem in checked[files])
    return problems


def usb_problems(devices, pending_phases, usb_sysfs_root):
    """Devices whose pending phases need them in recovery mode, and that are not there, are
    another board than the inventory says, or are a module whose USB id names several boards
    (0955:7023) with no jetson_board to say which (docs/l4t-board-identity.md)."""
    waiting = [device for device in devices if needs_recovery(device, pending_phases.get(device['name'], ()))]
    if not waiting:
        return []
    if not os.path.isdir(usb_sysfs_root):
        return ['jetson_usb_sysfs_root %s is not a directory on the station; set it to /sys/bus/usb/devices (or leave'
                ' it unset)' % usb_sysfs_root]
    found = recovery_devices(usb_sysfs_root)
    problems = []
    for device in waiting:
        name, port = device['name'], device.get('usb_instance')
        if port not in found:
            problems.append('%s: no Jetson is in recovery mode on USB port %s (jetson_usb_instance); %s'
                            % (name, port, RECOVERY_FIX))
            continue
        product = found[port]
        boards = RECOVERY_PRODUCTS.get(product, ())
        if device.get('board') and boards and device['board'] not in boards:
            problems.append('%s: jetson_board is %s, but the Jetson in recovery mode on USB port %s is %s (USB'
                            ' product %s:%s); fix jetson_board, or check that the cable on %s is this device\'s'
                            % (name, device['board'], port, describe_product(product), NVIDIA_VENDOR, product, port))
        elif not device.get('board') and board_of_product(product, device.get('board_identity')) is None:
            problems.append('%s: jetson_board is not set, and the Jetson in recovery mode on USB port %s is %s (USB'
                            ' product %s:%s), whose USB id does not tell which module it is: each needs its own'
                            ' board config and board identity; %s'
                            % (name, port, describe_product(product), NVIDIA_VENDOR, product, ambiguous_fix(product)))
    return problems
