"""kill -9 of a real provision run at 20 points of a batch, and Ctrl-C at 2; after each, a re-run
converges.

A kill point waits for a moment of the run (a staging in progress, a device.conf being written,
an admin API call held open by injected latency, a flash or a Loader check in flight), then
kills with SIGKILL either the whole run (controller, workers, modules, NVIDIA's tools: nothing
gets to clean up) or only the ansible-playbook controller (its workers and modules orphaned).
The operator then does what a killed run asks of them, and nothing more: power-cycle the
devices it left in the flashing initrd, and run again. That re-run must leave every device
done and consistent, with no partial file and a clean station.

Ctrl-C ends ansible-playbook, which ends its workers; the modules they started on the station
must then end within seconds, with NVIDIA's tools, rather than go on flashing unseen beside
the operator's next run.
"""

import glob
import os
import time

import pytest

from conftest import assert_ok
from lab import l4t_bundle, l4t_host, usb_sysfs
from lab.processes import alive, interrupt, kill_controller, kill_everything, wait_until

# Whole run, or only the controller.
GROUP, CONTROLLER = 'kill -9 of the whole run', 'kill -9 of the controller only'


def running(batch):
    """What the run was doing, from what it leaves on the station and on the lab's servers."""
    phases = {}
    for serial in batch.serials.values():
        try:
            recorded = batch.phases(serial)
        except ValueError:  # a state file cut short: the re-run's figures count it
            recorded = {'state file': 'running'}
        for phase, status in recorded.items():
            if status == 'running':
                phases.setdefault(phase, []).append(serial)
    parts = ['%s running on %s' % (phase, ','.join(serials)) for phase, serials in sorted(phases.items())]
    staging = os.path.join(batch.lab.workdir, 'staging')
    if os.path.isdir(staging) and not any(batch.phases(serial).get('rootfs') == 'done' for serial in batch.serials.values()):
        parts.append('staging (%s)' % ', '.join(sorted(os.listdir(staging))[:4]))
    temporary = glob.glob(os.path.join(batch.lab.workdir, 'ports', '*', 'Linux_for_Tegra', 'rootfs', 'etc', 'azaion',
                                       '.device.conf.*.tmp'))
    if temporary:
        parts.append('%d device.conf write(s) mid-way' % len(temporary))
    held = [entry for entry in batch.api.request_log() if entry['status'] is None and entry['fault']
            and 'latency' in entry['fault']]
    if held:
        parts.append('%d API call(s) held open (%s)' % (len(held), ', '.join(entry['method'] for entry in held)))
    flashing = [run['usb_instance'] for run in l4t_bundle.flash_runs(batch.lab.lab_state) if run['end'] is None]
    if flashing:
        parts.append('flashing %s' % ','.join(flashing))
    return '; '.join(parts) or 'nothing visible'


def in_flight_api_call(batch):
    return any(entry['status'] is None and entry['fault'] and 'latency' in entry['fault']
               for entry in batch.api.request_log()[-8:])


def device_conf_write_mid_way(batch, timeout=60):
    """Wait for a device.conf's temporary file (the few milliseconds of an atomic write) by
    polling without sleeping, once the station check has called the admin API (the identity
    phase comes next): the window is too short for anything gentler. (A phase done before is
    not recorded as running again, so the state files cannot tell when it starts.)"""
    checks = len(batch.api.request_log())
    wait_until(lambda: len(batch.api.request_log()) > checks, timeout=300, what="the station check's API call")
    directories = [os.path.join(batch.tree(port), 'rootfs', 'etc', 'azaion') for port in batch.ports]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for directory in directories:
            try:
                if any(name.endswith('.tmp') for name in os.listdir(directory)):
                    return True
            except OSError:
                pass
        time.sleep(0)
    return False


def flash_in_flight(batch):
    return any(run['end'] is None for run in l4t_bundle.flash_runs(batch.lab.lab_state))


def login_count(batch):
    return sum(len(batch.lab.loaders.loader(port).login_attempts()) for port in batch.ports)


def kill(playbook, how):
    if how == GROUP:
        kill_everything(playbook)
        return
    orphans = kill_controller(playbook)
    # The orphaned workers and modules finish or die on their own; the operator re-runs once
    # they are gone (a re-run beside a still-running orphan is another test).
    wait_until(lambda: not any(alive(pid) for pid in orphans), timeout=180,
               what='the orphans of the killed controller')


def operator_recovers(batch):
    """Power-cycle into recovery mode each device the killed run left in the flashing initrd or
    in its RCM boot (the flash phase refuses to start over such a device, naming it)."""
    cycled = set(interface['port'] for interface in l4t_host.gadget_interfaces(batch.lab.host_root))
    cycled.update(port for port in batch.ports if os.path.exists(os.path.join(batch.lab.lab_state, 'busy', port)))
    cycled.update(run['usb_instance'] for run in l4t_bundle.flash_runs(batch.lab.lab_state) if run['end'] is None)
    for port in sorted(cycled):
        batch.lab.power_cycle(port)
    return sorted(cycled)


def rerun_converges(batch):
    """The re-run after a kill, and every device's consistency after it; returns the figures."""
    result = batch.run()
    assert_ok(result)
    figures = dict(partial=batch.partial_files(), mismatches=batch.password_mismatches(), not_done=batch.not_done(),
                   duplicates=batch.duplicate_accounts())
    assert figures == dict(partial=[], mismatches=[], not_done=[], duplicates=0), figures
    assert batch.station_is_clean()
    # No device's password is left anywhere but its port tree and its storage (a killed flash's
    # copy of its group's APP image is cleared by the re-run).
    assert batch.passwords_only_where_they_belong()
    return figures


def back_in_recovery(batch):
    """The operator puts every device back in recovery mode for the next (forced) run."""
    for port, product in batch.ports.items():
        usb_sysfs.add_device(batch.lab.sysfs, port, product)


class KillLog:
    """Per kill point: what was running, and the re-run's figures; the totals at the end."""

    def __init__(self, figures):
        self.figures = figures
        self.points = []

    def kill_and_recover(self, batch, playbook, label, how):
        what = running(batch)
        kill(playbook, how)
        leftover = len(batch.partial_files())
        cycled = operator_recovers(batch)
        rerun = rerun_converges(batch)
        self.points.append(label)
        self.figures('kill %d (%s) at %s: was running: %s; left %d partial file(s), power-cycled %s; re-run: '
                     '%d partial, %d mismatches, %d not done, station clean'
                     % (len(self.points), how, label, what, leftover, cycled or 'none', len(rerun['partial']),
                        len(rerun['mismatches']), len(rerun['not_done'])))


@pytest.mark.parametrize('delay, how', [(0.0, GROUP), (0.5, GROUP), (1.5, GROUP), (3.0, GROUP), (1.0, CONTROLLER)])
def test_kill_during_staging_then_the_rerun_converges(make_batch, figures, delay, how):
    # Staging runs once per station: a fresh station for each kill.
    batch = make_batch(2)
    log = KillLog(figures)
    playbook = batch.start()
    wait_until(lambda: os.path.isdir(os.path.join(batch.lab.workdir, 'staging')), timeout=120, what='the staging')
    time.sleep(delay)
    log.kill_and_recover(batch, playbook, 'staging +%.1fs' % delay, how)


def test_kill_during_device_conf_writes_and_held_api_calls_then_each_rerun_converges(make_batch, figures):
    batch = make_batch(3)
    assert_ok(batch.run())
    log = KillLog(figures)
    rotate = ('-e', 'identity_rotate=true')

    for attempt in range(4):  # a device.conf being written (a new password: rotation)
        back_in_recovery(batch)
        playbook = batch.start(*rotate)
        caught = device_conf_write_mid_way(batch)
        log.kill_and_recover(batch, playbook, 'device.conf write %d%s' % (attempt + 1, '' if caught else ' (missed)'),
                             GROUP)

    # A held call is never applied (dropped when its latency ends): a request whose client was
    # killed must not land in the middle of the re-run's checks.
    held = [('POST held', [{'method': 'POST', 'latency': 20, 'drop': 'before'}], GROUP),
            ('PATCH held', [{'method': 'PATCH', 'latency': 20, 'drop': 'before'}], GROUP),
            # The first PATCH is applied and its reply lost; its retry is held open.
            ('PATCH applied, reply lost, retry held', [{'method': 'PATCH', 'drop': 'after', 'times': 1},
                                                       {'method': 'PATCH', 'latency': 20, 'drop': 'before'}], GROUP),
            ('PATCH held', [{'method': 'PATCH', 'latency': 20, 'drop': 'before'}], CONTROLLER)]
    for label, faults, how in held:
        back_in_recovery(batch)
        batch.api.set_faults(faults)
        playbook = batch.start(*rotate)
        wait_until(lambda: in_flight_api_call(batch), timeout=120, what='an admin API call held open')
        time.sleep(0.2)
        batch.api.set_faults([])  # the re-run meets a healthy API
        log.kill_and_recover(batch, playbook, label, how)
    assert len(log.points) == 8


@pytest.mark.parametrize('how', [GROUP, CONTROLLER])
def test_kill_during_flashes_and_loader_checks_then_each_rerun_converges(make_batch, figures, how):
    batch = make_batch(3, flash_seconds=3.0, extra_vars={'jetson_flash_concurrency': 2})
    log = KillLog(figures)
    forced = ('-e', 'identity_rotate=true')  # a new device.conf: every device is flashed again
    delays = [0.0, 1.0, 2.0, 2.8] if how == GROUP else [1.0, 2.0]
    for delay in delays:
        if log.points:
            back_in_recovery(batch)
        playbook = batch.start(*forced) if log.points else batch.start()
        wait_until(lambda: flash_in_flight(batch), timeout=300, what='a flash')
        time.sleep(delay)
        log.kill_and_recover(batch, playbook, 'flash +%.1fs' % delay, how)
    if how == GROUP:
        back_in_recovery(batch)
        playbook = batch.start(*forced)
        # (The rotation reopens the Loader check; the Loaders' logins tell when it runs.)
        logins = login_count(batch)
        wait_until(lambda: login_count(batch) > logins, timeout=300, what='the Loader checks')
        log.kill_and_recover(batch, playbook, 'Loader checks (%d login(s) in)' % (login_count(batch) - logins), how)
    assert len(log.points) == len(delays) + (how == GROUP)


@pytest.mark.parametrize('moment', ['an admin API call held open', 'the flashes'])
def test_ctrl_c_stops_the_stations_work_within_seconds_and_the_rerun_converges(make_batch, figures, moment):
    # Each moment would last 20 s more: a call held open by the API, or the flashes.
    flashes = moment == 'the flashes'
    batch = make_batch(3, flash_seconds=20.0 if flashes else 0.0, extra_vars={'jetson_flash_concurrency': 2})
    if flashes:
        playbook = batch.start()
        wait_until(lambda: flash_in_flight(batch), timeout=300, what='a flash')
    else:
        batch.api.set_faults([{'method': 'POST', 'latency': 20, 'drop': 'before'}])
        playbook = batch.start()
        wait_until(lambda: in_flight_api_call(batch), timeout=120, what='an admin API call held open')
    time.sleep(0.5)
    what = running(batch)
    pressed = time.time()
    processes = interrupt(playbook)
    playbook_ended = time.time() - pressed
    assert playbook.returncode != 0
    wait_until(lambda: not any(alive(pid) for pid in processes), timeout=10,
               what="the run's modules and tools to end after Ctrl-C")
    ended = time.time() - pressed
    started_after = [run for run in l4t_bundle.flash_runs(batch.lab.lab_state) if run['start'] > pressed]
    # Nothing more was flashed once the run was stopped. When something was, say how long the
    # run took to end and which tool calls there were (pids), to tell who started it.
    if started_after:  # printed whole: pytest cuts an assertion's message short
        print('ansible-playbook ended %.1f s after Ctrl-C; tool calls since 30 s before it: %s' % (
            playbook_ended, [call for call in l4t_bundle.tool_calls(batch.lab.lab_state) if (call['start'] or 0) > pressed - 30]))
    assert started_after == []
    batch.api.set_faults([])
    cycled = operator_recovers(batch)
    rerun = rerun_converges(batch)
    figures('Ctrl-C during %s: was running: %s; every process of the run gone %.1f s later, no flash started after;'
            ' power-cycled %s; re-run: %d partial, %d mismatches, %d not done, station clean'
            % (moment, what, ended, cycled or 'none', len(rerun['partial']), len(rerun['mismatches']),
               len(rerun['not_done'])))
