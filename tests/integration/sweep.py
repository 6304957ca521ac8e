"""The secret sweep's tools: record everything a run prints, writes, logs or runs."""

import os
import threading

CALLBACK_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'callback_plugins')


class ProcessArgumentWatcher:
    """Reads every process's command line while a run goes on (secrets must not be there)."""

    def __init__(self):
        self.seen = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        while not self._stop.wait(0.02):
            for pid in os.listdir('/proc'):
                if pid.isdigit():
                    try:
                        with open('/proc/%s/cmdline' % pid, 'rb') as cmdline:
                            self.seen.add(cmdline.read().replace(b'\0', b' '))
                    except OSError:
                        pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()


def everything_written_under(directory, skip_names=('device.conf',)):
    """The bytes of every file under ``directory``, save those named in ``skip_names`` (the
    files that must hold the secret: device.conf, and a device image made from it)."""
    for root, _dirs, files in os.walk(directory):
        for name in files:
            if name not in skip_names and not os.path.islink(os.path.join(root, name)):
                with open(os.path.join(root, name), 'rb') as written:
                    yield os.path.join(root, name), written.read()


def sweep_env(log_file, events_file, tree_dir):
    """Environment for a run whose every output is kept: a log file, the tree callback's JSON
    files and a callback that records every event raw."""
    return {
        'ANSIBLE_LOG_PATH': str(log_file),
        'ANSIBLE_CALLBACK_PLUGINS': CALLBACK_DIR,
        'ANSIBLE_CALLBACKS_ENABLED': 'ansible.builtin.tree,record_events',
        'ANSIBLE_CALLBACK_TREE_DIR': str(tree_dir),
        'ANSIBLE_LOAD_CALLBACK_PLUGINS': '1',
        'RECORD_EVENTS_PATH': str(events_file),
    }
