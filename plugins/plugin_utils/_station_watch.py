# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This plugin_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""Controller side of a station module's run: while the module runs on a remote station, show
where it stands (live progress), and notice a station that stopped answering.

Live progress. A station's staging takes minutes and its flash minutes to hours, and a task
prints nothing until it ends. So while the module runs (synchronously, as any task: its life
stays tied to the run's, and a killed run still takes its tools down with it), a thread of the
action reads the station's progress every ``progress_interval`` seconds with one small module
run (azaion.jetson.station_progress) and prints one time-stamped block through Display. In a
worker, Display hands the text to the controller's main process, which prints it; under
ansible-runner (AWX), that print becomes a ``verbose`` job event.

A lost station. A station that drops off the network without closing its SSH connection (a
pulled cable, a switch that reboots, a laptop that sleeps) leaves the task's ssh waiting for
an answer. With the documented keep-alive (``-o ServerAliveInterval=15 -o
ServerAliveCountMax=4``, see docs/docsite/rst/guide_recovery.rst) ssh gives up after about a
minute. Without one, it would wait forever, and the run with it. So the same thread also
probes the station (the progress read, or ``true`` for a module that keeps no progress) and,
once the station has not answered for ``jetson_station_answer_timeout`` seconds (300 by
default), ends the task's SSH sessions: the ssh processes this worker started, the task's own
and the probe's. Either way the task then fails with the cause, naming the station and what it
was doing (:func:`lost_station_result`), instead of the host becoming unreachable: the
playbook's other stations go on, and the batch report says which devices the lost station
holds. On the station the module goes on alone (its sshd still holds its output) or, once its
sshd closes the session, stops its tools (module_utils/_tool_runner.end_with_the_run); either
way the next run reads each device's state there and resumes.

The reads go through a copy of the task's connection with its own shell and become state: the
task's own module run is using the original (its become prompt and success marker, its remote
temporary directory) at the same time.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import os
import signal
import threading
import time

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.azaion.jetson.plugins.module_utils._device_state import PHASES
from ansible_collections.azaion.jetson.plugins.module_utils._progress import progress_block, progress_path

display = Display()

PROGRESS_MODULE = 'azaion.jetson.station_progress'
# The modules' default of progress_interval.
DEFAULT_INTERVAL = 30
# How long a station may go without answering during a task before it counts as lost, unless
# jetson_station_answer_timeout says otherwise: well above a probe's few seconds on a loaded
# station, and the backstop behind the keep-alive's minute.
ANSWER_VARIABLE = 'jetson_station_answer_timeout'
DEFAULT_ANSWER_TIMEOUT = 300
# How many probes fit in the answer timeout at the least: one slow probe alone does not lose a station.
PROBES_PER_TIMEOUT = 3
# How long the task waits, once its module has ended, for a read still under way.
READ_GRACE = 60
LOCAL_CONNECTIONS = ('local', 'ansible.builtin.local')


def is_ssh_connection(connection):
    """Whether ``connection`` is Ansible's ssh connection (a process per session, a keep-alive
    of its own), the one a remote station is reached by."""
    transport = str(connection.transport)
    return transport not in LOCAL_CONNECTIONS and 'ssh' in transport


def lost_station_result(station, work, detail=None):
    """The failed result of a task whose station stopped answering during ``work`` (a phase,
    or what the module reads or writes there); ``station_lost`` tells the device outcomes and
    the batch report apart from a failure of the work itself."""
    if work in PHASES:
        advice = 'its work may have finished there; run the batch again to collect it'
    else:
        advice = 'run the batch again once it answers'
    result = dict(failed=True, changed=False, station_lost=True, station=station, work=work,
                  msg='station %s stopped answering during %s; %s' % (station, work, advice))
    lines = str(detail or '').strip().splitlines()
    if lines:
        result['connection_error'] = lines[0]
    return result


def answer_timeout(task_vars, template):
    """``jetson_station_answer_timeout`` (seconds; 0: no bound) of the task's variables."""
    value = template(task_vars.get(ANSWER_VARIABLE, DEFAULT_ANSWER_TIMEOUT))
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        seconds = -1
    if seconds < 0 or isinstance(value, bool):
        raise ValueError('%s must be a whole number of seconds (0 for no bound), not %r: how long a station may go'
                         ' without answering during a task before the run counts it as lost'
                         % (ANSWER_VARIABLE, value))
    return seconds


def end_ssh_sessions():
    """SIGTERM to every ssh (or sshpass) process this process started: the sessions of the task
    and of its probe. A multiplexed session's ssh only talks to its master on this machine,
    which answers at once. Returns their pids; none where there is no /proc to find them in."""
    me = os.getpid()
    ended = []
    try:
        entries = [entry for entry in os.listdir('/proc') if entry.isdigit()]
    except OSError:
        return ended
    for entry in entries:
        try:
            with open('/proc/%s/stat' % entry) as stat:
                fields = stat.read()
        except (IOError, OSError):
            continue
        # "pid (comm) state ppid ...": the name may hold spaces and parentheses, the rest not.
        name = fields[fields.find('(') + 1:fields.rfind(')')]
        rest = fields[fields.rfind(')') + 1:].split()
        if name in ('ssh', 'sshpass') and len(rest) > 1 and rest[1] == str(me):
            try:
                os.kill(int(entry), signal.SIGTERM)
                ended.append(int(entry))
            except OSError:
                continue
    return ended


class StationWatch(threading.Thread):
    """Until stopped: every ``probe_every`` seconds, ask the station (``progress_file``'s read,
    shown every ``interval`` seconds; or ``true``), and once it has not answered for
    ``timeout`` seconds, end the task's SSH sessions and set ``lost``. A probe that fails is
    only a probe without an answer (progress never fails the task)."""

    def __init__(self, action, task_vars, station, progress_file, interval, timeout):
        super(StationWatch, self).__init__(name='azaion.jetson station watch')
        self.daemon = True
        self.task_vars = task_vars
        self.station = station
        self.progress_file = progress_file
        self.interval = interval
        self.timeout = timeout
        every = [seconds for seconds in (interval if progress_file else 0, float(timeout) / PROBES_PER_TIMEOUT) if seconds > 0]
        self.probe_every = min(every) if every else DEFAULT_INTERVAL
        self.stopped = threading.Event()
        self._probe = None
        self.lost = False
        self.answered = time.monotonic()
        self._next_show = self.answered + interval
        self.reader = self._reader(action)

    @staticmethod
    def _reader(action):
        """An action of its own over a copy of the task's connection (see the module docstring)."""
        connection = copy.copy(action._connection)
        connection._shell = copy.copy(connection._shell)
        connection._shell.tmpdir = None
        if getattr(connection, 'become', None) is not None:
            connection.become = copy.copy(connection.become)
        return action._shared_loader_obj.action_loader.get(
            'ansible.legacy.normal', task=action._task, connection=connection, play_context=action._play_context,
            loader=action._loader, templar=action._templar, shared_loader_obj=action._shared_loader_obj)

    def run(self):
        wait = self.probe_every
        while not self.stopped.wait(wait):
            started = time.monotonic()
            self._probe = threading.Thread(target=self.probe, name='azaion.jetson station probe', daemon=True)
            self._probe.start()
            # A probe that hangs is waited for only until the station's time is up, or the task's.
            deadline = self.answered + self.timeout if self.timeout else None
            while self._probe.is_alive() and not self.stopped.is_set():
                if deadline is not None and time.monotonic() > deadline:
                    break
                self._probe.join(0.5)
            if self.stopped.is_set():
                return
            if self.timeout and time.monotonic() - self.answered > self.timeout:
                self.lose()
                return
            # Every probe_every from one probe to the next, however long a probe takes.
            wait = max(0.0, self.probe_every - (time.monotonic() - started))

    def probe(self):
        try:
            if self.progress_file:
                progress = self.reader._execute_module(module_name=PROGRESS_MODULE, module_args=dict(path=self.progress_file),
                                                       task_vars=self.task_vars)
                self.reader._remove_tmp_path(self.reader._connection._shell.tmpdir)
                answered = not progress.get('failed')
            else:
                progress = {}
                answered = self.reader._low_level_execute_command('true', sudoable=False).get('rc') == 0
        except Exception as exc:  # pylint: disable=broad-exception-caught
            display.vvv('%s: the station did not answer a probe: %s' % (self.station, exc))
            return
        if not answered:
            display.vvv('%s: the station did not answer a probe: %s' % (self.station, progress.get('msg', 'rc != 0')))
            return
        self.answered = time.monotonic()
        # Once the module has ended, its result says the rest.
        if progress.get('found') and not self.stopped.is_set() and self.answered >= self._next_show:
            self._next_show = self.answered + self.interval
            display.display(progress_block(progress, self.station))

    def lose(self):
        self.lost = True
        ended = end_ssh_sessions()
        if ended:
            display.vvv('%s: no answer for %d s: ended the SSH sessions of the task (pids %s)'
                        % (self.station, self.timeout, ', '.join(str(pid) for pid in ended)))
        else:
            display.warning('%s: no answer for %d s, but the task\'s SSH session could not be ended here (no ssh'
                            ' process of this worker found in /proc): the task waits for its connection to end'
                            % (self.station, self.timeout))

    def stop(self):
        self.stopped.set()
        self.join(READ_GRACE)
        if self._probe is not None and not self.lost:
            self._probe.join(READ_GRACE)  # its session ends with the task's


def execute_on_station(action, task_vars, work, progress_phase=None, module_name=None, module_args=None,
                       wrap_async=False):
    """``action._execute_module(...)`` with the station watched while the module runs (not in
    an async task, whose module outlives this call): its progress of ``progress_phase`` in its
    ``log_dir`` shown every ``progress_interval`` seconds of its arguments (not in check mode,
    where nothing runs long), and a station that stops answering during ``work`` ending the task
    with :func:`lost_station_result` (only over ssh: see the module docstring)."""
    args = action._task.args if module_args is None else module_args
    station = action._task.delegate_to or task_vars.get('inventory_hostname')
    try:
        interval = int(args.get('progress_interval', DEFAULT_INTERVAL))
    except (TypeError, ValueError):
        interval = 0  # the module refuses it, naming the option
    progress_file = None
    if progress_phase and interval > 0 and args.get('log_dir') and not action._task.check_mode:
        progress_file = progress_path(args['log_dir'], progress_phase)
    watch = None
    if not wrap_async and is_ssh_connection(action._connection):
        try:
            timeout = answer_timeout(task_vars, action._templar.template)
        except ValueError as exc:
            return dict(failed=True, changed=False, msg='%s: %s' % (station, exc))
        if progress_file or timeout:
            watch = StationWatch(action, task_vars, station, progress_file, interval, timeout)
    elif progress_file and not wrap_async:
        # A station on this host: only the progress to show, never lost.
        watch = StationWatch(action, task_vars, station, progress_file, interval, 0)
    if watch is not None:
        watch.start()
    try:
        result = action._execute_module(module_name=module_name, module_args=module_args, task_vars=task_vars,
                                        wrap_async=wrap_async)
    except AnsibleConnectionFailure as exc:
        # The keep-alive gave up on the station (or its sshd went away): lost, not unreachable.
        if not is_ssh_connection(action._connection):
            raise
        display.vvv('%s: %s' % (station, exc))
        result = lost_station_result(station, work, exc)
    finally:
        if watch is not None:
            watch.stop()
    if watch is not None and watch.lost:
        result = lost_station_result(station, work, 'no answer for %d s (%s)' % (watch.timeout, ANSWER_VARIABLE))
    return result


class StationAction(ActionBase):
    """The action of a station module (run by the normal action otherwise): the station is
    watched while the module runs, and its progress of ``PROGRESS_PHASE`` shown when it keeps
    one. ``WORK`` (set by each subclass) names what the module does there, for the message of
    a lost station."""

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = True
    WORK = None
    PROGRESS_PHASE = None

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(StationAction, self).run(tmp, task_vars)
        del tmp  # no longer has any effect
        wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
        result.update(execute_on_station(self, task_vars, self.WORK, self.PROGRESS_PHASE, wrap_async=wrap_async))
        if not wrap_async and not result.get('station_lost'):
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
