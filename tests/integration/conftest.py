"""Fixtures for the end-to-end tests: a lab admin API on loopback and a batch of devices."""

import os

import pytest

from lab import labkit
from lab.batch import ProvisionBatch, admin_api, api_token  # noqa: F401 pylint: disable=unused-import


IDENTITY_PLAYBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'playbooks', 'identity.yml')


class Batch:
    """A batch of devices on this machine as the station: rootfs trees, inventory, workdir."""

    def __init__(self, root, api, token, count, prefix='AZJN', extra_vars=None):
        self.root = str(root)
        self.api = api
        self.token = token
        self.devices = ['%s-%04d' % (prefix, number) for number in range(1, count + 1)]
        self.workdir = os.path.join(self.root, 'station')
        self.inventory = os.path.join(self.root, 'hosts.yml')
        self.group_vars = {
            'jetson_station': 'localhost',
            'jetson_workdir': self.workdir,
            'jetson_rootfs_dir': self.root + '/rootfs/{{ inventory_hostname }}',
            'identity_conf_owner': labkit.SERVICE_USER,
            'identity_conf_group': labkit.SERVICE_USER,
            'identity_api_retry_backoff': 0.05,
            'identity_api_timeout': 5,
        }
        self.group_vars.update(extra_vars or {})
        self.host_vars = dict((device, {}) for device in self.devices)
        for device in self.devices:
            labkit.make_rootfs(self.rootfs(device))
        self.write_inventory()

    def write_inventory(self):
        labkit.write_inventory(self.inventory, self.host_vars, self.group_vars)

    def rootfs(self, device):
        return os.path.join(self.root, 'rootfs', device)

    def conf_path(self, device):
        return os.path.join(self.rootfs(device), 'etc', 'azaion', 'device.conf')

    def conf(self, device):
        return labkit.read_device_conf(self.rootfs(device))

    def run(self, *args, **env):
        environment = {'AZAION_ADMIN_API_URL': self.api.url}
        if self.token is not None:
            environment['AZAION_ADMIN_API_TOKEN'] = self.token
        environment.update(env)
        result = labkit.run_playbook(self.inventory, playbook=IDENTITY_PLAYBOOK, args=args, env=environment)
        result.recap = labkit.play_recap(result.stdout)
        return result


@pytest.fixture
def make_batch(tmp_path, admin_api, api_token):
    def make(count, **kwargs):
        return Batch(tmp_path, admin_api, api_token, count, **kwargs)
    return make


def assert_ok(result):
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


@pytest.fixture
def make_provision(tmp_path, admin_api, api_token):  # pylint: disable=redefined-outer-name
    """Provision batches over labs of their own: ``make(ports, **kwargs)`` -> ProvisionBatch."""
    batches = []

    def make(ports, **kwargs):
        batch = ProvisionBatch(tmp_path / ('lab%d' % len(batches)), admin_api, api_token, ports, **kwargs)
        batches.append(batch)
        return batch
    yield make
    for batch in batches:
        batch.lab.stop_loaders()
