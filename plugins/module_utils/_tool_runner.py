# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""Running NVIDIA's long, noisy tools with a log and a hard time limit."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import ctypes
import errno
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time


DEFAULT_KILL_GRACE = 5.0


ToolRun = collections.namedtuple('ToolRun', ['rc', 'timed_out', 'seconds', 'log_path'])
ToolRun.__doc__ = """What run_tool did: ``rc`` (exit status; -N when killed by signal N, 126/127 when
the program could not be started), ``timed_out`` (bool), ``seconds`` (wall time, float) and
``log_path`` (where its output went)."""


def utc_stamp(epoch=None):
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(epoch))


def _open_log(log_path):
    directory = os.path.dirname(log_path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.fchmod(fd, 0o640)
    return fd


def log_line(fd, text):
    data = (text + '\n').encode('utf-8', 'replace')
    while data:
        data = data[os.write(fd, data):]


def _signal_group(pgid, signum):
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


PR_SET_PDEATHSIG = 1


def _libc_prctl():
    """libc's prctl, or None (not Linux). Looked up here, in the module's process: the forked
    child of a threaded module must not load libraries (another thread may have held the
    loader's lock at the fork)."""
    try:
        return ctypes.CDLL(None).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()


def _terminate_with_parent():
    """In the tool's process, before exec: SIGTERM when the module dies, even by SIGKILL.

    The tool runs in a session of its own (so that a timeout can kill its whole group), which
    also takes it out of reach of a signal sent to the module's process group. Without this, a
    controller killed mid-flash would leave the tool flashing with nobody to clean up after it.
    Linux only; elsewhere the tool simply outlives a killed module.

    Linux sends the signal when the THREAD that started the tool ends, not the process:
    run_tool waits for the tool in that thread, so it ends only after the tool (or with the
    module). A module with several threads that dies hands the tool on from thread to dying
    thread, and the tool may get SIGTERM once per hop.
    """
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


# The tools running now (pid -> the grace they get), and whether the module is stopping: a
# stopped run starts no more tools.
_RUNNING = {}
_RUNNING_LOCK = threading.Lock()
_STOPPING = threading.Event()


def stop_tools():
    """The run is gone: start no more tools, give each running one SIGTERM once (NVIDIA's tools
    clean up their udev rules and exports on it) and wait for them all, up to their grace."""
    with _RUNNING_LOCK:
        # Under the lock: a tool being started now either is in the list below, or sees this.
        _STOPPING.set()
        running = dict(_RUNNING)
    for pid in running:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + max(list(running.values()) + [0])
    while time.monotonic() < deadline:
        with _RUNNING_LOCK:
            if not _RUNNING:
                return
        time.sleep(0.05)


def end_with_the_run():
    """End this module once the run that started it is gone (Ctrl-C, an AWX cancel, a killed
    ansible-playbook), instead of working on unseen for the hours a batch's flashes can take.

    Ctrl-C ends ansible-playbook and its workers, but not the module a worker started on the
    station: it would go on flashing, and a run started again meanwhile would find the devices
    busy, or flash them twice. The module's standard output is the one thing that always leads
    back to the worker (a pipe, through sh, sudo or sshd): once nobody is left to read it, the
    kernel reports POLLERR (POLLHUP on sudo's terminal) on it. A daemon thread waits for that,
    stops the tools itself (stop_tools: one SIGTERM each, which the kernel's would not be once
    the module's threads die one by one, see _terminate_with_parent), then ends the module with
    SIGTERM, as kill would: the phases in flight stay recorded as running, and the next run
    resumes them. An output that is a regular file (an async task's) has no reader to lose.

    The watch is one more thread, and so one more hop for a tool's SIGTERM when the module is
    killed from outside (kill -9): the station modules, which run a thread per device anyway,
    call it; the single-threaded single-device modules (l4t_flash) do not.
    """
    try:
        fd = sys.stdout.fileno()
        mode = os.fstat(fd).st_mode
    except (AttributeError, ValueError, OSError):
        return
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
        return
    watch = select.poll()
    watch.register(fd, select.POLLERR | select.POLLHUP)

    def wait_for_the_run_to_go():
        while True:
            events = [events for _fd, events in watch.poll()]
            if any(event & select.POLLNVAL for event in events):
                return  # the module closed its output: it is ending anyway
            if any(event & (select.POLLERR | select.POLLHUP) for event in events):
                stop_tools()
                _remove_module_payload()
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=wait_for_the_run_to_go, name='azaion.jetson run watch', daemon=True).start()


def _remove_module_payload():
    """Remove the module's own code from the station's temporary directory before the module
    ends itself by a signal: Ansible's module wrapper (AnsiballZ) unpacks it into
    ``ansible_<module>_payload_*`` and puts the zip first in ``sys.path``, and would remove it
    when the module returns, which a module killed by a signal never does."""
    for entry in sys.path:
        directory, name = os.path.split(entry)
        if (name.startswith('ansible_') and name.endswith('_payload.zip')
                and os.path.basename(directory).startswith(name[:-len('.zip')] + '_')):
            shutil.rmtree(directory, ignore_errors=True)


def run_tool(argv, cwd, log_path, timeout, env=None, kill_grace=DEFAULT_KILL_GRACE):
    """Run ``argv`` in ``cwd`` and return a ToolRun; never raises because the tool failed.

    The program runs in a new session (its own process group) with stdin from /dev/null and
    stdout and stderr appended to ``log_path`` (parent directories created, mode 0640), after a
    header line naming the command. After ``timeout`` seconds the whole process group gets
    SIGTERM (NVIDIA's tools clean up their udev rules and mounts on it), then SIGKILL after
    ``kill_grace`` seconds; whatever is left of the group is killed once the tool has exited.
    A program that cannot be started gives rc 127 (not found) or 126, with the reason logged.
    The tool gets SIGTERM when the module's process dies, however it dies.
    """
    argv = [str(arg) for arg in argv]
    log_fd = _open_log(log_path)
    started = time.monotonic()
    process = None
    try:
        if _STOPPING.is_set():
            log_line(log_fd, '==> %s azaion.jetson: not running %s: the run was stopped' % (utc_stamp(), argv[0]))
            return ToolRun(-signal.SIGTERM, False, 0.0, log_path)
        log_line(log_fd, '==> %s azaion.jetson: running %s (in %s, time limit %s s)'
                 % (utc_stamp(), ' '.join(argv), cwd, timeout))
        try:
            with _RUNNING_LOCK:
                if _STOPPING.is_set():  # stopped since the look above: stop_tools would not see this tool
                    log_line(log_fd, '==> %s azaion.jetson: not running %s: the run was stopped' % (utc_stamp(), argv[0]))
                    return ToolRun(-signal.SIGTERM, False, 0.0, log_path)
                process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log_fd,
                                           stderr=subprocess.STDOUT, close_fds=True, start_new_session=True,
                                           preexec_fn=_terminate_with_parent)
                _RUNNING[process.pid] = kill_grace
        except (IOError, OSError) as exc:
            rc = 127 if exc.errno == errno.ENOENT else 126
            log_line(log_fd, '==> %s azaion.jetson: cannot run %s: %s' % (utc_stamp(), argv[0], exc.strerror or exc))
            return ToolRun(rc, False, time.monotonic() - started, log_path)
        timed_out = False
        try:
            try:
                rc = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _signal_group(process.pid, signal.SIGTERM)
                try:
                    rc = process.wait(timeout=kill_grace)
                except subprocess.TimeoutExpired:
                    _signal_group(process.pid, signal.SIGKILL)
                    rc = process.wait()
                # Children that outlived the tool (or ignored SIGTERM) go too.
                _signal_group(process.pid, signal.SIGKILL)
        except BaseException:
            # Interrupted (e.g. the module is being killed): take the tool down with us.
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=kill_grace)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(process.pid, signal.SIGKILL)
            raise
        seconds = time.monotonic() - started
        if timed_out:
            log_line(log_fd, '==> %s azaion.jetson: timed out after %s s; process group killed (exit %s)'
                     % (utc_stamp(), timeout, rc))
        else:
            log_line(log_fd, '==> %s azaion.jetson: exit %s after %.1f s' % (utc_stamp(), rc, seconds))
        return ToolRun(rc, timed_out, seconds, log_path)
    finally:
        if process is not None:
            with _RUNNING_LOCK:
                _RUNNING.pop(process.pid, None)
        os.close(log_fd)


def log_tail(path, lines=25):
    """The last ``lines`` lines of the log at ``path`` as text ('' when it does not exist)."""
    try:
        with open(path, 'rb') as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            chunk = 8192
            data = b''
            while size > 0 and data.count(b'\n') <= lines:
                step = min(chunk, size)
                size -= step
                log.seek(size)
                data = log.read(step) + data
                chunk *= 2
    except (IOError, OSError):
        return ''
    text = data.decode('utf-8', 'replace')
    return '\n'.join(text.splitlines()[-lines:]) if lines > 0 else ''
