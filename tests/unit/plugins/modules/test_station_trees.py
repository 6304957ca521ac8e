# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""azaion.jetson.station_trees: the port trees of a station's devices, made in one run from the
lab's fake Linux_for_Tegra bundle, with the device contexts the playbook makes."""

import json
import os

import pytest

from lab import l4t_bundle
from lab.usb_sysfs import make_usb_sysfs

from ansible_collections.azaion.jetson.plugins.modules.station_trees import main
from ansible_collections.azaion.jetson.plugins.plugin_utils._context import device_context

CONF = 'AZAION_DEVICE_EMAIL=azaion-jetson-0042@azaion.com\nAZAION_DEVICE_PASSWORD=0123456789abcdef0123456789abcdef\n'


@pytest.fixture
def staging(tmp_path):
    """The station's staging tree (here the lab bundle itself)."""
    sysfs = make_usb_sysfs(str(tmp_path / 'sysfs'), {'1-3': '7523'})
    return l4t_bundle.make_bundle(str(tmp_path / 'staging'), str(tmp_path / 'lab-state'), sysfs)


@pytest.fixture
def workdir(tmp_path):
    return str(tmp_path / 'station')


def context(workdir, name, port=None):
    device_vars = dict(jetson_workdir=workdir)
    if port:
        device_vars['jetson_usb_instance'] = port
    found = device_context(name, device_vars)
    assert not found['problems'], found['problems']
    return found


def run(module_runner, devices, src, check_mode=False, **args):
    args.update(devices=devices, src=src, parallel=2)
    return module_runner(main, args, check_mode=check_mode)


def phase(device):
    with open(device['state_file']) as handle:
        return json.load(handle)['phases']['rootfs']


def snapshot(directory):
    found = {}
    for root, dummy, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            st = os.lstat(path)
            found[path] = (st.st_ino, st.st_mtime_ns)
    return found


def test_each_port_gets_its_tree_and_a_device_without_port_fails_alone(module_runner, staging, workdir):
    devices = [context(workdir, 'AZJN-0041', '1-1'), context(workdir, 'AZJN-0042', '1-2'),
               context(workdir, 'AZJN-0043'), context(workdir, 'AZJN-0044', '1-4')]
    result = run(module_runner, devices, staging)
    assert not result.get('failed'), result['msg']
    assert result['failed_devices'] == ['AZJN-0043']
    assert result['changed'] is True
    assert result['msg'] == 'rootfs: 4 device(s), 3 changed, 1 failed (AZJN-0043)'

    lonely = result['devices']['AZJN-0043']
    assert lonely['failed'] and lonely['msg'].startswith('AZJN-0043: ') and 'jetson_usb_instance' in lonely['msg']
    assert phase(devices[2])['status'] == 'failed' and 'jetson_usb_instance' in phase(devices[2])['error']
    for device in devices[:2] + devices[3:]:
        outcome = result['devices'][device['name']]
        assert outcome['changed'] and not outcome['rebuilt'] and outcome['dest'] == device['port_tree']
        tree = device['port_tree']
        # Shared through hard links, except where the tools write in place.
        assert os.stat(os.path.join(tree, 'flash.sh')).st_ino == os.stat(os.path.join(staging, 'flash.sh')).st_ino
        image = os.path.join('bootloader', 'system.img')
        assert os.stat(os.path.join(tree, image)).st_ino != os.stat(os.path.join(staging, image)).st_ino
        assert phase(device)['status'] == 'done' and phase(device)['error'] is None
    assert sorted(os.listdir(os.path.join(workdir, 'ports'))) == ['1-1', '1-2', '1-4']

    trees = snapshot(os.path.join(workdir, 'ports'))
    states = dict((device['name'], open(device['state_file']).read()) for device in devices)
    again = run(module_runner, devices, staging)
    assert again['failed_devices'] == ['AZJN-0043'] and again['changed'] is False
    assert all('up to date' in again['devices'][device['name']]['msg'] for device in devices if device['port_tree'])
    assert snapshot(os.path.join(workdir, 'ports')) == trees
    for device in devices[:2] + devices[3:]:
        assert open(device['state_file']).read() == states[device['name']]  # done before, nothing changed


def test_a_changed_staging_tree_rebuilds_every_port_tree_and_keeps_each_device_conf(module_runner, staging, workdir):
    devices = [context(workdir, 'AZJN-0041', '1-1'), context(workdir, 'AZJN-0042', '1-2')]
    run(module_runner, devices, staging)
    for device in devices:
        os.makedirs(os.path.dirname(device['device_conf']))
        with open(device['device_conf'], 'w') as handle:
            handle.write(CONF.replace('0042', device['serial'][-4:]))
    with open(os.path.join(staging, '.azaion-staging.json'), 'w') as handle:
        handle.write('{"staged": 2}')

    result = run(module_runner, devices, staging, private_paths=['bootloader', 'tools/kernel_flash', 'rootfs'])
    for device in devices:
        outcome = result['devices'][device['name']]
        assert outcome['changed'] and outcome['rebuilt'], outcome['msg']
        with open(device['device_conf']) as handle:
            assert device['serial'][-4:] in handle.read()
        assert phase(device)['status'] == 'done'


def test_devices_on_one_port_fail_instead_of_sharing_a_tree(module_runner, staging, workdir):
    devices = [context(workdir, 'AZJN-0041', '1-1'), context(workdir, 'AZJN-0042', '1-1'),
               context(workdir, 'AZJN-0043', '1-3')]
    result = run(module_runner, devices, staging)
    assert result['failed_devices'] == ['AZJN-0041', 'AZJN-0042']
    assert 'AZJN-0041, AZJN-0042' in result['devices']['AZJN-0042']['msg']
    assert not os.path.exists(os.path.join(workdir, 'ports', '1-1'))
    assert result['devices']['AZJN-0043']['changed']


def test_check_mode_writes_nothing(module_runner, staging, workdir):
    devices = [context(workdir, 'AZJN-0041', '1-1'), context(workdir, 'AZJN-0042', '1-2')]
    predicted = run(module_runner, devices, staging, check_mode=True)
    assert predicted['changed'] and predicted['failed_devices'] == []
    assert all('would build' in predicted['devices'][device['name']]['msg'] for device in devices)
    assert not os.path.exists(workdir)

    # Neither does a check run before the staging tree exists (the task that makes it did not run).
    missing = run(module_runner, devices, os.path.join(os.path.dirname(staging), 'not-yet'), check_mode=True)
    assert missing['changed'] and missing['failed_devices'] == []
    assert not os.path.exists(workdir)
