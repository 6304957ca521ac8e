# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_tool_runner.end_with_the_run: a module whose run is gone (Ctrl-C ended ansible-playbook and
its worker, the reader of the module's output) ends, and takes its tools with it; a module
whose output is still read, or goes to a file, goes on."""

import os
import signal
import subprocess
import sys
import threading
import time

from lab import labkit
from lab.processes import alive, process_tree, wait_until

from ansible_collections.azaion.jetson.plugins.module_utils import _tool_runner

# A module's life in short: it watches its run, starts a tool the way the station modules do
# (run_tool in a thread of its own), says so, and works for a minute.
MODULE = r'''
import sys, threading, time
from ansible_collections.azaion.jetson.plugins.module_utils._tool_runner import end_with_the_run, run_tool
end_with_the_run()
threading.Thread(target=run_tool, args=(['sleep', '60'], '.', sys.argv[1], 120), daemon=True).start()
print('working', flush=True)
time.sleep(60)
print('done', flush=True)
'''


def start_module(tmp_path, stdout):
    env = dict(os.environ, PYTHONPATH=labkit.link_collection())
    return subprocess.Popen([sys.executable, '-c', MODULE, str(tmp_path / 'tool.log')], stdout=stdout,
                            stderr=subprocess.DEVNULL, cwd=str(tmp_path), env=env)


def tool_of(module):
    """The pid of the module's tool, once it runs."""
    found = []

    def started():
        found[:] = [pid for pid in process_tree(module.pid)[1:] if _command(pid).startswith('sleep')]
        return found
    wait_until(started, timeout=30, what="the module's tool")
    return found[0]


def _command(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as cmdline:
            return cmdline.read().replace(b'\0', b' ').decode()
    except OSError:
        return ''


def test_a_module_whose_output_nobody_reads_any_more_ends_with_its_tool(tmp_path):
    module = start_module(tmp_path, subprocess.PIPE)
    assert module.stdout.readline() == b'working\n'
    tool = tool_of(module)
    module.stdout.close()  # the worker that read it is gone
    assert module.wait(timeout=10) == -signal.SIGTERM
    wait_until(lambda: not alive(tool), timeout=10, what='the tool to end with the module')
    # The module stopped its tool itself (one SIGTERM, its exit logged) before it ended.
    with open(str(tmp_path / 'tool.log')) as log:
        assert 'azaion.jetson: exit -15 after' in log.read()


def test_once_the_run_is_stopped_no_tool_starts(tmp_path, monkeypatch):
    monkeypatch.setattr(_tool_runner, '_STOPPING', threading.Event())
    _tool_runner._STOPPING.set()
    log = str(tmp_path / 'tool.log')
    run = _tool_runner.run_tool(['touch', str(tmp_path / 'ran')], str(tmp_path), log, 30)
    assert run.rc == -signal.SIGTERM and not os.path.exists(str(tmp_path / 'ran'))
    with open(log) as written:
        assert 'not running touch: the run was stopped' in written.read()


def goes_on_then_dies_by_kill_with_its_tool(module):
    """The module and its tool still run 2 s on; then kill -9 of the module ends the tool too."""
    try:
        tool = tool_of(module)
        time.sleep(2)
        assert module.poll() is None and alive(tool)
    finally:
        module.kill()
        module.wait()
    wait_until(lambda: not alive(tool), timeout=10, what='the tool to end with the module')


def test_a_module_whose_output_is_read_goes_on(tmp_path):
    module = start_module(tmp_path, subprocess.PIPE)
    assert module.stdout.readline() == b'working\n'
    goes_on_then_dies_by_kill_with_its_tool(module)
    module.stdout.close()


def test_a_module_whose_output_goes_to_a_file_goes_on(tmp_path):
    with open(str(tmp_path / 'async.out'), 'wb') as output:
        module = start_module(tmp_path, output)
    goes_on_then_dies_by_kill_with_its_tool(module)
