# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""azaion.jetson.station_state: which phases each of a station's devices has finished, read from
the state files the phases write (DeviceState), with the device contexts the playbook makes."""

import json
import os

from ansible_collections.azaion.jetson.plugins.module_utils._device_state import DeviceState
from ansible_collections.azaion.jetson.plugins.modules.station_state import main
from ansible_collections.azaion.jetson.plugins.plugin_utils._context import device_context

ALL = ['rootfs', 'fuse', 'identity', 'flash', 'verify']


def context(workdir, name, port, **device_vars):
    device_vars.update(jetson_workdir=str(workdir), jetson_usb_instance=port)
    found = device_context(name, device_vars)
    assert not found['problems'], found['problems']
    return found


def done(device, *phases, **statuses):
    state = DeviceState(device['state_file'], serial=device['serial'])
    for phase in phases:
        state.record(phase, status='done', started=1.0, finished=2.0, seconds=1.0, error=None)
    for phase, status in statuses.items():
        state.record(phase, status=status, started=1.0, finished=2.0, seconds=1.0, error=None)


def snapshot(directory):
    found = {}
    for root, dummy, names in os.walk(str(directory)):
        for name in names:
            path = os.path.join(root, name)
            st = os.stat(path)
            with open(path, 'rb') as handle:
                found[path] = (st.st_ino, st.st_mtime_ns, handle.read())
    return found


def run(module_runner, devices, check_mode=False, **args):
    args.update(devices=devices)
    return module_runner(main, args, check_mode=check_mode)


def test_each_device_gets_its_finished_and_pending_phases(module_runner, tmp_path):
    workdir = tmp_path / 'station'
    finished = context(workdir, 'AZJN-0041', '1-1')
    done(finished, 'rootfs', 'identity', 'flash', 'verify')  # never fused, not to be: fuse is finished
    half = context(workdir, 'AZJN-0042', '1-2')
    done(half, 'rootfs', flash='failed')
    to_fuse = context(workdir, 'AZJN-0043', '1-3', jetson_fuse_enabled=True, jetson_fuse_config='/keys/fuse.xml')
    done(to_fuse, 'rootfs', 'identity', 'flash', 'verify', fuse='skipped')  # skipped before: now it must be fused
    broken = context(workdir, 'AZJN-0044', '1-4')
    os.makedirs(os.path.dirname(broken['state_file']))
    with open(broken['state_file'], 'w') as handle:
        handle.write('{"phases": {"rootfs": ')  # cut off by a full disk
    fresh = context(workdir, 'AZJN-0045', '1-5')  # no state file yet
    stopped = context(workdir, 'AZJN-0046', '1-6')
    done(stopped, 'rootfs', 'identity', flash='running')  # its run was killed mid-flash
    devices = [finished, half, to_fuse, broken, fresh, stopped]
    before = snapshot(workdir)

    result = run(module_runner, devices)
    assert not result.get('failed'), result['msg']
    assert result['changed'] is False
    assert result['failed_devices'] == ['AZJN-0044']
    assert result['finished_devices'] == ['AZJN-0041']
    assert result['pending_devices'] == ['AZJN-0042', 'AZJN-0043', 'AZJN-0045', 'AZJN-0046']
    assert result['interrupted_phases'] == {'AZJN-0046': ['flash']}
    assert result['devices']['AZJN-0046']['pending'] == ['flash', 'verify']
    outcome = result['devices']
    # What the station check takes: every readable device's pending phases, by name.
    assert sorted(result['pending_phases']) == ['AZJN-0041', 'AZJN-0042', 'AZJN-0043', 'AZJN-0045', 'AZJN-0046']
    assert all(result['pending_phases'][name] == outcome[name]['pending'] for name in result['pending_phases'])
    assert result['pending_phases']['AZJN-0041'] == [] and result['pending_phases']['AZJN-0045'] != []
    assert outcome['AZJN-0041']['finished'] is True and outcome['AZJN-0041']['pending'] == []
    assert outcome['AZJN-0041']['phases']['verify']['status'] == 'done'
    assert outcome['AZJN-0042']['pending'] == ['identity', 'flash', 'verify']
    assert outcome['AZJN-0042']['phases']['flash']['status'] == 'failed'
    assert outcome['AZJN-0043']['pending'] == ['fuse']
    unfused = ['rootfs', 'identity', 'flash', 'verify']  # not to be fused: no fuse phase to do
    assert outcome['AZJN-0045'] == dict(changed=False, phases={}, finished=False, pending=unfused, interrupted=[],
                                        msg='AZJN-0045: to do: %s' % ', '.join(unfused),
                                        seconds=outcome['AZJN-0045']['seconds'])
    broken_result = outcome['AZJN-0044']
    assert broken_result['failed'] is True
    assert broken_result['msg'].startswith('AZJN-0044: ') and broken['state_file'] in broken_result['msg']
    assert 'move it aside' in broken_result['msg']
    # It only reads: no file written, none created.
    assert snapshot(workdir) == before
    assert not os.path.exists(fresh['state_file'])

    again = run(module_runner, devices)
    assert again['devices'] == dict((name, dict(device, seconds=again['devices'][name]['seconds']))
                                    for name, device in outcome.items())
    assert snapshot(workdir) == before


def test_only_the_phases_of_this_run_count_in_their_order(module_runner, tmp_path):
    workdir = tmp_path / 'station'
    device = context(workdir, 'AZJN-0042', '1-2', jetson_fuse_enabled=True)
    done(device, 'rootfs', 'identity', fuse='failed')
    result = run(module_runner, [device], phases=['verify', 'identity', 'fuse'])
    assert result['devices']['AZJN-0042']['pending'] == ['verify', 'fuse']
    assert result['pending_devices'] == ['AZJN-0042']
    assert run(module_runner, [device], phases=['rootfs', 'identity'])['finished_devices'] == ['AZJN-0042']

    bad = run(module_runner, [device], phases=['rootfs', 'flashing'])
    assert bad['failed'] and 'flashing' in bad['msg']


def test_fuse_is_finished_when_done_or_when_not_asked_for(module_runner, tmp_path):
    workdir = tmp_path / 'station'
    cases = [
        (False, None, True), (False, 'skipped', True), (False, 'done', True), (False, 'failed', False),
        (False, 'running', False), (True, None, False), (True, 'skipped', False), (True, 'done', True),
        (True, 'failed', False),
    ]
    devices = []
    for number, case in enumerate(cases, 1):
        enabled, status = case[:2]
        device = context(workdir, 'AZJN-%04d' % number, '1-%d' % number, jetson_fuse_enabled=enabled)
        if status:
            done(device, fuse=status)
        devices.append(device)
    result = run(module_runner, devices, phases=['fuse'])
    finished = [result['devices'][device['name']]['finished'] for device in devices]
    assert finished == [case[2] for case in cases]


def test_check_mode_reads_the_same(module_runner, tmp_path):
    workdir = tmp_path / 'station'
    devices = [context(workdir, 'AZJN-%04d' % number, '1-%d' % number) for number in (1, 2)]
    done(devices[0], *ALL)
    with open(devices[0]['state_file']) as handle:
        recorded = json.load(handle)['phases']
    before = snapshot(workdir)
    checked = run(module_runner, devices, check_mode=True)
    real = run(module_runner, devices)
    assert checked['finished_devices'] == real['finished_devices'] == ['AZJN-0001']
    assert checked['pending_devices'] == real['pending_devices'] == ['AZJN-0002']
    assert checked['devices']['AZJN-0001']['phases'] == recorded
    assert snapshot(workdir) == before
