"""azaion.jetson.provision over three remote stations, reached over real SSH as a sudoer.

One batch (3 stations x 2 devices, see conftest.py) is provisioned once and re-run once (the
``provisioned`` fixture); each test then judges one thing about it: the devices' identities,
where each flash ran, the re-run, interpreter discovery, who called the admin API, nothing at
the stations' path on the controller, the secret sweep, and what pipelining leaves on the
stations' disks. A later test runs the same batch on one local station and prints both times;
the last stops a run with Ctrl-C.
"""

import contextlib
import importlib.util
import io
import json
import os
import re
import subprocess
import time
import types
import zipfile

import pytest
import yaml

from conftest import FLASH_CONCURRENCY, FLASH_SECONDS, PORTS, SSH_USER, STATION_MOUNT, close_ssh_masters
from lab import l4t_bundle, l4t_host, labkit, usb_sysfs
from lab.processes import interrupt, wait_until

# The secret sweep's tools (process arguments, files, the event-recording callback), loaded by
# path: tests/integration has its own conftest, which an import through sys.path would clash with.
_SWEEP_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'integration', 'sweep.py')
_spec = importlib.util.spec_from_file_location('integration_sweep', _SWEEP_PATH)
sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweep)

DISCOVERY_LINE = 'Attempting python interpreter discovery'
# What Python itself puts in a station's /tmp while a module runs (see is_python_tempfile_at_work).
TEMPDIR_PROBE = re.compile(r'station-[a-z]/tmp/[a-z0-9_]{8}')
MODULE_CODE_PAYLOAD = re.compile(r'station-[a-z]/tmp/ansible_(?P<module>[\w.]+)_payload_\w+/ansible_(?P=module)_payload\.zip')
EXAMPLE_INVENTORY = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                 'inventories', 'stations', 'hosts.yml')
CONNECTION_VARS = ('ansible_host', 'ansible_user', 'ansible_ssh_private_key_file', 'ansible_become', 'ansible_ssh_common_args')
STATION_VARS = ('jetson_l4t_dir', 'jetson_workdir', 'jetson_flash_concurrency')


def email_of(serial):
    return 'azaion-jetson-%s@azaion.com' % serial.rsplit('-', 1)[1]


def assert_ok(result):
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]


def files_at_the_station_mount():
    """What the controller has at the stations' common path: (path, size, mtime) of each file."""
    found = set()
    for root, _dirs, files in os.walk(STATION_MOUNT):
        for name in files:
            info = os.lstat(os.path.join(root, name))
            found.add((os.path.join(root, name), info.st_size, info.st_mtime_ns))
    return found


class FileWatcher(sweep.ProcessArgumentWatcher):  # its polling thread and with-block; another _watch
    """Reads every file that appears under ``directories`` while a run goes on, also those
    removed at the end of their task (a module payload without pipelining, say)."""

    def __init__(self, directories):
        super().__init__()
        self.directories = directories
        self.files = {}  # path -> the bytes last read

    def _watch(self):
        while not self._stop.wait(0.02):
            for directory in self.directories:
                for root, _dirs, files in os.walk(directory):
                    for name in files:
                        path = os.path.join(root, name)
                        try:
                            with open(path, 'rb') as written:
                                self.files[path] = written.read()
                        except OSError:
                            pass


def is_python_tempfile_at_work(path, data):
    """Whether ``path`` (under the suite's base directory) is what AnsiballZ's wrapper leaves in the
    system's temporary directory while a module runs: the module's code (a zip, without its
    arguments), or the probe by which Python's tempfile first checks that the directory is
    writable (a random name, holding b'blat' until it is removed)."""
    return bool(MODULE_CODE_PAYLOAD.fullmatch(path) or (TEMPDIR_PROBE.fullmatch(path) and data in (b'', b'blat')))


def unzipped(files):
    """(path, bytes of every member) of each zip file in ``files``: compressed, a secret in a zip
    would not show in a byte search."""
    for path, data in files.items():
        if path.endswith('.zip'):
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    yield path, b'\n'.join(archive.read(member) for member in archive.namelist())
            except (zipfile.BadZipFile, EOFError):
                yield path, b''  # read while it was written: the raw bytes are searched anyway


@pytest.fixture(scope='module')
def provisioned(remote_factory, tmp_path_factory):
    """The batch provisioned (at -vvv, every output kept for the sweep), then re-run.

    Returns a namespace: ``factory``, ``first`` and ``rerun`` (the runs), ``before_rerun``
    (API writes and flash runs per station after the first run), ``outputs_dir`` (ansible.log,
    events, tree callback), ``process_arguments`` (every command line seen during the runs),
    ``files_during_the_runs`` (what appeared in the stations' homes, ~/.ansible and /tmp),
    ``controller_before`` / ``controller_after`` (the controller's files at STATION_MOUNT),
    ``api_users``, ``api_peers`` and ``api_writes`` (the admin API's accounts, who sent each
    request, how many writes it took).
    """
    run = types.SimpleNamespace(factory=remote_factory, outputs_dir=tmp_path_factory.mktemp('remote-outputs'))
    sweep_vars = sweep.sweep_env(run.outputs_dir / 'ansible.log', run.outputs_dir / 'events.jsonl',
                                 run.outputs_dir / 'tree')
    run.controller_before = files_at_the_station_mount()
    private_dirs = [os.path.join(station.host_dir, private) for station in remote_factory.stations
                    for private in ('home', 'root-ansible', 'tmp')]
    with sweep.ProcessArgumentWatcher() as watcher, FileWatcher(private_dirs) as file_watcher:
        run.first = remote_factory.run('-vvv', env=sweep_vars)
        run.before_rerun = {
            'writes': remote_factory.api.write_count(),
            'flash_runs': dict((station.name, len(l4t_bundle.flash_runs(station.lab_state)))
                               for station in remote_factory.stations),
        }
        run.rerun = remote_factory.run('-v', env=sweep_vars)
    run.process_arguments = watcher.seen
    run.files_during_the_runs = file_watcher.files
    run.controller_after = files_at_the_station_mount()
    # The admin API as the runs left it (a later test adds a local station's devices to it).
    run.api_users, run.api_peers = remote_factory.api.users(), remote_factory.api.request_peers()
    run.api_writes = remote_factory.api.write_count()
    for name in ('first', 'rerun'):  # kept for a person looking into a failure
        result = getattr(run, name)
        (run.outputs_dir / (name + '.out')).write_text(result.stdout + result.stderr)
    return run


def test_each_station_sees_only_its_own_directory(remote_factory):
    # The set-up itself: a task that ran in the wrong place would find another station's files,
    # or none (the controller has nothing at the stations' common path).
    assert not os.path.exists(STATION_MOUNT) or os.listdir(STATION_MOUNT) == []
    for station in remote_factory.stations:
        seen = subprocess.run(station.nsenter('cat', STATION_MOUNT + '/station.json'), capture_output=True,
                              text=True, check=True).stdout
        with open(os.path.join(station.host_dir, 'srv', 'station.json')) as own:
            assert seen == own.read(), station.name
    lab_states = set(station.info['lab_state'] for station in remote_factory.stations)
    assert len(lab_states) == 1  # one path on every station, different files behind it


def inventory_shape(path):
    """The AWX-ready shape of an inventory: which of CONNECTION_VARS + STATION_VARS every station
    host has (its group's included), and whether each station has one group of devices naming it."""
    with open(path) as inventory_file:
        inventory = yaml.safe_load(inventory_file)
    stations = inventory['stations']
    station_vars = dict((name, dict(stations.get('vars') or {}, **(host or {}))) for name, host in stations['hosts'].items())
    device_groups = inventory['jetsons']['children'].values()
    return {
        'station_vars': sorted(name for name in CONNECTION_VARS + STATION_VARS
                               if all(name in host for host in station_vars.values())),
        'one_device_group_per_station': sorted(group['vars']['jetson_station'] for group in device_groups
                                               if group.get('hosts')) == sorted(station_vars),
    }


def test_the_example_inventory_has_the_shape_the_test_runs(remote_factory):
    expected = {'station_vars': sorted(CONNECTION_VARS + STATION_VARS), 'one_device_group_per_station': True}
    assert inventory_shape(remote_factory.inventory) == expected
    assert inventory_shape(EXAMPLE_INVENTORY) == expected


def test_nothing_of_the_runs_reached_the_controller_at_the_stations_path(provisioned):
    assert provisioned.controller_after == provisioned.controller_before


def test_the_batch_is_provisioned_and_every_device_holds_its_own_identity(provisioned):
    factory, first = provisioned.factory, provisioned.first
    assert_ok(first)
    users = provisioned.api_users
    for station, port, serial in factory.devices():
        conf = labkit.read_device_conf(station.storage(port))  # what was flashed to the device on that port
        assert conf['AZAION_DEVICE_EMAIL'] == email_of(serial), (station.name, port)
        assert users[email_of(serial)]['password'] == conf['AZAION_DEVICE_PASSWORD'], (station.name, port)
        assert os.stat(os.path.join(station.storage(port), 'etc', 'azaion', 'device.conf')).st_mode & 0o777 == 0o600
    assert sorted(users) == sorted(email_of(serial) for _station, _port, serial in factory.devices())
    assert all(first.recap[serial]['failed'] == 0 for _station, _port, serial in factory.devices()), first.recap


def test_every_flash_ran_on_its_own_station_and_port(provisioned):
    factory, first = provisioned.factory, provisioned.first
    assert_ok(first)
    for station in factory.stations:
        runs = l4t_bundle.flash_runs(station.lab_state)
        # Two flashes on this station, one per port, each reaching the device on its own port.
        assert sorted(run['usb_instance'] for run in runs) == sorted(PORTS), (station.name, runs)
        assert all(run['exit'] == 0 and run['device'] == run['usb_instance'] for run in runs), (station.name, runs)
        assert {run['instance'] for run in runs} <= set(range(FLASH_CONCURRENCY))
        # Only this station's devices have state here: no other station's device was worked on.
        assert sorted(os.listdir(os.path.join(station.workdir, 'devices'))) == sorted(station.serials.values())
        # The ports have the same names on every station: the device.conf tells whose flash it was.
        for port, serial in station.serials.items():
            assert labkit.read_device_conf(station.storage(port))['AZAION_DEVICE_EMAIL'] == email_of(serial)


def test_the_rerun_changes_nothing(provisioned):
    factory, first, rerun, before = provisioned.factory, provisioned.first, provisioned.rerun, provisioned.before_rerun
    assert_ok(first)
    assert_ok(rerun)
    assert [host for host, counts in rerun.recap.items() if counts['changed']] == [], rerun.stdout[-8000:]
    assert provisioned.api_writes == before['writes']
    for station in factory.stations:
        assert len(l4t_bundle.flash_runs(station.lab_state)) == before['flash_runs'][station.name], station.name
    assert 'the batch was already finished: nothing to do' in rerun.stdout


def test_each_station_discovers_its_python_once(provisioned):
    factory, first = provisioned.factory, provisioned.first
    assert_ok(first)
    # Ansible names the host whose task delegated to the station: each station's runner device.
    discovering = [line.split('>', 1)[0].lstrip('<') for line in first.stdout.splitlines() if DISCOVERY_LINE in line]
    station_of = dict((serial, station.name) for station, _port, serial in factory.devices())
    assert sorted(station_of.get(host, host) for host in discovering) == sorted(station.name for station in factory.stations)


def test_each_station_called_the_admin_api_itself(provisioned):
    factory, first = provisioned.factory, provisioned.first
    assert_ok(first)
    peers = provisioned.api_peers
    stations = set(station.address for station in factory.stations)
    # Every request came from a station, never from the controller.
    assert set(peer['peer'] for peer in peers) == stations, peers
    for station in factory.stations:
        own = [(peer['method'], peer['path']) for peer in peers if peer['peer'] == station.address]
        assert ('GET', '/users') in own, (station.name, own)  # the station check's reachability check
        # The accounts of this station's two devices, created from this station (first run).
        assert own.count(('POST', '/users')) == len(station.serials), (station.name, own)


def test_no_secret_anywhere(provisioned):
    factory, first, rerun = provisioned.factory, provisioned.first, provisioned.rerun
    assert_ok(first)
    assert_ok(rerun)
    passwords = sorted(user['password'] for user in provisioned.api_users.values())
    assert len(passwords) == len(factory.devices())
    haystacks = [('stdout', first.stdout.encode()), ('stderr', first.stderr.encode()),
                 ('rerun stdout', rerun.stdout.encode()), ('rerun stderr', rerun.stderr.encode())]
    haystacks += list(sweep.everything_written_under(str(provisioned.outputs_dir)))  # ansible.log, every event, the tree callback
    haystacks += list(sweep.everything_written_under(factory.report_dir))  # the batch report, on the controller
    # Each station's directories: its lab, workdir, state, logs and reports, the SSH user's home,
    # root's ~/.ansible and /tmp as the station saw them, its sshd log (DEBUG) and its lab's log;
    # device.conf and the device images made from it aside.
    for station in factory.stations:
        haystacks += list(sweep.everything_written_under(station.host_dir, skip_names=('device.conf', 'system.img')))
    # The SSH user's home on the controller (each station has its own over it).
    haystacks += list(sweep.everything_written_under(os.path.expanduser('~' + SSH_USER)))
    haystacks += [('process arguments', b'\n'.join(provisioned.process_arguments))]
    haystacks += sorted(provisioned.files_during_the_runs.items())
    haystacks += [(path + ' (unzipped)', text) for path, text in unzipped(provisioned.files_during_the_runs)]
    joined = b'\n'.join(text for _name, text in haystacks)
    # The sweep reached the stations: their tools' logs, their sshd logs, their processes (sudo).
    assert b'l4t_initrd_flash_internal.sh' in joined and b'Accepted publickey for ' + SSH_USER.encode() in joined
    assert b'BECOME-SUCCESS' in b'\n'.join(provisioned.process_arguments)
    for secret in passwords + [factory.token, factory.default_user_password]:
        leaks = [name for name, text in haystacks if secret.encode() in text]
        assert leaks == [], 'a secret leaked into %s' % leaks


def test_with_pipelining_nothing_is_left_in_the_station_homes_or_tmp(provisioned):
    # Modules went to the station's Python over the SSH connection: no remote temporary
    # directory, no payload with the arguments, in the SSH user's home or root's ~/.ansible.
    # Only Ansible's own module code (AnsiballZ's zip, no arguments in it) sits in /tmp for the
    # time of a task, and nothing is left after the run.
    for station in provisioned.factory.stations:
        for private in ('home', 'root-ansible', 'tmp'):
            left = [os.path.relpath(os.path.join(root, name), station.host_dir)
                    for root, dirs, files in os.walk(os.path.join(station.host_dir, private)) for name in dirs + files]
            assert left == [], (station.name, left)
    others = dict((os.path.relpath(path, provisioned.factory.base_dir), data[:300])
                  for path, data in provisioned.files_during_the_runs.items()
                  if not is_python_tempfile_at_work(os.path.relpath(path, provisioned.factory.base_dir), data))
    assert others == {}


def test_three_remote_stations_against_one_local_station(provisioned, tmp_path, figures):
    """The same batch (6 devices, the same flash time) on one local station, the way
    the integration suite's ProvisionBatch (tests/lab/batch.py) runs it: both times are printed, nothing is asserted on them."""
    factory, first, rerun = provisioned.factory, provisioned.first, provisioned.rerun
    assert_ok(first)
    ports = dict(('1-%d' % (number + 1), product) for number, product in
                 enumerate(list(PORTS.values()) * len(factory.stations)))
    lab = labkit.FactoryLab(tmp_path / 'local', ports, flash_seconds=FLASH_SECONDS)
    lab.start_loaders(factory.api.url)
    try:
        serials = dict((port, 'AZJN-9%02d' % (number + 1)) for number, port in enumerate(ports))
        inventory = labkit.write_inventory(
            str(tmp_path / 'hosts.yml'), dict((serial, lab.host_vars(port)) for port, serial in serials.items()),
            dict(lab.group_vars(), identity_api_retry_backoff=0.05, verify_health_timeout=30,
                 jetson_flash_concurrency=FLASH_CONCURRENCY * len(factory.stations)))
        # As the remote runs: the same forks, verbosity and sweep callbacks (log file, events, tree).
        environment = dict(sweep.sweep_env(tmp_path / 'ansible.log', tmp_path / 'events.jsonl', tmp_path / 'tree'),
                           AZAION_ADMIN_API_URL=factory.api.url, AZAION_ADMIN_API_TOKEN=factory.token, ANSIBLE_FORKS='12')
        started = time.monotonic()
        local = labkit.run_playbook(inventory, args=['-vvv', '-e', '@' + factory.secrets_file], env=environment)
        local_seconds = time.monotonic() - started
        assert_ok(local)
        started = time.monotonic()
        local_rerun = labkit.run_playbook(inventory, args=['-v', '-e', '@' + factory.secrets_file], env=environment)
        local_rerun_seconds = time.monotonic() - started
        assert_ok(local_rerun)
    finally:
        lab.stop_loaders()
    figures('6 devices, flash %.0f s: 3 remote stations (SSH, --become, pipelining, %d slots each) first run %.1f s, '
            'one local station (%d slots) %.1f s, ratio %.2f' % (
                FLASH_SECONDS, FLASH_CONCURRENCY, first.seconds, FLASH_CONCURRENCY * len(factory.stations),
                local_seconds, first.seconds / local_seconds))
    figures('re-run of the finished batch: 3 remote stations %.1f s, one local station %.1f s, ratio %.2f' % (
        rerun.seconds, local_rerun_seconds, rerun.seconds / local_rerun_seconds))


def test_without_pipelining_the_secrets_way_to_a_station_is_warned_of(provisioned):
    """A rotation in check mode, so that the identity phase's module runs (its token in its
    arguments) and nothing changes."""
    factory = provisioned.factory
    writes_before = factory.api.write_count()
    result = factory.run('--tags', 'identity', '--check', '-e', 'identity_rotate=true', env={'ANSIBLE_PIPELINING': 'False'})
    assert_ok(result)
    warned = [line for line in result.stdout.splitlines() + result.stderr.splitlines()
              if 'pipelining is off: the module file that carries api_token is written to the station' in line]
    assert sorted(set(line.split(': pipelining', 1)[0].split()[-1] for line in warned)) == sorted(
        station.address for station in factory.stations), warned
    assert factory.api.write_count() == writes_before


def test_a_station_connection_without_a_keep_alive_is_warned_of_and_the_documented_one_is_not(provisioned):
    keepalive = 'its SSH connection has no keep-alive'
    assert keepalive not in provisioned.first.stdout + provisioned.first.stderr
    # A rotation in check mode: the finished batch's stations are checked again, and nothing changes.
    result = provisioned.factory.run('--tags', 'identity', '--check', '-e', 'identity_rotate=true', '-e',
                                     'ansible_ssh_common_args=')
    assert_ok(result)
    warned = [line for line in (result.stdout + result.stderr).splitlines() if keepalive in line]
    assert sorted(set(line.split(': its SSH connection', 1)[0].split()[-1] for line in warned)) == sorted(
        station.address for station in provisioned.factory.stations), warned
    assert 'set ansible_ssh_common_args to "-o ServerAliveInterval=15 -o ServerAliveCountMax=4"' in ' '.join(
        (result.stdout + result.stderr).split())


# -- a station lost mid-flash --------------------------------------------------------------------
# Each test below: a rotation of the whole batch (every device flashed again) while station-b's
# flashes are held (its lab's hold-flash file), station-b lost once both of its flashes run,
# then station-b back and one plain re-run, which must converge.

LOST_STATION = 1  # station-b
# With the documented keep-alive (15 s x 4), the run must end this soon after the cut (issue 20).
KEEPALIVE_BOUND = 120


def rotation_with_a_held_station(factory, *args):
    """Every device back in recovery mode, station-b's flashes held, a rotation started; returns
    (the run, station-b, its flash runs so far) once both of station-b's flashes are running."""
    station = factory.stations[LOST_STATION]
    for each, port, _serial in factory.devices():
        usb_sysfs.add_device(each.host_path(each.info['station_settings']['jetson_usb_sysfs_root']), port, PORTS[port])
    with open(os.path.join(station.lab_state, 'hold-flash'), 'w'):
        pass
    before = len(l4t_bundle.flash_runs(station.lab_state))
    playbook = factory.start('-e', 'identity_rotate=true', *args)
    wait_until(lambda: sum(1 for run in l4t_bundle.flash_runs(station.lab_state)[before:] if run['end'] is None) == len(PORTS),
               timeout=180, what="both of station-b's flashes to run")
    return playbook, station, before


def let_go(station):
    """Station-b's flashes end as soon as their time is up (again)."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(station.lab_state, 'hold-flash'))


def let_the_held_flashes_finish(station):
    """Let station-b's flashes go on to their end, and its modules end, still cut off."""
    let_go(station)
    wait_until(lambda: all(run['end'] is not None for run in l4t_bundle.flash_runs(station.lab_state)), timeout=60,
               what="station-b's held flashes to end")
    wait_until(lambda: not station.ansible_processes(), timeout=60, what="station-b's modules to end")


def controller_report(factory):
    """The controller's batch report: serial -> row."""
    reports = [name for name in os.listdir(factory.report_dir) if name.endswith('.json')]
    assert len(reports) == 1, reports
    with open(os.path.join(factory.report_dir, reports[0])) as report:
        return dict((row['serial'], row) for row in json.load(report)['devices'])


def assert_the_lost_station_is_named(factory, output, station, work='flash'):
    """The lost station's devices end interrupted, with the cause, in the report, the recap and
    their outcomes; every other device is done."""
    cause = 'station %s stopped answering during %s; its work may have finished there; run the batch again to collect it' % (
        station.name, work)
    rows = controller_report(factory)
    for each, _port, serial in factory.devices():
        if each is station:
            assert rows[serial]['result'] == 'interrupted' and rows[serial]['error'] == cause, rows[serial]
            assert rows[serial][work] == 'interrupted', rows[serial]
            assert '%s: %s' % (serial, cause) in ' '.join(output.split()), serial
        else:
            assert rows[serial]['result'] == 'done', rows[serial]


def assert_one_rerun_converges(factory, station, flashed_again):
    """Station-b back: one plain re-run converges, flashing station-b's devices again only when
    ``flashed_again`` (its held flashes were stopped), and every device holds its account's
    password; then nothing of the runs is left on station-b."""
    before = len(l4t_bundle.flash_runs(station.lab_state))
    rerun = factory.run()
    assert_ok(rerun)
    assert len(l4t_bundle.flash_runs(station.lab_state)) - before == (len(PORTS) if flashed_again else 0)
    users = factory.api.users()
    mismatches = [serial for each, port, serial in factory.devices()
                  if users[email_of(serial)]['password'] != labkit.read_device_conf(each.storage(port))['AZAION_DEVICE_PASSWORD']]
    assert mismatches == []
    assert set(row['result'] for row in controller_report(factory).values()) == {'done'}
    l4t_host.station_is_clean(station.host_path(station.info['station_settings']['jetson_station_root']), station.workdir)
    assert station_private_leftovers(station) == []
    # No flash image copy, log or temporary holds a device's password: only device.conf files do.
    passwords = [users[email_of(serial)]['password'].encode() for serial in station.serials.values()]
    holding = [os.path.relpath(path, station.host_dir) for path, data in sweep.everything_written_under(station.host_dir, skip_names=())
               if any(password in data for password in passwords)]
    assert holding and [path for path in holding if not path.endswith(os.path.join('etc', 'azaion', 'device.conf'))] == []
    return rerun


# Ansible's remote temporary directory, which it makes once (a run without pipelining) and keeps.
ANSIBLE_REMOTE_TMP = ('home/.ansible', 'home/.ansible/tmp', 'root-ansible/tmp')


def station_private_leftovers(station):
    """What is left in the station's SSH user's home, root's ~/.ansible and /tmp."""
    return [path for path in (os.path.relpath(os.path.join(root, name), station.host_dir)
                              for private in ('home', 'root-ansible', 'tmp')
                              for root, dirs, files in os.walk(os.path.join(station.host_dir, private)) for name in dirs + files)
            if path not in ANSIBLE_REMOTE_TMP]


def cut_off_mid_flash(factory, bound, *args):
    """Station-b cut off once both of its held flashes run, in a rotation run with ``args``:
    the run must end within ``bound`` seconds of the cut, with rc 2, naming the lost station,
    while station-b still flashes on its own. Then its flashes finish and its link comes back.
    Returns station-b and how long after the cut the run ended."""
    playbook, station, _before = rotation_with_a_held_station(factory, *args)
    station.cut_off()
    cut = time.monotonic()
    try:
        output = playbook.communicate(timeout=bound + 60)[0]
        ended = time.monotonic() - cut
        assert ended < bound, ended
        assert playbook.returncode == 2, output[-6000:]
        assert_the_lost_station_is_named(factory, output, station)
        # Station-b went on alone: its flashes still run, held.
        assert [run for run in l4t_bundle.flash_runs(station.lab_state) if run['end'] is None], 'station-b stopped flashing'
        let_the_held_flashes_finish(station)
    finally:
        let_go(station)
        station.reconnect()
        if playbook.poll() is None:
            interrupt(playbook)
    return station, ended


def test_a_station_cut_off_mid_flash_ends_the_run_within_the_keepalive_and_the_rerun_collects_its_flash(provisioned, figures):
    """The documented keep-alive: the run ends by itself within KEEPALIVE_BOUND seconds of the
    cut, while station-b still flashes on its own; the re-run finds its flashes done there."""
    factory = provisioned.factory
    station, ended = cut_off_mid_flash(factory, KEEPALIVE_BOUND)
    rerun = assert_one_rerun_converges(factory, station, flashed_again=False)
    figures('station-b cut off mid-flash (keep-alive 15 s x 4): the run ended %.1f s after the cut (bound %d s); the'
            ' re-run collected its finished flashes in %.1f s, 0 mismatches' % (ended, KEEPALIVE_BOUND, rerun.seconds))


def test_a_station_cut_off_without_a_keepalive_is_lost_within_its_answer_timeout(provisioned, figures):
    """No keep-alive: the station watch (jetson_station_answer_timeout) ends the task."""
    factory = provisioned.factory
    answer_timeout = 20
    close_ssh_masters(factory.control_dir)  # station-b's next connection is made without a keep-alive
    # The bound: the answer timeout, one probe interval (a third of it) to notice, and the rest of the run.
    station, ended = cut_off_mid_flash(factory, answer_timeout * 4 / 3 + 30, '-e', 'ansible_ssh_common_args=',
                                       '-e', 'jetson_station_answer_timeout=%d' % answer_timeout)
    rerun = assert_one_rerun_converges(factory, station, flashed_again=False)
    figures('station-b cut off mid-flash without a keep-alive (jetson_station_answer_timeout=%d): the run ended %.1f s'
            ' after the cut; the re-run converged in %.1f s' % (answer_timeout, ended, rerun.seconds))


def test_a_station_whose_sshd_dies_mid_flash_stops_its_flashes_and_the_rerun_redoes_them(provisioned, figures):
    """The station's sshd killed (the host going down): the connection closes at once, the
    station's module loses its output and stops its tools; the re-run flashes its devices again."""
    factory = provisioned.factory
    playbook, station, before = rotation_with_a_held_station(factory)
    station.kill_sshd()
    killed = time.monotonic()
    try:
        output = playbook.communicate(timeout=120)[0]
        ended = time.monotonic() - killed
        assert playbook.returncode == 2, output[-6000:]
        assert_the_lost_station_is_named(factory, output, station)
        wait_until(lambda: not station.ansible_processes(), timeout=30, what="station-b's modules to end")
        stopped = l4t_bundle.flash_runs(station.lab_state)[before:]
        assert len(stopped) == len(PORTS) and all(run['end'] is not None and run['exit'] != 0 for run in stopped), stopped
    finally:
        let_go(station)
        station.restart_sshd()
        if playbook.poll() is None:
            interrupt(playbook)
    # The operator power-cycles station-b's devices into recovery mode, as after any stopped flash.
    for port in PORTS:
        usb_sysfs.add_device(station.host_path(station.info['station_settings']['jetson_usb_sysfs_root']), port, PORTS[port])
    rerun = assert_one_rerun_converges(factory, station, flashed_again=True)
    figures('station-b\'s sshd killed mid-flash: the run ended %.1f s later, its flashes stopped there; the re-run'
            ' flashed them again in %.1f s, 0 mismatches' % (ended, rerun.seconds))


def test_ctrl_c_ends_the_modules_on_every_station_within_seconds_and_the_rerun_converges(provisioned, figures):
    """Last in the module. Ctrl-C in the middle of a rotation, while every station waits on an
    admin API call that would be held open for 30 s: the modules that ansible-playbook's workers
    started on the stations over SSH (through sudo) end with the run. Then the run again, which
    resumes the rotation: every device holds its own identity."""
    factory = provisioned.factory
    factory.api.set_faults([{'method': 'PATCH', 'latency': 30, 'drop': 'before'}])
    playbook = factory.start('-e', 'identity_rotate=true')
    wait_until(lambda: sum(1 for entry in factory.api.request_log() if entry['status'] is None and entry['fault'])
               >= len(factory.stations), timeout=120, what='an admin API call held open from every station')
    working = dict((station.name, station.ansible_processes()) for station in factory.stations)
    assert all(working.values()), working
    pressed = time.monotonic()
    interrupt(playbook)
    assert playbook.returncode != 0
    wait_until(lambda: not any(station.ansible_processes() for station in factory.stations), timeout=10,
               what="the stations' modules to end after Ctrl-C")
    ended = time.monotonic() - pressed
    # The modules that ended themselves took their unpacked code with them.
    assert [station_private_leftovers(station) for station in factory.stations] == [[]] * len(factory.stations)
    factory.api.set_faults([])

    # The rotation re-flashes every device: the operator puts them back in recovery mode.
    for station, port, _serial in factory.devices():
        usb_sysfs.add_device(station.host_path(station.info['station_settings']['jetson_usb_sysfs_root']), port,
                             PORTS[port])
    rerun = factory.run()
    assert_ok(rerun)
    users = factory.api.users()
    for station, port, serial in factory.devices():
        conf = labkit.read_device_conf(station.storage(port))
        assert users[email_of(serial)]['password'] == conf['AZAION_DEVICE_PASSWORD'], serial
    figures('Ctrl-C during a rotation (%d Ansible processes on the stations, each waiting on a held API call): all'
            ' gone %.1f s later; the re-run resumed the rotation in %.1f s, every device holding its own identity'
            % (sum(len(processes) for processes in working.values()), ended, rerun.seconds))
