# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""azaion.jetson.station_flash: all of a station's devices flashed in one module run, one thread
per device, against the lab factory station (the fake Linux_for_Tegra bundle's real bash tools
with NVIDIA's host-wide side effects, the station's host root and a fake USB sysfs tree)."""

import errno
import fcntl
import json
import os
import subprocess
import sys
import time

from lab import l4t_bundle, l4t_host, labkit
from lab.processes import alive

from ansible_collections.azaion.jetson.plugins.module_utils._workspace import clone_tree
from ansible_collections.azaion.jetson.plugins.modules.station_flash import main, signing_args

PRIVATE = ['bootloader', 'tools/kernel_flash', 'rootfs/boot']
MODULE_PATH = os.path.join(labkit.REPO_ROOT, 'plugins', 'modules', 'station_flash.py')
CONCURRENCY = 3


class Station:
    """A lab factory station with a Jetson in recovery mode on each of ``ports``, each port's
    working tree holding its device's own device.conf, and the device contexts of those devices."""

    def __init__(self, root, count, **lab_options):
        self.ports = ['1-%d' % number for number in range(1, count + 1)]
        self.lab = labkit.FactoryLab(root, dict((port, '7523') for port in self.ports), **lab_options)
        self.workdir = self.lab.workdir
        self.devices = []
        for number, port in enumerate(self.ports, 1):
            serial = 'AZJN-%04d' % number
            tree = os.path.join(self.workdir, 'ports', port, 'Linux_for_Tegra')
            clone_tree(self.lab.bundle, tree, PRIVATE)
            device = dict(name='jetson-%04d' % number, serial=serial, email='azaion-jetson-%04d@azaion.com' % number,
                          station='localhost', usb_instance=port, board='', board_identity={}, own_rootfs='',
                          port_tree=tree, rootfs=os.path.join(tree, 'rootfs'),
                          state_file=os.path.join(self.workdir, 'devices', serial, 'state.json'))
            self.write_conf(device)
            self.devices.append(device)

    @staticmethod
    def password(device):
        return 'secret-of-%s-0123456789abcdef' % device['serial']

    def write_conf(self, device):
        path = os.path.join(device['rootfs'], 'etc', 'azaion', 'device.conf')
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as conf:
            conf.write('AZAION_DEVICE_EMAIL=%s\nAZAION_DEVICE_PASSWORD=%s\n' % (device['email'], self.password(device)))
        os.chmod(path, 0o600)

    def args(self, **extra):
        args = dict(devices=self.devices, usb_sysfs_root=self.lab.sysfs, station_root=self.lab.host_root,
                    log_dir=os.path.join(self.workdir, 'logs'), slots_dir=self.slots_dir(), concurrency=CONCURRENCY,
                    settle_timeout=5, images_dir=os.path.join(self.workdir, 'images'))
        args.update(extra)
        return args

    def slots_dir(self):
        return os.path.join(self.workdir, 'flash-slots')

    def calls(self):
        return l4t_bundle.tool_calls(self.lab.lab_state)

    def runs(self):
        return l4t_bundle.flash_runs(self.lab.lab_state)

    def stored_conf(self, port):
        return labkit.read_device_conf(self.lab.storage(port))

    def phase(self, device):
        with open(device['state_file']) as state:
            return json.load(state)['phases']['flash']

    def held_slots(self):
        """The slot lock files (flash and generation) someone still holds."""
        held = []
        for name in sorted(os.listdir(self.slots_dir())):
            fd = os.open(os.path.join(self.slots_dir(), name), os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                assert exc.errno in (errno.EAGAIN, errno.EACCES)
                held.append(name)
            finally:
                os.close(fd)
        return held

    def is_clean(self):
        """No export, gadget interface or held slot of a flash left on the station."""
        host = self.lab.host_root
        assert l4t_host.exports(host) == []
        assert os.listdir(os.path.join(host, 'etc', 'exports.d')) == []
        assert l4t_host.gadget_interfaces(host) == []
        assert self.held_slots() == []
        return True


def most_at_once(runs):
    """The largest number of ``runs`` (with start and end) in flight at the same moment."""
    edges = sorted([(run['start'], 1) for run in runs] + [(run['end'], -1) for run in runs])
    in_flight = most = 0
    for _moment, step in edges:  # at equal times an end (-1) sorts before a start
        in_flight += step
        most = max(most, in_flight)
    return most


def secret_free(station, *texts):
    for text in texts:
        for device in station.devices:
            assert station.password(device) not in text


def test_six_devices_are_flashed_in_one_run_at_most_three_at_once(module_runner, tmp_path):
    station = Station(tmp_path, 6, flash_seconds=1.0)

    result = module_runner(main, station.args())

    assert not result.get('failed'), result['msg']
    assert result['failed_devices'] == [] and result['changed'] is True
    assert result['msg'] == 'flash: 6 device(s), 6 changed, 0 failed'
    assert list(result['devices']) == [device['name'] for device in station.devices]
    for device in station.devices:
        outcome = result['devices'][device['name']]
        assert outcome['changed'] and not outcome.get('failed'), outcome['msg']
        assert outcome['board'] == 'orin-nano-8gb' and outcome['slot'] in range(CONCURRENCY)
        # What reached the device on its port is its own tree, with its own device.conf.
        assert station.stored_conf(device['usb_instance']) == {
            'AZAION_DEVICE_EMAIL': device['email'], 'AZAION_DEVICE_PASSWORD': station.password(device)}
        phase = station.phase(device)
        assert phase['status'] == 'done' and phase['fingerprint'] == outcome['fingerprint']
        assert phase['usb_instance'] == device['usb_instance']
    runs = station.runs()
    assert sorted(run['usb_instance'] for run in runs) == station.ports
    assert all(run['device'] == run['usb_instance'] and run['exit'] == 0 for run in runs)
    # One image group: one generation, and each flash from its slot's tree with its own APP image.
    assert len([call for call in station.calls() if '--no-flash' in call['argv']]) == 1
    assert len({outcome['image_group'] for outcome in result['devices'].values()}) == 1
    assert all(outcome['image_mode'] == 'shared' and outcome['prepare_seconds'] < 1
               for outcome in result['devices'].values())
    assert all(run['tree'].endswith('/slot-%d/Linux_for_Tegra' % run['instance']) for run in runs)
    # The flash slots bound the flashes in flight, and there were several at once.
    assert 2 <= most_at_once(runs) <= CONCURRENCY, runs
    assert l4t_bundle.collisions(station.lab.lab_state) == []
    assert station.is_clean()
    secret_free(station, json.dumps(result))


def test_a_rerun_of_a_flashed_station_runs_no_tool(module_runner, tmp_path):
    station = Station(tmp_path, 3)
    first = module_runner(main, station.args())
    assert first['changed'] and first['failed_devices'] == [], first['msg']
    calls = len(station.calls())

    again = module_runner(main, station.args())

    assert again['changed'] is False and again['failed_devices'] == [], again['msg']
    assert len(station.calls()) == calls
    for device in station.devices:
        outcome = again['devices'][device['name']]
        assert outcome['skipped_reason'] == 'already flashed with this image'
        assert outcome['fingerprint'] == first['devices'][device['name']]['fingerprint']
    assert station.is_clean()


def test_a_failure_on_one_port_fails_only_that_device(module_runner, tmp_path):
    station = Station(tmp_path, 4)
    broken = station.devices[1]
    l4t_bundle.plant_failure(station.lab.lab_state, broken['usb_instance'], kind='usb-timeout')

    result = module_runner(main, station.args())

    assert not result.get('failed'), 'one device\'s failure must not fail the task'
    assert result['failed_devices'] == [broken['name']]
    assert result['msg'] == 'flash: 4 device(s), 3 changed, 1 failed (%s)' % broken['name']
    failed = result['devices'][broken['name']]
    assert failed['failed'] and not failed['changed']
    assert failed['msg'].startswith(broken['name'] + ': ')
    assert ('flashing %s on USB port %s failed: exit code 1; a USB write timed out'
            % (broken['serial'], broken['usb_instance'])) in failed['msg']
    assert station.phase(broken)['status'] == 'failed'
    for device in station.devices:
        if device is not broken:
            outcome = result['devices'][device['name']]
            assert outcome['changed'] and not outcome.get('failed'), outcome['msg']
            assert station.stored_conf(device['usb_instance'])['AZAION_DEVICE_EMAIL'] == device['email']
    assert not os.path.exists(station.lab.storage(broken['usb_instance']))
    assert station.is_clean()
    secret_free(station, json.dumps(result))

    # The device is still in recovery mode: the retry flashes it alone.
    calls = len(station.calls())
    retried = module_runner(main, station.args())
    assert retried['failed_devices'] == [] and retried['msg'] == 'flash: 4 device(s), 1 changed, 0 failed'
    assert [call['argv'][:2] for call in station.calls()[calls:]] == [['--usb-instance', broken['usb_instance']]]


def test_check_mode_runs_no_tool(module_runner, tmp_path):
    station = Station(tmp_path, 3)

    predicted = module_runner(main, station.args(), check_mode=True)

    assert predicted['changed'] is True and predicted['failed_devices'] == []
    for device in station.devices:
        outcome = predicted['devices'][device['name']]
        assert 'would flash %s on USB port %s' % (device['serial'], device['usb_instance']) in outcome['msg']
    assert station.calls() == [] and station.runs() == []
    assert not os.path.exists(os.path.join(station.workdir, 'devices'))
    assert not os.path.exists(station.slots_dir())


def test_devices_without_a_port_of_their_own_are_refused(module_runner, tmp_path):
    station = Station(tmp_path, 3)
    station.devices[1].update(usb_instance='', port_tree='')
    station.devices[2].update(usb_instance=station.devices[0]['usb_instance'], port_tree=station.devices[0]['port_tree'])

    result = module_runner(main, station.args())

    assert result['failed_devices'] == [device['name'] for device in station.devices]
    assert 'it has no USB port' in result['devices'][station.devices[1]['name']]['msg']
    assert 'are all on USB port 1-1' in result['devices'][station.devices[2]['name']]['msg']
    assert station.calls() == []


def test_a_killed_station_run_takes_every_tool_down(tmp_path):
    # The tools are started by the run's threads: each must still get SIGTERM when the module
    # dies. (One SIGTERM per thread of the dying module may reach a tool, as each thread hands it
    # on to the next: the lab's exit record is then cut short, so the processes are watched.)
    station = Station(tmp_path, 2, flash_seconds=30.0)
    env = dict(os.environ, PYTHONPATH=labkit.COLLECTIONS_ROOT)
    module = subprocess.Popen([sys.executable, MODULE_PATH, json.dumps({'ANSIBLE_MODULE_ARGS': station.args()})],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 30
        while len(station.runs()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(station.runs()) == 2, 'the flashes never started'
        tools = [call['pid'] for call in station.calls() if '--flash-only' in call['argv']]
        assert len(tools) == 2 and all(alive(pid) for pid in tools)
    finally:
        module.kill()  # SIGKILL: no clean-up of its own runs
        module.wait()
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in tools) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in tools), 'a tool outlived its module'
    assert all(run['exit'] in (None, 143) for run in station.runs())  # SIGTERM, never a flash that went on


def test_parallel_one_flashes_the_devices_one_after_another(module_runner, tmp_path):
    station = Station(tmp_path, 2, flash_seconds=0.5)
    result = module_runner(main, station.args(parallel=1))
    assert result['failed_devices'] == [] and result['changed'], result['msg']
    assert most_at_once(station.runs()) == 1


def test_the_sbk_encrypts_only_for_a_device_that_holds_or_will_hold_one(tmp_path):
    pkh = '0x' + '5a' * 64
    pkc_only = l4t_bundle.write_fuse_config(str(tmp_path / 'pkc.xml'), {'PublicKeyHash': pkh, 'BootSecurityInfo': '0x202'})
    with_sbk = l4t_bundle.write_fuse_config(str(tmp_path / 'sbk.xml'),
                                            {'PublicKeyHash': pkh, 'SecureBootKey': '0x' + '12' * 32, 'BootSecurityInfo': '0x20a'})
    keys = dict(pkc_key='/keys/pkc.pem', sbk_key='/keys/sbk.key')
    assert signing_args(dict(keys, fuse_enabled=True, fuse_config=pkc_only)) == ['-u', '/keys/pkc.pem']
    assert signing_args(dict(keys, fuse_enabled=True, fuse_config=with_sbk)) == ['-u', '/keys/pkc.pem', '-v', '/keys/sbk.key']
    # Fused elsewhere (not fused by this batch): the keys given are the device's.
    assert signing_args(dict(keys, fuse_enabled=False, fuse_config=pkc_only)) == ['-u', '/keys/pkc.pem', '-v', '/keys/sbk.key']
    assert signing_args(dict(pkc_key='/keys/pkc.pem')) == ['-u', '/keys/pkc.pem']
