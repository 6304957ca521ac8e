# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The live progress of a station run: how it is recorded on the station, read back with each
device's log line, and shown on the controller; and the steps a station flash records."""

import json
import os
import sys

import pytest

from lab import l4t_bundle
from lab.usb_sysfs import make_usb_sysfs

from ansible_collections.azaion.jetson.plugins.module_utils import _progress
from ansible_collections.azaion.jetson.plugins.module_utils._progress import (
    ProgressFile,
    duration,
    last_log_line,
    progress_block,
    progress_path,
    read_progress,
)
from ansible_collections.azaion.jetson.plugins.modules.l4t_rootfs import main as l4t_rootfs
from ansible_collections.azaion.jetson.plugins.modules.station_flash import main as station_flash
from ansible_collections.azaion.jetson.plugins.modules.station_trees import main as station_trees

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'modules'))
from test_station_flash import Station  # noqa: E402 pylint: disable=wrong-import-position
from test_station_trees import context  # noqa: E402 pylint: disable=wrong-import-position


def read(path):
    with open(path) as progress:
        return json.load(progress)


def test_a_run_starts_with_every_device_queued_and_each_change_of_step_is_written(tmp_path):
    path = progress_path(str(tmp_path), 'flash')
    progress = ProgressFile(path, 'flash', ['AZJN-0001', 'AZJN-0002'])
    assert path == os.path.join(str(tmp_path), 'progress-flash.json')
    assert dict((name, record['step']) for name, record in read(path)['devices'].items()) == {
        'AZJN-0001': 'queued', 'AZJN-0002': 'queued'}

    report = progress.reporter('AZJN-0002')
    report('generating images', '/logs/AZJN-0002-flash.log')
    written = read(path)
    assert written['phase'] == 'flash' and written['pid'] == os.getpid()
    assert written['devices']['AZJN-0002']['step'] == 'generating images'
    assert written['devices']['AZJN-0002']['log'] == '/logs/AZJN-0002-flash.log'
    assert written['devices']['AZJN-0001']['step'] == 'queued'
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert os.listdir(str(tmp_path)) == ['progress-flash.json']  # no temporary file left

    progress.close()
    assert not os.path.exists(path)


def test_the_same_step_again_writes_nothing_and_keeps_its_start(tmp_path, monkeypatch):
    progress = ProgressFile(progress_path(str(tmp_path), 'flash'), 'flash', ['AZJN-0001'])
    writes = []
    monkeypatch.setattr(_progress, 'write_file_atomic', lambda path, data, mode: writes.append(data))
    progress.step('AZJN-0001', 'waiting for a flash slot', '/logs/a.log')
    since = progress.devices['AZJN-0001']['since']
    progress.step('AZJN-0001', 'waiting for a flash slot', '/logs/a.log')
    progress.step('AZJN-0001', 'waiting for a flash slot')
    assert len(writes) == 1 and progress.devices['AZJN-0001']['since'] == since


def test_a_progress_file_that_cannot_be_written_turns_recording_off_and_fails_nothing(tmp_path):
    not_a_directory = os.path.join(str(tmp_path), 'logs')
    with open(not_a_directory, 'w'):
        pass
    progress = ProgressFile(progress_path(not_a_directory, 'flash'), 'flash', ['AZJN-0001'])
    assert progress.path is None
    progress.step('AZJN-0001', 'generating images')
    progress.close()
    assert os.listdir(str(tmp_path)) == ['logs']


def test_without_a_path_nothing_is_written(tmp_path):
    progress = ProgressFile(None, 'flash', ['AZJN-0001'])
    progress.step('AZJN-0001', 'generating images')
    progress.close()
    assert progress.devices['AZJN-0001']['step'] == 'generating images' and os.listdir(str(tmp_path)) == []


def test_the_last_log_line_is_its_last_text_without_terminal_escapes_and_cut_to_one_line(tmp_path):
    log = os.path.join(str(tmp_path), 'flash.log')
    with open(log, 'w') as out:
        out.write('[ 1.0] first\n\x1b[32m[ 130.2] Writing partition APP\x1b[0m ... 45%\r\n\n  \n')
    assert last_log_line(log) == '[ 130.2] Writing partition APP ... 45%'
    with open(log, 'a') as out:
        out.write('x' * 200 + '\n')
    assert last_log_line(log) == 'x' * (_progress.LOG_LINE_WIDTH - 3) + '...'
    assert last_log_line(os.path.join(str(tmp_path), 'missing.log')) == '' and last_log_line(None) == ''


def test_reading_gives_each_device_its_log_line_and_the_stations_clock(tmp_path):
    log = os.path.join(str(tmp_path), 'AZJN-0001.log')
    with open(log, 'w') as out:
        out.write('Step 4: Start the flashing process\n')
    path = progress_path(str(tmp_path), 'flash')
    progress = ProgressFile(path, 'flash', ['AZJN-0001', 'AZJN-0002'])
    progress.step('AZJN-0001', 'flashing as instance 0', log)
    read_back = read_progress(path)
    assert read_back['found'] and read_back['phase'] == 'flash'
    assert read_back['now'] >= progress.devices['AZJN-0001']['since']
    assert read_back['devices']['AZJN-0001']['log_line'] == 'Step 4: Start the flashing process'
    assert read_back['devices']['AZJN-0002']['log_line'] == ''
    progress.close()
    ended = read_progress(path)
    assert (ended['found'], ended['phase'], ended['devices']) == (False, None, {})


def test_a_half_written_or_foreign_file_reads_as_not_found(tmp_path):
    path = progress_path(str(tmp_path), 'flash')
    for content in ('{"devices": {"AZJN', '[]', '{"phase": "flash"}'):
        with open(path, 'w') as out:
            out.write(content)
        assert not read_progress(path)['found']


def test_durations_read_as_seconds_minutes_or_hours():
    assert [duration(seconds) for seconds in (-1, 0, 45.9, 60, 130, 3599, 3600, 3725)] == [
        '0s', '0s', '45s', '1m00s', '2m10s', '59m59s', '1h00m', '1h02m']


def test_the_block_counts_done_failed_and_to_go_and_lists_every_device_not_done():
    progress = dict(phase='flash', now=1000.0, devices={
        'AZJN-0004': dict(step='waiting for a flash slot', since=870.0, log_line=''),
        'AZJN-0003': dict(step='flashing as instance 1', since=870.0, log_line='[ 130.2] Writing partition APP ...'),
        'AZJN-0001': dict(step='done', since=990.0, log_line='Flash is successful'),
        'AZJN-0002': dict(step='failed', since=995.0, log_line='Flash failure'),
        'AZJN-0005': dict(step='queued', since=None, log_line=''),
    })
    block = progress_block(progress, 'station-a', when=1796070910)
    assert block.split('\n') == [
        '[2026-11-30 20:35:10Z] flash on station-a: 1 done, 1 failed, 3 to go',
        '  AZJN-0002  failed                                5s  "Flash failure"',
        '  AZJN-0003  flashing as instance 1             2m10s  "[ 130.2] Writing partition APP ..."',
        '  AZJN-0004  waiting for a flash slot           2m10s',
        '  AZJN-0005  queued                                0s',
    ]


@pytest.fixture
def steps(monkeypatch):
    """Each step recorded, as (name, step, log path, whether the progress file was there), while
    ProgressFile records it as ever."""
    recorded = []
    record = ProgressFile.step
    monkeypatch.setattr(ProgressFile, 'step', lambda self, name, step, log_path=None: (
        recorded.append((name, step, log_path, self.path is not None and os.path.isfile(self.path))),
        record(self, name, step, log_path)))
    return recorded


def test_a_long_block_counts_the_devices_that_wait_one_line_per_step():
    devices = {}
    for number in range(1, 41):
        name = 'AZJN-%04d' % number
        if number <= 10:
            devices[name] = dict(step='done', since=900.0, log_line='Flash is successful')
        elif number == 11:
            devices[name] = dict(step='failed', since=950.0, log_line='Flash failure')
        elif number <= 13:
            devices[name] = dict(step='flashing as instance %d' % (number - 12), since=880.0, log_line='Writing APP')
        elif number <= 33:
            devices[name] = dict(step='waiting for a flash slot', since=700.0 + number, log_line='images generated')
        else:
            devices[name] = dict(step='queued', since=400.0, log_line='')
    block = progress_block(dict(phase='flash', now=1000.0, devices=devices), 'station-a', when=1796070910)
    assert block.split('\n') == [
        '[2026-11-30 20:35:10Z] flash on station-a: 10 done, 1 failed, 29 to go',
        '  AZJN-0011  failed                               50s  "Flash failure"',
        '  AZJN-0012  flashing as instance 0             2m00s  "Writing APP"',
        '  AZJN-0013  flashing as instance 1             2m00s  "Writing APP"',
        '  7 device(s) queued, the longest for 10m00s',
        '  20 device(s) waiting for a flash slot, the longest for 4m46s',
    ]
    # Up to LISTED_DEVICES not done, every one has its line.
    few = dict((name, record) for name, record in devices.items() if name <= 'AZJN-0016')
    lines = progress_block(dict(phase='flash', now=1000.0, devices=few), 'station-a').split('\n')
    assert [line.split()[0] for line in lines[1:]] == ['AZJN-%04d' % number for number in range(11, 17)]


def test_a_station_flash_records_each_devices_steps_in_order_and_removes_its_file_at_the_end(tmp_path, module_runner,
                                                                                             steps):
    station = Station(tmp_path / 'lab', 2)
    result = module_runner(station_flash, station.args())
    assert result['failed_devices'] == [], result
    generated = [device['name'] for device in station.devices if result['devices'][device['name']]['generated']]
    assert len(generated) == 1  # one image group: the others wait for its generation
    for device in station.devices:
        slot = result['devices'][device['name']]['slot']
        generation = ['waiting for a generation slot', 'generating images'] if device['name'] in generated else []
        assert [step for name, step, _log, _written in steps if name == device['name']] == [
            'checking the device', 'waiting for its image group'] + generation + [
            'waiting for a flash slot', 'flashing as instance %d' % slot, 'checking the outcome', 'done'], steps
    assert all(written for _name, _step, _log, written in steps)
    assert not os.path.exists(progress_path(os.path.join(station.workdir, 'logs'), 'flash'))

    # Again: a device flashed with its image is checked, then done; one that is not in recovery
    # mode on its port fails.
    steps[:] = []
    absent = dict(station.devices[0], name='jetson-0009', serial='AZJN-0009', usb_instance='1-9',
                  state_file=os.path.join(station.workdir, 'devices', 'AZJN-0009', 'state.json'))
    result = module_runner(station_flash, station.args(devices=[station.devices[0], absent]))
    assert result['failed_devices'] == ['jetson-0009'], result
    assert [step for name, step, _log, _written in steps if name == 'jetson-0001'] == ['checking the device', 'done']
    assert [step for name, step, _log, _written in steps if name == 'jetson-0009'] == ['checking the device', 'failed']

    # With progress_interval 0, and in check mode, nothing is recorded.
    for args, check_mode in ((station.args(progress_interval=0, force=True), False), (station.args(), True)):
        steps[:] = []
        module_runner(station_flash, args, check_mode=check_mode)
        assert steps and not any(written for _name, _step, _log, written in steps)


def test_station_trees_records_each_device_making_its_port_tree_then_its_end(tmp_path, module_runner, steps):
    sysfs = make_usb_sysfs(str(tmp_path / 'sysfs'), {'1-1': '7523'})
    staging = l4t_bundle.make_bundle(str(tmp_path / 'staging'), str(tmp_path / 'lab-state'), sysfs)
    workdir = str(tmp_path / 'station')
    logs = os.path.join(workdir, 'logs')
    devices = [context(workdir, 'AZJN-0041', '1-1'), context(workdir, 'AZJN-0042')]
    result = module_runner(station_trees, dict(devices=devices, src=staging, log_dir=logs))
    assert result['failed_devices'] == ['AZJN-0042'], result
    assert [(name, step) for name, step, _log, _written in steps if name == 'AZJN-0041'] == [
        ('AZJN-0041', 'making its port tree'), ('AZJN-0041', 'done')]
    assert [step for name, step, _log, _written in steps if name == 'AZJN-0042'] == ['making its port tree', 'failed']
    assert all(written for _name, _step, _log, written in steps)
    assert os.listdir(logs) == []  # removed at the end

    # Without a log_dir, with progress_interval 0, and in check mode, nothing is recorded.
    for args, check_mode in ((dict(), False), (dict(log_dir=logs, progress_interval=0), False),
                             (dict(log_dir=logs), True)):
        steps[:] = []
        module_runner(station_trees, dict(args, devices=devices[:1], src=staging), check_mode=check_mode)
        assert steps and not any(written for _name, _step, _log, written in steps)


@pytest.mark.skipif(os.geteuid() != 0, reason='staging a rootfs needs root, as on a station (tar -p, apply_binaries.sh)')
def test_l4t_rootfs_records_the_staging_trees_steps_with_the_tools_log(tmp_path, module_runner, steps):
    sysfs = make_usb_sysfs(str(tmp_path / 'sysfs'), {'1-1': '7523'})
    tree = l4t_bundle.make_bundle(str(tmp_path / 'staging'), str(tmp_path / 'lab-state'), sysfs)
    logs = str(tmp_path / 'logs')
    args = dict(l4t_dir=tree, sample_rootfs=l4t_bundle.make_sample_rootfs_tarball(str(tmp_path)), log_dir=logs,
                default_user='azaion', default_user_password='not-shown-here')
    result = module_runner(l4t_rootfs, args)
    assert result['steps'] == ['unpack sample rootfs', 'apply_binaries.sh', 'create default user'], result
    assert [(name, step) for name, step, _log, _written in steps] == [
        ('staging tree', 'unpack sample rootfs'), ('staging tree', 'apply_binaries.sh'),
        ('staging tree', 'create default user')]
    assert all(log == result['log_path'] and written for _name, _step, log, written in steps)
    assert os.listdir(logs) == [os.path.basename(result['log_path'])]  # the progress file is gone

    # Staged already: nothing runs, and no progress is kept.
    steps[:] = []
    again = module_runner(l4t_rootfs, args)
    assert again['steps'] == [] and steps == [] and os.listdir(logs) == [os.path.basename(result['log_path'])]
