#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: batch_report
short_description: Write a provisioning batch's report (CSV and JSON), on a station or on the controller
version_added: 1.1.0
description:
  - On a station (with O(workdir)), reads the state file of every device in O(devices) (see
    M(azaion.jetson.device_state)) and writes C(<workdir>/reports/<batch>.json) and
    C(<workdir>/reports/<batch>.csv). Per device they hold its serial, e-mail, station, USB port,
    board, its result (V(done), V(failed), V(interrupted) or V(pending)), the last phase it
    reached, the phases a stopped run had interrupted, each phase's status and duration, and the
    first line of the error that stopped it (the whole error is in its state file and in its
    tool log, whose path is in the row). No secret is in the state files, so none is in the
    report.
  - Also writes C(<batch>.html) beside them, a page to read at a glance - a timeline of the
    ports, one row per station and USB port with a bar for each phase of each device coloured by
    its outcome, then the table. The JSON report keeps each row's C(timeline) (phase, status,
    start and end). The flash is drawn in its parts, as the flash recorded them - the image
    generation it ran (or its wait for its image group's), its wait for a flash slot, and the
    flash itself - and the rows say which images it was flashed from (C(image), V(shared <group>)
    or V(own); C(image_generation)) and how long each part took (C(flash_generation_seconds),
    C(flash_slot_wait_seconds), C(flash_write_seconds)).
  - The report also says how many image generations the batch's flashes came from, for
    example C(1 image generation for 24 devices).
  - On the controller (with O(station_reports), the registered results of the stations' runs),
    combines the stations' reports into one batch report in O(report_dir), so that the report
    is kept where the run was started (an AWX job, a controller) and not only on the stations.
    A device whose station's report could not be made gets a row saying so. A device whose
    station stopped answering during this run's work on it is V(interrupted), and its row's
    C(error) says which station and what to do.
  - Also returns the rows, a summary and a readable table for the play's output.
  - Each report says which run wrote it (O(run), for example when it started, its tags and limit) and when. The
    files are rewritten by every run, but the task reports a change only when a device's row
    changed, so re-running a finished batch changes nothing.
  - A report whose rows are about to change is kept, moved to
    C(<report_dir>/history/<batch>-<when it was written>.json) (and C(.csv), C(.html)). So another wave of
    the same batch, or a later run, never loses an earlier run's report.
author: Azaion engineering (@azaion)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  workdir:
    description:
      - The station's work directory (C(jetson_workdir)); state files are read from
        C(devices/<serial>/state.json) under it.
      - Exactly one of O(workdir) and O(station_reports) is required.
    type: path
  station_reports:
    description:
      - Station name -> the result of this module's run on that station, with C(rows), or
        C(failed) and C(msg) when that station's report could not be made, or nothing when the
        station's run stopped before its report.
      - For a station that stopped answering, instead, C(lost) (the cause, as the failed
        station task said it), C(work) (the phase it was doing), C(states) (each device's state
        as this run first read it, the RV(azaion.jetson.station_state#module:devices) of its
        state read) and C(outcomes) (each device's outcome, as the
        P(azaion.jetson.device_outcomes#filter) filter works it out).
      - Exactly one of O(workdir) and O(station_reports) is required.
    type: dict
  report_dir:
    description:
      - Where the report files are written.
      - Defaults to C(<workdir>/reports) on a station; required with O(station_reports).
    type: path
  batch:
    description: Name of the report files.
    type: str
    default: batch
  devices:
    description:
      - One dict per device with C(serial) and, where known, C(email), C(station),
        C(usb_instance), C(board) and C(fuse_enabled).
    type: list
    elements: dict
    required: true
  phases:
    description: The phases, in order, that make a device done.
    type: list
    elements: str
    default: [rootfs, fuse, identity, flash, verify]
  interrupted:
    description:
      - Device name -> the phases that a stopped run had left running when this run started (the
        RV(azaion.jetson.station_state#module:interrupted_phases) of the station's state read);
        the row's C(interrupted) column lists them.
      - A phase still recorded as running when the report is written is reported as
        V(interrupted), and so is the device's result.
    type: dict
    default: {}
  run:
    description:
      - What identifies the run that writes the report, kept in the JSON report as C(run), for
        example C(started), C(tags), C(limit) and C(job).
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
    details: In check mode the report is returned but no file is written.
  diff_mode:
    support: none
  platform:
    platforms: posix
'''

EXAMPLES = r'''
- name: Write the batch report on the station
  azaion.jetson.batch_report:
    workdir: /var/lib/azaion-jetson
    batch: wave-1
    devices:
      - {serial: AZJN-0101, email: azaion-jetson-0101@azaion.com, station: localhost, usb_instance: "1-3.1"}
    run: {started: "2026-11-30T08:00:00Z", tags: [all], limit: wave1}
  register: station_report

- name: Keep it on the controller
  azaion.jetson.batch_report:
    station_reports: {localhost: "{{ station_report }}"}
    report_dir: "{{ playbook_dir }}/reports"
    batch: wave-1
    devices:
      - {serial: AZJN-0101, station: localhost}
  delegate_to: localhost
  register: report

- name: Show it
  ansible.builtin.debug:
    msg: "{{ report.table }}"
'''

RETURN = r'''
rows:
  description: One dict per device.
  returned: always
  type: list
  elements: dict
summary:
  description:
    - Counts of devices C(done), C(failed), C(interrupted) and C(pending), and C(total).
    - C(generations), the image generations the flashed devices' images came from, and
      C(generated_devices), how many devices they served.
  returned: always
  type: dict
  sample: {"total": 6, "done": 5, "failed": 1, "interrupted": 0, "pending": 0, "generations": 1, "generated_devices": 6}
table:
  description: The report as readable text, one line per device.
  returned: always
  type: str
json_path:
  description: The JSON report.
  returned: always
  type: str
csv_path:
  description: The CSV report.
  returned: always
  type: str
html_path:
  description:
    - The HTML report - a timeline of the ports (a row per station and USB port, a bar per phase
      of each device, coloured by its outcome), then the devices' table.
  returned: always
  type: str
'''

import csv
import io
import json
import os
import re
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.azaion.jetson.plugins.module_utils._files import write_file_atomic
from ansible_collections.azaion.jetson.plugins.module_utils._device_state import FINISHED, PHASES, DeviceState, phase_status
from ansible_collections.azaion.jetson.plugins.module_utils._report_html import render_html

ERROR_LENGTH = 300
# Columns that describe this run rather than the device: a re-run that differs only in them
# changes nothing.
RUN_COLUMNS = ('interrupted',)


def one_line(text):
    """The first line of an error, short enough for a table cell (the rest is in the device's log
    and its state file)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    line = lines[0] if lines else ''
    return line if len(line) <= ERROR_LENGTH else line[:ERROR_LENGTH - 3] + '...'


def device_row(device, phases, state, interrupted=()):
    """One report row: the device's facts, its result and the last phase it reached, then
    status and seconds of each phase, then a one-line error. ``interrupted``: the phases a
    stopped run had left running when this run started. A phase still recorded as running when
    the report is written was interrupted too: no run is working on it."""
    recorded = state.get('phases', {})
    row = dict(serial=device['serial'], email=device.get('email') or '', station=device.get('station') or '',
               port=device.get('usb_instance') or '',
               board=(recorded.get('flash') or {}).get('board') or device.get('board') or '',
               phase='', interrupted=', '.join(interrupted), log='', timeline=[])
    errors = []
    for phase in phases:
        record = recorded.get(phase) or {}
        status = phase_status(phase, record, device.get('fuse_enabled'))
        if status == 'running':
            status = 'interrupted'
        row[phase] = status
        row[phase + '_seconds'] = record.get('seconds')
        if status not in ('pending', 'skipped'):
            row['phase'] = phase
        if record.get('log_path'):
            row['log'] = record['log_path']  # the tool log of its latest phase that has one
        if record.get('segments'):
            row['timeline'] += segment_bars(phase, status, record['segments'])
        elif record.get('started') is not None:
            # For the HTML report's timeline; an interrupted phase ends where its record does.
            row['timeline'].append(dict(phase=phase, status=status, started=record.get('started'),
                                        finished=record.get('finished') or record.get('started')))
        if status == 'failed':
            errors.append('%s: %s' % (phase, one_line(record.get('error') or 'failed')))
    flash = recorded.get('flash') or {}
    row['image'] = ('shared %s' % flash['image_group'] if flash.get('image_group')
                    else 'own' if flash.get('image_mode') == 'per_device' else '')
    if flash.get('image_mode_reason'):
        row['image'] += ' (%s)' % flash['image_mode_reason']
    row['image_generation'] = flash.get('image_generation') or ''
    for name, column in SEGMENT_COLUMNS:
        spans = [part['finished'] - part['started'] for part in flash.get('segments') or () if part.get('name') in name]
        row[column] = round(sum(spans), 3) if spans else None
    row['error'] = '; '.join(errors)
    if errors:
        row['result'] = 'failed'
    elif 'interrupted' in (row[phase] for phase in phases):
        row['result'] = 'interrupted'
    elif all(row[phase] in FINISHED for phase in phases):
        row['result'] = 'done'
    else:
        row['result'] = 'pending'
    return row


# The flash's parts (recorded by the flash as its segments) -> the report's columns.
SEGMENT_COLUMNS = (
    (('generation', 'generation, shared'), 'flash_generation_seconds'),
    (('slot wait',), 'flash_slot_wait_seconds'),
    (('flash',), 'flash_write_seconds'),
)


def segment_bars(phase, status, segments):
    """The timeline's bars of a phase recorded in parts: the waits as waits, the rest as the
    phase ended (its last part failed or was interrupted with it)."""
    bars = []
    for index, part in enumerate(segments):
        last = index == len(segments) - 1
        waiting = part.get('name') in ('slot wait', 'generation, shared')
        bars.append(dict(phase='%s (%s)' % (phase, part.get('name')) if part.get('name') != phase else phase,
                         status='waiting' if waiting else (status if last or status != 'failed' else 'done'),
                         started=part.get('started'), finished=part.get('finished')))
    return bars


def generations_summary(rows):
    """How many image generations the batch's flashes came from, and for how many devices."""
    generations = set(row['image_generation'] for row in rows if row.get('image_generation'))
    devices = sum(1 for row in rows if row.get('image_generation'))
    return len(generations), devices


def describe_generations(generations, devices):
    """'1 image generation for 24 devices'."""
    plural = dict((count, '' if count == 1 else 's') for count in (generations, devices))
    return '%d image generation%s for %d device%s' % (generations, plural[generations], devices, plural[devices])


def render_csv(rows, columns):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator='\n')
    writer.writeheader()
    for row in rows:
        writer.writerow(dict((key, '' if row[key] is None else row[key]) for key in columns))
    return buffer.getvalue()


def render_table(rows, phases):
    stations = ['station'] if len(set(row.get('station') for row in rows)) > 1 else []
    header = ['serial'] + stations + ['port', 'board', 'result'] + phases
    lines = [header] + [[str(row[key] or '-') for key in header] for row in rows]
    widths = [max(len(line[index]) for line in lines) for index in range(len(header))]
    text = ['  '.join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
    generations, devices = generations_summary(rows)
    if devices:
        text.append(describe_generations(generations, devices))
    text += ['%s: %s' % (row['serial'], row['error']) for row in rows if row['error']]
    text += ['%s: %s was interrupted (a run was stopped); %s' % (
        row['serial'], row['interrupted'], 'run the batch again to resume it' if row['result'] == 'interrupted'
        else 'this run resumed it') for row in rows if row['interrupted']]
    return '\n'.join(text)


def keep_in_history(reports_dir, batch, generated, paths):
    """Move a report about to be replaced into ``reports/history``, named by when it was
    written: a later run (another wave of the batch) never loses an earlier one's report."""
    history = os.path.join(reports_dir, 'history')
    if not os.path.isdir(history):
        os.makedirs(history, 0o750)
    stamp = re.sub(r'[^0-9TZ]', '', str(generated or '')) or time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())
    for path in paths:
        if os.path.exists(path):
            name, extension = os.path.splitext(os.path.basename(path))
            target = os.path.join(history, '%s-%s%s' % (name, stamp, extension))
            number = 1
            while os.path.exists(target):
                number += 1
                target = os.path.join(history, '%s-%s-%d%s' % (name, stamp, number, extension))
            os.rename(path, target)


def station_rows(module, devices, phases):
    """The rows of a station's devices, from their state files under the station's workdir."""
    rows = []
    for device in devices:
        path = os.path.join(module.params['workdir'], 'devices', device['serial'], 'state.json')
        try:
            state = DeviceState(path).load()
        except ValueError as exc:
            module.fail_json(msg='%s is not a device state file (%s)' % (path, exc))
        rows.append(device_row(device, phases, state, module.params['interrupted'].get(device.get('name') or device['serial'], ())))
    return rows


def device_facts(rows):
    """The rows without what describes the run (see RUN_COLUMNS)."""
    return [dict((key, value) for key, value in row.items() if key not in RUN_COLUMNS) for row in rows or []]


def combined_rows(module, devices, station_reports, phases):
    """The rows of every device from its station's report, in the order of ``devices``; a device
    whose station gave no report gets a failed row that says why (and the task a warning)."""
    found = {}
    for station, report in sorted(station_reports.items()):
        for row in report.get('rows') or []:
            found[row['serial']] = row
        if not report.get('rows') and report.get('failed'):
            module.warn("%s: its batch report could not be made: %s" % (station, report.get('msg') or 'failed'))
    rows = []
    for device in devices:
        row = found.get(device['serial'])
        report = station_reports.get(device.get('station') or '') or {}
        if row is None and report.get('lost'):
            row = lost_station_row(device, phases, report)
        elif row is None:
            row = device_row(device, phases, {})
            row.update(result='failed', error="its station's report could not be made: %s"
                       % (report.get('msg') or "the station's run stopped before its report"))
        rows.append(row)
    return rows


def lost_station_row(device, phases, report):
    """The row of a device whose station stopped answering (``report``: the cause, the work it
    was doing, each device's state as this run read it first, and each device's outcome): as
    it stood before this run, and interrupted, with the cause, if this run was working on it."""
    name = device.get('name') or device['serial']
    row = device_row(device, phases, dict(phases=((report.get('states') or {}).get(name) or {}).get('phases') or {}))
    outcome = (report.get('outcomes') or {}).get(name) or {}
    if outcome.get('station_lost'):
        if report.get('work') in phases:
            row[report['work']] = 'interrupted'
        row.update(result='interrupted', error=one_line(report['lost']))
    elif outcome.get('failed'):
        row.update(result='failed', error=one_line(str(outcome.get('msg')).split(': ', 1)[-1]))
    return row


def main():
    module = AnsibleModule(
        argument_spec=dict(
            workdir=dict(type='path'),
            station_reports=dict(type='dict'),
            report_dir=dict(type='path'),
            batch=dict(type='str', default='batch'),
            devices=dict(type='list', elements='dict', required=True),
            phases=dict(type='list', elements='str', default=list(PHASES)),
            run=dict(type='dict', default={}),
            interrupted=dict(type='dict', default={}),
        ),
        required_one_of=[('workdir', 'station_reports')],
        mutually_exclusive=[('workdir', 'station_reports')],
        required_by=dict(station_reports='report_dir'),
        supports_check_mode=True,
    )
    params = module.params
    phases = params['phases']
    if '/' in params['batch'] or params['batch'] in ('', '.', '..'):
        module.fail_json(msg='batch %r must be a plain file name such as wave-1' % params['batch'])
    for device in params['devices']:
        if not device.get('serial'):
            module.fail_json(msg='every device needs a serial; got %r' % (device,))
    if params['workdir']:
        rows = station_rows(module, params['devices'], phases)
    else:
        rows = combined_rows(module, params['devices'], params['station_reports'], phases)

    summary = dict(total=len(rows))
    for result in ('done', 'failed', 'interrupted', 'pending'):
        summary[result] = sum(1 for row in rows if row['result'] == result)
    summary['generations'], summary['generated_devices'] = generations_summary(rows)
    columns = ['serial', 'email', 'station', 'port', 'board', 'result', 'phase', 'interrupted']
    for phase in phases:
        columns += [phase, phase + '_seconds']
    columns += ['image', 'image_generation'] + [column for _names, column in SEGMENT_COLUMNS] + ['error', 'log']

    reports_dir = params['report_dir'] or os.path.join(params['workdir'], 'reports')
    json_path = os.path.join(reports_dir, params['batch'] + '.json')
    csv_path = os.path.join(reports_dir, params['batch'] + '.csv')
    html_path = os.path.join(reports_dir, params['batch'] + '.html')
    content = dict(batch=params['batch'], summary=summary, devices=rows)
    try:
        with open(json_path) as existing:
            previous = json.load(existing)
    except (IOError, OSError, ValueError):
        previous = None
    previous_generated = previous.get('generated') if isinstance(previous, dict) else None
    # Which run wrote the report changes with every run; the task changes only with the rows.
    changed = previous is None or device_facts(previous.get('devices')) != device_facts(rows)
    if not module.check_mode:
        try:
            if not os.path.isdir(reports_dir):
                os.makedirs(reports_dir, 0o750)
            if changed and previous is not None:
                keep_in_history(reports_dir, params['batch'], previous_generated, (json_path, csv_path, html_path))
            generated = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
            document = dict(content, run=params['run'], generated=generated)
            write_file_atomic(json_path, json.dumps(document, indent=2, sort_keys=True).encode('utf-8') + b'\n', mode=0o640)
            write_file_atomic(csv_path, render_csv(rows, columns).encode('utf-8'), mode=0o640)
            generations = describe_generations(summary['generations'], summary['generated_devices'])
            write_file_atomic(html_path, render_html(params['batch'], rows, summary, phases, params['run'], generated,
                                                     generations).encode('utf-8'), mode=0o640)
        except (IOError, OSError) as exc:
            module.fail_json(msg='cannot write the batch report in %s: %s' % (reports_dir, exc.strerror or exc))
    module.exit_json(changed=changed, rows=rows, summary=summary, table=render_table(rows, phases),
                     json_path=json_path, csv_path=csv_path, html_path=html_path)


if __name__ == '__main__':
    main()
