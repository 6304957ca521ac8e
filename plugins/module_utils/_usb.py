# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""The Jetsons on a station's USB bus, and what each module is.

Finding Jetsons in recovery mode from sysfs (the port path NVIDIA's ``--usb-instance`` takes),
and the facts per module: its recovery-mode USB product id, the board config that flashes it and
the board identity that keeps NVIDIA's image generation from probing the bus.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import threading
import time


NVIDIA_VENDOR = '0955'
# idProduct of an Orin in recovery mode (RCM) -> board name used by this collection.
RECOVERY_PRODUCTS = {
    '7523': 'orin-nano-8gb',
    '7623': 'orin-nano-4gb',
    '7323': 'orin-nx-16gb',
    '7423': 'orin-nx-8gb',
    '7023': 'agx-orin-64gb',
    '7223': 'agx-orin-32gb',
}
# Board name -> the Linux_for_Tegra board config (``<name>.conf``) that flashes it. Orin NX
# modules use the Orin Nano devkit carrier config in L4T r36.
BOARD_CONFIGS = {
    'orin-nano-8gb': 'jetson-orin-nano-devkit',
    'orin-nano-4gb': 'jetson-orin-nano-devkit',
    'orin-nx-16gb': 'jetson-orin-nano-devkit',
    'orin-nx-8gb': 'jetson-orin-nano-devkit',
    'agx-orin-64gb': 'jetson-agx-orin-devkit',
    'agx-orin-32gb': 'jetson-agx-orin-devkit',
}

# Board name -> what NVIDIA's flash.sh would otherwise read from the module's EEPROM and fuses.
# Given in the environment of image generation, they keep flash.sh from probing (and rebooting)
# the first Jetson in recovery mode on the station, whichever port it is on: FAB stops the EEPROM
# read, FUSELEVEL the fuse-level read, and BOARDSKU picks the SDRAM configuration in
# p3767.conf.common, so it must be right for the module (docs/l4t-parallel-flash.md). BOARDREV
# and FAB are those of the production modules; check the module label on the floor.
BOARD_IDENTITY = {
    'orin-nx-16gb': {'BOARDID': '3767', 'FAB': '300', 'BOARDSKU': '0000', 'BOARDREV': 'A.0'},
    'orin-nx-8gb': {'BOARDID': '3767', 'FAB': '300', 'BOARDSKU': '0001', 'BOARDREV': 'A.0'},
    'orin-nano-8gb': {'BOARDID': '3767', 'FAB': '300', 'BOARDSKU': '0003', 'BOARDREV': 'A.0'},
    'orin-nano-4gb': {'BOARDID': '3767', 'FAB': '300', 'BOARDSKU': '0004', 'BOARDREV': 'A.0'},
    'agx-orin-64gb': {'BOARDID': '3701', 'FAB': '300', 'BOARDSKU': '0005', 'BOARDREV': 'A.0'},
    'agx-orin-32gb': {'BOARDID': '3701', 'FAB': '300', 'BOARDSKU': '0004', 'BOARDREV': 'A.0'},
}
BOARD_IDENTITY_KEYS = ('BOARDID', 'FAB', 'BOARDSKU', 'BOARDREV', 'FUSELEVEL')
DEFAULT_FUSELEVEL = 'fuselevel_production'

USB_PORT_PATTERN = re.compile(r'^[1-9][0-9]*-[1-9][0-9]*(\.[1-9][0-9]*)*$')


def _read_attribute(directory, name):
    with open(os.path.join(directory, name)) as attribute:
        return attribute.read().strip()


def _port_sort_key(port):
    bus, _sep, path = port.partition('-')
    try:
        return (int(bus), [int(part) for part in path.split('.')])
    except ValueError:
        return (0, [])


# The last scan of each sysfs root, shared by callers that ask while it runs: a hundred flashes
# of a station run that each look for their own device wait for one scan instead of each
# reading every device's attributes. A scan that ended before a caller asked is never used.
_SCANS = {}
_SCANS_LOCK = threading.Lock()


def recovery_devices(sysfs_root, shared=False):
    """Port -> idProduct of every Jetson in recovery mode under ``sysfs_root``; with ``shared``,
    the result of a scan that was running when the call came may be returned.

    ``sysfs_root`` is ``/sys/bus/usb/devices`` (or a fake tree in tests). Its entries are
    symbolic links into the device hierarchy: they are followed. The port is
    ``<busnum>-<devpath>`` read from the device's attributes (the form NVIDIA's
    ``--usb-instance`` takes), not the entry's name. Entries without ``idVendor`` (interfaces
    such as ``1-3:1.0``), other vendors, other products and unreadable entries are skipped. A
    missing ``sysfs_root`` gives an empty dict.
    """
    if not shared:
        return _scan(sysfs_root)
    asked = time.monotonic()
    with _SCANS_LOCK:  # held while scanning: who asks meanwhile waits for this scan
        ended, found = _SCANS.get(sysfs_root, (None, None))
        if ended is None or ended < asked:
            found = _scan(sysfs_root)
            _SCANS[sysfs_root] = (time.monotonic(), found)
        return dict(found)


def _scan(sysfs_root):
    found = {}
    try:
        names = os.listdir(sysfs_root)
    except (IOError, OSError):
        return found
    for name in names:
        entry = os.path.join(sysfs_root, name)
        if not os.path.isdir(entry):  # follows the symlink, as sysfs needs
            continue
        try:
            vendor = _read_attribute(entry, 'idVendor').lower()
            if vendor != NVIDIA_VENDOR:
                continue
            product = _read_attribute(entry, 'idProduct').lower()
            if product not in RECOVERY_PRODUCTS:
                continue
            port = '%d-%s' % (int(_read_attribute(entry, 'busnum')), _read_attribute(entry, 'devpath'))
        except (IOError, OSError, ValueError):
            continue
        found[port] = product
    return dict((port, found[port]) for port in sorted(found, key=_port_sort_key))
