"""Crash-safe writes: a killed writer's temporary file is swept, a write in flight is not."""

import os
import subprocess
import sys
import threading

from ansible_collections.azaion.jetson.plugins.module_utils._files import remove_leftover_temporaries, write_file_atomic


def test_a_dead_writers_temporary_is_swept_and_a_live_writers_is_left(tmp_path):
    path = str(tmp_path / 'state.json')
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True,
                          check=True).stdout.strip()
    with subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']) as alive:
        names = ['.state.json.%s.abc.tmp' % dead, '.state.json.%d.def.tmp' % alive.pid,
                 '.state.json.%d.ghi.tmp' % os.getpid(), '.state.json.k1ll3d.tmp', '.other.json.%s.x.tmp' % dead]
        for name in names:
            (tmp_path / name).write_text('partial')
        try:
            assert remove_leftover_temporaries(path) == ['.state.json.%s.abc.tmp' % dead, '.state.json.k1ll3d.tmp']
        finally:
            alive.kill()
    assert sorted(os.listdir(str(tmp_path))) == sorted(names[1:3] + names[4:])


def test_threads_writing_one_path_at_once_never_lose_a_write(tmp_path):
    """The flashes of a station all write its udev rules: one thread's sweep must not take
    another's temporary file from under its rename."""
    path = str(tmp_path / '99-rules')
    errors = []

    def writer(number):
        try:
            for round_number in range(200):
                write_file_atomic(path, b'%d %d\n' % (number, round_number))
        except OSError as exc:  # pragma: no cover - the failure this test is for
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(number,)) for number in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert os.listdir(str(tmp_path)) == ['99-rules']
