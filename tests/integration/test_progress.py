"""Live progress while the station stages its rootfs and flashes: time-stamped lines naming each
device (or the staging tree), its step and its tool log's last line appear while the phase is
still going on."""

import calendar
import glob
import json
import os
import re
import sys
import time

import ansible_runner

from lab import labkit
# The batch fixture of test_provision.py, imported to be used here as a fixture.

HEADER = re.compile(r'^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)Z\] (flash|rootfs) on (\S+): (\d+) done, (\d+) failed,'
                    r' (\d+) to go$')
DEVICE = re.compile(r'^  (AZJN-\d{4}|staging tree)  (.+?) +(\d+s|\d+m\d\ds|\d+h\d\dm)(?:  "(.*)")?$')


def run_reading_as_it_comes(batch):
    """Run the batch's playbook to success; return it and every line it printed, with the time
    the line arrived here."""
    playbook = batch.start()
    lines = []
    for line in playbook.stdout:
        lines.append((time.time(), line.rstrip('\n')))
    playbook.wait(timeout=60)
    playbook.stdout_text = '\n'.join(line for _arrived, line in lines)
    assert playbook.returncode == 0, playbook.stdout_text[-3000:]
    return playbook, lines


def is_log_line(shown, log_lines):
    """Whether ``shown`` is one of ``log_lines``, or the start of one cut to fit its block."""
    if shown.endswith('...'):
        return any(line.startswith(shown[:-3]) for line in log_lines)
    return shown in log_lines


def progress_blocks(lines, phase):
    """The progress blocks of ``phase``: dicts with arrived, stamp (epoch), station, done, failed,
    to_go and devices (name -> (step, how long, log line))."""
    blocks = []
    block = None
    for arrived, line in lines:
        header = HEADER.match(line)
        if header:
            stamp = calendar.timegm(time.strptime(header.group(1), '%Y-%m-%d %H:%M:%S'))
            block = dict(arrived=arrived, stamp=stamp, phase=header.group(2), station=header.group(3),
                         done=int(header.group(4)), failed=int(header.group(5)), to_go=int(header.group(6)),
                         devices={})
            if block['phase'] == phase:
                blocks.append(block)
            continue
        device = DEVICE.match(line)
        if device and block:
            block['devices'][device.group(1)] = (device.group(2), device.group(3), device.group(4))
    return blocks


def test_progress_lines_name_each_flashing_device_its_step_and_its_log_before_the_flash_ends(make_provision):
    batch = make_provision({'1-1': '7523', '1-2': '7523'}, flash_seconds=20.0,
                           extra_vars={'flash_progress_interval': 5})
    playbook, lines = run_reading_as_it_comes(batch)

    runs = dict((run['usb_instance'], run) for run in batch.flash_runs())
    assert sorted(runs) == ['1-1', '1-2'] and all(run['exit'] == 0 for run in runs.values())
    blocks = progress_blocks(lines, 'flash')
    assert blocks, 'no progress line in:\n' + playbook.stdout_text[-3000:]
    assert all(block['station'] == 'localhost' and block['done'] + block['failed'] + block['to_go'] == 2
               for block in blocks)
    for port, serial in batch.serials.items():
        state = batch.flash_state(serial)
        with open(state['log_path']) as log:
            log_lines = [line.strip() for line in log]
        seen = [(block, block['devices'][serial]) for block in blocks
                if block['devices'].get(serial, ('',))[0] == 'flashing as instance %d' % state['slot']]
        # Printed while the device was flashing, time-stamped, with a line of its own log.
        during = [(block, device) for block, device in seen
                  if runs[port]['start'] < block['arrived'] < runs[port]['end']]
        assert during, (serial, blocks)
        for block, (_step, _how_long, log_line) in during:
            assert block['stamp'] <= block['arrived']
            assert is_log_line(log_line, log_lines), (log_line, log_lines)
    # The first block counts no device done or failed: both were flashing.
    assert blocks[0]['done'] == blocks[0]['failed'] == 0 and blocks[0]['to_go'] == 2

    # The result is as without progress: both devices done, the report written, nothing left behind.
    report = batch.report()
    assert all(row['result'] == 'done' and row['flash'] == 'done' for row in report.values())
    assert batch.holds_its_own_identity() and batch.station_is_clean()
    assert not os.path.exists(os.path.join(batch.lab.workdir, 'logs', 'progress-flash.json'))


def test_progress_lines_show_the_staging_trees_step_and_its_tools_log_before_the_staging_ends(make_provision):
    # apply_binaries.sh takes minutes on a station (it unpacks NVIDIA's packages): 12 s here.
    batch = make_provision({'1-1': '7523', '1-2': '7523'}, apply_seconds=12.0,
                           extra_vars={'rootfs_progress_interval': 3})
    playbook, lines = run_reading_as_it_comes(batch)

    staging = os.path.join(batch.lab.workdir, 'staging', 'Linux_for_Tegra')
    with open(os.path.join(staging, '.azaion-staging.json')) as stamp:
        staged = json.load(stamp)['staged']
    blocks = progress_blocks(lines, 'rootfs')
    applying = [block for block in blocks
                if block['devices'].get('staging tree', ('',))[0] == 'apply_binaries.sh']
    assert applying, 'no progress line of apply_binaries.sh in:\n' + playbook.stdout_text[-3000:]
    logs = glob.glob(os.path.join(batch.lab.workdir, 'logs', 'staging-*.log'))
    assert len(logs) == 1
    with open(logs[0]) as log:
        log_lines = [line.strip() for line in log]
    for block in applying:
        # Printed before the staging ended, time-stamped, with a line of the tools' log.
        assert block['stamp'] <= block['arrived'] < staged
        assert (block['station'], block['done'], block['failed'], block['to_go']) == ('localhost', 0, 0, 1)
        _step, _how_long, log_line = block['devices']['staging tree']
        assert is_log_line(log_line, log_lines), (log_line, log_lines)
    # Several blocks over the 12 s, in order.
    assert len(applying) >= 2 and [block['stamp'] for block in applying] == sorted(block['stamp'] for block in applying)

    report = batch.report()
    assert all(row['result'] == 'done' for row in report.values())
    assert batch.holds_its_own_identity() and batch.station_is_clean()
    assert not os.path.exists(os.path.join(batch.lab.workdir, 'logs', 'progress-rootfs.json'))


def test_under_ansible_runner_the_progress_lines_are_verbose_job_events(make_provision, tmp_path):
    """AWX's view of a job: ansible-runner's display callback turns what the action prints into
    ``verbose`` events, each with the time it was made."""
    batch = make_provision({'1-1': '7523'}, flash_seconds=8.0, extra_vars={'flash_progress_interval': 2})
    args, environment = batch.command([], {})
    env = dict((key, value) for key, value in labkit.ansible_env(environment).items()
               if key.startswith(('ANSIBLE_', 'AZAION_')) or key == 'HOME')
    env['PATH'] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', '')  # ansible-playbook
    private_data_dir = str(tmp_path / 'job')
    os.makedirs(private_data_dir)
    result = ansible_runner.run(private_data_dir=private_data_dir, ident='1', quiet=True, envvars=env,
                                playbook=os.path.join(labkit.PLAYBOOKS_DIR, 'provision.yml'),
                                inventory=batch.inventory, cmdline=' '.join(args))
    assert (result.status, result.rc) == ('successful', 0), result.stdout.read()[-3000:]

    run = batch.flash_runs()[0]
    events = [dict(event, lines=event.get('stdout', '').splitlines()) for event in result.events]
    events = [event for event in events
              if event['lines'] and HEADER.match(event['lines'][0]) and HEADER.match(event['lines'][0]).group(2) == 'flash']
    assert events, [event.get('stdout') for event in result.events][-40:]
    assert all(event['event'] == 'verbose' for event in events)
    flashing = [event for event in events
                if DEVICE.match(event['lines'][1]).group(1, 2) == ('AZJN-0001', 'flashing as instance 0')]
    made = [calendar.timegm(time.strptime(event['created'][:19], '%Y-%m-%dT%H:%M:%S')) for event in flashing]
    assert [when for when in made if run['start'] - 1 <= when <= run['end']], (made, run)
    assert all(row['result'] == 'done' for row in batch.report().values())
