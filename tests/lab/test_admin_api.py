"""The lab admin API double behaves like the real API, over real HTTP(S)."""

import os
import re
import signal
import socket
import subprocess
import sys

import pytest
import requests
import trustme

from .admin_api import LabAdminAPI

TOKEN = 'lab-token-123'
AUTH = {'Authorization': 'Bearer ' + TOKEN}
EMAIL = 'companion-7@customer.example'
PASSWORD = '0123456789abcdef0123456789abcdef'
NEW_PASSWORD = 'fedcba9876543210fedcba9876543210'
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'admin_api.py')


@pytest.fixture
def api():
    with LabAdminAPI(token=TOKEN) as server:
        yield server


def create(api, **overrides):
    body = dict({'email': EMAIL, 'password': PASSWORD, 'role': 'CompanionPC'}, **overrides)
    return requests.post(api.url + '/users', json=body, headers=AUTH, timeout=5)


def patch(api, email=EMAIL, password=NEW_PASSWORD):
    return requests.patch(api.url + '/users/password', json={'email': email, 'password': password},
                          headers=AUTH, timeout=5)


def test_create_then_same_email_conflicts(api):
    first = create(api, role=30)
    assert first.status_code == 201
    assert first.json() == {'id': 1, 'email': EMAIL, 'role': 30}
    second = create(api)
    assert second.status_code == 409
    assert second.json() == {'message': 'user with email %s already exists' % EMAIL}
    assert api.users()[EMAIL]['password'] == PASSWORD
    assert [entry['applied'] for entry in api.request_log()] == [True, False]


def test_each_request_is_logged_with_the_address_it_came_from(api):
    create(api)
    requests.get(api.url + '/users', timeout=5)
    requests.get(api.url + '/_lab/state', timeout=5)  # lab routes are not API requests
    assert api.request_peers() == [{'peer': '127.0.0.1', 'method': 'POST', 'path': '/users'},
                                   {'peer': '127.0.0.1', 'method': 'GET', 'path': '/users'}]
    api.reset()
    assert api.request_peers() == []


def test_patch_sets_password_and_unknown_email_is_not_found(api):
    api.add_user(EMAIL, PASSWORD, 'CompanionPC')
    reply = patch(api)
    assert (reply.status_code, reply.json()) == (200, {'email': EMAIL})
    assert api.users()[EMAIL]['password'] == NEW_PASSWORD
    missing = patch(api, email='nobody@customer.example')
    assert (missing.status_code, missing.json()) == (404, {'message': 'user not found'})
    assert api.write_count() == 2


def test_patch_can_answer_204_without_body():
    with LabAdminAPI(patch_status=204) as api:
        api.add_user(EMAIL, PASSWORD, 30)
        reply = patch(api)
        assert (reply.status_code, reply.content) == (204, b'')
        assert api.users()[EMAIL]['password'] == NEW_PASSWORD


def test_patch_disabled_is_not_found_for_every_patch():
    with LabAdminAPI(patch_enabled=False) as api:
        api.add_user(EMAIL, PASSWORD, 30)
        for path in ('/users/password', '/users'):
            reply = requests.patch(api.url + path, json={'email': EMAIL, 'password': NEW_PASSWORD},
                                   timeout=5)
            assert (reply.status_code, reply.json()) == (404, {'message': 'Not Found'})
        assert api.users()[EMAIL]['password'] == PASSWORD


def test_search_matches_substring_and_never_shows_passwords(api):
    api.add_user(EMAIL, PASSWORD, 30)
    api.add_user('operator@customer.example', NEW_PASSWORD, 'Operator')

    def search(text):
        return requests.get(api.url + '/users', params={'searchEmail': text}, headers=AUTH, timeout=5)
    assert search(EMAIL).json() == [{'id': 1, 'email': EMAIL, 'role': 30}]
    assert [user['email'] for user in search('customer.example').json()] == [
        EMAIL, 'operator@customer.example']
    assert search('absent').json() == []
    assert PASSWORD not in search('').text and NEW_PASSWORD not in search('').text


@pytest.mark.parametrize('body, message', [
    ([EMAIL], 'body must be a JSON object'),
    ({'email': EMAIL, 'password': PASSWORD}, 'missing key(s): role'),
    ({'email': EMAIL, 'password': PASSWORD, 'role': 30, 'admin': True}, 'unknown key(s): admin'),
    ({'email': 'not-an-email', 'password': PASSWORD, 'role': 30}, 'email must be an e-mail'),
    ({'email': EMAIL, 'password': PASSWORD.upper(), 'role': 30}, 'password must be 32 lowercase'),
    ({'email': EMAIL, 'password': PASSWORD[:-1], 'role': 30}, 'password must be 32 lowercase'),
    ({'email': EMAIL, 'password': PASSWORD + '\n', 'role': 30}, 'password must be 32 lowercase'),
    ({'email': EMAIL, 'password': PASSWORD, 'role': '30'}, 'role must be one of'),
    ({'email': EMAIL, 'password': PASSWORD, 'role': True}, 'role must be one of'),
    ({'email': EMAIL, 'password': PASSWORD, 'role': 'Admin'}, 'role must be one of'),
])
def test_invalid_create_body_is_rejected_without_echoing_password(api, body, message):
    reply = requests.post(api.url + '/users', json=body, headers=AUTH, timeout=5)
    assert reply.status_code == 400
    assert message in reply.json()['message']
    assert PASSWORD.lower() not in reply.text.lower()
    assert api.users() == {}


@pytest.mark.parametrize('headers, data, message', [
    ({'Content-Type': 'text/plain'}, '{}', 'Content-Type must be application/json'),
    ({}, '{}', 'Content-Type must be application/json'),
    ({'Content-Type': 'application/json'}, '{"email": ', 'body is not valid JSON'),
])
def test_body_must_be_json(api, headers, data, message):
    reply = requests.post(api.url + '/users', data=data, headers=dict(AUTH, **headers), timeout=5)
    assert (reply.status_code, reply.json()) == (400, {'message': message})


def test_missing_token_is_401_and_wrong_token_is_403(api):
    missing = requests.get(api.url + '/users', timeout=5)
    assert (missing.status_code, missing.json()) == (401, {'message': 'missing bearer token'})
    wrong = requests.get(api.url + '/users', headers={'Authorization': 'Bearer nope'}, timeout=5)
    assert (wrong.status_code, wrong.json()) == (403, {'message': 'invalid token'})
    assert requests.get(api.url + '/users', headers=AUTH, timeout=5).status_code == 200
    assert requests.get(api.url + '/_lab/state', timeout=5).status_code == 200  # no token


def test_unknown_route_is_404_and_wrong_method_is_405(api):
    assert requests.get(api.url + '/groups', headers=AUTH, timeout=5).status_code == 404
    wrong = requests.delete(api.url + '/users', headers=AUTH, timeout=5)
    assert wrong.status_code == 405
    assert wrong.headers['Allow'] == 'GET, POST'


def test_status_fault_fires_only_the_given_number_of_times(api):
    api.set_faults([{'method': 'POST', 'path': '/users', 'status': 503, 'rate': 1.0, 'times': 2}])
    assert [create(api).status_code for dummy in range(3)] == [503, 503, 201]
    assert [entry['fault'] for entry in api.request_log()] == ['status 503', 'status 503', None]
    assert api.write_count() == 3
    assert list(api.users()) == [EMAIL]


def test_skip_lets_the_first_matching_requests_through_then_the_rule_fires_on_each(api):
    # A token revoked in the middle of a batch: the 3rd write and every later one get 401.
    api.set_faults([{'method': 'POST', 'status': 401, 'skip': 2}])
    requests.get(api.url + '/users', headers=AUTH, timeout=5)  # not a match: not counted
    statuses = [create(api, email='user%d@customer.example' % number).status_code for number in range(4)]
    assert statuses == [201, 201, 401, 401]
    assert sorted(api.users()) == ['user0@customer.example', 'user1@customer.example']


def test_fault_can_return_a_non_json_page(api):
    api.set_faults([{'path': '/users', 'status': 502, 'body': '<html>Bad Gateway</html>'}])
    reply = create(api)
    assert reply.status_code == 502
    assert reply.headers['Content-Type'].startswith('text/html')
    assert reply.text == '<html>Bad Gateway</html>'


def test_fault_rate_is_repeatable_for_a_seed():
    def outcomes(seed):
        with LabAdminAPI(seed=seed) as api:
            api.set_faults([{'status': 500, 'rate': 0.5}])
            return [requests.get(api.url + '/users', timeout=5).status_code for dummy in range(12)]
    first = outcomes(7)
    assert first == outcomes(7)
    assert set(first) == {200, 500}


@pytest.mark.parametrize('drop, user_created', [('before', False), ('after', True)])
def test_drop_closes_without_reply_and_after_keeps_the_change(api, drop, user_created):
    api.set_faults([{'method': 'POST', 'drop': drop, 'times': 1}])
    with pytest.raises(requests.exceptions.ConnectionError):
        create(api)
    assert (EMAIL in api.users()) is user_created
    assert api.request_log() == [{'method': 'POST', 'path': '/users', 'status': None,
                                  'fault': 'drop ' + drop, 'applied': user_created}]
    # The retry sees the state the lost request left behind.
    assert create(api).status_code == (409 if user_created else 201)


def test_lab_routes_control_faults_state_reset_and_login(api):
    url = api.url + '/_lab/'
    api.add_user(EMAIL, PASSWORD, 30)
    assert requests.post(url + 'login', json={'email': EMAIL, 'password': PASSWORD},
                         timeout=5).json() == {'status': 'ok'}
    denied = requests.post(url + 'login', json={'email': EMAIL, 'password': NEW_PASSWORD}, timeout=5)
    assert (denied.status_code, denied.json()) == (401, {'status': 'denied'})
    assert requests.put(url + 'faults', json=[{'status': 418}], timeout=5).status_code == 200
    assert requests.get(api.url + '/users', headers=AUTH, timeout=5).status_code == 418
    assert requests.put(url + 'faults', json=[{'drop': 'sideways'}], timeout=5).status_code == 400
    state = requests.get(url + 'state', timeout=5).json()
    assert state['users'] == [{'id': 1, 'email': EMAIL, 'password': PASSWORD, 'role': 30}]
    assert [entry['status'] for entry in state['requests']] == [418]
    assert requests.post(url + 'reset', timeout=5).status_code == 200
    assert api.state() == {'users': [], 'requests': [], 'write_count': 0}


def test_stop_ends_kept_alive_connections_and_start_comes_back_on_the_same_port(api):
    api.add_user(EMAIL, PASSWORD, 30)
    url = api.url
    with requests.Session() as session:
        assert session.get(url + '/_lab/state', timeout=5).status_code == 200
        api.stop()
        with pytest.raises(requests.exceptions.ConnectionError):
            session.get(url + '/_lab/state', timeout=5)
    api.start()
    assert api.url == url
    assert requests.get(url + '/users', headers=AUTH, timeout=5).json()[0]['email'] == EMAIL


@pytest.mark.parametrize('rule, message', [
    ({'colour': 'red'}, 'unknown fault key(s): colour'),
    ({'rate': 1.5}, 'fault rate must be'),
    ({'times': True}, 'fault times must be'),
    ({'skip': -1}, 'fault skip must be'),
    ({'body': '<html/>'}, 'fault body needs a status'),
])
def test_invalid_fault_rules_are_refused(api, rule, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        api.set_faults([rule])


@pytest.fixture(scope='module')
def tls_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp('tls')
    ca = trustme.CA()
    server = ca.issue_cert('localhost', '127.0.0.1')
    client = ca.issue_cert('companion-client.lab.example')
    files = {name: str(directory / (name + '.pem')) for name in
             ('ca', 'server_cert', 'server_key', 'client_cert', 'client_key')}
    ca.cert_pem.write_to_path(files['ca'])
    server.cert_chain_pems[0].write_to_path(files['server_cert'])
    server.private_key_pem.write_to_path(files['server_key'])
    client.cert_chain_pems[0].write_to_path(files['client_cert'])
    client.private_key_pem.write_to_path(files['client_key'])
    return files


def test_tls_requires_a_client_certificate(tls_files):
    with LabAdminAPI(tls_cert=tls_files['server_cert'], tls_key=tls_files['server_key'],
                     client_ca=tls_files['ca']) as api:
        assert api.url.startswith('https://localhost:')
        with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
            requests.get(api.url + '/users', verify=tls_files['ca'], timeout=5)
        reply = requests.get(api.url + '/users', verify=tls_files['ca'], timeout=5,
                             cert=(tls_files['client_cert'], tls_files['client_key']))
        assert (reply.status_code, reply.json()) == (200, [])
        assert len(api.request_log()) == 1  # the refused client never got to send a request


def test_stalled_tls_client_does_not_block_others(tls_files):
    with LabAdminAPI(tls_cert=tls_files['server_cert'], tls_key=tls_files['server_key']) as api:
        with socket.create_connection(('127.0.0.1', api.port)):  # connects, never says hello
            reply = requests.get(api.url + '/users', verify=tls_files['ca'], timeout=2)
            assert reply.status_code == 200


def test_cli_serves_with_token_from_environment_until_sigterm(tmp_path):
    port_file = tmp_path / 'port'
    env = dict(os.environ, LAB_ADMIN_API_TOKEN=TOKEN)
    with subprocess.Popen([sys.executable, SCRIPT, '--port-file', str(port_file)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            line = process.stdout.readline()
            port = int(port_file.read_text())
            assert line == 'lab admin API listening on http://127.0.0.1:%d\n' % port
            url = 'http://127.0.0.1:%d/users' % port
            assert requests.get(url, timeout=5).status_code == 401
            assert requests.get(url, headers=AUTH, timeout=5).status_code == 200
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=5) == 0
            assert process.stderr.read() == ''  # no request log, no traceback
            assert TOKEN not in process.stdout.read()
        finally:
            if process.poll() is None:
                process.kill()
