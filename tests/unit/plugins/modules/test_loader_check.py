# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""azaion.jetson.loader_check, run as Ansible runs it, against the lab Loader and admin API on loopback."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from lab.admin_api import LabAdminAPI
from lab.loader import LabLoader, free_port

from ansible_collections.azaion.jetson.plugins.modules import loader_check

EMAIL = 'azaion-jetson-0042@azaion.com'
PASSWORD = '5f0c1e2d3b4a59687766554433221100'
OTHER_PASSWORD = 'ffffffffffffffffffffffffffffffff'
main = loader_check.main


def write_conf(path, email=EMAIL, password=PASSWORD, mode=0o600):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('AZAION_DEVICE_EMAIL=%s\nAZAION_DEVICE_PASSWORD=%s\n' % (email, password))
    path.chmod(mode)
    return str(path)


def assert_no_secret(result):
    dumped = json.dumps(result)
    assert PASSWORD not in dumped
    assert OTHER_PASSWORD not in dumped


@pytest.fixture
def storage(tmp_path):
    """The flashed device's storage; its device.conf is also the station's copy."""
    root = tmp_path / 'storage'
    write_conf(root / 'etc' / 'azaion' / 'device.conf')
    return root


@pytest.fixture
def conf(storage):
    return str(storage / 'etc' / 'azaion' / 'device.conf')


@pytest.fixture
def admin():
    with LabAdminAPI() as server:
        yield server


@pytest.fixture
def account(admin):
    admin.add_user(EMAIL, PASSWORD, 'CompanionPC')
    return admin


def args_for(url, device_conf, **extra):
    args = {'url': url, 'device_conf': device_conf, 'health_timeout': 5, 'health_interval': 0.2,
            'request_timeout': 2}
    args.update(extra)
    return args


def run(module_runner, args, check_mode=False):
    started = time.monotonic()
    result = module_runner(main, args, check_mode=check_mode)
    result['_elapsed'] = time.monotonic() - started
    assert_no_secret(result)
    assert result['changed'] is False
    return result


# ---------------------------------------------------------------------------------------------
# success

def test_healthy_and_login_ok(module_runner, storage, conf, account):
    with LabLoader(storage, account.url) as loader:
        result = run(module_runner, args_for(loader.url + '/', conf))
        attempts = loader.login_attempts()
    assert not result.get('failed'), result['msg']
    assert result['email'] == EMAIL
    assert result['health']['status_code'] == 200
    assert result['health']['status'] == 'healthy'
    assert result['health']['attempts'] == 1
    assert result['login'] == {'status_code': 200, 'status': 'ok'}
    assert attempts == [{'email': EMAIL, 'ok': True}]
    assert 'logged in as %s' % EMAIL in result['msg']


def test_boot_delay_is_waited_out(module_runner, storage, conf, account):
    with LabLoader(storage, account.url, boot_seconds=1) as loader:
        result = run(module_runner, args_for(loader.url, conf, health_timeout=10, health_interval=0.2))
        attempts = loader.login_attempts()
    assert not result.get('failed'), result['msg']
    assert result['health']['attempts'] >= 3  # 503 "booting" answers came first
    assert 0.7 <= result['health']['seconds_waited'] < 5
    assert result['login']['status'] == 'ok'
    assert attempts == [{'email': EMAIL, 'ok': True}]


def test_custom_expected_status_must_match(module_runner, storage, conf, account):
    with LabLoader(storage, account.url) as loader:
        result = run(module_runner, args_for(loader.url, conf, expected_status='authenticated'))
    assert result['failed']
    assert result['login'] == {'status_code': 200, 'status': 'ok'}
    assert 'expected "authenticated"' in result['msg']


# ---------------------------------------------------------------------------------------------
# health failures

def test_never_healthy_within_timeout(module_runner, storage, conf, account):
    with LabLoader(storage, account.url, boot_seconds=60) as loader:
        result = run(module_runner, args_for(loader.url, conf, health_timeout=1, health_interval=0.2))
        attempts = loader.login_attempts()
    assert result['failed']
    assert 'did not become healthy within 1 s' in result['msg']
    assert 'HTTP 503, status "booting"' in result['msg']
    assert 'health_timeout' in result['msg']
    assert result['health']['status_code'] == 503
    assert result['health']['attempts'] >= 3
    assert 'login' not in result or result['login'] is None
    assert attempts == []
    assert 0.9 <= result['_elapsed'] < 5


def test_unhealthy_loader_reason_is_reported(module_runner, tmp_path, conf, account):
    # The device was flashed with a device.conf the Loader refuses (mode 0644).
    device = tmp_path / 'device'
    write_conf(device / 'etc' / 'azaion' / 'device.conf', mode=0o644)
    with LabLoader(device, account.url) as loader:
        result = run(module_runner, args_for(loader.url, conf, health_timeout=1, health_interval=0.3))
    assert result['failed']
    assert result['health']['status_code'] == 500
    assert result['health']['status'] == 'unhealthy'
    assert 'mode 0644' in result['msg']


def test_loader_not_listening(module_runner, conf):
    url = 'http://127.0.0.1:%d' % free_port()
    result = run(module_runner, args_for(url, conf, health_timeout=1, health_interval=0.2))
    assert result['failed']
    assert 'did not become healthy within 1 s' in result['msg']
    assert 'connection refused by 127.0.0.1:' in result['msg']
    assert result['health']['status_code'] is None
    assert result['health']['attempts'] >= 2
    assert result['_elapsed'] < 5


def test_wrong_url_fails_fast(module_runner, storage, conf, account):
    with LabLoader(storage, account.url) as loader:
        result = run(module_runner, args_for(loader.url + '/api', conf, health_timeout=30))
    assert result['failed']
    assert 'HTTP 404' in result['msg'] and 'check url' in result['msg']
    assert result['health']['attempts'] == 1
    assert result['_elapsed'] < 5


# ---------------------------------------------------------------------------------------------
# login failures

def test_login_denied_when_admin_account_has_another_password(module_runner, storage, conf, admin):
    admin.add_user(EMAIL, OTHER_PASSWORD, 'CompanionPC')
    with LabLoader(storage, admin.url) as loader:
        result = run(module_runner, args_for(loader.url, conf))
        attempts = loader.login_attempts()
    assert result['failed']
    assert result['login']['status_code'] == 401
    assert "rejected the device's credentials" in result['msg']
    assert 'identity_force_sync=true' in result['msg'] and 're-flash' in result['msg']
    assert attempts == [{'email': EMAIL, 'ok': False}]


def test_login_denied_when_station_copy_differs_from_flashed_file(module_runner, tmp_path, storage, account):
    station_conf = write_conf(tmp_path / 'station' / 'etc' / 'azaion' / 'device.conf', password=OTHER_PASSWORD)
    with LabLoader(storage, account.url) as loader:
        result = run(module_runner, args_for(loader.url, station_conf))
    assert result['failed']
    assert result['login']['status_code'] == 401
    assert 'identity_force_sync=true' in result['msg']


def test_login_502_when_loader_cannot_reach_resource_api(module_runner, storage, conf):
    dead_api = 'http://127.0.0.1:%d' % free_port()
    with LabLoader(storage, dead_api) as loader:
        result = run(module_runner, args_for(loader.url, conf))
    assert result['failed']
    assert result['login']['status_code'] == 502
    assert 'cannot reach the resource API' in result['msg']


class _PlainHandler(BaseHTTPRequestHandler):
    """A web server that is not the Loader: plain-text health, an HTML page for /login."""

    def log_message(self, format, *args):
        pass

    def _reply(self, body, content_type):
        payload = body.encode('utf-8')
        self.send_response(200)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):
        self._reply('OK', 'text/plain')

    def do_POST(self):
        self.rfile.read(int(self.headers.get('Content-Length', '0')))
        self._reply('<html><body>Sign in</body></html>', 'text/html')


def test_login_answer_not_json(module_runner, conf):
    server = HTTPServer(('127.0.0.1', 0), _PlainHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
    thread.start()
    try:
        result = run(module_runner, args_for('http://127.0.0.1:%d' % server.server_address[1], conf))
    finally:
        server.shutdown()
        server.server_close()
    assert result['failed']
    assert result['health'] == {'status_code': 200, 'status': None, 'seconds_waited': result['health']['seconds_waited'],
                                'attempts': 1}
    assert result['login'] == {'status_code': 200, 'status': None}
    assert 'not JSON' in result['msg'] and 'Sign in' in result['msg']


# ---------------------------------------------------------------------------------------------
# check mode and input errors

def test_check_mode_sends_no_login(module_runner, storage, conf, account):
    with LabLoader(storage, account.url) as loader:
        result = run(module_runner, args_for(loader.url, conf), check_mode=True)
        attempts = loader.login_attempts()
    assert not result.get('failed'), result['msg']
    assert attempts == []
    assert 'login' not in result
    assert result['email'] == EMAIL
    assert result['health']['status_code'] == 200
    assert 'no login' in result['msg']


def test_check_mode_does_not_wait_for_a_device_that_is_off(module_runner, tmp_path):
    url = 'http://127.0.0.1:%d' % free_port()
    missing = str(tmp_path / 'rootfs' / 'etc' / 'azaion' / 'device.conf')
    result = run(module_runner, args_for(url, missing, health_timeout=600), check_mode=True)
    assert not result.get('failed'), result['msg']
    assert result['health']['status_code'] is None
    assert 'connection refused' in result['msg']
    assert result['_elapsed'] < 5


def test_missing_device_conf_fails_before_any_request(module_runner, tmp_path, storage, account):
    missing = str(tmp_path / 'nowhere' / 'device.conf')
    with LabLoader(storage, account.url) as loader:
        result = run(module_runner, args_for(loader.url, missing))
        attempts = loader.login_attempts()
    assert result['failed']
    assert missing in result['msg']
    assert result['health'] is None
    assert attempts == []


def test_url_must_be_http(module_runner, conf):
    result = run(module_runner, args_for('loader.local:8080', conf))
    assert result['failed']
    assert 'http:// or https://' in result['msg']
