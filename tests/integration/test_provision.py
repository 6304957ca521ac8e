"""azaion.jetson.provision end to end over the lab: fake L4T bundle, fake USB tree, Loaders."""

import csv
import glob
import json
import os
import re
import secrets
import subprocess
import sys

import pytest

from conftest import assert_ok
from lab import l4t_bundle, l4t_host, labkit, usb_sysfs
from lab.batch import fuse_variables, tree_checksums
from lab.processes import kill_everything, wait_until
from sweep import ProcessArgumentWatcher, everything_written_under, sweep_env


SIX_PORTS = {'1-1': '7523', '1-2': '7523', '1-3': '7623', '1-4': '7323', '1-5': '7423', '1-6': '7523'}


def overlapping(runs):
    return [(a, b) for a in runs for b in runs
            if a['usb_instance'] < b['usb_instance'] and a['start'] < b['end'] and b['start'] < a['end']]


def test_six_devices_on_six_ports_with_three_slots_each_get_their_own_identity_then_a_rerun_does_nothing(
        make_provision):
    batch = make_provision(SIX_PORTS, flash_seconds=2.0, extra_vars={'jetson_flash_concurrency': 3})
    bundle_before = tree_checksums(batch.lab.bundle)

    first = batch.run()
    assert_ok(first)
    assert batch.holds_its_own_identity()
    for port, serial in batch.serials.items():
        email = 'azaion-jetson-%s@azaion.com' % serial.rsplit('-', 1)[1]
        assert os.stat(os.path.join(batch.lab.storage(port), 'etc', 'azaion', 'device.conf')).st_mode & 0o777 == 0o600
        assert batch.lab.loaders.loader(port).login_attempts() == [{'email': email, 'ok': True}]
    report = batch.report()
    assert sorted(report) == sorted(batch.serials.values())
    assert all(row['result'] == 'done' and row['verify'] == 'done' and row['fuse'] == 'skipped' for row in report.values())
    assert report['AZJN-0004']['board'] == 'orin-nx-16gb'
    with open(os.path.join(batch.lab.workdir, 'reports', 'batch.csv')) as report_csv:
        assert sorted(row['serial'] for row in csv.DictReader(report_csv) if row['result'] == 'done') == sorted(batch.serials.values())

    # In parallel, each flash reaching its own device through the instance of its slot: never
    # two flashes in flight on one instance, never more than three at once.
    runs = batch.flash_runs()
    assert len(runs) == 6 and all(run['exit'] == 0 for run in runs)
    assert all(run['device'] == run['usb_instance'] for run in runs)
    # One generation per board (image group), and each flash from its slot's tree of its group.
    groups = set(os.path.basename(os.path.dirname(os.path.dirname(run['tree']))) for run in runs)
    assert len(groups) == 4
    assert all(run['tree'].endswith('/slot-%d/Linux_for_Tegra' % run['instance']) for run in runs)
    assert {run['instance'] for run in runs} <= {0, 1, 2}
    assert overlapping(runs), 'no two flashes overlapped in time'
    assert all(a['instance'] != b['instance'] for a, b in overlapping(runs))
    assert max(sum(1 for other in runs if other['start'] <= run['start'] < other['end']) for run in runs) <= 3
    # Nothing that NVIDIA's scripts share was left to chance: no board probe, no NFS restart,
    # no outer script; the station is left clean and the bundle untouched.
    assert l4t_host.probes(batch.lab.lab_state) == []
    assert not [event for event in l4t_host.host_events(batch.lab.lab_state)
                if event['program'] == 'service' and 'restart' in event['argv']]
    assert batch.tool_calls('l4t_initrd_flash.sh') == []
    generations = batch.generations()
    assert len(generations) == 4 and all(call['argv'][:3] == ['--no-flash', '--massflash', '3'] for call in generations)
    assert batch.passwords_only_where_they_belong()
    assert batch.station_is_clean()
    assert l4t_bundle.collisions(batch.lab.lab_state) == []
    assert tree_checksums(batch.lab.bundle) == bundle_before
    assert batch.tool_calls('odmfuse.sh') == []

    # A re-run of the finished batch: nothing flashed, fused or written; no change.
    writes, flashes = batch.api.write_count(), len(runs)
    again = batch.run()
    assert_ok(again)
    assert all(counts['changed'] == 0 for counts in again.recap.values()), again.recap
    assert len(batch.flash_runs()) == flashes
    assert batch.api.write_count() == writes
    assert 'the batch was already finished: nothing to do' in again.stdout


def finish(playbook, timeout=600):
    output, _unused = playbook.communicate(timeout=timeout)
    playbook.stdout_text = output
    playbook.recap = labkit.play_recap(output)
    return playbook


def test_a_lost_export_fails_only_that_device_naming_the_cause_and_the_rerun_converges(make_provision):
    batch = make_provision({'1-1': '7523', '1-2': '7523'}, flash_seconds=4.0)
    playbook = batch.start()
    wait_until(lambda: any(run['end'] is None for run in batch.flash_runs('1-1')), what='the flash of 1-1')
    # Someone tidies the station's NFS exports while 1-1 flashes (from its flash slot's tree).
    tree = batch.flash_runs('1-1')[-1]['tree']
    for exports in glob.glob(os.path.join(batch.lab.host_root, 'etc', 'exports.d', '*.exports')):
        with open(exports) as listed:
            if tree in listed.read():
                os.unlink(exports)
    subprocess.run([os.path.join(batch.lab.host_root, 'usr', 'sbin', 'exportfs'), '-ra'], check=True)

    finish(playbook)
    assert playbook.returncode != 0
    assert playbook.recap['AZJN-0001']['failed'] == 1 and playbook.recap['AZJN-0002']['failed'] == 0
    error = batch.report()['AZJN-0001']['error']
    assert 'the device lost the NFS export of its tree during the flash' in error, error
    # The device's own failure shows the last lines of its flash log, where the cause was read.
    assert 'cannot mount the NFS server' in playbook.stdout_text
    assert batch.report()['AZJN-0002']['result'] == 'done'

    batch.lab.power_cycle('1-1')  # it was left in the flashing initrd
    assert_ok(batch.run())
    assert batch.flash_runs('1-1')[-1]['exit'] == 0 and batch.flash_runs('1-1')[-1]['device'] == '1-1'
    assert batch.holds_its_own_identity() and batch.station_is_clean()
    assert all(row['result'] == 'done' for row in batch.report().values())


def test_a_board_probe_during_a_flash_fails_that_device_naming_the_cause_and_the_rerun_converges(
        make_provision, tmp_path):
    batch = make_provision({'1-1': '7523'}, boot_seconds=3.0)
    stray_tree = l4t_bundle.make_bundle(str(tmp_path / 'stray'), batch.lab.lab_state, batch.lab.sysfs,
                                        host_root=batch.lab.host_root)
    playbook = batch.start()
    wait_until(lambda: os.path.exists(os.path.join(batch.lab.lab_state, 'busy', '1-1')), what='the RCM boot of 1-1')
    # Someone builds an image by hand, without the board identity: flash.sh probes the first
    # Jetson in recovery mode on the station, the one being booted.
    stray = subprocess.run([os.path.join(stray_tree, 'flash.sh'), '--no-flash', 'jetson-orin-nano-devkit',
                            'internal'], cwd=stray_tree, capture_output=True, text=True, check=False)
    assert [probe['disrupted'] for probe in l4t_host.probes(batch.lab.lab_state)
            if probe['kind'] == 'eeprom'][:1] == [True], stray.stdout + stray.stderr

    finish(playbook)
    assert playbook.returncode != 0 and playbook.recap['AZJN-0001']['failed'] == 1
    # (A batch whose every device failed writes no report yet: the device's state says it.)
    error = batch.flash_state('AZJN-0001')['error']
    assert 'the device was reset while it booted the flashing initrd, usually by a board probe' in error, error
    assert 'the device was reset while it booted' in playbook.stdout_text

    assert_ok(batch.run())  # the probe put it back in recovery mode
    assert batch.holds_its_own_identity() and batch.station_is_clean() and batch.passwords_only_where_they_belong()
    assert batch.report()['AZJN-0001']['result'] == 'done'


def test_a_run_killed_mid_flash_leaves_no_held_slot_and_the_rerun_converges(make_provision):
    batch = make_provision({'1-1': '7523', '1-2': '7523'}, flash_seconds=6.0)
    playbook = batch.start()
    wait_until(lambda: len(l4t_host.gadget_interfaces(batch.lab.host_root)) == 2, what='both devices in the initrd')
    kill_everything(playbook)
    assert [run['end'] for run in batch.flash_runs()] == [None, None]
    # What the killed run could not take down: the exports of both trees in flight.
    assert len(os.listdir(os.path.join(batch.lab.host_root, 'etc', 'exports.d'))) == 2
    assert [batch.flash_state(serial)['status'] for serial in ('AZJN-0001', 'AZJN-0002')] == ['running', 'running']

    for port in batch.serials:
        batch.lab.power_cycle(port)  # both were left in the flashing initrd
    # No manual clean-up of the station: the re-run flashes both again and leaves it clean.
    assert_ok(batch.run())
    assert [(run['usb_instance'], run['device'], run['exit']) for run in batch.flash_runs()][2:] in (
        [('1-1', '1-1', 0), ('1-2', '1-2', 0)], [('1-2', '1-2', 0), ('1-1', '1-1', 0)])
    assert batch.holds_its_own_identity() and batch.station_is_clean() and batch.passwords_only_where_they_belong()
    assert all(row['result'] == 'done' for row in batch.report().values())


def test_per_station_settings_set_on_the_station_host_reach_every_device(make_provision):
    batch = make_provision({'1-1': '7523', '1-2': '7623'})
    station_settings = ('jetson_l4t_dir', 'jetson_workdir', 'jetson_usb_sysfs_root', 'jetson_flash_concurrency',
                        'jetson_station_root')
    batch.station_vars = dict((name, batch.group_vars.pop(name, 2)) for name in station_settings)
    # Named in the inventory, localhost is a host like any other: it needs its connection.
    batch.station_vars.update(ansible_connection='local', ansible_python_interpreter=sys.executable)
    batch.write_inventory()
    assert_ok(batch.run())
    assert batch.holds_its_own_identity() and batch.station_is_clean()
    assert all(row['result'] == 'done' for row in batch.report().values())
    assert {run['instance'] for run in batch.flash_runs()} <= {0, 1}  # the station's two slots


def test_each_station_discovers_its_python_once(make_provision):
    batch = make_provision({'1-1': '7523', '1-2': '7523'})
    # A station named in the inventory, with no interpreter given: Ansible discovers it. It tries
    # its fallback list in order, and this machine has pythons early in the default list that are
    # only shims: the station's list holds one that works.
    batch.station_vars = {'ansible_connection': 'local', 'ansible_interpreter_python_fallback': [sys.executable]}
    batch.write_inventory()
    result = batch.run('-vvv', ANSIBLE_PYTHON_INTERPRETER='auto')
    assert_ok(result)
    assert result.stdout.count('Attempting python interpreter discovery') == 1, result.stdout.count(
        'Attempting python interpreter discovery')
    assert batch.holds_its_own_identity()


def test_a_flash_failure_stops_only_that_device_and_the_rerun_flashes_only_it(make_provision):
    batch = make_provision({'1-1': '7523', '1-2': '7523', '1-3': '7523'})
    l4t_bundle.plant_failure(batch.lab.lab_state, '1-2', times=1, kind='usb-timeout')
    first = batch.run()
    assert first.returncode != 0
    assert first.recap['AZJN-0002']['failed'] == 1
    assert first.recap['AZJN-0001']['failed'] == 0 and first.recap['AZJN-0003']['failed'] == 0
    report = batch.report()
    assert report['AZJN-0002']['result'] == 'failed' and report['AZJN-0002']['flash'] == 'failed'
    assert 'a USB write timed out: use a direct USB 3 port' in report['AZJN-0002']['error']
    assert 'timeout in USB write' in first.stdout  # the log line it was read from, in the device's failure
    assert report['AZJN-0001']['result'] == 'done' and report['AZJN-0003']['result'] == 'done'
    # The failed flash left no copy of its device.conf: not in its slot's image, not in a tree.
    assert batch.passwords_only_where_they_belong()

    flashed_before = len(l4t_bundle.flash_runs(batch.lab.lab_state))
    rerun = batch.run()
    assert_ok(rerun)
    new_runs = l4t_bundle.flash_runs(batch.lab.lab_state)[flashed_before:]
    assert [run['usb_instance'] for run in new_runs] == ['1-2']
    assert all(row['result'] == 'done' for row in batch.report().values())


def test_fusing_runs_only_when_enabled_dry_run_first_read_back_after_and_never_twice(make_provision, tmp_path):
    fuse_vars, _configured = fuse_variables(str(tmp_path))  # burns PublicKeyHash
    batch = make_provision({'1-1': '7523'}, extra_vars=fuse_vars)

    check = batch.run('--check')
    assert_ok(check)
    assert batch.tool_calls('odmfuse.sh') == [] and batch.tool_calls('odmfuseread.sh') == []

    assert_ok(batch.run())
    calls = [(call['tool'], '--test' in call['argv']) for call in l4t_bundle.tool_calls(batch.lab.lab_state)
             if call['tool'] in ('odmfuse.sh', 'odmfuseread.sh')]
    # Read first (a device fused elsewhere is never burned again), dry run, burn, read back.
    assert calls == [('odmfuseread.sh', False), ('odmfuse.sh', True), ('odmfuse.sh', False), ('odmfuseread.sh', False)]
    assert l4t_bundle.burned_fuses(batch.lab.lab_state, '1-1')
    assert batch.report()['AZJN-0001']['fuse'] == 'done'
    # A PKC-fused device only takes an image made and flashed with its key.
    assert all('-u' in call['argv'] for call in batch.tool_calls('l4t_initrd_flash_internal.sh'))
    assert batch.report()['AZJN-0001']['result'] == 'done'

    again = batch.run()
    assert_ok(again)
    assert len(batch.tool_calls('odmfuse.sh')) == 2


def test_fusing_is_refused_with_two_devices_in_recovery_on_the_station(make_provision, tmp_path):
    fuse_vars, _configured = fuse_variables(str(tmp_path))
    batch = make_provision({'1-1': '7523', '1-2': '7523'},
                           host_vars={'AZJN-0001': fuse_vars})
    result = batch.run()
    assert result.returncode != 0
    assert result.recap['AZJN-0001']['failed'] == 1
    assert 'odmfuse.sh cannot choose a USB port' in result.stdout, result.stdout[-6000:]
    assert batch.tool_calls('odmfuse.sh') == []
    assert l4t_bundle.burned_fuses(batch.lab.lab_state, '1-1') == {}
    assert batch.report()['AZJN-0002']['result'] == 'done'


@pytest.mark.parametrize('problem', ['duplicate port', 'colliding e-mails', 'missing bundle', 'admin API down',
                                     'no NFS server', 'IPv6 off', 'second station without the admin API',
                                     'device contradicts its station', 'devices of a station disagree'])
def test_a_bad_inventory_fails_the_batch_check_naming_the_devices_with_nothing_written(make_provision, problem):
    batch = make_provision({'1-1': '7523', '1-2': '7523'})
    if problem == 'duplicate port':
        batch.host_vars['AZJN-0002']['jetson_usb_instance'] = '1-1'
        expected = 'devices AZJN-0001 and AZJN-0002 are on the same USB port 1-1'
    elif problem == 'colliding e-mails':
        batch.host_vars['AZXX-0001'] = batch.host_vars.pop('AZJN-0002')
        expected = 'AZJN-0001 (serial AZJN-0001) and AZXX-0001 (serial AZXX-0001)'
    elif problem == 'no NFS server':
        os.unlink(os.path.join(batch.lab.host_root, 'usr', 'sbin', 'exportfs'))
        expected = 'usr/sbin/exportfs is missing: install nfs-kernel-server'
    elif problem == 'IPv6 off':
        with open(os.path.join(batch.lab.host_root, 'proc', 'sys', 'net', 'ipv6', 'conf', 'all', 'disable_ipv6'),
                  'w') as flag:
            flag.write('1\n')
        expected = 'IPv6 is off on the station'
    elif problem == 'missing bundle':
        batch.group_vars['jetson_l4t_dir'] = batch.lab.bundle + '-missing'
        expected = 'the L4T bundle {0}-missing is missing or incomplete ({0}-missing/flash.sh'.format(batch.lab.bundle)
    elif problem == 'devices of a station disagree':
        batch.host_vars['AZJN-0002']['jetson_workdir'] = batch.lab.workdir + '-other'
        expected = 'the devices of station localhost disagree on jetson_workdir'
    elif problem == 'device contradicts its station':
        batch.station_vars = {'jetson_flash_concurrency': 2}
        batch.host_vars['AZJN-0002']['jetson_flash_concurrency'] = 3
        expected = ('AZJN-0002: jetson_flash_concurrency is 3 on the device but 2 on its station localhost; set it'
                    ' either on the station\'s host or on its devices')
    elif problem == 'second station without the admin API':
        # A second station (this machine again) whose devices reach the API at an address where
        # nothing answers: the first station's check alone would let the batch start.
        batch.host_vars['AZJN-0002'].update(jetson_station='station-b', azaion_admin_api_url='http://127.0.0.1:9')
        expected = 'the admin API does not answer from this station: gave up on GET /users'
    else:
        batch.api.stop()
        expected = 'connection refused by 127.0.0.1'
    batch.write_inventory()
    if problem == 'second station without the admin API':
        with open(batch.inventory) as inventory_file:
            inventory = json.load(inventory_file)
        inventory['all'] = {'hosts': {'station-b': {'ansible_connection': 'local',
                                                    'ansible_python_interpreter': sys.executable}}}
        with open(batch.inventory, 'w') as inventory_file:
            json.dump(inventory, inventory_file)
    result = batch.run()
    assert result.returncode != 0
    assert expected in result.stdout, result.stdout[-3000:]
    assert not os.path.exists(batch.lab.workdir) and not os.path.exists(batch.lab.workdir + '-other')
    # At most the reachability check of a station that reaches the API, without credentials.
    assert all((request['method'], request['status']) == ('GET', 401) for request in batch.api.request_log())
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


def test_a_password_in_the_admin_api_url_is_refused_and_never_shown_written_or_passed_on(make_provision, tmp_path):
    batch = make_provision({'1-1': '7523'})
    password = 'url-' + secrets.token_hex(8)
    log_file, events_file, tree_dir = tmp_path / 'ansible.log', tmp_path / 'events.jsonl', tmp_path / 'tree'
    sweep_vars = sweep_env(log_file, events_file, tree_dir)
    userinfo_url = batch.api.url.replace('://', '://ops:%s@' % password)
    outputs = []
    with ProcessArgumentWatcher() as watcher:
        # In the inventory, then in the controller's environment, as AWX would inject it.
        batch.group_vars['azaion_admin_api_url'] = userinfo_url
        batch.write_inventory()
        outputs.append(batch.run('-vvvv', '--diff', **sweep_vars))
        del batch.group_vars['azaion_admin_api_url']
        batch.write_inventory()
        outputs.append(batch.run('-vvvv', **dict(sweep_vars, AZAION_ADMIN_API_URL=userinfo_url)))
    for result in outputs:
        assert result.returncode != 0
        assert 'has user info before its host' in result.stdout and 'remove it from the URL' in result.stdout
    assert 'AZJN-0001: azaion_admin_api_url has user info' in outputs[0].stdout
    assert 'AZJN-0001: AZAION_ADMIN_API_URL has user info' in outputs[1].stdout
    assert batch.api.request_log() == [] and l4t_bundle.tool_calls(batch.lab.lab_state) == []
    assert not os.path.exists(batch.lab.workdir)
    haystacks = [('stdout', result.stdout.encode()) for result in outputs]
    haystacks += [('stderr', result.stderr.encode()) for result in outputs]
    haystacks += [('ansible.log', log_file.read_bytes()), ('events', events_file.read_bytes())]
    haystacks += list(everything_written_under(str(tree_dir)))
    haystacks += list(everything_written_under(batch.lab.root))
    # The inventory itself holds it (it was put there): every other file must not.
    haystacks = [(name, text) for name, text in haystacks if not name.endswith('hosts.yml')]
    haystacks += [('process arguments', b'\n'.join(watcher.seen))]
    assert [name for name, text in haystacks if password.encode() in text] == []


def test_two_waves_on_the_same_ports_with_the_batch_name_in_the_inventory_each_keep_their_report(make_provision):
    batch = make_provision({'1-1': '7523', '1-2': '7323'})
    wave2 = {'AZJN-0003': dict(batch.host_vars['AZJN-0001']), 'AZJN-0004': dict(batch.host_vars['AZJN-0002'])}
    batch.group_vars['jetson_batch_name'] = 'may-line2'
    batch.host_vars.update(wave2)
    batch.write_inventory()
    with open(batch.inventory) as inventory_file:
        inventory = json.load(inventory_file)
    devices = inventory['jetsons'].pop('hosts')
    inventory['jetsons']['children'] = {
        'wave1': {'hosts': dict((name, devices[name]) for name in ('AZJN-0001', 'AZJN-0002'))},
        'wave2': {'hosts': dict((name, devices[name]) for name in wave2)}}
    with open(batch.inventory, 'w') as inventory_file:
        json.dump(inventory, inventory_file)
    reports = os.path.join(batch.lab.workdir, 'reports')

    # Both waves at once are refused: they share the ports.
    both = batch.run()
    assert both.returncode != 0 and 'are on the same USB port 1-1' in both.stdout

    assert_ok(batch.run('--limit', 'wave1'))
    with open(os.path.join(reports, 'may-line2.json')) as report:
        first = json.load(report)
    assert [(row['serial'], row['result']) for row in first['devices']] == [('AZJN-0001', 'done'), ('AZJN-0002', 'done')]
    home = os.path.join(batch.lab.report_dir, 'may-line2.json')  # the controller's copy (jetson_report_dir)
    with open(home) as report:
        first_home = json.load(report)
    assert first_home['devices'] == first['devices']
    assert (first_home['run']['limit'], first_home['run']['tags']) == ('wave1', ['all'])

    for port, product in batch.lab.ports.items():  # the second wave's devices, in recovery mode
        usb_sysfs.add_device(batch.lab.sysfs, port, product)
    assert_ok(batch.run('--limit', 'wave2'))
    with open(os.path.join(reports, 'may-line2.json')) as report:
        second = json.load(report)
    assert [(row['serial'], row['result']) for row in second['devices']] == [('AZJN-0003', 'done'), ('AZJN-0004', 'done')]
    kept = sorted(os.listdir(os.path.join(reports, 'history')))
    assert [name for name in kept if name.endswith('.json')] == ['may-line2-%s.json' % re.sub(r'[-:]', '', first['generated'])]
    with open(os.path.join(reports, 'history', kept[-1])) as report:
        assert json.load(report) == first
    with open(home) as report:
        second_home = json.load(report)
    assert second_home['devices'] == second['devices'] and second_home['run']['limit'] == 'wave2'
    stamp = re.sub(r'[-:]', '', first_home['generated'])
    assert sorted(os.listdir(os.path.join(batch.lab.report_dir, 'history'))) == [
        'may-line2-%s.%s' % (stamp, extension) for extension in ('csv', 'html', 'json')]
    assert sorted(batch.api.users()) == ['azaion-jetson-%04d@azaion.com' % number for number in range(1, 5)]
