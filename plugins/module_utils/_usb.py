# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""The Jetsons on a station's USB bus, and what each module is.

Finding Jetsons in recovery mode from sysfs (the port path NVIDIA's ``--usb-instance`` takes),
and the facts per module (:data:`BOARD_TABLE`, docs/l4t-board-identity.md): its recovery-mode USB
product ids, the board config that flashes it, and the board identity that keeps NVIDIA's image
generation from probing the bus and builds the images for the module's chip (CHIP_SKU).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import threading
import time


NVIDIA_VENDOR = '0955'


class Board(object):
    """One module this collection flashes: one row of :data:`BOARD_TABLE`."""

    __slots__ = ('name', 'products', 'config', 'boardid', 'boardsku', 'fab', 'boardrev', 'chip_sku',
                 'bpmp_firmware')

    def __init__(self, name, products, config, boardid, boardsku, fab, boardrev, chip_sku, bpmp_firmware):
        self.name, self.products, self.config = name, products, config
        self.boardid, self.boardsku, self.fab, self.boardrev = boardid, boardsku, fab, boardrev
        self.chip_sku, self.bpmp_firmware = chip_sku, bpmp_firmware

    def identity(self):
        """What NVIDIA's flash.sh would otherwise read from the module, for image generation's
        environment; a BOARDREV that NVIDIA's table leaves empty is not set at all."""
        identity = {'BOARDID': self.boardid, 'FAB': self.fab, 'BOARDSKU': self.boardsku, 'CHIP_SKU': self.chip_sku}
        if self.boardrev:
            identity['BOARDREV'] = self.boardrev
        return identity


# THE board table, the one place these facts live: every name below is derived from it. Where each
# value comes from in NVIDIA's r36.2 files, why CHIP_SKU matters and what to confirm on real
# hardware: docs/l4t-board-identity.md.
#
# * USB ids: the module's idProduct in recovery mode (the table of l4t_initrd_flash.sh's
#   fill_devpaths). 0955:7023 is "AGX Orin": the 32GB (p3701-0000), the 64GB and the Industrial
#   answer with it, so it names no single board (board_of_product); 7223 is the AGX Orin 32GB.
# * Board config: the Linux_for_Tegra <config>.conf that flashes it (Orin NX modules use the Orin
#   Nano devkit carrier config in L4T r36).
# * BOARDID, BOARDSKU, FAB, BOARDREV: NVIDIA's environment variable table at the end of
#   tools/kernel_flash/README_initrd_flash.txt (None: the table leaves BOARDREV empty, and it is
#   not set). The AGX Orin Industrial has no row there: its values are what the p3701 configs
#   imply (see the doc). In the environment of image generation, FAB keeps flash.sh from reading
#   the EEPROM of the first Jetson in recovery mode on the station, and BOARDSKU picks the
#   module's SDRAM configuration.
# * CHIP_SKU: what flash.sh reads from the chip (chkbdinfo -C). Generation sets FUSELEVEL, which
#   skips that read: without CHIP_SKU the board config's DEFAULT_CHIP_SKU picks the BPMP firmware
#   (the Orin NX's for every p3767 module), and an Orin Nano does not boot with it. The three AGX
#   values are to be confirmed with chkbdinfo -C.
# * BPMP firmware: what process_chip_sku_version of p3767.conf.common / p3701.conf.common picks
#   for that CHIP_SKU (bootloader/bpmp_t234-<firmware>_prod.bin).
BOARD_TABLE = (
    #     name                   USB ids         board config
    #     BOARDID BOARDSKU FAB  BOARDREV CHIP_SKU      BPMP firmware
    Board('orin-nx-16gb', ('7323',), 'jetson-orin-nano-devkit',
          '3767', '0000', '300', None, '00:00:00:D3', 'TE980M-A1'),
    Board('orin-nx-8gb', ('7423',), 'jetson-orin-nano-devkit',
          '3767', '0001', '300', None, '00:00:00:D4', 'TE980M-A1'),
    Board('orin-nano-8gb', ('7523',), 'jetson-orin-nano-devkit',
          '3767', '0003', '300', None, '00:00:00:D5', 'TE950M-A1'),
    Board('orin-nano-4gb', ('7623',), 'jetson-orin-nano-devkit',
          '3767', '0004', '300', None, '00:00:00:D6', 'TE950M-A1'),
    Board('agx-orin-32gb', ('7223', '7023'), 'jetson-agx-orin-devkit',
          '3701', '0004', 'TS4', 'A.0', '00:00:00:D2', 'TE990M-A1'),
    Board('agx-orin-64gb', ('7023',), 'jetson-agx-orin-devkit',
          '3701', '0005', '500', None, '00:00:00:D0', 'TE990M-A1'),
    Board('agx-orin-industrial', ('7023',), 'jetson-agx-orin-devkit-industrial',
          '3701', '0008', '500', None, '00:00:00:90', 'TE992M-A1'),
)

BOARDS = dict((board.name, board) for board in BOARD_TABLE)
# idProduct of an Orin in recovery mode (RCM) -> the boards that answer with it, in table order.
RECOVERY_PRODUCTS = {}
for _board in BOARD_TABLE:
    for _product in _board.products:
        RECOVERY_PRODUCTS[_product] = RECOVERY_PRODUCTS.get(_product, ()) + (_board.name,)
# Board name -> the Linux_for_Tegra board config (``<name>.conf``) that flashes it.
BOARD_CONFIGS = dict((board.name, board.config) for board in BOARD_TABLE)
# Board name -> the board identity image generation gets in its environment (with FUSELEVEL).
BOARD_IDENTITY = dict((board.name, board.identity()) for board in BOARD_TABLE)
BOARD_IDENTITY_KEYS = ('BOARDID', 'FAB', 'BOARDSKU', 'BOARDREV', 'CHIP_SKU', 'FUSELEVEL')
# The keys of a board identity that tell the boards of one USB id apart.
NAMING_KEYS = ('BOARDID', 'BOARDSKU')
DEFAULT_FUSELEVEL = 'fuselevel_production'
# How NVIDIA writes a chip SKU (chkbdinfo -C, DEFAULT_CHIP_SKU): its last field picks the firmware.
CHIP_SKU_PATTERN = re.compile(r'^[0-9A-F]{2}:[0-9A-F]{2}:[0-9A-F]{2}:[0-9A-F]{2}$')


def board_of_product(product, identity=None):
    """The one board the module on ``product`` is, or None when the USB id does not tell.

    ``identity`` (a board identity override) naming BOARDID and/or BOARDSKU picks among the
    boards of one USB id (0955:7023 is three modules) when it matches exactly one of them.
    """
    names = RECOVERY_PRODUCTS.get(product, ())
    given = dict((key, str(value)) for key, value in (identity or {}).items() if key in NAMING_KEYS)
    if len(names) > 1 and given:
        names = tuple(name for name in names
                      if all(BOARD_IDENTITY[name].get(key) == value for key, value in given.items()))
    return names[0] if len(names) == 1 else None


def describe_product(product):
    """What a USB id says the module is, for messages, with its article: a board, or the boards
    it may be (every board name starts with a vowel)."""
    names = RECOVERY_PRODUCTS.get(product, ())
    if len(names) > 1:
        return 'an %s (%s or %s)' % (_family(names), ', '.join(names[:-1]), names[-1])
    return 'an %s' % names[0] if names else 'an unknown module'


def ambiguous_fix(product, variable='jetson_board'):
    """The fix for a module whose USB id names several boards."""
    names = RECOVERY_PRODUCTS.get(product, ())
    return 'set %s to %s or %s, whichever module it is (the module label, or see docs/l4t-board-identity.md)' % (
        variable, ', '.join(names[:-1]), names[-1])


def _family(names):
    return 'AGX Orin' if all(name.startswith('agx-orin') for name in names) else 'Orin'


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
