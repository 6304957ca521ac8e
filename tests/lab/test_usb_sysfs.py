"""The fake USB sysfs tree looks like the real one to the recovery-mode scan."""

import os

import pytest

from lab.usb_sysfs import (RECOVERY_PRODUCTS, add_device, make_usb_sysfs, recovery_devices,
                           remove_device)


def _read(root, name, attribute):
    with open(os.path.join(str(root), name, attribute)) as value:
        return value.read().strip()


def test_recovery_products_are_the_six_orin_modules():
    assert sorted(RECOVERY_PRODUCTS) == ['7023', '7223', '7323', '7423', '7523', '7623']
    assert RECOVERY_PRODUCTS['7523'] == 'Jetson Orin Nano 8GB'


def test_scan_finds_only_jetsons_in_recovery_with_hub_ports(tmp_path):
    root = make_usb_sysfs(tmp_path / 'devices', {'1-3': '7523', '1-8.4': '7323', '2-1': '7035',
                                                 '2-2': '7023'})
    assert recovery_devices(root) == {'1-3': '7523', '1-8.4': '7323', '2-2': '7023'}
    # Everything the scan has to skip is really there.
    names = set(os.listdir(root))
    assert {'usb1', 'usb2', '1-3:1.0', '1-8', '2-1'} <= names
    assert _read(root, 'usb1', 'idVendor') == '1d6b'
    assert _read(root, '2-1', 'idProduct') == '7035'
    assert not os.path.exists(os.path.join(root, '1-3:1.0', 'idVendor'))
    keyboards = [name for name in names if os.path.exists(os.path.join(root, name, 'idVendor'))
                 and _read(root, name, 'idVendor') == '046d']
    assert len(keyboards) == 1 and _read(root, keyboards[0], 'idProduct') == 'c31c'
    assert (_read(root, '1-8.4', 'busnum'), _read(root, '1-8.4', 'devpath')) == ('1', '8.4')
    assert _read(root, '1-8.4', 'product') == 'APX'


def test_entries_are_symlinks_and_hub_devices_sit_inside_the_hub(tmp_path):
    root = make_usb_sysfs(tmp_path / 'devices', {'1-8.4': '7623'})
    assert all(os.path.islink(os.path.join(root, name))
               for name in os.listdir(root) if not name.startswith('.'))
    hub = os.path.realpath(os.path.join(root, '1-8'))
    assert os.path.realpath(os.path.join(root, '1-8.4')) == os.path.join(hub, '1-8.4')
    assert remove_device(root, '1-8') is True  # unplugging the hub unplugs the Jetson behind it
    assert recovery_devices(root) == {}
    assert not os.path.lexists(os.path.join(root, '1-8.4:1.0'))


def test_port_comes_from_busnum_and_devpath_not_the_directory_name(tmp_path):
    root = make_usb_sysfs(tmp_path / 'devices')
    odd = os.path.join(root, 'not-a-port')
    os.makedirs(odd)
    for attribute, value in (('idVendor', '0955'), ('idProduct', '7423'), ('busnum', '3'),
                             ('devpath', '2.1')):
        with open(os.path.join(odd, attribute), 'w') as attribute_file:
            attribute_file.write(value + '\n')
    assert recovery_devices(root) == {'3-2.1': '7423'}


def test_foreign_vendor_with_a_recovery_product_id_is_ignored(tmp_path):
    root = make_usb_sysfs(tmp_path / 'devices')
    add_device(root, '1-5', product='7523', vendor='046d')
    add_device(root, '1-6', product='7223')
    assert recovery_devices(root) == {'1-6': '7223'}


def test_reenumeration_replaces_the_device_and_unplug_removes_it(tmp_path):
    root = make_usb_sysfs(tmp_path / 'devices', {'1-3': '7523'})
    add_device(root, '1-3', product='7035')  # the initrd flasher booted on it
    assert recovery_devices(root) == {}
    add_device(root, '1-3')  # power-cycled back into recovery
    assert recovery_devices(root) == {'1-3': '7523'}
    assert remove_device(root, '1-3') is True
    assert recovery_devices(root) == {}
    assert not os.path.lexists(os.path.join(root, '1-3:1.0'))
    assert remove_device(root, '1-3') is False


@pytest.mark.parametrize('port', ['usb1', '1-', '1-8..4', 'x-3', '1-3:1.0'])
def test_bad_ports_are_refused(tmp_path, port):
    root = make_usb_sysfs(tmp_path / 'devices')
    with pytest.raises(ValueError, match='busnum'):
        add_device(root, port)
