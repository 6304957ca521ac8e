# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""Live progress of a long station run (the staging of a station's rootfs and port trees, the
flash of its devices).

On the station, :class:`ProgressFile` keeps what each device is doing (its step, since when, its
tool log) in one small JSON file beside the logs, rewritten atomically at each change of step.
:func:`read_progress` reads it back with the last line of each device's tool log (the
azaion.jetson.station_progress module), and :func:`progress_block` turns that into the
time-stamped lines the controller prints while the run goes on (plugin_utils/_station_watch.py).

The file holds device names, steps, times and log paths: never a password or a device.conf.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import threading
import time

from ansible_collections.azaion.jetson.plugins.module_utils._files import write_file_atomic
from ansible_collections.azaion.jetson.plugins.module_utils._tool_runner import log_tail

# The steps every station run shares; each phase adds its own between them.
QUEUED = 'queued'
DONE = 'done'
FAILED = 'failed'
# The flash's steps of a device that waits for a slot of its station.
WAITING_TO_GENERATE = 'waiting for a generation slot'
WAITING_FOR_GROUP = 'waiting for its image group'
WAITING_TO_FLASH = 'waiting for a flash slot'
# Steps where a device only waits for its turn: in a long block, shown as one line per step.
WAITING_STEPS = (QUEUED, WAITING_TO_GENERATE, WAITING_FOR_GROUP, WAITING_TO_FLASH)
# Up to this many devices not done, a block lists each of them.
LISTED_DEVICES = 16
# A tool's last line is cut to this: one line of the progress block per device.
LOG_LINE_WIDTH = 90
# Terminal escapes and control characters of NVIDIA's tools (progress bars, colours).
_CONTROL = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x1f\x7f]')


def progress_path(log_dir, phase):
    """Where a station run of ``phase`` keeps its progress: the one place both sides agree on."""
    return os.path.join(log_dir, 'progress-%s.json' % phase)


class ProgressFile(object):
    """The progress of one station run, by device name, kept in ``path`` (None: kept nowhere).

    A change of step rewrites the whole file (a few hundred bytes per device) with
    write_file_atomic, so a reader never sees half of it; a device that reports the step it is
    already in writes nothing. Progress is for people: a write that fails turns recording off
    and never fails the run.
    """

    def __init__(self, path, phase, names):
        self.path = path
        self.phase = phase
        self._lock = threading.Lock()
        now = time.time()
        self.devices = dict((name, dict(step=QUEUED, since=now, log=None)) for name in names)
        if path is not None:
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
            except OSError:
                self.path = None
        with self._lock:
            self._write()

    def step(self, name, step, log_path=None):
        """Device ``name`` is now at ``step`` (with its tool log at ``log_path``, when known)."""
        with self._lock:
            record = self.devices[name]
            if record['step'] == step and (log_path is None or record['log'] == log_path):
                return
            if record['step'] != step:
                record.update(step=step, since=time.time())
            if log_path is not None:
                record['log'] = log_path
            self._write()

    def reporter(self, name):
        """``report(step, log_path=None)`` for device ``name``: what its work is given."""
        return lambda step, log_path=None: self.step(name, step, log_path)

    def _write(self):
        if self.path is None:
            return
        data = dict(phase=self.phase, pid=os.getpid(), devices=self.devices)
        try:
            write_file_atomic(self.path, json.dumps(data, sort_keys=True).encode('utf-8'), mode=0o644)
        except (IOError, OSError):
            self.path = None

    def close(self):
        """The run is over: its result says the rest."""
        if self.path is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            self.path = None


def run_progress(log_dir, phase, names, interval, check_mode):
    """The ProgressFile of a station run of ``phase`` over ``names``: kept in ``log_dir`` when
    the task shows it (``interval`` above 0, a ``log_dir``, not check mode), else nowhere."""
    shown = interval > 0 and bool(log_dir) and not check_mode
    return ProgressFile(progress_path(log_dir, phase) if shown else None, phase, names)


def no_progress(step, log_path=None):
    """The reporter of a device whose progress nobody reads."""


def last_log_line(log_path):
    """The last non-empty line of a tool log, without control characters, cut to one line."""
    if not log_path:
        return ''
    for line in reversed(log_tail(log_path, 5).splitlines()):
        line = _CONTROL.sub('', line).strip()
        if line:
            return line if len(line) <= LOG_LINE_WIDTH else line[:LOG_LINE_WIDTH - 3] + '...'
    return ''


def read_progress(path):
    """What the progress file at ``path`` says, each device with its log's last line, and the
    station's clock (``now``: the steps' times are the station's). ``found`` is False when the
    run has not written it yet or has ended."""
    try:
        with open(path, 'rb') as progress:
            data = json.loads(progress.read().decode('utf-8'))
        devices = data['devices']
    except (IOError, OSError, ValueError, KeyError, TypeError):
        return dict(found=False, phase=None, now=time.time(), devices={})
    for record in devices.values():
        record['log_line'] = last_log_line(record.get('log'))
    return dict(found=True, phase=data.get('phase'), now=time.time(), devices=devices)


def duration(seconds):
    """``45s``, ``2m10s``, ``1h02m``: how long a device has been at its step."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return '%ds' % seconds
    if seconds < 3600:
        return '%dm%02ds' % (seconds // 60, seconds % 60)
    return '%dh%02dm' % (seconds // 3600, seconds % 3600 // 60)


def progress_block(progress, station, when=None):
    """The lines a person reads while the run goes on: a time-stamped count of the devices done,
    failed and still to go, then one line per device not done (its step, how long it has been
    at it and its log's last line). With more than LISTED_DEVICES not done (a station of a
    hundred devices), the devices that only wait for their turn are counted, one line per
    step with the longest wait, so that the block keeps to the devices at work and the failed."""
    devices = progress['devices']
    steps = [record.get('step') for record in devices.values()]
    done, failed = steps.count(DONE), steps.count(FAILED)
    lines = ['[%s] %s on %s: %d done, %d failed, %d to go'
             % (time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(when)), progress.get('phase') or 'run', station,
                done, failed, len(devices) - done - failed)]
    not_done = sorted(name for name in devices if devices[name].get('step') != DONE)
    collapse = len(not_done) > LISTED_DEVICES
    waiting = {}
    width = max([len(name) for name in devices] + [0])
    for name in not_done:
        record = devices[name]
        how_long = progress['now'] - (record.get('since') or progress['now'])
        if collapse and record.get('step') in WAITING_STEPS:
            waiting.setdefault(record['step'], []).append(how_long)
            continue
        line = '  %-*s  %-32s %7s' % (width, name, record.get('step'), duration(how_long))
        if record.get('log_line'):
            line += '  "%s"' % record['log_line']
        lines.append(line.rstrip())
    for step in WAITING_STEPS:
        if step in waiting:
            lines.append('  %d device(s) %s, the longest for %s' % (len(waiting[step]), step, duration(max(waiting[step]))))
    return '\n'.join(lines)
