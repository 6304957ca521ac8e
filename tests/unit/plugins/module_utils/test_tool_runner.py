# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running NVIDIA's tools (module_utils/_tool_runner.py): the log, the time limit, the whole
process group stopped; and end_with_the_run: a module whose run is gone (Ctrl-C ended
ansible-playbook and its worker, the reader of the module's output) ends, and takes its tools
with it, while a module whose output is still read, or goes to a file, goes on."""

import os
import stat
import signal
import subprocess
import sys
import threading
import time

from lab import l4t_bundle, labkit
from lab.bundle_lab import bundle_lab  # noqa: F401 pylint: disable=unused-import
from lab.processes import alive, command_line, process_tree, processes_mentioning, wait_until

from ansible_collections.azaion.jetson.plugins.module_utils import _tool_runner
from ansible_collections.azaion.jetson.plugins.module_utils._tool_runner import ToolRun, log_tail, run_tool
from ansible_collections.azaion.jetson.plugins.module_utils._usb import BOARD_CONFIGS

NANO = BOARD_CONFIGS['orin-nano-8gb']

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
        found[:] = [pid for pid in process_tree(module.pid)[1:] if command_line(pid).startswith('sleep')]
        return found
    wait_until(started, timeout=30, what="the module's tool")
    return found[0]


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


def test_run_tool_appends_output_to_a_private_log_and_reports_the_exit(tmp_path):
    log = str(tmp_path / 'logs' / 'deep' / 'tool.log')
    run = run_tool(['bash', '-c', 'echo to-stdout; echo to-stderr >&2; read -r line || echo "stdin: eof"; exit 3'],
                   cwd=str(tmp_path), log_path=log, timeout=30)
    assert isinstance(run, ToolRun)
    assert (run.rc, run.timed_out, run.log_path) == (3, False, log)
    assert 0 <= run.seconds < 10
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o640
    again = run_tool(['bash', '-c', 'pwd'], cwd=str(tmp_path), log_path=log, timeout=30)
    assert again.rc == 0
    with open(log) as handle:
        text = handle.read()
    for expected in ('to-stdout', 'to-stderr', 'stdin: eof', 'exit 3', str(tmp_path) + '\n'):
        assert expected in text
    assert text.index('to-stdout') < text.index(str(tmp_path) + '\n')  # appended, not replaced


def test_run_tool_reports_a_missing_program_without_raising(tmp_path):
    log = str(tmp_path / 'tool.log')
    run = run_tool([str(tmp_path / 'no-such-tool')], cwd=str(tmp_path), log_path=log, timeout=5)
    assert (run.rc, run.timed_out) == (127, False)
    assert 'cannot run' in log_tail(log)


def test_run_tool_timeout_kills_the_whole_process_group(tmp_path):
    """A tool that ignores SIGTERM and leaves a child behind: both are gone after the timeout."""
    pid_file = str(tmp_path / 'child.pid')
    script = 'trap "" TERM; sleep 300 & echo $! > %s; wait; wait' % pid_file
    started = time.monotonic()
    run = run_tool(['bash', '-c', script], cwd=str(tmp_path), log_path=str(tmp_path / 'tool.log'), timeout=1,
                   kill_grace=1)
    elapsed = time.monotonic() - started
    assert run.timed_out and run.rc == -9
    assert 1.9 <= elapsed < 6
    with open(pid_file) as handle:
        child = int(handle.read())
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)
    assert 'timed out after 1 s' in log_tail(run.log_path)


def test_run_tool_stops_a_hanging_flash(lab):
    l4t_bundle.plant_failure(lab.state, '1-3', kind='hang')
    log = os.path.join(lab.work, 'logs', 'AZJN-0042-flash.log')
    run = run_tool([os.path.join(lab.tree, 'flash.sh'), '--usb-instance', '1-3', NANO, 'internal'],
                   cwd=lab.tree, log_path=log, timeout=2)
    assert run.timed_out and run.rc == 143  # SIGTERM, and the tool's exit trap ran
    assert 2 <= run.seconds < 8
    assert processes_mentioning(lab.tree) == []
    assert l4t_bundle.tool_calls(lab.state)[-1]['exit'] == 143
    assert not os.path.exists(os.path.join(lab.tree, 'bootloader', '.lab-flash-lock'))
    assert 'Waiting for target to boot-up...' in log_tail(log)
    assert os.path.isdir(os.path.join(lab.sysfs, '1-3'))  # still in recovery, ready for a retry


def test_log_tail(tmp_path):
    assert log_tail(str(tmp_path / 'missing.log')) == ''
    log = labkit.write_file(str(tmp_path / 'big.log'), ''.join('line %d %s\n' % (n, 'x' * 300) for n in range(1000)))
    tail = log_tail(log)
    assert tail.splitlines() == ['line %d %s' % (n, 'x' * 300) for n in range(975, 1000)]
    assert log_tail(log, lines=2).splitlines()[0].startswith('line 998 ')
    short = labkit.write_file(str(tmp_path / 'short.log'), 'only\n')
    assert log_tail(short) == 'only'


def test_a_module_that_ends_itself_removes_its_own_unpacked_code_and_nothing_else(tmp_path, monkeypatch):
    """As AnsiballZ lays it out: <tmp>/ansible_<module>_payload_<random>/ansible_<module>_payload.zip first in sys.path."""
    from ansible_collections.azaion.jetson.plugins.module_utils import _tool_runner
    payload = tmp_path / 'ansible_azaion.jetson.station_flash_payload_x1y2z3'
    payload.mkdir()
    (payload / 'ansible_azaion.jetson.station_flash_payload.zip').write_bytes(b'PK')
    other = tmp_path / 'site-packages'
    other.mkdir()
    (other / 'ansible_other_payload.zip').write_bytes(b'PK')  # a zip of that name, but not in its payload directory
    monkeypatch.setattr(sys, 'path', [str(payload / 'ansible_azaion.jetson.station_flash_payload.zip'),
                                      str(other / 'ansible_other_payload.zip')] + sys.path)
    _tool_runner._remove_module_payload()
    assert not payload.exists() and other.exists() and (other / 'ansible_other_payload.zip').exists()
