"""The chaos suite: real provision runs over the lab, under injected admin API faults and kill -9.

Each scenario records its figures with the ``figures`` fixture and asserts them; they are
printed at the end of the run, in a "chaos figures" section (also under pytest-xdist, whose
workers' own output pytest does not show).
The batch here is the integration suite's ``ProvisionBatch`` (tests/lab/batch.py), plus what a
chaos run needs to judge a device's state after a fault.
"""

import glob
import json
import os

import pytest

from lab import labkit
from lab.batch import ProvisionBatch, admin_api, api_token  # noqa: F401 pylint: disable=unused-import
from lab.figures import figures_fixture, show_figures

# Files an atomic write leaves behind when killed before its rename (see _files.write_file_atomic).
ATOMIC_LEFTOVER = '.*.tmp'


class ChaosBatch(ProvisionBatch):
    """A lab station with ``count`` devices (one USB port each), an inventory over it, and the
    playbook run in the foreground or in a process group of its own."""

    def __init__(self, root, api, token, count, flash_seconds=0.0, boot_seconds=0.2, extra_vars=None):
        self.ports = dict(('1-%d' % (number + 2), '7523') for number in range(count))  # 1-1: the lab's keyboard
        super().__init__(root, api, token, self.ports, flash_seconds=flash_seconds, boot_seconds=boot_seconds,
                         extra_vars=extra_vars)

    def email(self, serial):
        return 'azaion-jetson-%s@azaion.com' % serial.rsplit('-', 1)[1]

    def tree(self, port):
        return os.path.join(self.lab.workdir, 'ports', port, 'Linux_for_Tegra')

    def state_file(self, serial):
        return os.path.join(self.lab.workdir, 'devices', serial, 'state.json')

    def phases(self, serial):
        """Phase -> status in the device's state file ({} when there is none yet)."""
        try:
            with open(self.state_file(serial)) as state:
                return dict((phase, record['status']) for phase, record in json.load(state)['phases'].items())
        except FileNotFoundError:
            return {}

    def not_done(self):
        """The devices whose report row is not done (all of them when there is no report yet)."""
        try:
            report = self.report()
        except (OSError, ValueError):
            return sorted(self.serials.values())
        return sorted(serial for serial in self.serials.values() if report.get(serial, {}).get('result') != 'done')

    def duplicate_accounts(self):
        """Accounts beyond one per device e-mail (the lab API refuses a second POST of an e-mail,
        so a duplicate is an account whose e-mail is none of the batch's)."""
        emails = [user['email'] for user in self.api.users().values()]
        wanted = set(self.email(serial) for serial in self.serials.values())
        return len(emails) - len(set(emails)) + len([email for email in emails if email not in wanted])

    def password_mismatches(self, flashed=True):
        """Devices whose device.conf password is not their account's, in the port's tree and (when
        ``flashed``) on the device's storage, or whose storage holds another device.conf than its tree."""
        users = self.api.users()
        mismatches = []
        for port, serial in self.serials.items():
            try:
                conf = labkit.read_device_conf(os.path.join(self.tree(port), 'rootfs'))
            except FileNotFoundError:
                conf = {}
            account = users.get(self.email(serial))
            same = (conf.get('AZAION_DEVICE_EMAIL') == self.email(serial) and account is not None
                    and account['password'] == conf.get('AZAION_DEVICE_PASSWORD'))
            if flashed and same:
                same = os.path.exists(self.lab.storage(port)) and labkit.read_device_conf(self.lab.storage(port)) == conf
            if not same:
                mismatches.append(serial)
        return mismatches

    def partial_files(self):
        """What a write cut short would leave: temporary files of atomic writes anywhere in the
        station's workdir or on the devices' storage, and device.conf or state.json files that do
        not parse completely."""
        partial = []
        for top in (self.lab.workdir, os.path.join(self.lab.lab_state, 'storage')):
            partial += glob.glob(os.path.join(top, '**', ATOMIC_LEFTOVER), recursive=True)
        for port, serial in self.serials.items():
            for rootfs in (os.path.join(self.tree(port), 'rootfs'), self.lab.storage(port)):
                try:
                    conf = labkit.read_device_conf(rootfs)
                except FileNotFoundError:  # not written yet: not partial (the mismatches count it)
                    continue
                if len(conf.get('AZAION_DEVICE_PASSWORD', '')) != 32 or not conf.get('AZAION_DEVICE_EMAIL'):
                    partial.append(os.path.join(rootfs, 'etc', 'azaion', 'device.conf'))
            try:
                with open(self.state_file(serial)) as state:
                    assert isinstance(json.load(state)['phases'], dict)
            except FileNotFoundError:
                pass
            except (ValueError, KeyError, AssertionError):
                partial.append(self.state_file(serial))
        return partial


figures = figures_fixture('chaos')


def pytest_terminal_summary(terminalreporter):
    kills = [line for _test, line in show_figures(terminalreporter, 'chaos') if line.startswith('kill ')]
    if kills:
        terminalreporter.write_line('kill -9 totals: %d kill points (%d of the controller only), each re-run: 0 partial '
                                    'files, 0 mismatches, every device done, station clean'
                                    % (len(kills), sum(1 for line in kills if 'controller only' in line)))


@pytest.fixture
def make_batch(tmp_path, admin_api, api_token):
    batches = []

    def make(count, **kwargs):
        batch = ChaosBatch(tmp_path / ('lab%d' % len(batches)), admin_api, api_token, count, **kwargs)
        batches.append(batch)
        return batch
    yield make
    for batch in batches:
        batch.lab.stop_loaders()


def assert_ok(result):
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
