"""azaion.jetson.provision end to end over the lab: fake L4T bundle, fake USB tree, Loaders."""

import csv
import hashlib
import json
import os
import secrets

import pytest

from conftest import assert_ok
from lab import l4t_bundle, labkit, usb_sysfs
from sweep import ProcessArgumentWatcher, everything_written_under, sweep_env


class ProvisionBatch:
    """A lab station with devices on ports, an inventory over it, and a way to run the playbook."""

    def __init__(self, root, api, token, ports, flash_seconds=0.0, serials=None, extra_vars=None, host_vars=None):
        self.api = api
        self.token = token
        self.lab = labkit.FactoryLab(root, ports, flash_seconds=flash_seconds)
        self.lab.start_loaders(api.url)
        self.serials = serials or dict((port, 'AZJN-%04d' % (index + 1)) for index, port in enumerate(ports))
        self.default_user_password = secrets.token_hex(12)
        self.secrets_file = str(root) + '-secrets.json'  # beside the lab: the sweep searches the lab
        with open(self.secrets_file, 'w') as secrets_vars:
            json.dump({'jetson_default_user_password': self.default_user_password}, secrets_vars)
        self.inventory = os.path.join(str(root), 'hosts.yml')
        self.group_vars = dict(self.lab.group_vars(), identity_api_retry_backoff=0.05, verify_health_timeout=30)
        self.group_vars.update(extra_vars or {})
        self.host_vars = dict((serial, self.lab.host_vars(port)) for port, serial in self.serials.items())
        for serial, extra in (host_vars or {}).items():
            self.host_vars[serial].update(extra)
        self.write_inventory()

    def write_inventory(self):
        labkit.write_inventory(self.inventory, self.host_vars, self.group_vars)

    def run(self, *args, **env):
        environment = {'AZAION_ADMIN_API_URL': self.api.url, 'AZAION_ADMIN_API_TOKEN': self.token,
                       'ANSIBLE_FORKS': '12'}
        environment.update(env)
        # A secret given on the command line would be in the process arguments: a vars file.
        args = list(args) + ['-e', '@' + self.secrets_file]
        result = labkit.run_playbook(self.inventory, args=args, env=environment)
        result.recap = labkit.play_recap(result.stdout)
        return result

    def report(self):
        with open(os.path.join(self.lab.workdir, 'reports', 'batch.json')) as report:
            return dict((row['serial'], row) for row in json.load(report)['devices'])

    def tool_calls(self, tool):
        return [call for call in l4t_bundle.tool_calls(self.lab.lab_state) if call['tool'] == tool]


def tree_checksums(top):
    sums = {}
    for root, _dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                with open(path, 'rb') as content:
                    sums[os.path.relpath(path, top)] = hashlib.sha256(content.read()).hexdigest()
    return sums


@pytest.fixture
def make_provision(tmp_path, admin_api, api_token):
    batches = []

    def make(ports, **kwargs):
        batch = ProvisionBatch(tmp_path / ('lab%d' % len(batches)), admin_api, api_token, ports, **kwargs)
        batches.append(batch)
        return batch
    yield make
    for batch in batches:
        batch.lab.stop_loaders()


SIX_PORTS = {'1-1': '7523', '1-2': '7523', '1-3': '7623', '1-4': '7323', '1-5': '7423', '1-6': '7523'}


def test_six_devices_on_six_ports_end_to_end_then_a_rerun_does_nothing(make_provision):
    batch = make_provision(SIX_PORTS, flash_seconds=2.0)
    bundle_before = tree_checksums(batch.lab.bundle)

    first = batch.run()
    assert_ok(first)
    users = batch.api.users()
    for port, serial in batch.serials.items():
        conf = labkit.read_device_conf(batch.lab.storage(port))  # what the device holds
        email = 'azaion-jetson-%s@azaion.com' % serial.rsplit('-', 1)[1]
        assert conf['AZAION_DEVICE_EMAIL'] == email
        assert users[email]['password'] == conf['AZAION_DEVICE_PASSWORD']
        assert os.stat(os.path.join(batch.lab.storage(port), 'etc', 'azaion', 'device.conf')).st_mode & 0o777 == 0o600
        assert batch.lab.loaders.loader(port).login_attempts() == [{'email': email, 'ok': True}]
    report = batch.report()
    assert sorted(report) == sorted(batch.serials.values())
    assert all(row['result'] == 'done' and row['verify'] == 'done' and row['fuse'] == 'skipped' for row in report.values())
    assert report['AZJN-0004']['board'] == 'orin-nx-16gb'
    with open(os.path.join(batch.lab.workdir, 'reports', 'batch.csv')) as report_csv:
        assert sorted(row['serial'] for row in csv.DictReader(report_csv) if row['result'] == 'done') == sorted(batch.serials.values())

    # Parallel, without sharing a tree, and the bundle untouched.
    runs = l4t_bundle.flash_runs(batch.lab.lab_state)
    assert len(runs) == 6 and all(run['exit'] == 0 for run in runs)
    assert len(set(run['tree'] for run in runs)) == 6
    assert l4t_bundle.collisions(batch.lab.lab_state) == []
    overlapping = [(a['usb_instance'], b['usb_instance']) for a in runs for b in runs
                   if a['usb_instance'] < b['usb_instance'] and a['start'] < b['end'] and b['start'] < a['end']]
    assert overlapping, 'no two flashes overlapped in time'
    assert max(sum(1 for other in runs if other['start'] <= run['start'] < other['end']) for run in runs) <= 4
    assert tree_checksums(batch.lab.bundle) == bundle_before
    assert batch.tool_calls('odmfuse.sh') == []

    # A re-run of the finished batch: nothing flashed, fused or written; no change.
    writes, flashes = batch.api.write_count(), len(runs)
    again = batch.run()
    assert_ok(again)
    assert all(counts['changed'] == 0 for counts in again.recap.values()), again.recap
    assert len(l4t_bundle.flash_runs(batch.lab.lab_state)) == flashes
    assert batch.api.write_count() == writes
    assert 'the batch was already finished: nothing to do' in again.stdout


def test_a_flash_failure_stops_only_that_device_and_the_rerun_flashes_only_it(make_provision):
    batch = make_provision({'1-1': '7523', '1-2': '7523', '1-3': '7523'})
    l4t_bundle.plant_failure(batch.lab.lab_state, '1-2', times=1, kind='usb-timeout')
    first = batch.run()
    assert first.returncode != 0
    assert first.recap['AZJN-0002']['failed'] == 1
    assert first.recap['AZJN-0001']['failed'] == 0 and first.recap['AZJN-0003']['failed'] == 0
    report = batch.report()
    assert report['AZJN-0002']['result'] == 'failed' and report['AZJN-0002']['flash'] == 'failed'
    assert 'timeout in USB write' in report['AZJN-0002']['error']
    assert report['AZJN-0001']['result'] == 'done' and report['AZJN-0003']['result'] == 'done'

    flashed_before = len(l4t_bundle.flash_runs(batch.lab.lab_state))
    rerun = batch.run()
    assert_ok(rerun)
    new_runs = l4t_bundle.flash_runs(batch.lab.lab_state)[flashed_before:]
    assert [run['usb_instance'] for run in new_runs] == ['1-2']
    assert all(row['result'] == 'done' for row in batch.report().values())


def test_fusing_runs_only_when_enabled_dry_run_first_read_back_after_and_never_twice(make_provision, tmp_path):
    fuse_xml = l4t_bundle.write_fuse_config(str(tmp_path / 'fuses.xml'))  # burns PublicKeyHash
    pkc_key = tmp_path / 'pkc.pem'
    pkc_key.write_text('lab PKC key pair\n')
    fuse_vars = {'jetson_fuse_enabled': True, 'jetson_fuse_config': fuse_xml, 'jetson_pkc_key': str(pkc_key)}
    batch = make_provision({'1-1': '7523'}, extra_vars=fuse_vars)

    check = batch.run('--check')
    assert_ok(check)
    assert batch.tool_calls('odmfuse.sh') == [] and batch.tool_calls('odmfuseread.sh') == []

    assert_ok(batch.run())
    calls = [(call['tool'], '--test' in call['argv']) for call in l4t_bundle.tool_calls(batch.lab.lab_state)
             if call['tool'] in ('odmfuse.sh', 'odmfuseread.sh')]
    assert calls == [('odmfuse.sh', True), ('odmfuse.sh', False), ('odmfuseread.sh', False)]
    assert l4t_bundle.burned_fuses(batch.lab.lab_state, '1-1')
    assert batch.report()['AZJN-0001']['fuse'] == 'done'
    # A PKC-fused device only takes an image flashed with its key.
    assert '-u' in batch.tool_calls('l4t_initrd_flash.sh')[-1]['argv']
    assert batch.report()['AZJN-0001']['result'] == 'done'

    again = batch.run()
    assert_ok(again)
    assert len(batch.tool_calls('odmfuse.sh')) == 2


def test_fusing_is_refused_with_two_devices_in_recovery_on_the_station(make_provision, tmp_path):
    fuse_xml = l4t_bundle.write_fuse_config(str(tmp_path / 'fuses.xml'))
    pkc_key = tmp_path / 'pkc.pem'
    pkc_key.write_text('lab PKC key pair\n')
    batch = make_provision({'1-1': '7523', '1-2': '7523'},
                           host_vars={'AZJN-0001': {'jetson_fuse_enabled': True, 'jetson_fuse_config': fuse_xml,
                                                    'jetson_pkc_key': str(pkc_key)}})
    result = batch.run()
    assert result.returncode != 0
    assert result.recap['AZJN-0001']['failed'] == 1
    assert 'odmfuse.sh cannot choose a USB port' in result.stdout, result.stdout[-6000:]
    assert batch.tool_calls('odmfuse.sh') == []
    assert l4t_bundle.burned_fuses(batch.lab.lab_state, '1-1') == {}
    assert batch.report()['AZJN-0002']['result'] == 'done'


@pytest.mark.parametrize('problem', ['duplicate port', 'colliding e-mails', 'missing bundle', 'admin API down'])
def test_a_bad_inventory_fails_the_batch_check_naming_the_devices_with_nothing_written(make_provision, problem):
    batch = make_provision({'1-1': '7523', '1-2': '7523'})
    if problem == 'duplicate port':
        batch.host_vars['AZJN-0002']['jetson_usb_instance'] = '1-1'
        expected = 'devices AZJN-0001 and AZJN-0002 are on the same USB port 1-1'
    elif problem == 'colliding e-mails':
        batch.host_vars['AZXX-0001'] = batch.host_vars.pop('AZJN-0002')
        expected = 'AZJN-0001 (serial AZJN-0001) and AZXX-0001 (serial AZXX-0001)'
    elif problem == 'missing bundle':
        batch.host_vars['AZJN-0002']['jetson_l4t_dir'] = batch.lab.bundle + '-missing'
        expected = 'AZJN-0002: the L4T bundle on localhost is missing or incomplete'
    else:
        batch.api.stop()
        expected = 'Connection refused'
    batch.write_inventory()
    result = batch.run()
    assert result.returncode != 0
    assert expected in result.stdout, result.stdout[-3000:]
    assert not os.path.exists(batch.lab.workdir)
    assert batch.api.request_log() == []
    assert l4t_bundle.tool_calls(batch.lab.lab_state) == []


def test_no_secret_in_anything_the_whole_playbook_prints_or_writes(make_provision, tmp_path):
    batch = make_provision({'1-1': '7523', '1-2': '7323'})
    log_file, events_file, tree_dir = tmp_path / 'ansible.log', tmp_path / 'events.jsonl', tmp_path / 'tree'
    sweep_vars = sweep_env(log_file, events_file, tree_dir)
    outputs, passwords = [], set()
    with ProcessArgumentWatcher() as watcher:
        # A first run with an admin API hiccup, a check run of a rotation, the rotation (new
        # passwords, re-flash), and a run with the admin API down.
        batch.api.set_faults([{'method': 'POST', 'status': 503, 'times': 1}])
        outputs.append(batch.run('-vvvv', '--diff', **sweep_vars))
        passwords.update(labkit.read_device_conf(batch.lab.storage(port))['AZAION_DEVICE_PASSWORD'] for port in batch.serials)
        outputs.append(batch.run('-vvvv', '--diff', '--check', '-e', 'identity_rotate=true', **sweep_vars))
        for port, product in batch.lab.ports.items():  # the operator puts them back in recovery mode
            usb_sysfs.add_device(batch.lab.sysfs, port, product)
        outputs.append(batch.run('-vvvv', '--diff', '-e', 'identity_rotate=true', '-e', 'verify_force=true', **sweep_vars))
        passwords.update(labkit.read_device_conf(batch.lab.storage(port))['AZAION_DEVICE_PASSWORD'] for port in batch.serials)
        batch.api.stop()
        outputs.append(batch.run('-vvvv', '--diff', '-e', 'identity_rotate=true', '-e', 'identity_api_retries=0', **sweep_vars))
    for result in outputs[:3]:
        assert_ok(result)
    assert outputs[3].returncode != 0
    assert len(passwords) == 4
    assert len(l4t_bundle.flash_runs(batch.lab.lab_state)) == 4  # flashed, then re-flashed with the new identity

    haystacks = [('stdout', result.stdout.encode()) for result in outputs]
    haystacks += [('stderr', result.stderr.encode()) for result in outputs]
    haystacks += [('ansible.log', log_file.read_bytes()), ('events', events_file.read_bytes())]
    haystacks += list(everything_written_under(str(tree_dir)))
    # The station's and the lab's files: state, records, logs, reports, the tools' own logs of
    # their command lines; device.conf and the device images made from it aside.
    haystacks += list(everything_written_under(batch.lab.root, skip_names=('device.conf', 'system.img')))
    haystacks += [('process arguments', b'\n'.join(watcher.seen))]
    joined = b'\n'.join(text for _name, text in haystacks)
    assert b'AZAION_DEVICE_PASSWORD=********' in joined and b'l4t_initrd_flash.sh' in joined
    assert b'"action": "password_updated"' in joined
    for secret in sorted(passwords) + [batch.token, batch.default_user_password]:
        leaks = [name for name, text in haystacks if secret.encode() in text]
        assert leaks == [], 'a secret leaked into %s' % leaks


def test_a_device_with_its_own_staging_rootfs_is_flashed_from_it(make_provision, tmp_path):
    own_rootfs = labkit.make_rootfs(str(tmp_path / 'own-rootfs'))
    with open(os.path.join(own_rootfs, 'etc', 'hostname'), 'w') as hostname:
        hostname.write('own-image\n')
    batch = make_provision({'1-1': '7523'}, host_vars={'AZJN-0001': {'jetson_rootfs_dir': own_rootfs}})
    assert_ok(batch.run())
    storage = batch.lab.storage('1-1')
    with open(os.path.join(storage, 'etc', 'hostname')) as flashed:
        assert flashed.read() == 'own-image\n'
    conf = labkit.read_device_conf(storage)
    assert conf == labkit.read_device_conf(own_rootfs)
    assert batch.api.users()['azaion-jetson-0001@azaion.com']['password'] == conf['AZAION_DEVICE_PASSWORD']
    assert batch.report()['AZJN-0001']['result'] == 'done'
