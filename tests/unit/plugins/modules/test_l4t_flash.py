# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""azaion.jetson.l4t_flash, run as Ansible runs it, against the lab's fake Linux_for_Tegra bundle
(real bash scripts with NVIDIA's syntax) and a fake USB sysfs tree."""

import json
import os
import subprocess
import sys
import threading

import pytest

from lab import l4t_bundle, labkit
from lab.usb_sysfs import add_device, make_usb_sysfs

from ansible_collections.azaion.jetson.plugins.module_utils._l4t import clone_tree
from ansible_collections.azaion.jetson.plugins.modules.l4t_flash import main

NANO = 'jetson-orin-nano-devkit'
EMAIL = 'azaion-jetson-0042@azaion.com'
PASSWORD = '0123456789abcdef0123456789abcdef'
NEW_PASSWORD = 'fedcba9876543210fedcba9876543210'
PRIVATE = ['bootloader', 'tools/kernel_flash', 'rootfs/boot']
R36_INITRD = ['tools/kernel_flash/l4t_initrd_flash.sh', '--usb-instance', '1-3', '--external-device', 'nvme0n1p1',
              '-c', 'tools/kernel_flash/flash_l4t_t234_nvme.xml', '-p',
              '-c bootloader/generic/cfg/flash_t234_qspi.xml', '--showlogs', '--network', 'usb0', NANO, 'internal']
MODULE_PATH = os.path.join(labkit.REPO_ROOT, 'plugins', 'modules', 'l4t_flash.py')


class Lab:
    """A bundle, a fake USB bus, and per-port working trees holding each device's device.conf."""

    def __init__(self, root, devices, flash_seconds=0.0):
        self.root = str(root)
        self.state = os.path.join(self.root, 'lab-state')
        self.sysfs = make_usb_sysfs(os.path.join(self.root, 'sysfs'), devices)
        self.bundle = l4t_bundle.make_bundle(os.path.join(self.root, 'bundle'), self.state, self.sysfs,
                                             flash_seconds=flash_seconds)
        self.work = os.path.join(self.root, 'work')

    def tree(self, port, email=EMAIL, password=PASSWORD):
        tree = os.path.join(self.work, 'ports', port, 'Linux_for_Tegra')
        if not os.path.isdir(tree):
            clone_tree(self.bundle, tree, PRIVATE)
        if email:
            self.write_conf(tree, email, password)
        return tree

    @staticmethod
    def write_conf(tree, email=EMAIL, password=PASSWORD):
        path = os.path.join(tree, 'rootfs', 'etc', 'azaion', 'device.conf')
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + '.new'
        with open(tmp, 'w') as conf:
            conf.write('AZAION_DEVICE_EMAIL=%s\nAZAION_DEVICE_PASSWORD=%s\n' % (email, password))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)  # as azaion.jetson.device_conf writes it: a new inode
        return path

    def args(self, port='1-3', serial='AZJN-0042', **extra):
        args = dict(l4t_dir=os.path.join(self.work, 'ports', port, 'Linux_for_Tegra'), usb_instance=port,
                    serial=serial, usb_sysfs_root=self.sysfs, log_dir=os.path.join(self.work, 'logs'),
                    state_file=os.path.join(self.work, 'devices', serial, 'state.json'),
                    slots_dir=os.path.join(self.work, 'flash-slots'))
        args.update(extra)
        return args

    def phase(self, serial='AZJN-0042'):
        with open(os.path.join(self.work, 'devices', serial, 'state.json')) as state:
            return json.load(state)['phases']['flash']

    def stored_conf(self, port='1-3'):
        with open(os.path.join(l4t_bundle.device_storage(self.state, port), 'etc', 'azaion', 'device.conf')) as conf:
            return conf.read()

    def replug(self, port, product='7523'):
        """Put the device back in recovery mode. The fake flash unlinks only the device's entry
        and leaves its interface entries, which add_device would trip over."""
        for name in os.listdir(self.sysfs):
            if name.startswith(port + ':'):
                os.unlink(os.path.join(self.sysfs, name))
        add_device(self.sysfs, port, product)

    def in_recovery(self, port):
        return os.path.lexists(os.path.join(self.sysfs, port))

    def calls(self):
        return l4t_bundle.tool_calls(self.state)


@pytest.fixture
def lab(tmp_path):
    return Lab(tmp_path, {'1-3': '7523'})


def secret_free(*texts):
    for text in texts:
        assert PASSWORD not in text and NEW_PASSWORD not in text


def test_flashes_the_trees_rootfs_to_the_device_on_the_port(module_runner, lab):
    tree = lab.tree('1-3')
    bundle_image = open(os.path.join(lab.bundle, 'bootloader', 'system.img'), 'rb').read()

    result = module_runner(main, lab.args(expected_email=EMAIL))

    assert result['changed'] and not result.get('failed'), result['msg']
    assert (result['board'], result['board_config']) == ('orin-nano-8gb', NANO)
    assert result['command'] == R36_INITRD
    assert result['skipped_reason'] is None and result['slot'] == 0 and result['slot_wait_seconds'] < 1
    assert len(result['fingerprint']) == 64
    # What reached the device is this tree's rootfs, flashed from this tree, and it left recovery.
    assert lab.stored_conf('1-3') == 'AZAION_DEVICE_EMAIL=%s\nAZAION_DEVICE_PASSWORD=%s\n' % (EMAIL, PASSWORD)
    call = lab.calls()[-1]
    assert (call['argv'], call['cwd'], call['exit']) == (R36_INITRD[1:], tree, 0)
    assert [run['tree'] for run in l4t_bundle.flash_runs(lab.state)] == [tree]
    assert not lab.in_recovery('1-3')
    assert open(os.path.join(lab.bundle, 'bootloader', 'system.img'), 'rb').read() == bundle_image
    # The trace on the station.
    phase = lab.phase()
    assert phase['status'] == 'done' and phase['fingerprint'] == result['fingerprint']
    assert phase['board'] == 'orin-nano-8gb' and phase['error'] is None and phase['finished'] >= phase['started']
    assert phase['log_path'] == result['log_path'] and os.path.basename(result['log_path']).startswith(
        'AZJN-0042-flash-')
    log = open(result['log_path']).read()
    assert 'Flash is successful' in log
    secret_free(json.dumps(result), json.dumps(phase), log)


def test_second_run_is_skipped_without_looking_at_the_bus(module_runner, lab):
    lab.tree('1-3')
    first = module_runner(main, lab.args())
    calls = len(lab.calls())
    assert not lab.in_recovery('1-3')  # a scan now would fail: the skip must not need one

    again = module_runner(main, lab.args())
    assert not again['changed'] and not again.get('failed')
    assert again['skipped_reason'] == 'already flashed with this image'
    assert again['fingerprint'] == first['fingerprint'] and again['board'] == 'orin-nano-8gb'
    assert again['log_path'] == first['log_path'] and again['seconds'] == 0.0
    assert len(lab.calls()) == calls
    assert module_runner(main, lab.args(board='orin-nano-8gb'), check_mode=True)['changed'] is False


def test_a_new_device_conf_or_force_flashes_again(module_runner, lab):
    tree = lab.tree('1-3')
    first = module_runner(main, lab.args())
    lab.write_conf(tree, EMAIL, NEW_PASSWORD)
    lab.replug('1-3')  # back in recovery mode

    reflashed = module_runner(main, lab.args())
    assert reflashed['changed'] and reflashed['fingerprint'] != first['fingerprint']
    assert NEW_PASSWORD in lab.stored_conf('1-3')
    assert len(l4t_bundle.flash_runs(lab.state)) == 2

    lab.replug('1-3')
    forced = module_runner(main, lab.args(force=True))
    assert forced['changed'] and forced['fingerprint'] == reflashed['fingerprint']
    assert len(l4t_bundle.flash_runs(lab.state)) == 3
    secret_free(json.dumps(reflashed), json.dumps(forced))


def test_board_is_detected_from_the_product_id(module_runner, tmp_path):
    lab = Lab(tmp_path, {'1-8.4': '7323'})
    lab.tree('1-8.4')
    result = module_runner(main, lab.args(port='1-8.4', tool='flash.sh'))
    assert result['changed'], result['msg']
    assert (result['board'], result['board_config']) == ('orin-nx-16gb', NANO)
    assert result['command'] == ['./flash.sh', '--usb-instance', '1-8.4', NANO, 'nvme0n1p1']
    meta = l4t_bundle.device_meta(lab.state, '1-8.4')
    assert (meta['board'], meta['tool'], meta['rootdev']) == (NANO, 'flash.sh', 'nvme0n1p1')
    assert lab.phase()['board'] == 'orin-nx-16gb'


def test_a_given_board_must_match_the_device_on_the_port(module_runner, lab):
    lab.tree('1-3')
    result = module_runner(main, lab.args(board='agx-orin-64gb'))
    assert result['failed'] and 'is a orin-nano-8gb (0955:7523), not the agx-orin-64gb' in result['msg']
    assert lab.calls() == [] and lab.phase()['status'] == 'failed'


def test_check_mode_never_runs_the_tool(module_runner, lab):
    lab.tree('1-3')
    predicted = module_runner(main, lab.args(l4t_release='r35', extra_args=['--erase-all']), check_mode=True)
    assert predicted['changed'] and 'would flash' in predicted['msg']
    assert predicted['command'][5:8] == ['-c', 'tools/kernel_flash/flash_l4t_external.xml', '-p']
    assert predicted['command'][8] == '-c bootloader/t186ref/cfg/flash_t234_qspi.xml'
    assert predicted['command'][-3:] == ['--erase-all', NANO, 'internal']
    assert lab.calls() == [] and lab.in_recovery('1-3')
    assert not os.path.exists(os.path.join(lab.work, 'devices'))

    os.unlink(os.path.join(lab.sysfs, '1-3'))  # the device is not in recovery: a warning only
    # In its own process, as Ansible runs it (in pytest's process warnings go to the display).
    missing = run_in_process(dict(lab.args(), _ansible_check_mode=True))
    assert missing['changed'] and not missing.get('failed')
    assert any('no Jetson in recovery mode on USB port 1-3' in str(warning) for warning in missing['warnings'])


def test_missing_device_is_a_clear_error(module_runner, lab):
    lab.tree('1-3')
    result = module_runner(main, lab.args(port='1-3', usb_instance='1-4', serial='AZJN-0043',
                                          l4t_dir=os.path.join(lab.work, 'ports', '1-3', 'Linux_for_Tegra')))
    assert result['failed']
    for part in ('no Jetson in recovery mode on USB port 1-4', lab.sysfs, '1-3 (orin-nano-8gb)',
                 'put the device in recovery mode (hold REC, power on) and re-run'):
        assert part in result['msg']
    assert lab.calls() == []
    phase = lab.phase('AZJN-0043')
    assert phase['status'] == 'failed' and 'USB port 1-4' in phase['error']


def test_a_failed_flash_is_recorded_with_the_log_tail(module_runner, lab):
    lab.tree('1-3')
    l4t_bundle.plant_failure(lab.state, '1-3', kind='usb-timeout')
    failed = module_runner(main, lab.args())
    assert failed['failed']
    assert 'flashing AZJN-0042 on USB port 1-3 failed: exit code 1' in failed['msg']
    assert 'ERROR: might be timeout in USB write.' in failed['msg']
    assert failed['log_path'] in failed['msg']
    phase = lab.phase()
    assert (phase['status'], phase['rc']) == ('failed', 1) and 'exit code 1' in phase['error']
    secret_free(failed['msg'], json.dumps(phase))

    retried = module_runner(main, lab.args())  # the device is still in recovery mode
    assert retried['changed'] and lab.phase()['status'] == 'done'


def test_a_hanging_flash_is_stopped_at_the_timeout(module_runner, lab):
    lab.tree('1-3')
    l4t_bundle.plant_failure(lab.state, '1-3', kind='hang')
    result = module_runner(main, lab.args(timeout=2))
    assert result['failed'] and 'timed out after 2 s' in result['msg']
    assert 'Waiting for target to boot-up...' in result['msg']
    phase = lab.phase()
    assert phase['status'] == 'failed' and phase['timed_out'] is True and phase['seconds'] >= 2
    assert lab.calls()[-1]['exit'] == 143


def test_the_device_conf_of_another_device_is_refused(module_runner, lab):
    lab.tree('1-3', email='azaion-jetson-0043@azaion.com')
    result = module_runner(main, lab.args(expected_email=EMAIL))
    assert result['failed']
    assert ('holds the device.conf of azaion-jetson-0043@azaion.com, not this device\'s (%s): run the identity'
            ' phase first' % EMAIL) in result['msg']
    assert lab.calls() == [] and lab.in_recovery('1-3')
    secret_free(json.dumps(result))

    os.unlink(os.path.join(lab.work, 'ports', '1-3', 'Linux_for_Tegra', 'rootfs', 'etc', 'azaion', 'device.conf'))
    none = module_runner(main, lab.args(expected_email=EMAIL))
    assert none['failed'] and 'run the identity phase first' in none['msg'] and lab.calls() == []


def test_bad_inputs_fail_before_anything_runs(module_runner, lab):
    lab.tree('1-3')
    assert 'not a USB port path' in module_runner(main, lab.args(usb_instance='1-3/../x'))['msg']
    assert 'not usable in a file name' in module_runner(main, lab.args(serial='../AZJN'))['msg']
    assert 'make the working tree first' in module_runner(main, lab.args(l4t_dir=lab.work + '/none'))['msg']
    assert lab.calls() == []


def run_in_process(args):
    """Run the module as Ansible does, in its own process (what Ansible's forks are)."""
    env = dict(os.environ, PYTHONPATH=labkit.COLLECTIONS_ROOT)
    completed = subprocess.run([sys.executable, MODULE_PATH, json.dumps({'ANSIBLE_MODULE_ARGS': args})],
                               capture_output=True, text=True, env=env, timeout=60, check=False)
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('concurrency, overlap', [(1, False), (2, True)])
def test_the_station_limits_simultaneous_flashes(tmp_path, concurrency, overlap):
    lab = Lab(tmp_path, {'1-3': '7523', '1-4': '7623'}, flash_seconds=1.0)
    jobs = {'1-3': 'AZJN-0042', '1-4': 'AZJN-0043'}
    for port in jobs:
        lab.tree(port)
    results = {}

    def flash(port):
        results[port] = run_in_process(lab.args(port=port, serial=jobs[port], concurrency=concurrency))

    threads = [threading.Thread(target=flash, args=(port,)) for port in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(result['changed'] and not result.get('failed') for result in results.values()), results
    runs = sorted(l4t_bundle.flash_runs(lab.state), key=lambda run: run['start'])
    assert [run['exit'] for run in runs] == [0, 0] and l4t_bundle.collisions(lab.state) == []
    assert {run['tree'] for run in runs} == {os.path.join(lab.work, 'ports', port, 'Linux_for_Tegra') for port in jobs}
    if overlap:
        assert runs[1]['start'] < runs[0]['end']
        assert {result['slot'] for result in results.values()} == {0, 1}
    else:
        assert runs[0]['end'] <= runs[1]['start']
        assert max(result['slot_wait_seconds'] for result in results.values()) >= 0.5
    assert results['1-4']['board'] == 'orin-nano-4gb'
