# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Controller side of azaion.jetson.station_flash: live progress while the station flashes.

A station's flash takes minutes to hours, and a task prints nothing until it ends. So while the
module runs (synchronously, as any task: its life stays tied to the run's, and a killed run
still takes its flashes down with it), a thread of this action reads the station's progress
every ``progress_interval`` seconds with one small module run (azaion.jetson.station_progress)
and prints one time-stamped block through Display. In a worker, Display hands the text to the
controller's main process, which prints it; under ansible-runner (AWX), that print becomes a
``verbose`` job event. A run that ends within the first interval reads nothing.

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
            display.vvv('%s: cannot read the progress of the flash: %s' % (self.station, exc))
            return
        # Once the module has ended, its result says the rest.
        if not self.stopped.is_set() and progress.get('found') and not progress.get('failed'):
            display.display(progress_block(progress, self.station))

    def stop(self):
        self.stopped.set()
        self.join(READ_GRACE)


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # no longer has any effect
        wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
        reader = None
        try:
            interval = int(self._task.args.get('progress_interval', DEFAULT_INTERVAL))
        except (TypeError, ValueError):
            interval = 0  # the module refuses it, naming the option
        if interval > 0 and self._task.args.get('log_dir') and not wrap_async and not self._task.check_mode:
            station = self._task.delegate_to or task_vars.get('inventory_hostname')
            reader = ProgressReader(self, task_vars, progress_path(self._task.args['log_dir'], 'flash'), station,
                                    interval)
            reader.start()
        try:
            result.update(self._execute_module(task_vars=task_vars, wrap_async=wrap_async))
        finally:
            if reader is not None:
                reader.stop()
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
