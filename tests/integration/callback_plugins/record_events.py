# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A test callback that writes every event Ansible hands to callbacks, in full, as JSON lines.

The secret sweep enables it next to the tree callback: whatever reaches any callback (the raw
results, diffs, task arguments) lands in the file the sweep searches.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = '''
name: record_events
type: aggregate
short_description: Write every callback event as a JSON line (test helper)
description:
  - Writes to the file named by the environment variable E(RECORD_EVENTS_PATH).
requirements:
  - enable in configuration
'''


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'record_events'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self._path = os.environ['RECORD_EVENTS_PATH']

    def _write(self, event, **data):
        with open(self._path, 'a') as record:
            record.write(json.dumps(dict(event=event, **data), default=repr) + '\n')

    def _result(self, event, result):
        self._write(event, host=result._host.get_name(), task=result._task.get_name(),
                    task_args=result._task.args, result=result._result)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._write('task_start', task=task.get_name(), task_args=task.args)

    def v2_runner_on_ok(self, result):
        self._result('ok', result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result('failed', result)

    def v2_runner_on_skipped(self, result):
        self._result('skipped', result)

    def v2_runner_on_unreachable(self, result):
        self._result('unreachable', result)

    def v2_runner_retry(self, result):
        self._result('retry', result)

    def v2_on_file_diff(self, result):
        self._result('diff', result)

    def v2_playbook_on_stats(self, stats):
        self._write('stats', summary=dict((host, stats.summarize(host)) for host in stats.processed))
