# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""azaion.jetson.companion_user, run as Ansible runs it, against the real lab admin API on loopback."""

import datetime
import json
import stat

import pytest

from lab.admin_api import LabAdminAPI

from ansible_collections.azaion.jetson.plugins.modules import companion_user
from ansible_collections.azaion.jetson.plugins.module_utils._companion_user import (
    build_record,
    coerce_role,
    password_digest,
    record_matches,
    user_in_search,
)

EMAIL = 'azaion-jetson-0042@azaion.com'
PASSWORD = '5f0c1e2d3b4a59687766554433221100'
OLD_PASSWORD = 'ffffffffffffffffffffffffffffffff'
TOKEN = 'lab-admin-token-7f3a'
main = companion_user.main


def write_conf(path, email=EMAIL, password=PASSWORD):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('AZAION_DEVICE_EMAIL=%s\nAZAION_DEVICE_PASSWORD=%s\n' % (email, password))
    path.chmod(0o600)
    return str(path)


@pytest.fixture
def conf(tmp_path):
    return write_conf(tmp_path / 'rootfs' / 'etc' / 'azaion' / 'device.conf')


@pytest.fixture
def lab():
    with LabAdminAPI() as server:
        yield server


def args_for(server_or_url, device_conf, **extra):
    url = server_or_url if isinstance(server_or_url, str) else server_or_url.url
    args = {'api_url': url, 'device_conf': device_conf, 'retries': 3, 'retry_backoff': 0.001, 'timeout': 5}
    args.update(extra)
    return args


def statuses(result):
    return [(call['method'], call['path'], call['status']) for call in result['requests']]


def assert_no_secret(result):
    dumped = json.dumps(result)
    assert PASSWORD not in dumped
    assert OLD_PASSWORD not in dumped
    assert TOKEN not in dumped


# ---------------------------------------------------------------------------------------------
# pure logic

@pytest.mark.parametrize('value, expected', [
    ('CompanionPC', 'CompanionPC'), (' CompanionPC ', 'CompanionPC'), (30, 30), ('30', 30), (' 30 ', 30),
    (30.0, 30), ('Companion PC 2', 'Companion PC 2'),
])
def test_coerce_role(value, expected):
    result = coerce_role(value)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize('value', [True, False, '', '   ', None, [30], {'role': 30}, 30.5])
def test_coerce_role_rejects(value):
    with pytest.raises(ValueError):
        coerce_role(value)


def test_password_digest_depends_on_email_and_password_and_reveals_neither():
    digest = password_digest(EMAIL, PASSWORD)
    assert len(digest) == 64 and PASSWORD not in digest
    assert digest != password_digest(EMAIL, OLD_PASSWORD)
    assert digest != password_digest('other@azaion.com', PASSWORD)
    # the NUL separator keeps "ab"+"c" and "a"+"bc" apart
    assert password_digest('ab', 'c') != password_digest('a', 'bc')


def test_record_matching():
    digest = password_digest(EMAIL, PASSWORD)
    record = build_record(EMAIL, 'http://api', 'CompanionPC', digest, 'created',
                          now=datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc))
    assert record['timestamp'] == '2025-01-02T03:04:05Z'
    assert PASSWORD not in json.dumps(record)
    assert record_matches(record, EMAIL, 'http://api', 'CompanionPC', digest)
    assert not record_matches(record, 'other@azaion.com', 'http://api', 'CompanionPC', digest)
    assert not record_matches(record, EMAIL, 'http://other', 'CompanionPC', digest)
    assert not record_matches(record, EMAIL, 'http://api', 30, digest)
    assert not record_matches(record, EMAIL, 'http://api', 'CompanionPC', password_digest(EMAIL, OLD_PASSWORD))
    assert not record_matches(dict(record, version=2), EMAIL, 'http://api', 'CompanionPC', digest)
    assert not record_matches(None, EMAIL, 'http://api', 'CompanionPC', digest)
    assert not record_matches(dict(record, password_sha256=None), EMAIL, 'http://api', 'CompanionPC', digest)
    numeric = build_record(EMAIL, 'http://api', 30, digest, 'created')
    assert record_matches(numeric, EMAIL, 'http://api', 30, digest)
    assert not record_matches(numeric, EMAIL, 'http://api', '30', digest)


def test_user_in_search_wants_the_exact_email():
    assert user_in_search([{'email': 'AZAION-JETSON-0042@azaion.com'}], EMAIL)
    assert not user_in_search([{'email': 'azaion-jetson-00421@azaion.com'}], EMAIL)
    assert user_in_search({'items': [{'email': EMAIL}]}, EMAIL)
    assert not user_in_search([], EMAIL)
    with pytest.raises(ValueError):
        user_in_search({'message': 'nope'}, EMAIL)


# ---------------------------------------------------------------------------------------------
# real runs against the lab admin API

def test_creates_the_account_and_writes_the_sync_record(module_runner, lab, conf, tmp_path):
    record = tmp_path / 'state' / 'AZJN-0042' / 'companion_user.json'
    result = module_runner(main, args_for(lab.url + '/', conf, email=EMAIL, sync_record=str(record)))
    assert not result.get('failed'), result['msg']
    assert result['changed'] is True and result['action'] == 'created'
    assert result['email'] == EMAIL and result['role'] == 'CompanionPC'
    assert statuses(result) == [('POST', '/users', 201)]
    assert lab.users()[EMAIL]['password'] == PASSWORD
    assert lab.users()[EMAIL]['role'] == 'CompanionPC'
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    saved = json.loads(record.read_text())
    assert PASSWORD not in record.read_text()
    assert saved['email'] == EMAIL and saved['api_url'] == lab.url and saved['action'] == 'created'
    assert saved['password_sha256'] == password_digest(EMAIL, PASSWORD)
    assert_no_secret(result)


def test_second_run_with_a_matching_record_makes_no_request(module_runner, lab, conf, tmp_path):
    record = str(tmp_path / 'companion_user.json')
    first = module_runner(main, args_for(lab, conf, sync_record=record))
    assert first['action'] == 'created'
    writes, log = lab.write_count(), lab.request_log()
    second = module_runner(main, args_for(lab, conf, sync_record=record), diff=True)
    assert second['changed'] is False and second['action'] == 'unchanged'
    assert second['requests'] == []
    assert lab.write_count() == writes and lab.request_log() == log
    assert second['diff']['before'] == second['diff']['after']
    assert second['diff']['after'] == {'email': EMAIL, 'role': 'CompanionPC', 'exists': True,
                                       'password_synced': True}


def test_a_changed_password_invalidates_the_record(module_runner, lab, tmp_path):
    conf_path = tmp_path / 'device.conf'
    record = str(tmp_path / 'record.json')
    write_conf(conf_path, password=OLD_PASSWORD)
    assert module_runner(main, args_for(lab, str(conf_path), sync_record=record))['action'] == 'created'
    write_conf(conf_path, password=PASSWORD)  # device.conf rotated the password
    result = module_runner(main, args_for(lab, str(conf_path), sync_record=record))
    assert result['action'] == 'password_updated' and result['changed'] is True
    assert lab.users()[EMAIL]['password'] == PASSWORD
    assert json.loads(open(record).read())['password_sha256'] == password_digest(EMAIL, PASSWORD)
    assert_no_secret(result)


def test_force_sync_ignores_the_record(module_runner, lab, conf, tmp_path):
    record = str(tmp_path / 'record.json')
    module_runner(main, args_for(lab, conf, sync_record=record))
    result = module_runner(main, args_for(lab, conf, sync_record=record, force_sync=True))
    assert result['action'] == 'password_updated'
    assert statuses(result) == [('POST', '/users', 409), ('PATCH', '/users/password', 200)]


def test_existing_account_gets_the_password_of_the_file(module_runner, lab, conf):
    lab.add_user(EMAIL, OLD_PASSWORD, 'CompanionPC')
    result = module_runner(main, args_for(lab, conf), diff=True)
    assert not result.get('failed'), result['msg']
    assert result['changed'] is True and result['action'] == 'password_updated'
    assert statuses(result) == [('POST', '/users', 409), ('PATCH', '/users/password', 200)]
    assert lab.users()[EMAIL]['password'] == PASSWORD
    assert result['diff']['before']['password_synced'] is False
    assert result['diff']['after']['password_synced'] is True
    assert_no_secret(result)


def test_patch_answering_204_is_success(module_runner, conf):
    with LabAdminAPI(patch_status=204) as server:
        server.add_user(EMAIL, OLD_PASSWORD, 'CompanionPC')
        result = module_runner(main, args_for(server, conf))
        assert result['action'] == 'password_updated'
        assert server.users()[EMAIL]['password'] == PASSWORD


def test_on_create_leaves_an_existing_account_alone_and_writes_no_record(module_runner, lab, conf, tmp_path):
    lab.add_user(EMAIL, OLD_PASSWORD, 'CompanionPC')
    record = tmp_path / 'record.json'
    result = module_runner(main, args_for(lab, conf, update_password='on_create', sync_record=str(record)))
    assert result['changed'] is False and result['action'] == 'exists'
    assert statuses(result) == [('POST', '/users', 409)]
    assert lab.users()[EMAIL]['password'] == OLD_PASSWORD
    assert not record.exists()


def test_on_create_creates_a_missing_account(module_runner, lab, conf):
    result = module_runner(main, args_for(lab, conf, update_password='on_create'))
    assert result['action'] == 'created' and lab.users()[EMAIL]['password'] == PASSWORD


def test_numeric_role_is_sent_as_a_json_number(module_runner, conf):
    with LabAdminAPI(accepted_roles=(30,)) as server:
        result = module_runner(main, args_for(server, conf, role='30'))
        assert result['action'] == 'created' and result['role'] == 30
        assert server.users()[EMAIL]['role'] == 30


def test_role_rejected_with_400_quotes_the_server_and_hints_at_30(module_runner, conf):
    with LabAdminAPI(accepted_roles=(30,)) as server:
        result = module_runner(main, args_for(server, conf))
        assert server.users() == {}
    assert result['failed'] is True
    assert 'HTTP 400 from POST /users' in result['msg']
    assert 'role must be one of [30]' in result['msg']  # the server's own message
    assert 'sends 30' in result['msg']
    assert statuses(result) == [('POST', '/users', 400)]


def test_invalid_role_fails_before_any_request(module_runner, lab, conf):
    result = module_runner(main, args_for(lab, conf, role=True))
    assert result['failed'] is True and 'role must be a role name' in result['msg']
    assert lab.request_log() == []


# ---------------------------------------------------------------------------------------------
# check mode

def test_check_mode_predicts_created_without_writing(module_runner, lab, conf, tmp_path):
    record = tmp_path / 'record.json'
    result = module_runner(main, args_for(lab, conf, sync_record=str(record)), check_mode=True, diff=True)
    assert result['changed'] is True and result['action'] == 'created'
    assert lab.write_count() == 0 and lab.users() == {}
    assert [(call['method'], call['path']) for call in lab.request_log()] == [('GET', '/users')]
    assert not record.exists()
    assert result['diff']['before']['exists'] is False and result['diff']['after']['exists'] is True


def test_check_mode_predicts_password_update_for_an_existing_account(module_runner, lab, conf):
    lab.add_user(EMAIL, OLD_PASSWORD, 'CompanionPC')
    result = module_runner(main, args_for(lab, conf), check_mode=True)
    assert result['changed'] is True and result['action'] == 'password_updated'
    assert lab.write_count() == 0 and lab.users()[EMAIL]['password'] == OLD_PASSWORD


def test_check_mode_on_create_predicts_exists(module_runner, lab, conf):
    lab.add_user(EMAIL, OLD_PASSWORD, 'CompanionPC')
    result = module_runner(main, args_for(lab, conf, update_password='on_create'), check_mode=True)
    assert result['changed'] is False and result['action'] == 'exists'
    assert lab.write_count() == 0


def test_check_mode_without_lookup_makes_no_request(module_runner, lab, conf):
    result = module_runner(main, args_for(lab, conf, lookup=False), check_mode=True)
    assert result['changed'] is True and result['action'] == 'created'
    assert lab.request_log() == [] and result['requests'] == []
    assert 'lookup=false' in result['msg']


def test_check_mode_with_a_matching_record_is_unchanged(module_runner, lab, conf, tmp_path):
    record = str(tmp_path / 'record.json')
    module_runner(main, args_for(lab, conf, sync_record=record))
    log = lab.request_log()
    result = module_runner(main, args_for(lab, conf, sync_record=record), check_mode=True)
    assert result['changed'] is False and result['action'] == 'unchanged'
    assert lab.request_log() == log


def test_check_mode_before_device_conf_exists(module_runner, lab, tmp_path):
    missing = str(tmp_path / 'rootfs' / 'etc' / 'azaion' / 'device.conf')
    result = module_runner(main, args_for(lab, missing, email=EMAIL), check_mode=True)
    assert not result.get('failed'), result['msg']
    assert result['changed'] is True and result['email'] == EMAIL
    assert 'password will be generated' in result['msg']
    assert lab.write_count() == 0


def test_missing_device_conf_fails_outside_check_mode(module_runner, lab, tmp_path):
    result = module_runner(main, args_for(lab, str(tmp_path / 'device.conf')))
    assert result['failed'] is True
    assert 'azaion.jetson.device_conf' in result['msg']
    assert lab.request_log() == []


def test_email_mismatch_fails_before_any_request(module_runner, lab, conf):
    result = module_runner(main, args_for(lab, conf, email='azaion-jetson-0043@azaion.com'))
    assert result['failed'] is True
    assert 'belongs to another device' in result['msg'] and EMAIL in result['msg']
    assert lab.request_log() == []


# ---------------------------------------------------------------------------------------------
# errors

def test_missing_token_gives_401_with_the_fix(module_runner, conf):
    with LabAdminAPI(token=TOKEN) as server:
        result = module_runner(main, args_for(server, conf))
        assert server.users() == {}
    assert result['failed'] is True
    assert 'HTTP 401' in result['msg'] and 'AZAION_ADMIN_API_TOKEN' in result['msg']
    assert statuses(result) == [('POST', '/users', 401)]  # not retried
    assert_no_secret(result)


def test_wrong_token_gives_403_asking_for_an_apiadmin_token(module_runner, conf):
    with LabAdminAPI(token=TOKEN) as server:
        result = module_runner(main, args_for(server, conf, api_token=TOKEN + '-wrong'))
    assert result['failed'] is True
    assert 'HTTP 403' in result['msg'] and 'ApiAdmin' in result['msg']
    assert TOKEN + '-wrong' not in json.dumps(result)


def test_token_from_the_environment(module_runner, conf, monkeypatch):
    with LabAdminAPI(token=TOKEN) as server:
        monkeypatch.setenv('AZAION_ADMIN_API_URL', server.url + '/')
        monkeypatch.setenv('AZAION_ADMIN_API_TOKEN', TOKEN)
        result = module_runner(main, {'device_conf': conf, 'retry_backoff': 0.001})
        assert result['action'] == 'created'
        assert server.users()[EMAIL]['password'] == PASSWORD
    assert_no_secret(result)


def test_missing_patch_endpoint_fails_with_the_runbook_hint(module_runner, conf):
    with LabAdminAPI(patch_enabled=False) as server:
        server.add_user(EMAIL, OLD_PASSWORD, 'CompanionPC')
        result = module_runner(main, args_for(server, conf))
        assert server.users()[EMAIL]['password'] == OLD_PASSWORD
    assert result['failed'] is True
    assert 'has no PATCH /users/password: enable it, or use update_password=on_create' in result['msg']
    assert statuses(result) == [('POST', '/users', 409), ('PATCH', '/users/password', 404)]


def test_503_twice_then_success(module_runner, lab, conf):
    lab.set_faults([{'method': 'POST', 'path': '/users', 'status': 503, 'rate': 1.0, 'times': 2}])
    result = module_runner(main, args_for(lab, conf))
    assert result['action'] == 'created'
    assert statuses(result) == [('POST', '/users', 503), ('POST', '/users', 503), ('POST', '/users', 201)]
    assert lab.users()[EMAIL]['password'] == PASSWORD


def test_reply_lost_after_create_converges_through_409_and_patch(module_runner, lab, conf):
    lab.set_faults([{'method': 'POST', 'path': '/users', 'drop': 'after', 'times': 1}])
    result = module_runner(main, args_for(lab, conf))
    assert not result.get('failed'), result['msg']
    assert result['action'] == 'password_updated'
    assert statuses(result) == [('POST', '/users', None), ('POST', '/users', 409),
                                ('PATCH', '/users/password', 200)]
    assert lab.users()[EMAIL]['password'] == PASSWORD
    assert len(lab.users()) == 1


def test_retries_exhausted_reports_attempts(module_runner, lab, conf):
    lab.set_faults([{'method': 'POST', 'status': 502}])
    result = module_runner(main, args_for(lab, conf, retries=2))
    assert result['failed'] is True
    assert 'after 3 attempts' in result['msg'] and 'HTTP 502' in result['msg']
    assert len(result['requests']) == 3


def test_connection_refused(module_runner, conf):
    server = LabAdminAPI().start()
    url = server.url
    server.stop()
    result = module_runner(main, args_for(url, conf, retries=1))
    assert result['failed'] is True
    assert 'connection refused' in result['msg'] and 'is the admin API running at %s?' % url in result['msg']
    assert statuses(result) == [('POST', '/users', None), ('POST', '/users', None)]


def test_secrets_echoed_by_the_server_never_reach_the_result(module_runner, lab, conf):
    lab.set_faults([{'method': 'POST', 'status': 400,
                     'body': '<p>bad request: {"password": "%s"} Authorization: Bearer %s</p>' % (PASSWORD, TOKEN)}])
    result = module_runner(main, args_for(lab, conf, api_token=TOKEN))
    assert result['failed'] is True
    assert 'bad request' in result['msg'] and '********' in result['msg']
    assert_no_secret(result)


def test_record_that_cannot_be_written_fails_but_reports_the_change(module_runner, lab, conf, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('')
    result = module_runner(main, args_for(lab, conf, sync_record=str(blocker / 'record.json')))
    assert result['failed'] is True and result['changed'] is True and result['action'] == 'created'
    assert 'could not be written' in result['msg']
    assert lab.users()[EMAIL]['password'] == PASSWORD


# ---------------------------------------------------------------------------------------------
# TLS

@pytest.fixture(scope='module')
def pki(tmp_path_factory):
    trustme = pytest.importorskip('trustme')
    directory = tmp_path_factory.mktemp('pki')
    ca = trustme.CA()
    server = ca.issue_cert('localhost', '127.0.0.1')
    station = ca.issue_cert('station.azaion.test')
    paths = dict((name, str(directory / name)) for name in
                 ('ca.pem', 'server.crt', 'server.key', 'station.crt', 'station.key'))
    ca.cert_pem.write_to_path(paths['ca.pem'])
    server.cert_chain_pems[0].write_to_path(paths['server.crt'])
    server.private_key_pem.write_to_path(paths['server.key'])
    station.cert_chain_pems[0].write_to_path(paths['station.crt'])
    station.private_key_pem.write_to_path(paths['station.key'])
    return paths


def test_tls_with_a_private_ca(module_runner, conf, pki):
    with LabAdminAPI(tls_cert=pki['server.crt'], tls_key=pki['server.key']) as server:
        untrusted = module_runner(main, args_for(server, conf))
        assert server.users() == {}
        result = module_runner(main, args_for(server, conf, ca_path=pki['ca.pem']))
        assert result['action'] == 'created' and server.users()[EMAIL]['password'] == PASSWORD
    assert untrusted['failed'] is True and 'ca_path' in untrusted['msg']
    assert 'validate_certs=false is for labs only' in untrusted['msg']


def test_tls_with_a_required_client_certificate(module_runner, conf, pki):
    with LabAdminAPI(tls_cert=pki['server.crt'], tls_key=pki['server.key'], client_ca=pki['ca.pem']) as server:
        anonymous = module_runner(main, args_for(server, conf, ca_path=pki['ca.pem'], retries=0))
        assert server.users() == {}
        result = module_runner(main, args_for(server, conf, ca_path=pki['ca.pem'], client_cert=pki['station.crt'],
                                              client_key=pki['station.key']))
        assert result['action'] == 'created' and server.users()[EMAIL]['password'] == PASSWORD
    assert anonymous['failed'] is True and 'client_cert' in anonymous['msg']
