"""A station run: one module run, each device's work in its own thread, one result per device."""

import json
import os
import threading
import time

import pytest

from ansible.module_utils.basic import AnsibleModule
from conftest import patch_module_args

from ansible_collections.azaion.jetson.plugins.module_utils._device_state import DeviceState
from ansible_collections.azaion.jetson.plugins.module_utils._station_run import (
    StationRun,
    device_params,
    record_phase,
    station_argument_spec,
)


def devices(tmp_path, *names):
    return [{'name': name, 'serial': name, 'email': name.lower() + '@example.com',
             'state_file': str(tmp_path / name / 'state.json')} for name in names]


def run_station(tmp_path, capsys, work, names, phase='identity', check_mode=False, parallel=8):
    args = {'devices': devices(tmp_path, *names), 'parallel': parallel, '_ansible_check_mode': check_mode}
    capsys.readouterr()
    with patch_module_args(args):
        module = AnsibleModule(argument_spec=station_argument_spec(), supports_check_mode=True)
        run = StationRun(module, work, phase=phase)
        results = run.run()
        # (Warnings reach the task's result through module.warn, which the test harness swallows.)
        warnings = dict((name, list(result.get('warnings', []))) for name, result in results.items())
        with pytest.raises(SystemExit):
            run.exit(results, phase)
    output = json.loads(capsys.readouterr().out)
    output['device_warnings'] = warnings
    return output


def test_each_device_gets_its_own_result_and_one_failure_or_crash_stays_with_its_device(tmp_path, capsys):
    def work(device_module, device):
        if device['name'] == 'AZJN-0002':
            device_module.fail_json(msg='%s: no rootfs' % device['serial'])
        if device['name'] == 'AZJN-0003':
            raise RuntimeError('a bug')
        device_module.warn('looked at %s' % device['email'])
        device_module.exit_json(changed=True, msg='wrote %s' % device['serial'])

    result = run_station(tmp_path, capsys, work, ['AZJN-0001', 'AZJN-0002', 'AZJN-0003'])
    assert result['changed'] is True and not result.get('failed')
    assert result['failed_devices'] == ['AZJN-0002', 'AZJN-0003']
    assert result['devices']['AZJN-0001']['msg'] == 'wrote AZJN-0001'
    assert result['devices']['AZJN-0002']['msg'] == 'AZJN-0002: no rootfs'
    assert 'AZJN-0003: unexpected error: a bug' in result['devices']['AZJN-0003']['msg']
    assert result['device_warnings'] == {'AZJN-0001': ['looked at azjn-0001@example.com'], 'AZJN-0002': [], 'AZJN-0003': []}
    assert result['msg'] == 'identity: 3 device(s), 1 changed, 2 failed (AZJN-0002, AZJN-0003)'
    phases = dict((name, DeviceState(str(tmp_path / name / 'state.json')).phase('identity'))
                  for name in ('AZJN-0001', 'AZJN-0002'))
    assert phases['AZJN-0001']['status'] == 'done' and phases['AZJN-0001']['error'] is None
    assert phases['AZJN-0002']['status'] == 'failed' and phases['AZJN-0002']['error'] == 'AZJN-0002: no rootfs'


def test_at_most_parallel_devices_work_at_once(tmp_path, capsys):
    lock, running, most = threading.Lock(), [0], [0]

    def work(device_module, device):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        device_module.exit_json(changed=False)

    run_station(tmp_path, capsys, work, ['AZJN-%04d' % number for number in range(12)], parallel=3)
    assert most[0] == 3


def test_a_rerun_that_changes_nothing_keeps_the_record_and_check_mode_records_nothing(tmp_path, capsys):
    def unchanged(device_module, device):
        device_module.exit_json(changed=False)

    run_station(tmp_path, capsys, unchanged, ['AZJN-0001'])
    state_file = tmp_path / 'AZJN-0001' / 'state.json'
    first = state_file.read_bytes()
    stamp = os.stat(str(state_file)).st_mtime_ns
    time.sleep(0.01)
    run_station(tmp_path, capsys, unchanged, ['AZJN-0001'])
    assert state_file.read_bytes() == first and os.stat(str(state_file)).st_mtime_ns == stamp

    run_station(tmp_path, capsys, unchanged, ['AZJN-0009'], check_mode=True)
    assert not (tmp_path / 'AZJN-0009').exists()


def test_record_phase_keeps_a_done_phase_that_changed_nothing_and_writes_a_failure_with_its_error(tmp_path):
    state = DeviceState(str(tmp_path / 'state.json'), serial='AZJN-0001')
    started = time.time()
    running = record_phase(state, 'flash', 'running', started)
    assert running['status'] == 'running' and running['finished'] is None
    done = record_phase(state, 'flash', 'done', started)
    assert done['status'] == 'done' and done['seconds'] >= 0
    assert record_phase(state, 'flash', 'done', time.time(), unchanged=True) == done
    failed = record_phase(state, 'flash', 'failed', time.time(), error='timeout in USB write')
    assert failed['status'] == 'failed' and failed['error'] == 'timeout in USB write'


def test_device_params_apply_the_single_device_modules_spec():
    spec = {'rootfs_dir': {'type': 'path', 'required': True}, 'mode': {'type': 'raw', 'default': '0600'},
            'rotate': {'type': 'bool', 'default': False}}
    params = device_params(spec, {'rootfs_dir': '/r', 'rotate': 'yes', 'serial': 'ignored', 'mode': None})
    assert params == {'rootfs_dir': '/r', 'mode': '0600', 'rotate': True}
    with pytest.raises(ValueError, match='rootfs_dir'):
        device_params(spec, {'rotate': True})


def test_a_phase_core_is_called_with_the_shared_options_and_its_secrets_are_masked_everywhere(tmp_path, capsys):
    """A core is a plain function, core(shared, device) -> result: no module stands in for it."""
    secret = 'f00dfacef00dfacef00dfacef00dface'
    seen = []

    def core(shared, device):
        seen.append((device['name'], shared))
        if device['name'] == 'AZJN-0002':
            return dict(failed=True, msg='logged in as nobody with %s' % secret, no_log_values=[secret])
        return dict(changed=True, msg='checked', warnings=['slow Loader'], no_log_values=[secret], echo=secret)

    args = {'devices': devices(tmp_path, 'AZJN-0001', 'AZJN-0002'), 'parallel': 2, 'timeout': 7}
    capsys.readouterr()
    with patch_module_args(args):
        module = AnsibleModule(argument_spec=station_argument_spec(timeout=dict(type='int')), supports_check_mode=True)
        run = StationRun(module, core=core, shared_options=('timeout',), phase='verify')
        with pytest.raises(SystemExit):
            run.exit(run.run(), 'verify')
    printed = capsys.readouterr().out
    output = json.loads(printed)
    assert sorted(seen) == [('AZJN-0001', {'timeout': 7, 'check_mode': False}), ('AZJN-0002', {'timeout': 7, 'check_mode': False})]
    assert output['failed_devices'] == ['AZJN-0002']
    # A failure's message is led by its device's name, as a module's own would not be.
    assert output['devices']['AZJN-0002']['msg'].startswith('AZJN-0002: logged in as nobody with ')
    assert output['devices']['AZJN-0001']['changed'] is True
    assert secret not in printed and 'no_log_values' not in printed


def test_an_interrupted_station_run_starts_no_more_tools(tmp_path, capsys):
    """SIGINT reaches a station module through its run's process group: its main thread is
    interrupted while the devices' threads go on, and none of them may start a tool after that."""
    from ansible_collections.azaion.jetson.plugins.module_utils import _tool_runner
    tool_runs = []

    def core(shared, device):
        if device['name'] == 'AZJN-0001':
            raise KeyboardInterrupt()  # as the main thread gets it, through this device's future
        deadline = time.monotonic() + 10
        while not _tool_runner._STOPPING.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        tool_runs.append(_tool_runner.run_tool(['sleep', '30'], str(tmp_path), str(tmp_path / 'tool.log'), 60))
        return dict(msg='done')

    args = {'devices': devices(tmp_path, 'AZJN-0001', 'AZJN-0002'), 'parallel': 2}
    try:
        with patch_module_args(args):
            module = AnsibleModule(argument_spec=station_argument_spec(), supports_check_mode=True)
            started = time.monotonic()
            with pytest.raises(KeyboardInterrupt):
                StationRun(module, core=core, ends_with_the_run=False).run()
        assert [(run.rc, run.seconds) for run in tool_runs] == [(-15, 0.0)]  # refused, never started
        assert time.monotonic() - started < 10
    finally:
        _tool_runner._STOPPING.clear()
