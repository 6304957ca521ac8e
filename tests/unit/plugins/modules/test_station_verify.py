# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""azaion.jetson.station_verify: the Loaders of a station's devices checked in one run, against the
lab's Loaders (one per USB port, serving what was "flashed" there) and the lab admin API."""

import json
import os

import pytest

from lab.admin_api import LabAdminAPI
from lab.loader import LabLoaderFleet

from ansible_collections.azaion.jetson.plugins.modules.station_verify import main
from ansible_collections.azaion.jetson.plugins.plugin_utils._context import device_context


def password_of(serial):
    return (serial[-4:] * 8)[:28] + 'beef'


class VerifyLab(object):
    """A station's workdir, the lab admin API with each device's account, and each device's Loader."""

    def __init__(self, root, admin):
        self.root = str(root)
        self.workdir = os.path.join(self.root, 'station')
        self.admin = admin
        self.loaders = LabLoaderFleet(os.path.join(self.root, 'lab-state', 'storage'), admin.url)

    def device(self, serial, port, loader=True, flashed_password=None):
        """A device whose station copy of device.conf is right; its Loader serves what was flashed."""
        device_vars = dict(jetson_workdir=self.workdir, jetson_usb_instance=port)
        if loader:
            device_vars['jetson_loader_url'] = self.loaders.url(port)
        found = device_context(serial, device_vars)
        assert not found['problems'], found['problems']
        self.admin.add_user(found['email'], password_of(serial), 'CompanionPC')
        self.write_conf(found['device_conf'], found['email'], password_of(serial))
        self.write_conf(os.path.join(self.loaders.storage_root, port, 'etc', 'azaion', 'device.conf'),
                        found['email'], flashed_password or password_of(serial))
        if loader:
            self.loaders.boot(port)
        return found

    @staticmethod
    def write_conf(path, email, password):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as handle:
            handle.write('AZAION_DEVICE_EMAIL=%s\nAZAION_DEVICE_PASSWORD=%s\n' % (email, password))
        os.chmod(path, 0o600)

    def logins(self, port):
        return self.loaders.loader(port).login_attempts()


@pytest.fixture
def lab(tmp_path):
    with LabAdminAPI() as admin:
        verify_lab = VerifyLab(tmp_path, admin)
        try:
            yield verify_lab
        finally:
            verify_lab.loaders.stop_all()


def run(module_runner, devices, check_mode=False, **args):
    options = dict(devices=devices, parallel=4, health_timeout=5, health_interval=0.2, request_timeout=2)
    options.update(args)
    result = module_runner(main, options, check_mode=check_mode)
    dumped = json.dumps(result)
    for device in devices:
        assert password_of(device['serial']) not in dumped
    return result


def phase(device):
    with open(device['state_file']) as handle:
        return json.load(handle)['phases']['verify']


def test_each_loader_is_checked_and_a_device_that_passed_is_not_checked_again(module_runner, lab):
    devices = [lab.device('AZJN-0041', '1-1'), lab.device('AZJN-0042', '1-2'),
               lab.device('AZJN-0043', '1-3', loader=False),
               lab.device('AZJN-0044', '1-4', flashed_password='0' * 32)]  # flashed with another device.conf
    result = run(module_runner, devices)
    assert not result.get('failed'), result['msg']
    assert result['changed'] is False
    assert result['failed_devices'] == ['AZJN-0043', 'AZJN-0044']
    for device, port in ((devices[0], '1-1'), (devices[1], '1-2')):
        outcome = result['devices'][device['name']]
        assert not outcome.get('failed'), outcome['msg']
        assert outcome['login'] == {'status_code': 200, 'status': 'ok'} and outcome['email'] == device['email']
        assert lab.logins(port) == [{'email': device['email'], 'ok': True}]
        assert phase(device)['status'] == 'done'
    no_url = result['devices']['AZJN-0043']
    assert no_url['msg'].startswith('AZJN-0043: ') and 'jetson_loader_url' in no_url['msg']
    denied = result['devices']['AZJN-0044']
    assert denied['msg'].startswith('AZJN-0044: ') and 'rejected the device\'s credentials' in denied['msg']
    assert denied['login']['status_code'] == 401
    assert phase(devices[3])['status'] == 'failed'

    states = dict((device['name'], open(device['state_file']).read()) for device in devices)
    again = run(module_runner, devices)
    assert again['changed'] is False and again['failed_devices'] == ['AZJN-0043', 'AZJN-0044']
    for device, port in ((devices[0], '1-1'), (devices[1], '1-2')):
        assert 'passed the check before' in again['devices'][device['name']]['msg']
        assert len(lab.logins(port)) == 1  # not asked again
        assert open(device['state_file']).read() == states[device['name']]
    assert len(lab.logins('1-4')) == 2  # a failed device is checked again

    forced = run(module_runner, devices[:1], force=True)
    assert forced['devices']['AZJN-0041']['login']['status'] == 'ok'
    assert len(lab.logins('1-1')) == 2
    assert phase(devices[0])['status'] == 'done'


def test_check_mode_sends_no_login_and_writes_nothing(module_runner, lab):
    devices = [lab.device('AZJN-0041', '1-1'), lab.device('AZJN-0042', '1-2')]
    result = run(module_runner, devices, check_mode=True)
    assert result['failed_devices'] == [] and result['changed'] is False
    for device, port in ((devices[0], '1-1'), (devices[1], '1-2')):
        outcome = result['devices'][device['name']]
        assert outcome['msg'].startswith('check mode: GET /health answers HTTP 200'), outcome['msg']
        assert lab.logins(port) == []
        assert not os.path.exists(device['state_file'])
