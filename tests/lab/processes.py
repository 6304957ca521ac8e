"""The runs of the playbook that a test stops on purpose: wait for a moment in the lab, then kill
the run with ``kill -9``, whole or the controller only (the integration and chaos suites)."""

import os
import signal
import threading
import time


def process_tree(pid):
    """``pid`` and all its descendants (whatever their session), from /proc."""
    children = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open('/proc/%s/stat' % entry) as stat:
                    parent = int(stat.read().rsplit(')', 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def command_line(pid):
    """The command line of process ``pid``, its arguments joined by spaces ('' once it is gone)."""
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as cmdline:
            return cmdline.read().replace(b'\0', b' ').decode('utf-8', 'replace')
    except OSError:
        return ''


def processes_mentioning(text):
    """Pids of live processes (other than this one) whose command line contains ``text``."""
    return [int(name) for name in os.listdir('/proc')
            if name.isdigit() and int(name) != os.getpid() and text in command_line(int(name)) and alive(int(name))]


def alive(pid):
    """Whether process ``pid`` runs (a zombie has ended)."""
    try:
        with open('/proc/%d/stat' % pid) as stat:
            return stat.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def interrupt(playbook):
    """Ctrl-C, as a terminal sends it: SIGINT to the run's foreground process group, which holds
    ansible-playbook but not its workers (each in a session of its own). Returns every process
    of the run at that moment."""
    processes = process_tree(playbook.pid)
    os.killpg(playbook.pid, signal.SIGINT)
    playbook.communicate(timeout=60)
    return processes


def kill_everything(playbook):
    """kill -9 the run: the controller, its workers (each in a session of its own), the modules
    on the station and NVIDIA's tools, none of which gets to clean up."""
    for _attempt in range(5):
        for pid in process_tree(playbook.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    playbook.communicate(timeout=60)


def kill_controller(playbook):
    """kill -9 only the ansible-playbook controller: its workers and modules live on as orphans
    until they finish or notice."""
    orphans = process_tree(playbook.pid)[1:]
    os.kill(playbook.pid, signal.SIGKILL)
    playbook.communicate(timeout=60)
    return orphans


def wait_until(condition, timeout=120, what='the lab'):
    """Poll ``condition`` often enough to catch a write or a tool call in the act."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, 'timed out waiting for ' + what
        time.sleep(0.01)


def in_thread(target):
    """Run ``target`` in a daemon thread; returns (thread, outcome with 'result' or 'error')."""
    outcome = {}

    def runner():
        try:
            outcome['result'] = target()
        except BaseException as exc:  # pylint: disable=broad-except  # reported by the test
            outcome['error'] = exc

    thread = threading.Thread(target=runner)
    thread.daemon = True
    thread.start()
    return thread, outcome
