import csv
import json
import os

from ansible_collections.azaion.jetson.plugins.modules import batch_report, device_state


def record(module_runner, path, **args):
    return module_runner(device_state.main, dict(path=path, **args))


def test_device_state_records_a_phase_and_keeps_a_done_phase_as_it_was(module_runner, tmp_path):
    path = str(tmp_path / 'devices' / 'AZJN-0001' / 'state.json')
    first = record(module_runner, path, phase='flash', status='done', started=1000.0, details={'board': 'orin-nano-8gb'})
    assert first['changed'] is True
    assert first['phase']['status'] == 'done' and first['phase']['board'] == 'orin-nano-8gb'
    assert first['phase']['seconds'] > 0
    written = os.stat(path).st_mtime_ns

    again = record(module_runner, path, phase='flash', status='done', started=2000.0)
    assert again['changed'] is False
    assert again['phase']['started'] == 1000.0  # the run that did the work
    assert os.stat(path).st_mtime_ns == written

    read = record(module_runner, path)
    assert read['changed'] is False and read['phases']['flash']['status'] == 'done'


def test_device_state_failure_keeps_the_other_fields_and_clears_on_done(module_runner, tmp_path):
    path = str(tmp_path / 'state.json')
    record(module_runner, path, phase='fuse', status='running', details={'burn_started': 5.0})
    failed = record(module_runner, path, phase='fuse', status='failed', error='read-back differs')
    assert failed['phase']['burn_started'] == 5.0 and failed['phase']['error'] == 'read-back differs'
    done = record(module_runner, path, phase='fuse', status='done')
    assert done['phase']['error'] is None and done['changed'] is True


def test_device_state_check_mode_writes_nothing(module_runner, tmp_path):
    path = str(tmp_path / 'state.json')
    result = module_runner(device_state.main, dict(path=path, phase='identity', status='done'), check_mode=True)
    assert result['changed'] is True
    assert not os.path.exists(path)


def test_device_state_refuses_a_corrupt_file(module_runner, tmp_path):
    path = tmp_path / 'state.json'
    path.write_text('{not json')
    result = record(module_runner, str(path), phase='identity', status='done')
    assert result['failed'] is True and 'is not a device state file' in result['msg']


def test_batch_report_rows_summary_files_and_no_change_on_rerun(module_runner, tmp_path):
    workdir = str(tmp_path)
    for phase in ('rootfs', 'identity', 'flash', 'verify'):
        record(module_runner, os.path.join(workdir, 'devices', 'AZJN-0001', 'state.json'), phase=phase, status='done',
               details={'board': 'orin-nx-16gb'} if phase == 'flash' else {})
    record(module_runner, os.path.join(workdir, 'devices', 'AZJN-0002', 'state.json'), phase='rootfs', status='done')
    record(module_runner, os.path.join(workdir, 'devices', 'AZJN-0002', 'state.json'), phase='flash', status='failed',
           error='ERROR: might be timeout in USB write')
    devices = [{'serial': 'AZJN-0001', 'email': 'azaion-jetson-0001@azaion.com', 'usb_instance': '1-1'},
               {'serial': 'AZJN-0002', 'usb_instance': '1-2'},
               {'serial': 'AZJN-0003', 'usb_instance': '1-3', 'fuse_enabled': True}]
    result = module_runner(batch_report.main, dict(workdir=workdir, devices=devices))
    assert result['changed'] is True
    assert result['summary'] == {'total': 3, 'done': 1, 'failed': 1, 'interrupted': 0, 'pending': 1, 'generations': 0,
                                 'generated_devices': 0}
    rows = dict((row['serial'], row) for row in result['rows'])
    assert rows['AZJN-0001']['board'] == 'orin-nx-16gb' and rows['AZJN-0001']['fuse'] == 'skipped'
    assert rows['AZJN-0002']['error'] == 'flash: ERROR: might be timeout in USB write'
    assert rows['AZJN-0003']['fuse'] == 'pending'  # enabled, not done
    assert 'AZJN-0002: flash: ERROR: might be timeout in USB write' in result['table']
    with open(result['json_path']) as report:
        assert json.load(report)['summary']['failed'] == 1
    with open(result['csv_path']) as report:
        assert [row['result'] for row in csv.DictReader(report)] == ['done', 'failed', 'pending']

    again = module_runner(batch_report.main, dict(workdir=workdir, devices=devices))
    assert again['changed'] is False


def test_a_report_replaced_by_a_later_wave_is_kept_in_the_history(module_runner, tmp_path):
    workdir = str(tmp_path)
    for serial in ('AZJN-0001', 'AZJN-0002'):
        record(module_runner, os.path.join(workdir, 'devices', serial, 'state.json'), phase='rootfs', status='done')
    wave1 = module_runner(batch_report.main, dict(workdir=workdir, batch='may', devices=[{'serial': 'AZJN-0001'}]))
    with open(wave1['json_path']) as report:
        first = json.load(report)
    unchanged = module_runner(batch_report.main, dict(workdir=workdir, batch='may', devices=[{'serial': 'AZJN-0001'}]))
    assert unchanged['changed'] is False and not os.path.exists(os.path.join(workdir, 'reports', 'history'))

    wave2 = module_runner(batch_report.main, dict(workdir=workdir, batch='may', devices=[{'serial': 'AZJN-0002'}]))
    assert wave2['changed'] is True
    history = os.path.join(workdir, 'reports', 'history')
    kept = sorted(os.listdir(history))
    stamp = first['generated'].replace('-', '').replace(':', '')
    assert kept == ['may-%s.csv' % stamp, 'may-%s.html' % stamp, 'may-%s.json' % stamp]
    with open(os.path.join(history, kept[2])) as report:
        assert json.load(report) == first  # wave 1's report, as it was
    with open(wave2['json_path']) as report:
        assert [row['serial'] for row in json.load(report)['devices']] == ['AZJN-0002']
    # Another batch's report is another file: nothing of "may" is touched.
    other = module_runner(batch_report.main, dict(workdir=workdir, batch='june', devices=[{'serial': 'AZJN-0001'}]))
    assert other['json_path'].endswith('june.json') and sorted(os.listdir(history)) == kept


def test_the_controller_report_combines_the_stations_reports_and_says_why_a_station_gave_none(module_runner, tmp_path):
    workdirs = dict((station, str(tmp_path / station)) for station in ('station-a', 'station-b'))
    devices = [{'serial': 'AZJN-0001', 'station': 'station-a', 'usb_instance': '1-1'},
               {'serial': 'AZJN-0002', 'station': 'station-b', 'usb_instance': '1-1'},
               {'serial': 'AZJN-0003', 'station': 'station-c', 'usb_instance': '1-1'}]
    record(module_runner, os.path.join(workdirs['station-a'], 'devices', 'AZJN-0001', 'state.json'), phase='rootfs', status='done')
    record(module_runner, os.path.join(workdirs['station-b'], 'devices', 'AZJN-0002', 'state.json'), phase='flash',
           status='failed', error='no Jetson in recovery mode')
    station_reports = {'station-c': {'failed': True, 'msg': 'Failed to connect to the host via ssh'}}
    for station, workdir in sorted(workdirs.items()):
        station_reports[station] = module_runner(batch_report.main, dict(
            workdir=workdir, devices=[device for device in devices if device['station'] == station]))
    report_dir = str(tmp_path / 'controller' / 'reports')
    run = {'started': '2026-11-30T08:00:00Z', 'tags': ['all'], 'limit': 'wave1'}
    home = module_runner(batch_report.main, dict(station_reports=station_reports, report_dir=report_dir, devices=devices,
                                                 batch='may', run=run))
    assert home['json_path'] == os.path.join(report_dir, 'may.json') and home['changed'] is True
    assert [(row['serial'], row['station'], row['result']) for row in home['rows']] == [
        ('AZJN-0001', 'station-a', 'pending'), ('AZJN-0002', 'station-b', 'failed'), ('AZJN-0003', 'station-c', 'failed')]
    assert home['rows'][2]['error'] == "its station's report could not be made: Failed to connect to the host via ssh"
    assert home['table'].splitlines()[0].split()[:2] == ['serial', 'station']
    with open(home['json_path']) as report:
        written = json.load(report)
    assert written['run'] == run
    assert written['summary'] == {'total': 3, 'done': 0, 'failed': 2, 'interrupted': 0, 'pending': 1, 'generations': 0,
                                  'generated_devices': 0}

    # The next run rewrites which run wrote it; with the same rows it is no change, and no history.
    later = dict(run, started='2026-11-30T09:00:00Z')
    again = module_runner(batch_report.main, dict(station_reports=station_reports, report_dir=report_dir, devices=devices,
                                                  batch='may', run=later))
    assert again['changed'] is False and not os.path.exists(os.path.join(report_dir, 'history'))
    with open(home['json_path']) as report:
        assert json.load(report)['run'] == later


def test_the_controller_report_makes_a_lost_stations_rows_from_what_the_run_knew(module_runner, tmp_path):
    """A station that stopped answering during flash gave no report: its devices' rows come
    from the state read at the run's start and their outcomes; the other station's from its report."""
    cause = 'station station-b stopped answering during flash; its work may have finished there; run the batch again to collect it'
    devices = [{'serial': 'AZJN-0001', 'name': 'AZJN-0001', 'station': 'station-a', 'fuse_enabled': False},
               {'serial': 'AZJN-0002', 'name': 'AZJN-0002', 'station': 'station-b', 'fuse_enabled': False},
               {'serial': 'AZJN-0003', 'name': 'AZJN-0003', 'station': 'station-b', 'fuse_enabled': False},
               {'serial': 'AZJN-0004', 'name': 'AZJN-0004', 'station': 'station-b', 'fuse_enabled': False}]
    workdir = str(tmp_path / 'station-a')
    for phase in ('rootfs', 'identity', 'flash', 'verify'):
        record(module_runner, os.path.join(workdir, 'devices', 'AZJN-0001', 'state.json'), phase=phase, status='done')
    done = dict((phase, {'status': 'done'}) for phase in ('rootfs', 'identity', 'flash', 'verify'))
    lost = {'lost': cause, 'work': 'flash',
            'states': {'AZJN-0002': {'phases': {'rootfs': {'status': 'done'}}}, 'AZJN-0003': {'phases': {'rootfs': {'status': 'done'}}},
                       'AZJN-0004': {'phases': done}},
            'outcomes': {'AZJN-0002': {'failed': True, 'station_lost': True, 'msg': 'AZJN-0002: ' + cause},
                         'AZJN-0003': {'failed': True, 'msg': 'AZJN-0003: identity failed: HTTP 403'},
                         'AZJN-0004': {'failed': False, 'msg': 'AZJN-0004: already finished: nothing to do'}}}
    station_reports = {'station-a': module_runner(batch_report.main, dict(workdir=workdir, devices=devices[:1])),
                       'station-b': lost}
    home = module_runner(batch_report.main, dict(station_reports=station_reports, report_dir=str(tmp_path / 'reports'),
                                                 devices=devices))
    rows = dict((row['serial'], row) for row in home['rows'])
    assert rows['AZJN-0001']['result'] == 'done'
    assert (rows['AZJN-0002']['result'], rows['AZJN-0002']['flash'], rows['AZJN-0002']['error']) == ('interrupted', 'interrupted', cause)
    assert rows['AZJN-0002']['rootfs'] == 'done' and rows['AZJN-0002']['identity'] == 'pending'
    assert (rows['AZJN-0003']['result'], rows['AZJN-0003']['error']) == ('failed', 'identity failed: HTTP 403')
    assert (rows['AZJN-0004']['result'], rows['AZJN-0004']['error']) == ('done', '')
    assert home['summary']['interrupted'] == 1 and home['summary']['done'] == 2 and home['summary']['failed'] == 1
    assert '%s: %s' % ('AZJN-0002', cause) in home['table']


def test_the_controller_report_needs_its_directory(module_runner):
    result = module_runner(batch_report.main, dict(station_reports={}, devices=[{'serial': 'AZJN-0001'}]))
    assert result['failed'] is True and 'report_dir' in result['msg']


def test_a_row_says_the_last_phase_a_one_line_error_and_what_a_stopped_run_interrupted(module_runner, tmp_path):
    workdir = str(tmp_path)

    def state(serial, **statuses):
        for phase, status in statuses.items():
            error = 'ERROR: might be timeout in USB write\n[ 12.3 ] tail of the log\n' if status == 'failed' else None
            record(module_runner, os.path.join(workdir, 'devices', serial, 'state.json'), phase=phase, status=status,
                   error=error)

    state('AZJN-0001', rootfs='done', identity='done', flash='failed')
    state('AZJN-0002', rootfs='done', identity='done', flash='running')  # stopped mid-flash, not resumed
    state('AZJN-0003', rootfs='done', identity='done', flash='done', verify='done')  # resumed and finished
    devices = [{'serial': serial, 'name': serial} for serial in ('AZJN-0001', 'AZJN-0002', 'AZJN-0003')]
    interrupted = {'AZJN-0002': ['flash'], 'AZJN-0003': ['flash']}  # as this run's state read found them
    result = module_runner(batch_report.main, dict(workdir=workdir, devices=devices, interrupted=interrupted))
    rows = dict((row['serial'], row) for row in result['rows'])
    assert [(rows[serial]['result'], rows[serial]['phase'], rows[serial]['interrupted']) for serial in sorted(rows)] == [
        ('failed', 'flash', ''), ('interrupted', 'flash', 'flash'), ('done', 'verify', 'flash')]
    assert rows['AZJN-0001']['error'] == 'flash: ERROR: might be timeout in USB write'
    assert rows['AZJN-0002']['flash'] == 'interrupted'
    assert result['summary'] == {'total': 3, 'done': 1, 'failed': 1, 'interrupted': 1, 'pending': 0, 'generations': 0,
                                 'generated_devices': 0}
    assert 'AZJN-0002: flash was interrupted (a run was stopped); run the batch again to resume it' in result['table']
    assert 'AZJN-0003: flash was interrupted (a run was stopped); this run resumed it' in result['table']
    with open(result['csv_path']) as report:
        assert len(report.read().splitlines()) == 4  # a header and one line per device

    # The next run finds nothing interrupted: its report is no change.
    again = module_runner(batch_report.main, dict(workdir=workdir, devices=devices))
    assert again['changed'] is False and again['rows'][2]['interrupted'] == ''
