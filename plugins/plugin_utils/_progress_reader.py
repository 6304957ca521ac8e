# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This plugin_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""Controller side of live progress: while a long station module runs (the staging of a
station's rootfs and port trees, the flash of its devices), show where it stands.

A station's staging takes minutes and its flash minutes to hours, and a task prints nothing
until it ends. So while the module runs (synchronously, as any task: its life stays tied to the
run's, and a killed run still takes its tools down with it), a thread of the action reads the
station's progress every ``progress_interval`` seconds with one small module run
(azaion.jetson.station_progress) and prints one time-stamped block through Display. In a
worker, Display hands the text to the controller's main process, which prints it; under
ansible-runner (AWX), that print becomes a ``verbose`` job event. A run that ends within the
first interval reads nothing.

The reads go through a copy of the task's connection with its own shell and become state: the
task's own module run is using the original (its become prompt and success marker, its remote
temporary directory) at the same time.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import threading
import time

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.azaion.jetson.plugins.module_utils._progress import progress_block, progress_path

display = Display()

PROGRESS_MODULE = 'azaion.jetson.station_progress'
# The modules' default of progress_interval.
DEFAULT_INTERVAL = 30
# How long the task waits, once its module has ended, for a progress read still under way.
READ_GRACE = 60


class ProgressReader(threading.Thread):
    """Every ``interval`` seconds until stopped, read the progress file ``path`` on the task's
    host and print it; a read that fails is skipped (progress never fails the task)."""

    def __init__(self, action, task_vars, path, station, interval):
        super(ProgressReader, self).__init__(name='azaion.jetson progress')
        self.daemon = True
        self.task_vars = task_vars
        self.path = path
        self.station = station
        self.interval = interval
        self.stopped = threading.Event()
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
        wait = self.interval
        while not self.stopped.wait(wait):
            started = time.monotonic()
            self.show()
            # Every interval from one block to the next, however long a read takes.
            wait = max(0.0, self.interval - (time.monotonic() - started))

    def show(self):
        try:
            progress = self.reader._execute_module(module_name=PROGRESS_MODULE, module_args=dict(path=self.path),
                                                   task_vars=self.task_vars)
            self.reader._remove_tmp_path(self.reader._connection._shell.tmpdir)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            display.vvv('%s: cannot read the progress of the run: %s' % (self.station, exc))
            return
        # Once the module has ended, its result says the rest.
        if not self.stopped.is_set() and progress.get('found') and not progress.get('failed'):
            display.display(progress_block(progress, self.station))

    def stop(self):
        self.stopped.set()
        self.join(READ_GRACE)


def execute_with_progress(action, task_vars, phase, module_name=None, module_args=None, wrap_async=False):
    """``action._execute_module(...)``, showing the progress the module keeps of ``phase`` in its
    ``log_dir`` every ``progress_interval`` seconds of its arguments while it runs (not in check
    mode, where nothing runs long, nor in an async task, whose module outlives this call)."""
    args = action._task.args if module_args is None else module_args
    try:
        interval = int(args.get('progress_interval', DEFAULT_INTERVAL))
    except (TypeError, ValueError):
        interval = 0  # the module refuses it, naming the option
    reader = None
    if interval > 0 and args.get('log_dir') and not wrap_async and not action._task.check_mode:
        station = action._task.delegate_to or task_vars.get('inventory_hostname')
        reader = ProgressReader(action, task_vars, progress_path(args['log_dir'], phase), station, interval)
        reader.start()
    try:
        return action._execute_module(module_name=module_name, module_args=module_args, task_vars=task_vars,
                                      wrap_async=wrap_async)
    finally:
        if reader is not None:
            reader.stop()


class ProgressAction(ActionBase):
    """The action of a station module that keeps its progress (``PROGRESS_PHASE``, set by each
    subclass): the module runs as by the normal action, its progress shown while it runs."""

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = True
    PROGRESS_PHASE = None

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ProgressAction, self).run(tmp, task_vars)
        del tmp  # no longer has any effect
        wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
        result.update(execute_with_progress(self, task_vars, self.PROGRESS_PHASE, wrap_async=wrap_async))
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
