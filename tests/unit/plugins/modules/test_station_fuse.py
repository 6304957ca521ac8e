# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""azaion.jetson.station_fuse: a station's devices fused (or skipped) in one run, against the lab's
fake L4T bundle (odmfuse.sh / odmfuseread.sh record what they really burned, on which port) and
its fake USB bus, with the device contexts the playbook makes."""

import json
import os

import pytest

from lab import l4t_bundle as l4t
from lab.usb_sysfs import add_device, make_usb_sysfs

from ansible_collections.azaion.jetson.plugins.module_utils._workspace import clone_tree
from ansible_collections.azaion.jetson.plugins.modules.station_fuse import main
from ansible_collections.azaion.jetson.plugins.plugin_utils._context import device_context

NANO = 'jetson-orin-nano-devkit'
FUSES = {'PublicKeyHash': '0x' + '5a' * 32, 'SecurityMode': '0x1'}
PRIVATE = ['bootloader', 'tools/kernel_flash', 'rootfs/boot']


class StationLab(object):
    """A station: the fake bundle, a USB bus with one Orin Nano in recovery mode on 1-3, keys, a
    workdir whose port trees are made from the bundle when a device asks for one."""

    def __init__(self, root, recovery=None):
        self.root = str(root)
        self.sysfs = make_usb_sysfs(os.path.join(self.root, 'sysfs'), {'1-3': '7523'} if recovery is None else recovery)
        self.state = os.path.join(self.root, 'lab-state')
        self.bundle = l4t.make_bundle(os.path.join(self.root, 'bundle'), self.state, self.sysfs)
        self.keys = os.path.join(self.root, 'keys')
        os.makedirs(self.keys)
        self.pkc = os.path.join(self.keys, 'pkc.pem')
        with open(self.pkc, 'w') as key:
            key.write('-----BEGIN RSA PRIVATE KEY-----\nlab-pkc\n-----END RSA PRIVATE KEY-----\n')
        self.config = l4t.write_fuse_config(os.path.join(self.keys, 'fuse_config.xml'), FUSES)
        self.workdir = os.path.join(self.root, 'station')
        self.logs = os.path.join(self.workdir, 'logs')

    def device(self, serial, port, fuse=True, config=True, tree=True):
        device_vars = dict(jetson_workdir=self.workdir, jetson_usb_instance=port, jetson_fuse_enabled=fuse,
                           jetson_board='orin-nano-8gb', jetson_pkc_key=self.pkc)
        if config:
            device_vars['jetson_fuse_config'] = self.config
        found = device_context(serial, device_vars)
        assert not found['problems'], found['problems']
        if tree:
            clone_tree(self.bundle, found['port_tree'], PRIVATE)
        return found

    def calls(self):
        return [(call['tool'], call['argv'], call['tree']) for call in l4t.tool_calls(self.state)]


@pytest.fixture
def lab(tmp_path):
    return StationLab(tmp_path)


def run(module_runner, lab, devices, check_mode=False, **args):
    options = dict(devices=devices, usb_sysfs_root=lab.sysfs, log_dir=lab.logs, timeout=60)
    options.update(args)
    return module_runner(main, options, check_mode=check_mode)


def phase(device):
    with open(device['state_file']) as handle:
        return json.load(handle)['phases']['fuse']


def test_the_device_that_asks_is_fused_the_others_skipped_or_failed_alone(module_runner, lab):
    fused = lab.device('AZJN-0043', '1-3')
    unfused = lab.device('AZJN-0044', '1-4', fuse=False)
    no_config = lab.device('AZJN-0045', '1-5', config=False)
    devices = [fused, unfused, no_config]
    result = run(module_runner, lab, devices, parallel=8)
    assert not result.get('failed'), result['msg']
    assert result['failed_devices'] == ['AZJN-0045']
    assert result['msg'] == 'fuse: 3 device(s), 1 changed, 1 failed (AZJN-0045)'

    outcome = result['devices']['AZJN-0043']
    assert (outcome['changed'], outcome['fused'], outcome['dry_run_ok']) == (True, True, True), outcome['msg']
    assert l4t.burned_fuses(lab.state, '1-3') == FUSES
    # The device's own port tree, its board from jetson_board through board_configs, its key.
    tree = os.path.realpath(fused['port_tree'])
    common = ['-X', lab.config, '-i', '0x23', '-k', lab.pkc, NANO]
    assert lab.calls() == [('odmfuseread.sh', ['-i', '0x23', NANO], tree),
                           ('odmfuse.sh', ['--test'] + common, tree), ('odmfuse.sh', common, tree),
                           ('odmfuseread.sh', ['-i', '0x23', '-k', lab.pkc, NANO], tree)]
    assert phase(fused)['status'] == 'done' and phase(fused)['fused'] is True

    skipped = result['devices']['AZJN-0044']
    assert (skipped['changed'], skipped['skipped']) == (False, True)
    assert phase(unfused)['status'] == 'skipped'

    refused = result['devices']['AZJN-0045']
    assert refused['failed'] and refused['msg'].startswith('AZJN-0045: jetson_fuse_enabled is true')
    assert 'set jetson_fuse_config' in refused['msg'] and refused['msg'].endswith('Nothing was burned.')
    assert not os.path.exists(no_config['state_file'])

    calls = lab.calls()
    states = dict((device['name'], open(device['state_file']).read()) for device in devices[:2])
    again = run(module_runner, lab, devices)
    assert again['changed'] is False and again['failed_devices'] == ['AZJN-0045']
    assert again['devices']['AZJN-0043']['fused'] is True and 'never fused twice' in again['devices']['AZJN-0043']['msg']
    assert again['devices']['AZJN-0044']['skipped'] is True
    assert lab.calls() == calls  # nothing ran
    assert dict((device['name'], open(device['state_file']).read()) for device in devices[:2]) == states


def test_a_recorded_burn_is_kept_when_the_inventory_no_longer_asks_for_fusing(module_runner, lab):
    device = lab.device('AZJN-0043', '1-3')
    run(module_runner, lab, [device])
    recorded = phase(device)
    assert recorded['fused'] is True
    device['fuse_enabled'] = False
    result = run(module_runner, lab, [device])
    outcome = result['devices']['AZJN-0043']
    assert (outcome['changed'], outcome['skipped']) == (False, True) and 'is kept' in outcome['msg']
    assert phase(device) == recorded


def test_a_device_fused_elsewhere_with_other_values_fails_alone_and_nothing_is_burned(module_runner, lab):
    # Fused by another station for another product; no state file here.
    other = {'PublicKeyHash': '0x' + 'a5' * 32, 'SecurityMode': '0x1'}
    l4t.prefuse_device(lab.state, '1-3', other)
    refused = lab.device('AZJN-0043', '1-3')
    skipped = lab.device('AZJN-0044', '1-4', fuse=False)
    result = run(module_runner, lab, [refused, skipped])
    assert not result.get('failed'), result['msg']
    assert result['failed_devices'] == ['AZJN-0043']
    outcome = result['devices']['AZJN-0043']
    assert outcome['msg'].startswith('AZJN-0043: ')
    assert 'holds fuses other than the configured ones: PublicKeyHash: expected 0x5a' in outcome['msg']
    assert 'SecurityMode' not in outcome['msg'].split('Nothing was burned')[0]  # same value: not a difference
    assert [tool for tool, _argv, _tree in lab.calls()] == ['odmfuseread.sh', 'odmfuseread.sh']  # keyless, keyed
    assert l4t.burned_fuses(lab.state, '1-3') == other
    assert (phase(refused)['status'], phase(refused)['fused']) == ('failed', False)
    assert result['devices']['AZJN-0044']['skipped'] is True and phase(skipped)['status'] == 'skipped'


def test_a_device_fused_elsewhere_as_configured_is_recorded_fused_without_a_burn(module_runner, lab):
    l4t.prefuse_device(lab.state, '1-3', FUSES)
    device = lab.device('AZJN-0043', '1-3')
    result = run(module_runner, lab, [device])
    outcome = result['devices']['AZJN-0043']
    assert result['failed_devices'] == [] and outcome['fused'] is True and outcome['changed'] is False
    assert 'already holds the configured fuses' in outcome['msg']
    assert [tool for tool, _argv, _tree in lab.calls()] == ['odmfuseread.sh', 'odmfuseread.sh']
    assert (phase(device)['status'], phase(device)['fused']) == ('done', True)


def test_two_devices_to_fuse_in_recovery_at_once_are_both_refused(module_runner, tmp_path):
    lab = StationLab(tmp_path, {'1-3': '7523'})
    add_device(lab.sysfs, '1-4', '7523')
    devices = [lab.device('AZJN-0043', '1-3'), lab.device('AZJN-0044', '1-4')]
    result = run(module_runner, lab, devices)
    assert result['failed_devices'] == ['AZJN-0043', 'AZJN-0044']
    for device in devices:
        assert 'odmfuse.sh cannot choose a USB port' in result['devices'][device['name']]['msg']
        assert result['devices'][device['name']]['msg'].startswith(device['name'] + ': ')
    assert lab.calls() == []
    assert l4t.burned_fuses(lab.state, '1-3') == {} and l4t.burned_fuses(lab.state, '1-4') == {}


def test_check_mode_runs_no_tool_and_writes_nothing(module_runner, lab):
    devices = [lab.device('AZJN-0043', '1-3'), lab.device('AZJN-0044', '1-4', fuse=False),
               lab.device('AZJN-0045', '1-5', config=False)]
    result = run(module_runner, lab, devices, check_mode=True)
    assert result['failed_devices'] == ['AZJN-0045']
    assert result['devices']['AZJN-0043']['changed'] and 'would fuse' in result['devices']['AZJN-0043']['msg']
    assert 'first reads its fuses' in result['devices']['AZJN-0043']['msg']
    assert 'would be recorded as skipped' in result['devices']['AZJN-0044']['msg']
    assert lab.calls() == [] and l4t.fuse_events(lab.state) == []
    assert not os.path.exists(os.path.join(lab.workdir, 'devices')) and not os.path.exists(lab.logs)
