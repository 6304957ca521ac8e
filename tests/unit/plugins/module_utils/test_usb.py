# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The station's view of the USB bus (module_utils/_usb.py): the published constants and the
recovery-mode scan, against the lab's fake USB sysfs."""

import os
import threading

from lab import l4t_bundle, labkit
from lab.usb_sysfs import add_device, make_usb_sysfs

from ansible_collections.azaion.jetson.plugins.module_utils._usb import (
    BOARD_CONFIGS,
    NVIDIA_VENDOR,
    RECOVERY_PRODUCTS,
    recovery_devices,
)

NANO = BOARD_CONFIGS['orin-nano-8gb']


def test_constants_are_the_published_api():
    assert NVIDIA_VENDOR == '0955'
    # 0955:7023 is "AGX Orin" in NVIDIA's table: three modules (docs/l4t-board-identity.md).
    assert RECOVERY_PRODUCTS == {'7523': ('orin-nano-8gb',), '7623': ('orin-nano-4gb',), '7323': ('orin-nx-16gb',),
                                 '7423': ('orin-nx-8gb',), '7223': ('agx-orin-32gb',),
                                 '7023': ('agx-orin-32gb', 'agx-orin-64gb', 'agx-orin-industrial')}
    assert set(BOARD_CONFIGS) == set(board for boards in RECOVERY_PRODUCTS.values() for board in boards)
    assert BOARD_CONFIGS['orin-nx-16gb'] == NANO and BOARD_CONFIGS['agx-orin-32gb'] == 'jetson-agx-orin-devkit'
    assert BOARD_CONFIGS['agx-orin-industrial'] == 'jetson-agx-orin-devkit-industrial'
    # The lab's board configs support exactly these modules, as NVIDIA's do.
    for product, boards in RECOVERY_PRODUCTS.items():
        for board in boards:
            assert product in l4t_bundle.BOARD_MODULES[BOARD_CONFIGS[board]]


def test_a_shared_recovery_scan_is_one_scan_for_concurrent_callers_and_never_older_than_the_call(tmp_path):
    root = make_usb_sysfs(str(tmp_path / 'devices'), dict(('1-%d' % port, '7523') for port in range(1, 41)))
    results = []
    callers = [threading.Thread(target=lambda: results.append(recovery_devices(root, shared=True))) for _caller in range(20)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(results) == 20 and all(result == recovery_devices(root) for result in results)
    # A device plugged after the last scan ended is seen by the next call.
    add_device(root, '2-1', '7323')
    assert recovery_devices(root, shared=True)['2-1'] == '7323'


def test_recovery_scan_follows_symlinks_and_reads_the_port_from_busnum_and_devpath(tmp_path):
    root = make_usb_sysfs(str(tmp_path / 'devices'), {'1-3': '7523', '1-8.4': '7323', '2-1': '7035',
                                                      '2-2': '7023'})
    add_device(root, '1-5', '7523', vendor='1234')  # a foreign device with a recovery product id
    assert os.path.islink(os.path.join(root, '1-8.4'))  # what the scan must follow
    assert os.path.lexists(os.path.join(root, '1-3:1.0'))  # an interface: no idVendor
    assert recovery_devices(root) == {'1-3': '7523', '1-8.4': '7323', '2-2': '7023'}
    assert list(recovery_devices(root)) == ['1-3', '1-8.4', '2-2']

    # The name of the entry does not matter, busnum and devpath do.
    odd = os.path.join(root, 'not-a-port')
    for name, value in (('idVendor', '0955'), ('idProduct', '7423'), ('busnum', '3'), ('devpath', '2.1')):
        labkit.write_file(os.path.join(odd, name), value + '\n')
    assert recovery_devices(root)['3-2.1'] == '7423'


def test_recovery_scan_of_a_missing_root_is_empty(tmp_path):
    assert recovery_devices(str(tmp_path / 'nothing')) == {}
