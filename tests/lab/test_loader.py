"""The lab Loader serves /health and /login from a device's flashed storage, over real HTTP."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from lab.admin_api import LabAdminAPI
from lab.loader import LabLoader, LabLoaderFleet, free_port

EMAIL = 'azaion-jetson-0042@azaion.com'
PASSWORD = '0123456789abcdef0123456789abcdef'
OTHER_PASSWORD = 'fedcba9876543210fedcba9876543210'
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'loader.py')


@pytest.fixture
def admin():
    with LabAdminAPI() as server:
        yield server


def write_conf(storage, email=EMAIL, password=PASSWORD, mode=0o600):
    conf = storage / 'etc' / 'azaion' / 'device.conf'
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text('# written by azaion.jetson.device_conf\nAZAION_DEVICE_EMAIL=%s\n'
                    'AZAION_DEVICE_PASSWORD=%s\n' % (email, password))
    conf.chmod(mode)
    return conf


@pytest.fixture
def storage(tmp_path):
    device = tmp_path / 'storage' / '1-3'
    write_conf(device)
    return device


def call(loader, method, path, **kwargs):
    """One request; every answer is checked for the passwords, whatever the test is about."""
    reply = requests.request(method, loader.url + path, timeout=10, **kwargs)
    assert PASSWORD not in reply.text and OTHER_PASSWORD not in reply.text
    return reply


def login(loader, email=EMAIL, password=PASSWORD):
    return call(loader, 'POST', '/login', json={'email': email, 'password': password})


def test_health_is_booting_then_healthy(storage, admin):
    with LabLoader(storage, admin.url, boot_seconds=0.3) as loader:
        first = call(loader, 'GET', '/health')
        assert (first.status_code, first.json()) == (503, {'status': 'booting'})
        assert login(loader).status_code == 503
        deadline = time.monotonic() + 5
        while call(loader, 'GET', '/health').status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.05)
        reply = call(loader, 'GET', '/health')
        assert (reply.status_code, reply.json()) == (200, {'status': 'healthy'})


def test_missing_device_conf_is_unhealthy_until_flashed(tmp_path, admin):
    device = tmp_path / 'storage' / '1-3'
    with LabLoader(device, admin.url) as loader:
        reply = call(loader, 'GET', '/health')
        assert reply.status_code == 500
        assert reply.json() == {'status': 'unhealthy', 'reason': 'etc/azaion/device.conf not found'}
        write_conf(device)  # re-flashed while the Loader runs: read again at the next request
        assert call(loader, 'GET', '/health').json() == {'status': 'healthy'}


def test_wrong_mode_is_unhealthy_and_login_fails(storage, admin):
    admin.add_user(EMAIL, PASSWORD, 'CompanionPC')
    conf = storage / 'etc' / 'azaion' / 'device.conf'
    conf.chmod(0o644)
    with LabLoader(storage, admin.url) as loader:
        reply = call(loader, 'GET', '/health')
        assert reply.status_code == 500
        assert reply.json()['status'] == 'unhealthy'
        assert '0644' in reply.json()['reason'] and '0600' in reply.json()['reason']
        assert login(loader).status_code == 500
        conf.chmod(0o600)
        assert call(loader, 'GET', '/health').status_code == 200


def test_conf_without_password_or_leading_outside_storage_is_unhealthy(tmp_path, admin):
    device = tmp_path / 'storage' / '1-3'
    conf = write_conf(device)
    conf.write_text('AZAION_DEVICE_EMAIL=%s\n' % EMAIL)
    with LabLoader(device, admin.url) as loader:
        assert call(loader, 'GET', '/health').json()['reason'] == \
            'etc/azaion/device.conf has no AZAION_DEVICE_PASSWORD'
        elsewhere = tmp_path / 'station-etc'
        write_conf(elsewhere)
        conf.unlink()
        conf.parent.rmdir()
        os.symlink(str(elsewhere / 'etc' / 'azaion'), str(conf.parent))  # an absolute link
        reply = call(loader, 'GET', '/health')
        assert reply.status_code == 500 and 'outside the device storage' in reply.json()['reason']


def test_login_ok_when_file_and_admin_account_match(storage, admin):
    admin.add_user(EMAIL, PASSWORD, 'CompanionPC')
    with LabLoader(storage, admin.url + '/') as loader:
        reply = login(loader)
        assert (reply.status_code, reply.json()) == (200, {'status': 'ok'})
        assert loader.login_attempts() == [{'email': EMAIL, 'ok': True}]


def test_login_denied_when_the_admin_account_holds_another_password(storage, admin):
    admin.add_user(EMAIL, OTHER_PASSWORD, 'CompanionPC')  # the file never reached the account
    with LabLoader(storage, admin.url) as loader:
        reply = login(loader)
        assert reply.status_code == 401
        assert reply.json() == {'status': 'denied', 'reason': 'the admin API rejected the credentials'}
        assert loader.login_attempts() == [{'email': EMAIL, 'ok': False}]


def test_login_denied_when_the_body_differs_from_the_file(storage, admin):
    admin.add_user(EMAIL, OTHER_PASSWORD, 'CompanionPC')  # the admin API would accept this body
    admin.add_user('other@azaion.com', PASSWORD, 'CompanionPC')
    with LabLoader(storage, admin.url) as loader:
        wrong_password = login(loader, password=OTHER_PASSWORD)
        assert wrong_password.status_code == 401
        assert wrong_password.json() == {'status': 'denied',
                                         'reason': 'credentials do not match device.conf'}
        assert login(loader, email='other@azaion.com').status_code == 401
        attempts = loader.login_attempts()
        assert attempts == [{'email': EMAIL, 'ok': False}, {'email': 'other@azaion.com', 'ok': False}]
        assert PASSWORD not in repr(attempts) and OTHER_PASSWORD not in repr(attempts)


def test_admin_api_stopped_is_bad_gateway(storage, admin):
    admin.add_user(EMAIL, PASSWORD, 'CompanionPC')
    with LabLoader(storage, admin.url) as loader:
        admin.stop()
        reply = login(loader)
        assert (reply.status_code, reply.json()) == (
            502, {'status': 'error', 'reason': 'admin API unreachable'})
        admin.start()  # same port again: the Loader needs no restart
        assert login(loader).status_code == 200


@pytest.mark.parametrize('body', [b'not json', b'[]', b'{"email": "%s"}' % EMAIL.encode(),
                                  b'{"email": "%s", "password": 7}' % EMAIL.encode()])
def test_bad_login_body_is_refused(storage, admin, body):
    with LabLoader(storage, admin.url) as loader:
        reply = call(loader, 'POST', '/login', data=body,
                     headers={'Content-Type': 'application/json'})
        assert reply.status_code == 400 and reply.json()['status'] == 'error'
        assert call(loader, 'GET', '/login').status_code == 405
        assert call(loader, 'GET', '/nothing').status_code == 404


def test_fleet_urls_are_known_before_boot_and_survive_reflash(tmp_path, admin):
    storage_root = tmp_path / 'storage'
    write_conf(storage_root / '1-3')
    write_conf(storage_root / '1-8.4', email='azaion-jetson-0043@azaion.com')
    with LabLoaderFleet(storage_root, admin.url) as fleet:
        url = fleet.url('1-3')
        assert url != fleet.url('1-8.4')
        with pytest.raises(requests.ConnectionError):  # not booted yet
            requests.get(url + '/health', timeout=5)
        first = fleet.boot('1-3')
        assert first.url == url and fleet.loader('1-3') is first
        assert requests.get(url + '/health', timeout=5).json() == {'status': 'healthy'}
        second = fleet.boot('1-3')  # re-flashed: boots again on the same port
        assert second is not first and second.url == url
        assert fleet.boot('1-8.4').storage_dir == str(storage_root / '1-8.4')
        with pytest.raises(ValueError):
            fleet.boot('../1-3')
    with pytest.raises(requests.ConnectionError):  # stop_all powered everything off
        requests.get(url + '/health', timeout=5)


def test_free_port_can_be_bound():
    port = free_port()
    with socket.socket() as listener:
        listener.bind(('127.0.0.1', port))
        assert listener.getsockname()[1] == port


def test_cli_serves_until_sigterm(storage, admin, tmp_path):
    port_file = tmp_path / 'loader.port'
    process = subprocess.Popen([sys.executable, SCRIPT, '--storage', str(storage),
                                '--admin-api-url', admin.url, '--port-file', str(port_file)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists():
            assert process.poll() is None and time.monotonic() < deadline, 'the Loader did not start'
            time.sleep(0.05)
        url = 'http://127.0.0.1:%d' % int(port_file.read_text())
        assert requests.get(url + '/health', timeout=5).json() == {'status': 'healthy'}
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert stdout == 'lab loader listening on %s\n' % url
    assert stderr == ''  # no request logging
