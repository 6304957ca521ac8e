# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""azaion.jetson.l4t_flash, run as Ansible runs it, against the lab's fake Linux_for_Tegra bundle
(real bash scripts with NVIDIA's syntax and NVIDIA's host-wide side effects), the lab station's
host root (NFS exports, udev rules, USB gadget interfaces) and a fake USB sysfs tree."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from lab import l4t_bundle, l4t_host, labkit
from lab.usb_sysfs import add_device, make_usb_sysfs

from ansible_collections.azaion.jetson.plugins.module_utils._workspace import clone_tree
from ansible_collections.azaion.jetson.plugins.modules.l4t_flash import main

NANO = 'jetson-orin-nano-devkit'
EMAIL = 'azaion-jetson-0042@azaion.com'
PASSWORD = '0123456789abcdef0123456789abcdef'
NEW_PASSWORD = 'fedcba9876543210fedcba9876543210'
PRIVATE = ['bootloader', 'tools/kernel_flash', 'rootfs/boot']
INTERNAL = 'tools/kernel_flash/l4t_initrd_flash_internal.sh'
R36_NVME = ['--external-device', 'nvme0n1p1', '-c', 'tools/kernel_flash/flash_l4t_t234_nvme.xml']
R36_GENERATE = ([INTERNAL, '--no-flash', '--massflash', '4'] + R36_NVME
                + ['-p', '-c bootloader/generic/cfg/flash_t234_qspi.xml', '--network', 'usb0', NANO, 'internal'])
# What the generation saves and the flash passes on (the -c value keeps NVIDIA's quotes in the file).
R36_SAVED = R36_NVME + ['--network', 'usb0', NANO, 'internal']
MODULE_PATH = os.path.join(labkit.REPO_ROOT, 'plugins', 'modules', 'l4t_flash.py')


class Lab:
    """A bundle, a fake USB bus, and per-port working trees holding each device's device.conf."""

    def __init__(self, root, devices, flash_seconds=0.0, boot_seconds=0.2):
        self.root = str(root)
        self.state = os.path.join(self.root, 'lab-state')
        self.host = l4t_host.make_host_root(os.path.join(self.root, 'host'), self.state)
        self.sysfs = make_usb_sysfs(os.path.join(self.root, 'sysfs'), devices)
        self.devices = dict(devices)
        self.bundle = l4t_bundle.make_bundle(os.path.join(self.root, 'bundle'), self.state, self.sysfs,
                                             flash_seconds=flash_seconds, host_root=self.host,
                                             boot_seconds=boot_seconds)
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
                    slots_dir=os.path.join(self.work, 'flash-slots'), station_root=self.host, settle_timeout=2)
        args.update(extra)
        return args

    def phase(self, serial='AZJN-0042'):
        with open(os.path.join(self.work, 'devices', serial, 'state.json')) as state:
            return json.load(state)['phases']['flash']

    def stored_conf(self, port='1-3'):
        with open(os.path.join(l4t_bundle.device_storage(self.state, port), 'etc', 'azaion', 'device.conf')) as conf:
            return conf.read()

    def replug(self, port):
        """The operator's power cycle: the device waits in recovery mode again."""
        l4t_host.power_cycle_into_recovery(self.state, self.host, self.sysfs, port, self.devices[port])

    def station_is_clean(self):
        """No export, gadget interface or slot of a flash left on the station; only the
        collection's own udev rules."""
        assert l4t_host.exports(self.host) == []
        assert os.listdir(os.path.join(self.host, 'etc', 'exports.d')) == []
        assert l4t_host.gadget_interfaces(self.host) == []
        assert l4t_host.udev_rules(self.host) in ([], ['10-azaion-jetson-l4t-usb-msd.rules',
                                                       '99-azaion-jetson-l4t-host.rules'])
        return True

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


def flash_command(port, instance):
    return [INTERNAL, '--usb-instance', port, '--device-instance', str(instance), '--flash-only'] + R36_SAVED


def test_generates_in_the_tree_then_flashes_as_the_slots_device_instance(module_runner, lab):
    tree = lab.tree('1-3')
    bundle_image = open(os.path.join(lab.bundle, 'bootloader', 'system.img'), 'rb').read()

    result = module_runner(main, lab.args(expected_email=EMAIL))

    assert result['changed'] and not result.get('failed'), result['msg']
    assert (result['board'], result['board_config']) == ('orin-nano-8gb', NANO)
    assert result['generate_command'] == R36_GENERATE and result['generated'] is True
    assert result['command'] == flash_command('1-3', 0)
    # NVIDIA's table has no BOARDREV for the Orin Nano; CHIP_SKU picks the Orin Nano's BPMP firmware.
    assert result['board_identity'] == {'BOARDID': '3767', 'FAB': '300', 'BOARDSKU': '0003', 'CHIP_SKU': '00:00:00:D5',
                                        'FUSELEVEL': 'fuselevel_production'}
    assert result['skipped_reason'] is None and result['slot'] == 0 and result['slot_wait_seconds'] < 1
    assert len(result['fingerprint']) == 64
    # Generation, then the flash, both by the internal script in this tree; never the outer one.
    assert [(call['tool'], call['argv'], call['cwd'], call['exit']) for call in lab.calls()] == [
        ('l4t_initrd_flash_internal.sh', R36_GENERATE[1:], tree, 0),
        ('l4t_initrd_flash_internal.sh', flash_command('1-3', 0)[1:], tree, 0)]
    # The board identity kept generation off the bus, and the shim kept the NFS server up.
    assert l4t_host.probes(lab.state) == []
    assert not [event for event in l4t_host.host_events(lab.state)
                if event['program'] == 'service' and 'restart' in event['argv']]
    # What reached the device is this tree's rootfs, through instance 0, and it left recovery.
    assert lab.stored_conf('1-3') == 'AZAION_DEVICE_EMAIL=%s\nAZAION_DEVICE_PASSWORD=%s\n' % (EMAIL, PASSWORD)
    assert [(run['tree'], run['usb_instance'], run['device'], run['instance'])
            for run in l4t_bundle.flash_runs(lab.state)] == [(tree, '1-3', '1-3', 0)]
    assert not lab.in_recovery('1-3')
    assert open(os.path.join(lab.bundle, 'bootloader', 'system.img'), 'rb').read() == bundle_image
    # NVIDIA's massflash package and, after the flash, the images (more copies of the
    # device.conf) are gone from the tree; the station is clean.
    assert [name for name in os.listdir(tree) if name.startswith('mfi_')] == []
    for image in ('tools/kernel_flash/images', 'bootloader/system.img', 'tools/kernel_flash/.azaion-images.json'):
        assert not os.path.lexists(os.path.join(tree, image)), image
    copies = [os.path.join(root, name) for root, _dirs, names in os.walk(tree) for name in names
              if name != 'device.conf' and not os.path.islink(os.path.join(root, name))]
    assert [path for path in copies if PASSWORD.encode() in open(path, 'rb').read()] == []
    assert lab.station_is_clean() and l4t_host.udev_rules(lab.host) != []
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
    assert first['changed'] and not first.get('failed'), first['msg']

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
    assert result['failed'] and 'is an orin-nano-8gb (0955:7523), not the agx-orin-64gb' in result['msg']
    assert lab.calls() == [] and lab.phase()['status'] == 'failed'


def test_an_agx_orin_on_7023_is_not_flashed_without_its_board(module_runner, tmp_path):
    lab = Lab(tmp_path, {'1-3': '7023'})
    lab.tree('1-3')
    result = module_runner(main, lab.args())
    assert result['failed'] and lab.calls() == []
    assert ('the device in recovery mode there is an AGX Orin (agx-orin-32gb, agx-orin-64gb or agx-orin-industrial)'
            ' (0955:7023)' in result['msg']), result['msg']
    assert 'set its board (jetson_board) to agx-orin-32gb, agx-orin-64gb or agx-orin-industrial' in result['msg']
    assert lab.phase()['status'] == 'failed'

    # A board identity naming the BOARDSKU tells which; so does the board, here the Industrial.
    named = module_runner(main, lab.args(board_identity={'BOARDSKU': '0005'}, force=True), check_mode=True)
    assert not named.get('failed') and named['board'] == 'agx-orin-64gb', named['msg']
    add_device(lab.sysfs, '1-3', '7023', chip_sku='90')  # an AGX Orin Industrial's chip
    result = module_runner(main, lab.args(board='agx-orin-industrial'))
    assert result['changed'] and not result.get('failed'), result['msg']
    assert (result['board'], result['board_config']) == ('agx-orin-industrial', 'jetson-agx-orin-devkit-industrial')
    assert result['board_identity'] == {'BOARDID': '3701', 'FAB': '500', 'BOARDSKU': '0008', 'CHIP_SKU': '00:00:00:90',
                                        'FUSELEVEL': 'fuselevel_production'}


def test_the_chip_sku_of_the_board_identity_builds_the_images_and_a_wrong_one_hangs_the_module(module_runner, lab):
    tree = lab.tree('1-3')
    assert 'not a chip SKU as NVIDIA writes it' in module_runner(
        main, lab.args(board_identity={'CHIP_SKU': 'D5'}))['msg']
    # The Orin NX's chip SKU on an Orin Nano: images with the Orin NX's BPMP firmware, which the
    # Orin Nano never boots; the failure names the likely cause.
    result = module_runner(main, lab.args(board_identity={'CHIP_SKU': '00:00:00:D3'}))
    assert result['failed'] and 'the flashing initrd did not come up' in result['msg'], result['msg']
    assert 'CHIP_SKU of its board identity' in result['msg']
    assert [(failure['reason'], failure['images'], failure['needs']) for failure in l4t_bundle.boot_failures(lab.state)] \
        == [('bpmp-firmware', 'TE980M-A1', 'TE950M-A1')]
    assert l4t_bundle.device_storage(lab.state, '1-3') and l4t_bundle.device_meta(lab.state, '1-3') == {}
    l4t_host.power_cycle_into_recovery(lab.state, lab.host, lab.sysfs, '1-3')
    result = module_runner(main, lab.args())
    assert result['changed'] and not result.get('failed'), result['msg']
    assert l4t_bundle.device_meta(lab.state, '1-3')['tree'] == tree


def test_check_mode_never_runs_the_tool(module_runner, lab):
    lab.tree('1-3')
    predicted = module_runner(main, lab.args(l4t_release='r35', extra_args=['--erase-all']), check_mode=True)
    assert predicted['changed'] and 'would flash' in predicted['msg']
    assert predicted['generate_command'][6:9] == ['-c', 'tools/kernel_flash/flash_l4t_external.xml', '-p']
    assert predicted['generate_command'][9] == '-c bootloader/t186ref/cfg/flash_t234_qspi.xml'
    assert predicted['generate_command'][-3:] == ['--erase-all', NANO, 'internal']
    assert lab.calls() == [] and lab.in_recovery('1-3')
    assert not os.path.exists(os.path.join(lab.work, 'devices'))
    assert lab.station_is_clean() and l4t_host.udev_rules(lab.host) == []

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
    for part in ('no Jetson in recovery mode on USB port 1-4', lab.sysfs, '1-3 (an orin-nano-8gb)',
                 'put the device in recovery mode (hold REC, power on) and re-run'):
        assert part in result['msg']
    assert lab.calls() == []
    phase = lab.phase('AZJN-0043')
    assert phase['status'] == 'failed' and 'USB port 1-4' in phase['error']


def test_a_failed_flash_is_recorded_with_the_log_tail_and_leaves_no_image_of_its_device_conf(module_runner, lab):
    lab.tree('1-3')
    l4t_bundle.plant_failure(lab.state, '1-3', kind='usb-timeout')
    failed = module_runner(main, lab.args())
    assert failed['failed']
    assert 'flashing AZJN-0042 on USB port 1-3 failed: exit code 1; a USB write timed out' in failed['msg']
    assert 'ERROR: might be timeout in USB write.' in failed['msg']
    assert failed['log_path'] in failed['msg']
    phase = lab.phase()
    assert (phase['status'], phase['rc']) == ('failed', 1) and 'exit code 1' in phase['error']
    assert lab.station_is_clean()
    secret_free(failed['msg'], json.dumps(phase))

    # The device's own images (image mode per_device, no images_dir) each held its device.conf.
    tree = os.path.join(lab.work, 'ports', '1-3', 'Linux_for_Tegra')
    assert not os.path.lexists(os.path.join(tree, 'tools', 'kernel_flash', 'images'))

    retried = module_runner(main, lab.args())  # the device is still in recovery mode
    assert retried['changed'] and lab.phase()['status'] == 'done'
    assert retried['generated'] is True and retried['image_mode'] == 'per_device'
    assert len([call for call in lab.calls() if '--no-flash' in call['argv']]) == 2


def test_a_hanging_flash_is_stopped_at_the_timeout(module_runner, lab):
    lab.tree('1-3')
    l4t_bundle.plant_failure(lab.state, '1-3', kind='hang')
    result = module_runner(main, lab.args(timeout=2))
    assert result['failed'] and 'timed out after 2 s' in result['msg']
    assert 'Waiting for target to boot-up...' in result['msg']
    phase = lab.phase()
    assert phase['status'] == 'failed' and phase['timed_out'] is True and phase['seconds'] >= 2
    assert lab.calls()[-1]['exit'] == 143
    assert lab.station_is_clean()


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
    assert 'between 1 and 10' in module_runner(main, lab.args(concurrency=11))['msg']
    assert 'unknown key \'FABRIC\'' in module_runner(main, lab.args(board_identity={'FABRIC': '300'}))['msg']
    assert 'not a plain value' in module_runner(main, lab.args(board_identity={'FAB': '300; reboot'}))['msg']
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
    # Each flash reached its own device, through the instance of its slot.
    assert all(run['device'] == run['usb_instance'] for run in runs)
    assert {run['usb_instance']: run['instance'] for run in runs} == {port: results[port]['slot'] for port in jobs}
    assert lab.station_is_clean()
    if overlap:
        assert runs[1]['start'] < runs[0]['end']
        assert {result['slot'] for result in results.values()} == {0, 1}
    else:
        assert runs[0]['end'] <= runs[1]['start']
        assert max(result['slot_wait_seconds'] for result in results.values()) >= 0.5
    assert results['1-4']['board'] == 'orin-nano-4gb'


def plant_gadget(host_root, name, port, instance):
    """A Jetson left in NVIDIA's flashing initrd on ``port`` as ``instance``, as the lab's tools
    leave it (see lab_enter_initrd in lab_common.sh): its gadget interface on the station."""
    device = os.path.join(host_root, 'sys', 'devices', 'lab', port, port + ':1.0')
    os.makedirs(device, exist_ok=True)
    interface = os.path.join(host_root, 'sys', 'class', 'net', name)
    os.makedirs(interface)
    os.symlink(os.path.relpath(device, interface), os.path.join(interface, 'device'))
    for attribute, value in (('serial', 'lab-' + port), ('operstate', 'up'), ('lab_addresses', ''),
                             ('configuration', 'RNDIS+L4T%d' % instance)):
        with open(os.path.join(interface, attribute), 'w') as attribute_file:
            attribute_file.write(value + '\n')


def test_a_device_left_in_the_flashing_initrd_keeps_its_instance_from_being_used(module_runner, lab):
    lab.tree('1-3')
    plant_gadget(lab.host, 'usb0', '1-4', 0)
    result = module_runner(main, lab.args())
    assert result['failed']
    assert ('a Jetson is still in NVIDIA\'s flashing initrd as that instance (usb0 on USB port 1-4), left by an'
            ' interrupted flash' in result['msg'])
    assert 'power-cycle the device on USB port 1-4 into recovery mode, then re-run' in result['msg']
    assert l4t_bundle.flash_runs(lab.state) == [] and lab.in_recovery('1-3')
    assert lab.phase()['status'] == 'failed'


def test_a_flash_that_reached_another_device_fails_even_when_the_tool_says_success(module_runner, tmp_path):
    lab = Lab(tmp_path, {'1-3': '7523'}, boot_seconds=1.5)
    lab.tree('1-3')
    busy = os.path.join(lab.state, 'busy', '1-3')

    def another_device_comes_up_as_instance_0():
        deadline = time.monotonic() + 30
        while not os.path.exists(busy) and time.monotonic() < deadline:
            time.sleep(0.02)
        plant_gadget(lab.host, 'usb0', '1-4', 0)  # while this device is still RCM-booting

    intruder = threading.Thread(target=another_device_comes_up_as_instance_0)
    intruder.start()
    result = module_runner(main, lab.args())
    intruder.join(30)
    assert result['failed'], result['msg']
    assert ('NVIDIA\'s tool reported success, but the device on USB port 1-3 is still in NVIDIA\'s flashing initrd'
            ' (usb1): the flash in device instance 0 went to another device, and AZJN-0042 was not written'
            in result['msg'])
    run = l4t_bundle.flash_runs(lab.state)[-1]
    assert (run['usb_instance'], run['device'], run['exit']) == ('1-3', '1-4', 0)
    assert lab.phase()['status'] == 'failed'

    lab.replug('1-3')  # the operator power-cycles it; the retry reaches it
    retried = module_runner(main, lab.args())
    assert retried['changed'] and not retried.get('failed'), retried['msg']
    assert l4t_bundle.flash_runs(lab.state)[-1]['device'] == '1-3'
    assert 'AZAION_DEVICE_PASSWORD=%s' % PASSWORD in lab.stored_conf('1-3')


def test_the_exports_of_a_killed_flash_are_removed_by_the_next_one(module_runner, lab):
    lab.tree('1-3')
    stale = os.path.join(lab.host, 'etc', 'exports.d', 'azaion-jetson-slot-1.exports')
    with open(stale, 'w') as exports:
        exports.write('/gone/Linux_for_Tegra/rootfs fc00:1:1::/48(rw,no_root_squash)\n')
    result = module_runner(main, lab.args(concurrency=2))
    assert result['changed'] and not result.get('failed'), result['msg']
    assert not os.path.exists(stale) and lab.station_is_clean()


def test_a_killed_module_takes_its_tool_down(tmp_path):
    lab = Lab(tmp_path, {'1-3': '7523'}, flash_seconds=30.0)
    lab.tree('1-3')
    env = dict(os.environ, PYTHONPATH=labkit.COLLECTIONS_ROOT)
    module = subprocess.Popen([sys.executable, MODULE_PATH, json.dumps({'ANSIBLE_MODULE_ARGS': lab.args()})],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 30
        while not l4t_bundle.flash_runs(lab.state) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert l4t_bundle.flash_runs(lab.state), 'the flash never started'
    finally:
        module.kill()  # SIGKILL: no clean-up of its own runs
        module.wait()
    deadline = time.monotonic() + 15
    while l4t_bundle.flash_runs(lab.state)[-1]['end'] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    run = l4t_bundle.flash_runs(lab.state)[-1]
    assert run['end'] is not None and run['end'] - run['start'] < 20, 'the tool outlived its module'
    assert lab.calls()[-1]['exit'] == 143  # SIGTERM, so NVIDIA's exit trap ran


def test_a_flash_stopped_mid_flash_leaves_no_gadget_address_of_its_instance(module_runner, tmp_path):
    lab = Lab(tmp_path, {'1-3': '7523'}, flash_seconds=30.0)
    lab.tree('1-3')
    result = module_runner(main, lab.args(timeout=4))
    assert result['failed'] and 'timed out after 4 s' in result['msg']
    # The device is stuck in the flashing initrd (a power cycle is the operator's), but the
    # host address NVIDIA's run gave its interface is gone, and so is the export.
    assert [(item['port'], item['configuration'], item['addresses'])
            for item in l4t_host.gadget_interfaces(lab.host)] == [('1-3', 'RNDIS+L4T0', [])]
    assert l4t_host.exports(lab.host) == [] and os.listdir(os.path.join(lab.host, 'etc', 'exports.d')) == []
    assert any(event['program'] == 'ip' and event['argv'][:3] == ['-6', 'addr', 'del']
               for event in l4t_host.host_events(lab.state))


def test_the_devices_ekb_replaces_the_bundles_in_its_tree_only_and_a_new_one_flashes_again(module_runner, lab):
    # NVIDIA's bundle ships a default EKB where the board config takes it (EKSFILE).
    shipped = os.path.join(lab.bundle, 'bootloader', 'eks_t234.img')
    with open(shipped, 'wb') as ekb:
        ekb.write(b'NVIDIA sample EKB\n')
    tree = lab.tree('1-3')
    assert os.path.isfile(os.path.join(tree, 'bootloader', 'eks_t234.img'))  # the tree's copy of it
    own = os.path.join(lab.root, 'eks_oem.img')
    with open(own, 'wb') as ekb:
        ekb.write(b'EKB encrypted with this product\'s OemK1\n')

    first = module_runner(main, lab.args(expected_email=EMAIL, ekb_file=own))
    assert first['changed'] and not first.get('failed'), first['msg']
    with open(os.path.join(tree, 'bootloader', 'eks_t234.img'), 'rb') as placed:
        assert placed.read() == b'EKB encrypted with this product\'s OemK1\n'
    with open(shipped, 'rb') as bundle_ekb:
        assert bundle_ekb.read() == b'NVIDIA sample EKB\n'  # never written through the hard link

    lab.replug('1-3')
    same = module_runner(main, lab.args(expected_email=EMAIL, ekb_file=own))
    assert same['skipped_reason'] == 'already flashed with this image', same['msg']
    with open(own, 'wb') as ekb:
        ekb.write(b'EKB made with a new OemK1\n')
    again = module_runner(main, lab.args(expected_email=EMAIL, ekb_file=own))
    assert again['changed'] and again['generated'] is True and again['fingerprint'] != first['fingerprint'], again['msg']
    missing = module_runner(main, lab.args(expected_email=EMAIL, ekb_file=os.path.join(lab.root, 'no-such.img')))
    assert missing['failed'] and 'cannot read the EKB' in missing['msg'] and 'jetson_ekb_file' in missing['msg']


def key_at_one_path(lab, key_file):
    """The content of ``key_file`` at the lab's one key path (an operator's key file, replaced
    in place by another product's key); returns the path."""
    key = os.path.join(lab.root, 'pkc.pem')
    with open(key_file, 'rb') as source, open(key, 'wb') as copy:
        copy.write(source.read())
    return key


def test_shared_images_are_generated_once_per_group_and_another_key_at_the_same_path_is_another_group(
        module_runner, lab, key_files):
    tree = lab.tree('1-3')
    key = key_at_one_path(lab, key_files['pkc'])
    images_dir = os.path.join(lab.work, 'images')
    args = lab.args(expected_email=EMAIL, images_dir=images_dir, extra_args=['-u', key])

    first = module_runner(main, args)
    assert first['changed'] and first['image_mode'] == 'shared' and first['generated'] is True, first['msg']
    assert first['app_copy'] in ('reflink', 'copy') and first['prepare_seconds'] < 1
    # Generated in the group's tree, flashed from the slot's; nothing of the kind in the port tree.
    group_tree = os.path.join(images_dir, first['image_group'], 'Linux_for_Tegra')
    assert [call['cwd'] for call in lab.calls()] == [group_tree, os.path.join(images_dir, first['image_group'], 'slot-0',
                                                                              'Linux_for_Tegra')]
    assert not os.path.lexists(os.path.join(tree, 'tools', 'kernel_flash', 'images'))
    assert lab.stored_conf('1-3') == 'AZAION_DEVICE_EMAIL=%s\nAZAION_DEVICE_PASSWORD=%s\n' % (EMAIL, PASSWORD)

    # A new device.conf: flashed again from the same generation.
    lab.write_conf(tree, EMAIL, NEW_PASSWORD)
    lab.replug('1-3')
    rotated = module_runner(main, args)
    assert rotated['changed'] and rotated['generated'] is False and rotated['image_group'] == first['image_group']
    assert NEW_PASSWORD in lab.stored_conf('1-3')

    # Another key at the same path: another image group, generated.
    key_at_one_path(lab, key_files['other'])
    lab.replug('1-3')
    rekeyed = module_runner(main, args)
    assert rekeyed['changed'] and rekeyed['generated'] is True and rekeyed['image_group'] != first['image_group']
    assert len([call for call in lab.calls() if '--no-flash' in call['argv']]) == 2
    secret_free(json.dumps(first), json.dumps(rotated), json.dumps(rekeyed))


def test_a_flash_clears_what_a_killed_flash_left_in_its_slot_in_another_groups_copy(module_runner, lab, key_files, tmp_path):
    """A killed flash of one group leaves its device's identity in that group's copy in its
    slot; the next flash in that slot is of another group (another board, another key), whose
    own copy it writes. It must clear the other group's copy too: no flash of that group may come
    to this slot again soon, and a free-slot sweep never sees a slot that is held."""
    from ansible_collections.azaion.jetson.plugins.module_utils._image_group import GROUP_RECORD, ImageGroup, read_json
    lab.tree('1-3')
    key = key_at_one_path(lab, key_files['pkc'])
    images_dir = os.path.join(lab.work, 'images')
    args = lab.args(expected_email=EMAIL, images_dir=images_dir, extra_args=['-u', key])
    first = module_runner(main, args)
    assert first['changed'] and first['image_mode'] == 'shared', first['msg']

    # The flash of another device of this group, killed in slot 0 with its identity in the copy.
    killed_password = '5eed5eed5eed5eed5eed5eed5eed5eed'
    other_rootfs = tmp_path / 'other-rootfs'
    (other_rootfs / 'etc' / 'azaion').mkdir(parents=True)
    (other_rootfs / 'etc' / 'azaion' / 'device.conf').write_text(
        'AZAION_DEVICE_EMAIL=azaion-jetson-0043@azaion.com\nAZAION_DEVICE_PASSWORD=%s\n' % killed_password)
    record = read_json(os.path.join(images_dir, first['image_group'], GROUP_RECORD))
    group = ImageGroup(images_dir, record['fingerprint'])
    group.record = record
    group.write_identity(os.path.join(group.dir, 'slot-0', 'Linux_for_Tegra'), str(other_rootfs))

    def holding_it():
        return sorted(os.path.relpath(path, images_dir) for path, data in everything_under(images_dir)
                      if killed_password.encode() in data)
    assert holding_it()  # what the kill left

    # The next flash in slot 0 is of another group (another key).
    key_at_one_path(lab, key_files['other'])
    lab.replug('1-3')
    rekeyed = module_runner(main, args)
    assert rekeyed['changed'] and rekeyed['image_group'] != first['image_group'] and rekeyed['slot'] == 0, rekeyed['msg']
    assert holding_it() == []


def everything_under(top):
    for root, _dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(root, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, 'rb') as content:
                    yield path, content.read()
