"""The station watch's parts that need no station: the bound's variable, the lost result, and
the ending of this process's ssh sessions (real processes named ssh)."""

import os
import shutil
import signal
import subprocess

import pytest

from ansible_collections.azaion.jetson.plugins.plugin_utils._station_watch import (
    ANSWER_VARIABLE,
    DEFAULT_ANSWER_TIMEOUT,
    answer_timeout,
    end_ssh_sessions,
    lost_station_result,
)


def test_the_lost_result_names_the_station_the_work_and_what_to_do():
    result = lost_station_result('st2', 'flash', 'Failed to connect to the host via ssh: Timeout, server not responding.\nmore')
    assert result['msg'] == ('station st2 stopped answering during flash; its work may have finished there; run the batch'
                             ' again to collect it')
    assert result['failed'] is True and result['station_lost'] is True and result['work'] == 'flash'
    assert result['connection_error'] == 'Failed to connect to the host via ssh: Timeout, server not responding.'
    # Outside a phase there is no work to collect.
    assert lost_station_result('st2', 'its check')['msg'] == 'station st2 stopped answering during its check; run the batch again once it answers'


def test_the_answer_timeout_is_a_whole_number_of_seconds():
    assert answer_timeout({}, lambda value: value) == DEFAULT_ANSWER_TIMEOUT
    assert answer_timeout({ANSWER_VARIABLE: '45'}, lambda value: value) == 45
    assert answer_timeout({ANSWER_VARIABLE: 0}, lambda value: value) == 0
    for bad in ('soon', -1, True, '1.5'):
        with pytest.raises(ValueError, match=ANSWER_VARIABLE + ' must be a whole number of seconds'):
            answer_timeout({ANSWER_VARIABLE: bad}, lambda value: value)


def test_only_this_processs_ssh_children_are_ended(tmp_path):
    """Three real processes: two of ours, one named ssh and one not, and an ssh that is another's child."""
    ssh = str(tmp_path / 'ssh')
    shutil.copy(shutil.which('sleep'), ssh)
    ours = subprocess.Popen([ssh, '60'])
    other_name = subprocess.Popen([shutil.which('sleep'), '60'])
    # An ssh whose parent is a shell, not this process: another task's, say.
    grandchild = subprocess.Popen(['sh', '-c', '"$0" 60 & wait', ssh], start_new_session=True)
    try:
        ended = end_ssh_sessions()
        assert ended == [ours.pid]
        assert ours.wait(10) == -signal.SIGTERM
        assert other_name.poll() is None and grandchild.poll() is None
    finally:
        for process in (ours, other_name):
            if process.poll() is None:
                process.kill()
                process.wait(10)
        os.killpg(grandchild.pid, signal.SIGKILL)
        grandchild.wait(10)
