"""The identity role end to end: ansible-playbook against the lab admin API on loopback."""

import os
import re
import stat

from conftest import assert_ok
from lab import labkit


def assert_consistent(batch):
    """Every device has its account, and its device.conf holds the account's password."""
    users = batch.api.users()
    for device in batch.devices:
        conf = batch.conf(device)
        email = 'azaion-jetson-%s@azaion.com' % device.rsplit('-', 1)[1].lower()
        assert conf['AZAION_DEVICE_EMAIL'] == email
        assert re.match(r'^[0-9a-f]{32}$', conf['AZAION_DEVICE_PASSWORD'])
        assert users[email]['role'] == 'CompanionPC'
        assert users[email]['password'] == conf['AZAION_DEVICE_PASSWORD'], device
        status = os.stat(batch.conf_path(device))
        assert stat.S_IMODE(status.st_mode) == 0o600
        assert (status.st_uid, status.st_gid) == (labkit.SERVICE_UID, labkit.SERVICE_GID)
    assert len(users) == len(batch.devices)


def test_ten_devices_get_accounts_and_a_rerun_changes_nothing(make_batch):
    batch = make_batch(10)
    first = batch.run()
    assert_ok(first)
    assert_consistent(batch)
    # Each device reports its own change; the first one also ran the station's work for all ten.
    assert all(counts['changed'] >= 1 for counts in first.recap.values()), first.recap
    posts = [entry for entry in batch.api.request_log() if entry['method'] == 'POST']
    assert [entry['status'] for entry in posts] == [201] * 10

    files_before = dict((device, open(batch.conf_path(device)).read()) for device in batch.devices)
    requests_before = len(batch.api.request_log())
    second = batch.run()
    assert_ok(second)
    assert set(second.recap) == set(batch.devices)
    assert all(counts['changed'] == 0 and counts['failed'] == 0 for counts in second.recap.values()), second.recap
    assert len(batch.api.request_log()) == requests_before  # no request at all, so no write
    assert dict((device, open(batch.conf_path(device)).read()) for device in batch.devices) == files_before


def test_a_deleted_device_conf_is_regenerated_and_the_account_patched(make_batch):
    batch = make_batch(3)
    assert_ok(batch.run())
    old_password = batch.conf('AZJN-0002')['AZAION_DEVICE_PASSWORD']
    os.unlink(batch.conf_path('AZJN-0002'))
    seen = len(batch.api.request_log())

    rerun = batch.run()
    assert_ok(rerun)
    assert rerun.recap['AZJN-0002']['changed'] == 1
    assert rerun.recap['AZJN-0003']['changed'] == 0
    assert 'AZJN-0002: identity changed' in rerun.stdout and 'AZJN-0003: identity ok' in rerun.stdout
    new_requests = [(entry['method'], entry['path'], entry['status']) for entry in batch.api.request_log()[seen:]]
    assert new_requests == [('POST', '/users', 409), ('PATCH', '/users/password', 200)]
    assert batch.conf('AZJN-0002')['AZAION_DEVICE_PASSWORD'] != old_password
    assert_consistent(batch)


def test_check_mode_writes_nothing_and_predicts_the_changes(make_batch):
    batch = make_batch(3)
    result = batch.run('--check', '--diff')
    assert_ok(result)
    assert all(counts['changed'] >= 1 for counts in result.recap.values()), result.recap
    assert not any(os.path.exists(batch.conf_path(device)) for device in batch.devices)
    assert batch.api.write_count() == 0
    assert batch.api.users() == {}


def test_a_flaky_api_with_503s_and_dropped_connections_converges(make_batch):
    batch = make_batch(10, extra_vars={'identity_api_retries': 10})
    batch.api.set_faults([
        # the server created the account but the answer was lost: the retry sees 409 and PATCHes
        {'method': 'POST', 'drop': 'after', 'times': 2},
        # the connection dropped before the server did anything
        {'method': 'POST', 'drop': 'before', 'times': 2},
        {'method': 'POST', 'status': 503, 'rate': 0.3},
        {'method': 'PATCH', 'status': 503, 'rate': 0.3},
    ])
    result = batch.run()
    assert_ok(result)
    log = batch.api.request_log()
    assert any(entry['status'] == 503 for entry in log)
    assert [entry['fault'] for entry in log if entry['status'] is None] == ['drop after'] * 2 + ['drop before'] * 2
    assert ('PATCH', 200) in [(entry['method'], entry['status']) for entry in log]
    batch.api.set_faults([])
    assert_consistent(batch)


def test_api_down_fails_each_device_clearly_and_the_rerun_converges(make_batch):
    batch = make_batch(3, extra_vars={'identity_api_retries': 1})
    batch.api.stop()
    down = batch.run()
    assert down.returncode != 0
    assert all(counts['failed'] == 1 for counts in down.recap.values()), down.recap
    assert down.stdout.count('refused') >= 3, down.stdout[-3000:]
    for device in batch.devices:
        # the secret is kept, whole: a re-run reuses it
        assert re.match(r'^[0-9a-f]{32}$', batch.conf(device)['AZAION_DEVICE_PASSWORD'])
        assert os.listdir(os.path.dirname(batch.conf_path(device))) == ['device.conf']
    kept = dict((device, batch.conf(device)['AZAION_DEVICE_PASSWORD']) for device in batch.devices)

    batch.api.start()
    recovered = batch.run()
    assert_ok(recovered)
    assert_consistent(batch)
    assert dict((device, batch.conf(device)['AZAION_DEVICE_PASSWORD']) for device in batch.devices) == kept


def test_a_missing_token_is_a_clear_error(make_batch):
    batch = make_batch(2)
    batch.token = None
    result = batch.run()
    assert result.returncode != 0
    assert 'AZAION_ADMIN_API_TOKEN' in result.stdout
    assert '401' in result.stdout
    assert batch.api.users() == {}


def test_a_wrong_token_is_a_clear_error(make_batch):
    batch = make_batch(2)
    batch.token = 'not-the-token'
    result = batch.run()
    assert result.returncode != 0
    assert '403' in result.stdout and 'token was rejected' in result.stdout, result.stdout[-3000:]
    assert batch.api.users() == {}


def test_a_batch_with_colliding_emails_or_a_shared_rootfs_writes_nothing(make_batch):
    batch = make_batch(2)
    batch.host_vars = {'AZJN-0042': {}, 'AZXX-0042': {}, 'AZJN-0007': {}, 'AZJN-0008': {}}
    for device in batch.host_vars:
        labkit.make_rootfs(batch.rootfs(device))
    batch.host_vars['AZJN-0008']['jetson_rootfs_dir'] = batch.rootfs('AZJN-0007')
    batch.write_inventory()
    result = batch.run()
    assert result.returncode != 0
    assert 'AZJN-0042 (serial AZJN-0042) and AZXX-0042 (serial AZXX-0042)' in result.stdout
    assert 'devices AZJN-0007 and AZJN-0008 share the staging rootfs' in result.stdout
    assert not any(os.path.exists(batch.conf_path(device)) for device in batch.host_vars)
    assert batch.api.request_log() == []


def test_a_symlinked_etc_azaion_pointing_outside_the_rootfs_is_refused(make_batch, tmp_path):
    batch = make_batch(2)
    outside = tmp_path / 'outside'
    outside.mkdir()
    os.symlink(str(outside), os.path.join(batch.rootfs('AZJN-0001'), 'etc', 'azaion'))
    result = batch.run()
    assert result.returncode != 0
    assert result.recap['AZJN-0001']['failed'] == 1
    assert result.recap['AZJN-0002']['failed'] == 0
    assert 'etc/azaion' in result.stdout and 'outside' in result.stdout, result.stdout[-3000:]
    assert os.listdir(str(outside)) == []
    assert 'azaion-jetson-0001@azaion.com' not in batch.api.users()
