"""The batch report is written whatever happens to the batch: every device failing in one phase,
a mixed outcome, and a run that was stopped; each row and the exit code say what happened."""

import json
import os
import re
import shutil
import subprocess

import pytest
from PIL import Image

from conftest import assert_ok
from lab import l4t_bundle, l4t_host
from lab.processes import kill_everything, wait_until

THREE_PORTS = {'1-1': '7523', '1-2': '7523', '1-3': '7623'}


def reports(batch):
    """The station's report and the controller's copy, as written (JSON)."""
    found = []
    for reports_dir in (os.path.join(batch.lab.workdir, 'reports'), batch.lab.report_dir):
        with open(os.path.join(reports_dir, 'batch.json')) as report:
            found.append(json.load(report))
    return found


def rows_of(report):
    return dict((row['serial'], (row['result'], row['phase'], row['error'])) for row in report['devices'])


def test_every_device_failing_in_the_flash_phase_gets_a_report_that_replaces_the_earlier_one(make_provision):
    batch = make_provision(THREE_PORTS)
    assert_ok(batch.run('--tags', 'rootfs'))
    earlier, _home = reports(batch)
    assert earlier['run']['tags'] == ['rootfs']
    for port in THREE_PORTS:
        l4t_bundle.plant_failure(batch.lab.lab_state, port, times=1, kind='usb-timeout')

    result = batch.run()
    assert result.returncode == 2, result.stdout[-3000:]
    assert all(result.recap[serial]['failed'] == 1 for serial in batch.serials.values())
    station, home = reports(batch)
    assert station['devices'] == home['devices']
    assert (home['run']['tags'], home['run']['limit']) == (['all'], '')
    assert home['run']['started'] >= earlier['generated'] and home['generated'] > earlier['generated']
    assert [(serial, result, phase) for serial, (result, phase, _error) in sorted(rows_of(home).items())] == [
        ('AZJN-0001', 'failed', 'flash'), ('AZJN-0002', 'failed', 'flash'), ('AZJN-0003', 'failed', 'flash')]
    assert all(error.startswith('flash: ') and 'a USB write timed out: use a direct USB 3 port' in error
               for _result, _phase, error in rows_of(home).values()), rows_of(home)
    assert all('\n' not in row['error'] for row in home['devices'])
    # Two boards: two image groups, each generated once, for the three devices.
    assert home['summary'] == {'total': 3, 'done': 0, 'failed': 3, 'interrupted': 0, 'pending': 0, 'generations': 2,
                               'generated_devices': 3}
    assert '0 of 3 devices done, 3 failed, 0 interrupted, 0 pending' in result.stdout
    assert len(os.listdir(os.path.join(batch.lab.report_dir, 'history'))) == 3  # the earlier report, kept


def test_every_device_failing_in_the_identity_phase_on_an_api_answering_500_gets_its_report(make_provision):
    batch = make_provision(THREE_PORTS, extra_vars={'identity_api_retries': 0})
    batch.api.set_faults([{'method': 'POST', 'status': 500}])
    result = batch.run()
    assert result.returncode == 2, result.stdout[-3000:]
    station, home = reports(batch)
    assert station['devices'] == home['devices']
    rows = rows_of(home)
    assert [(serial, result, phase) for serial, (result, phase, _error) in sorted(rows.items())] == [
        ('AZJN-0001', 'failed', 'identity'), ('AZJN-0002', 'failed', 'identity'), ('AZJN-0003', 'failed', 'identity')]
    assert all('HTTP 500' in error and error.startswith('identity: ') for _result, _phase, error in rows.values()), rows
    assert all(row['flash'] == 'pending' for row in home['devices'])
    assert l4t_bundle.flash_runs(batch.lab.lab_state) == []


def test_a_mixed_outcome_reports_each_device_as_it_ended(make_provision):
    batch = make_provision(THREE_PORTS)
    l4t_bundle.plant_failure(batch.lab.lab_state, '1-2', times=1, kind='usb-timeout')
    result = batch.run()
    assert result.returncode == 2
    _station, home = reports(batch)
    assert [(serial, result, phase) for serial, (result, phase, _error) in sorted(rows_of(home).items())] == [
        ('AZJN-0001', 'done', 'verify'), ('AZJN-0002', 'failed', 'flash'), ('AZJN-0003', 'done', 'verify')]
    assert home['summary'] == {'total': 3, 'done': 2, 'failed': 1, 'interrupted': 0, 'pending': 0, 'generations': 2,
                               'generated_devices': 3}

    assert_ok(batch.run())
    _station, home = reports(batch)
    assert [row['result'] for row in home['devices']] == ['done', 'done', 'done']


def test_a_stopped_run_leaves_its_devices_running_and_the_next_runs_report_them_interrupted(make_provision):
    batch = make_provision({'1-1': '7523', '1-2': '7523'}, flash_seconds=6.0)
    playbook = batch.start()
    wait_until(lambda: len(l4t_host.gadget_interfaces(batch.lab.host_root)) == 2, what='both devices in the initrd')
    kill_everything(playbook)
    assert [batch.flash_state(serial)['status'] for serial in ('AZJN-0001', 'AZJN-0002')] == ['running', 'running']
    assert not os.path.exists(os.path.join(batch.lab.report_dir, 'batch.json'))  # the killed run wrote none

    # A run of another phase does not resume the flash: its report says the devices are interrupted.
    identity_only = batch.run('--tags', 'identity')
    assert_ok(identity_only)
    _station, home = reports(batch)
    assert [(row['result'], row['flash'], row['interrupted']) for row in home['devices']] == [
        ('interrupted', 'interrupted', 'flash'), ('interrupted', 'interrupted', 'flash')]
    assert 'AZJN-0001: flash was interrupted (a run was stopped); run the batch again to resume it' in identity_only.stdout

    for port in batch.serials:
        batch.lab.power_cycle(port)  # both were left in the flashing initrd
    resumed = batch.run()
    assert_ok(resumed)
    _station, home = reports(batch)
    assert [(row['result'], row['flash'], row['interrupted']) for row in home['devices']] == [
        ('done', 'done', 'flash'), ('done', 'done', 'flash')]
    assert 'AZJN-0002: flash was interrupted (a run was stopped); this run resumed it' in resumed.stdout
    assert batch.holds_its_own_identity() and batch.station_is_clean()

    again = batch.run()
    assert_ok(again)
    assert all(recap['changed'] == 0 for recap in again.recap.values()), again.recap
    _station, home = reports(batch)
    assert [(row['result'], row['interrupted']) for row in home['devices']] == [('done', ''), ('done', '')]


CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--hide-scrollbars']


def chromium():
    """Debian's Chromium, installed when missing and this machine can (root with apt-get); else None."""
    found = shutil.which('chromium')
    if found is None and os.geteuid() == 0 and shutil.which('apt-get'):
        subprocess.run(['apt-get', 'install', '-y', '-qq', 'chromium'], env=dict(os.environ, DEBIAN_FRONTEND='noninteractive'),
                       capture_output=True, check=False, timeout=900)
        found = shutil.which('chromium')
    return found


def test_the_html_report_shows_the_ports_over_time_as_a_person_sees_it_in_a_browser(make_provision, tmp_path):
    browser = chromium()
    if browser is None:
        pytest.skip('Chromium is not installed and cannot be installed here (needs root and apt-get)')
    batch = make_provision(THREE_PORTS)
    l4t_bundle.plant_failure(batch.lab.lab_state, '1-2', times=1, kind='usb-timeout')
    assert batch.run().returncode == 2
    page = 'file://' + os.path.join(batch.lab.report_dir, 'batch.html')
    profile = str(tmp_path / 'chromium-profile')
    shown = subprocess.run([browser] + CHROMIUM_FLAGS + ['--user-data-dir=' + profile, '--dump-dom', page],
                           capture_output=True, text=True, check=True, timeout=120).stdout
    screenshot = str(tmp_path / 'report.png')
    subprocess.run([browser] + CHROMIUM_FLAGS + ['--user-data-dir=' + profile, '--window-size=1280,900',
                                                 '--screenshot=' + screenshot, page],
                   capture_output=True, check=True, timeout=120)

    # What the page says: the batch, its counts, a lane per port, a bar per phase of each device.
    text = re.sub(r'<[^>]+>', ' ', shown)
    assert 'Batch batch: 3 devices' in text and '2 done' in text and '1 failed' in text
    lanes = re.findall(r'<text x="0" y="\d+" font-size="13">([^<]+)</text>', shown)
    assert lanes == ['localhost 1-1', 'localhost 1-2', 'localhost 1-3']
    bars = re.findall(r'<rect class="bar (\w+)" data-serial="([\w-]+)" data-phase="(\w+)"', shown)
    assert ('failed', 'AZJN-0002', 'flash') in bars
    assert sorted((serial, phase) for outcome, serial, phase in bars if outcome == 'done') == sorted(
        [(serial, phase) for serial in ('AZJN-0001', 'AZJN-0003') for phase in ('rootfs', 'identity', 'flash', 'verify')]
        + [('AZJN-0002', 'rootfs'), ('AZJN-0002', 'identity')])
    row = re.search(r'<tr data-serial="AZJN-0002">(.*?)</tr>', shown, re.S).group(1)
    assert 'a USB write timed out' in row and os.path.join(batch.lab.workdir, 'logs') in row  # its error and its log
    # What the eye sees: the failed bar's red and the done bars' green are on the screen.
    with Image.open(screenshot) as picture:
        colours = set(colour for _count, colour in picture.convert('RGB').getcolors(maxcolors=1 << 22))
    assert (0xc6, 0x28, 0x28) in colours and (0x2e, 0x7d, 0x32) in colours
