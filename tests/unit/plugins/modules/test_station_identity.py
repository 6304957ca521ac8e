# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""azaion.jetson.station_identity: a station's devices get their device.conf and their account in
one run, against the real lab admin API on loopback (the action plugin is bypassed: api_url and
api_token go to the module directly)."""

import json
import os
import stat

import pytest

from lab.admin_api import LabAdminAPI

from ansible_collections.azaion.jetson.plugins.module_utils._device_conf import read_credentials
from ansible_collections.azaion.jetson.plugins.module_utils._device_state import DeviceState
from ansible_collections.azaion.jetson.plugins.modules.station_identity import main

TOKEN = 'lab-admin-token-station-9c1e'
PARALLEL = 4


@pytest.fixture
def lab():
    with LabAdminAPI(token=TOKEN) as server:
        yield server


def make_devices(tmp_path, count):
    """``count`` device contexts, each with an empty staging rootfs of its own."""
    devices = []
    for number in range(1, count + 1):
        serial = 'AZJN-%04d' % number
        rootfs = tmp_path / 'ports' / serial / 'rootfs'
        rootfs.mkdir(parents=True)
        state_dir = tmp_path / 'state' / serial
        devices.append(dict(
            name='jetson-%04d' % number, serial=serial, email='azaion-jetson-%04d@azaion.com' % number,
            station='localhost', rootfs=str(rootfs), device_conf=str(rootfs / 'etc' / 'azaion' / 'device.conf'),
            state_file=str(state_dir / 'state.json'), sync_record=str(state_dir / 'companion_user.json')))
    return devices


def run(module_runner, server, devices, check_mode=False, diff=False, **extra):
    args = dict(devices=devices, parallel=PARALLEL, api_url=server.url, api_token=TOKEN,
                retries=3, retry_backoff=0.001, timeout=5)
    args.update(extra)
    return module_runner(main, args, check_mode=check_mode, diff=diff)


def statuses(device_result):
    return [(call['method'], call['path'], call['status']) for call in device_result['account']['requests']]


def snapshot(paths):
    """Identity of each file (inode, mtime, content): a rewrite changes it even with equal content."""
    found = {}
    for path in paths:
        st = os.stat(path)
        with open(path, 'rb') as handle:
            found[path] = (st.st_ino, st.st_mtime_ns, handle.read())
    return found


def files_under(directory):
    return sorted(os.path.join(root, name) for root, dummy, names in os.walk(str(directory)) for name in names)


def test_twenty_devices_get_their_accounts_and_a_rerun_touches_nothing(module_runner, lab, tmp_path):
    devices = make_devices(tmp_path, 20)
    result = run(module_runner, lab, devices)
    assert not result.get('failed'), result['msg']
    assert result['failed_devices'] == [] and result['changed'] is True
    assert result['msg'] == 'identity: 20 device(s), 20 changed, 0 failed'
    users = lab.users()
    assert len(users) == 20
    for device in devices:
        outcome = result['devices'][device['name']]
        assert not outcome.get('failed'), outcome['msg']
        assert outcome['changed'] is True
        assert outcome['device_conf']['path'] == device['device_conf']
        assert outcome['device_conf']['password_state'] == 'generated'
        assert outcome['account']['action'] == 'created'
        # the shared client logs every device's requests; each device reports only its own
        assert statuses(outcome) == [('POST', '/users', 201)]
        assert stat.S_IMODE(os.stat(device['device_conf']).st_mode) == 0o600
        email, password = read_credentials(device['device_conf'])
        assert email == device['email']
        assert users[email]['password'] == password and users[email]['role'] == 'CompanionPC'
        phase = DeviceState(device['state_file']).phase('identity')
        assert phase['status'] == 'done' and phase['error'] is None
    assert len(lab.request_log()) == 20

    files = [device[key] for device in devices for key in ('device_conf', 'state_file', 'sync_record')]
    before = snapshot(files)
    again = run(module_runner, lab, devices)
    assert again['changed'] is False and again['failed_devices'] == []
    for device in devices:
        outcome = again['devices'][device['name']]
        assert outcome['changed'] is False
        assert outcome['device_conf']['password_state'] == 'kept'
        assert outcome['account']['action'] == 'unchanged' and outcome['account']['requests'] == []
    assert len(lab.request_log()) == 20  # no request at all
    assert snapshot(files) == before


def test_a_device_with_a_broken_rootfs_fails_alone(module_runner, lab, tmp_path):
    devices = make_devices(tmp_path, 6)
    broken = devices[2]
    os.rmdir(broken['rootfs'])
    result = run(module_runner, lab, devices)
    assert result['failed_devices'] == [broken['name']]
    outcome = result['devices'][broken['name']]
    assert outcome['failed'] is True and outcome['changed'] is False
    assert outcome['msg'].startswith(broken['name'] + ': device.conf: ')
    assert 'does not exist; stage the rootfs first' in outcome['msg']
    assert 'account' not in outcome  # no account without its file
    assert broken['email'] not in lab.users()
    phase = DeviceState(broken['state_file']).phase('identity')
    assert phase['status'] == 'failed'
    assert 'does not exist' in phase['error'] and broken['name'] in phase['error']
    for device in devices:
        if device is not broken:
            assert result['devices'][device['name']]['account']['action'] == 'created'
            assert DeviceState(device['state_file']).phase('identity')['status'] == 'done'
    assert len(lab.users()) == 5


def test_a_device_without_a_rootfs_is_told_what_to_set(module_runner, lab, tmp_path):
    devices = make_devices(tmp_path, 2)
    del devices[1]['rootfs']
    result = run(module_runner, lab, devices)
    assert result['failed_devices'] == [devices[1]['name']]
    msg = result['devices'][devices[1]['name']]['msg']
    assert devices[1]['name'] in msg and 'jetson_rootfs_dir' in msg and 'jetson_usb_instance' in msg
    assert result['devices'][devices[0]['name']]['account']['action'] == 'created'


def test_a_run_opens_at_most_parallel_connections(module_runner, lab, tmp_path):
    devices = make_devices(tmp_path, 20)
    result = run(module_runner, lab, devices)
    assert result['failed_devices'] == []
    assert len(lab.request_log()) == 20
    # without keep-alive this is one connection per request, 20
    assert 1 <= lab.connection_count() <= PARALLEL


def test_a_dropped_connection_is_reopened_and_the_device_converges(module_runner, lab, tmp_path):
    devices = make_devices(tmp_path, 8)
    lab.set_faults([{'method': 'POST', 'path': '/users', 'drop': 'after', 'times': 1}])
    result = run(module_runner, lab, devices)
    assert result['failed_devices'] == []
    retried = [name for name, outcome in result['devices'].items() if outcome['account']['action'] == 'password_updated']
    assert len(retried) == 1
    assert statuses(result['devices'][retried[0]]) == [('POST', '/users', None), ('POST', '/users', 409),
                                                       ('PATCH', '/users/password', 200)]
    for device in devices:
        assert lab.users()[device['email']]['password'] == read_credentials(device['device_conf'])[1]
    assert lab.connection_count() <= PARALLEL + 1  # the dropped one, replaced once


def test_no_password_nor_token_in_the_output(module_runner, lab, tmp_path):
    devices = make_devices(tmp_path, 5)
    result = run(module_runner, lab, devices, diff=True)
    assert result['failed_devices'] == []
    assert len(result['diff']) == 10  # each device's file and account
    passwords = [read_credentials(device['device_conf'])[1] for device in devices]
    # a failing device's output too: a PATCH that fails echoes nothing of the request
    lab.set_faults([{'method': 'PATCH', 'status': 500, 'times': 100}])
    rotated = run(module_runner, lab, devices, diff=True, rotate=True, retries=0)
    assert sorted(rotated['failed_devices']) == sorted(device['name'] for device in devices)
    passwords += [read_credentials(device['device_conf'])[1] for device in devices]
    assert len(set(passwords)) == 10
    for output in (result, rotated):
        dumped = json.dumps(output)
        for password in passwords:
            assert password not in dumped
        assert TOKEN not in dumped


def test_check_mode_writes_nothing_and_sends_no_write_request(module_runner, lab, tmp_path):
    devices = make_devices(tmp_path, 5)
    before = files_under(tmp_path)
    result = run(module_runner, lab, devices, check_mode=True, diff=True)
    assert result['changed'] is True and result['failed_devices'] == []
    for device in devices:
        outcome = result['devices'][device['name']]
        assert outcome['device_conf']['password_state'] == 'generated'
        assert outcome['account']['action'] == 'created'
        assert statuses(outcome) == [('GET', '/users?searchEmail=%s' % device['email'].replace('@', '%40'), 200)]
    assert lab.write_count() == 0 and lab.users() == {}
    assert files_under(tmp_path) == before  # no device.conf, no state file, no sync record


def test_a_bad_admin_api_setting_fails_each_device_after_its_file(module_runner, lab, tmp_path):
    devices = make_devices(tmp_path, 2)
    result = run(module_runner, lab, devices, api_url='ftp://admin.example.com')
    assert sorted(result['failed_devices']) == [device['name'] for device in devices]
    for device in devices:
        outcome = result['devices'][device['name']]
        assert outcome['msg'].startswith(device['name'] + ': account: api_url must be an http:// or https:// URL')
        assert os.path.exists(device['device_conf'])  # the file is kept: a re-run finds it
        assert DeviceState(device['state_file']).phase('identity')['status'] == 'failed'


@pytest.mark.parametrize('status', [401, 403])
def test_a_refused_token_leaves_the_devices_not_reached_untouched(module_runner, lab, tmp_path, status):
    # One at a time: the 3rd device's POST is refused (a token revoked mid-batch), and the
    # devices after it get neither a device.conf nor a request.
    devices = make_devices(tmp_path, 5)
    lab.set_faults([{'method': 'POST', 'status': status, 'skip': 2}])
    result = run(module_runner, lab, devices, parallel=1)
    assert result['failed_devices'] == [device['name'] for device in devices[2:]]
    refused = result['devices'][devices[2]['name']]['msg']
    assert refused.startswith(devices[2]['name'] + ': account: HTTP %d from POST /users' % status), refused
    assert 'AZAION_ADMIN_API_TOKEN' in refused
    for device in devices[3:]:
        msg = result['devices'][device['name']]['msg']
        assert msg == ('%s: not attempted, nothing changed: the admin API refused the token (HTTP %d for %s); fix the '
                       'token (azaion_admin_api_token or AZAION_ADMIN_API_TOKEN) and run again'
                       % (device['name'], status, devices[2]['name']))
        assert not os.path.exists(device['device_conf'])
    assert [entry['method'] for entry in lab.request_log()] == ['POST'] * 3
    assert sorted(lab.users()) == [devices[0]['email'], devices[1]['email']]

    lab.set_faults([])  # a good token: the re-run converges
    again = run(module_runner, lab, devices, parallel=1)
    assert again['failed_devices'] == []
    for device in devices:
        assert lab.users()[device['email']]['password'] == read_credentials(device['device_conf'])[1]


def test_a_rotation_reopens_the_flash_and_loader_check_of_a_finished_device_before_its_file_changes(
        module_runner, lab, tmp_path):
    devices = make_devices(tmp_path, 2)
    assert run(module_runner, lab, devices)['failed_devices'] == []
    for device in devices:  # then flashed and checked
        for phase in ('flash', 'verify'):
            DeviceState(device['state_file'], serial=device['serial']).record(phase, status='done')
    # The rotation's account update fails (as when the run is killed before it): the device
    # must not stay recorded as finished with a device.conf that neither its account nor the
    # flashed device holds.
    lab.set_faults([{'method': 'PATCH', 'status': 503}])
    result = run(module_runner, lab, devices, rotate=True, retries=0)
    assert result['failed_devices'] == sorted(device['name'] for device in devices)
    for device in devices:
        state = DeviceState(device['state_file'])
        assert [state.phase(phase)['status'] for phase in ('identity', 'flash', 'verify')] == ['failed'] * 3
        assert state.phase('flash')['error'] == 'the device.conf was rotated since: flash again'

    lab.set_faults([])
    assert run(module_runner, lab, devices, rotate=True)['failed_devices'] == []
    for device in devices:
        state = DeviceState(device['state_file'])
        assert state.phase('identity')['status'] == 'done' and state.phase('flash')['status'] == 'failed'
        assert lab.users()[device['email']]['password'] == read_credentials(device['device_conf'])[1]
