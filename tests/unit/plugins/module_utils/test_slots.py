# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The station's flash slots (module_utils/_slots.py): at most so many holders, waiting in line."""

import os
import threading
import time

import pytest

from ansible_collections.azaion.jetson.plugins.module_utils._slots import FlashSlotTimeout, FlashSlots


def test_flash_slots_let_at_most_count_holders_in(tmp_path):
    slots_dir = str(tmp_path / 'slots')
    lock = threading.Lock()
    inside = []
    peak = []
    taken = []
    errors = []

    def holder(name):
        try:
            with FlashSlots(slots_dir, 2, label=name) as slot:
                with lock:
                    inside.append(name)
                    peak.append(len(inside))
                    taken.append((slot.slot, slot.wait_seconds))
                time.sleep(0.5)
                with lock:
                    inside.remove(name)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=holder, args=('device-%d' % n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert errors == []
    assert len(taken) == 3 and max(peak) == 2
    assert set(slot for slot, dummy in taken) == {0, 1}
    assert max(wait for dummy, wait in taken) >= 0.3  # the third one waited for a free slot
    assert sorted(os.listdir(slots_dir)) == ['slot-0.lock', 'slot-1.lock']


def test_flash_slots_waiting_threads_queue_instead_of_polling_the_lock_files(tmp_path):
    """A station module's hundred devices wait for a slot in one process: only as many of them
    as there are slots may poll the lock files, or the polls eat the CPU the flashes need."""
    slots_dir = str(tmp_path / 'slots')
    attempts = []

    class CountingSlots(FlashSlots):
        def _lock(self, number):
            attempts.append(number)
            return super(CountingSlots, self)._lock(number)

    def holder():
        with CountingSlots(slots_dir, 1, poll=0.02):
            time.sleep(0.2)

    threads = [threading.Thread(target=holder) for dummy in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    # One try each once let through; polling threads would have made about 4 * 10 per holder.
    assert len(attempts) == 5


def test_flash_slots_release_on_error_and_time_out_when_busy(tmp_path):
    slots_dir = str(tmp_path / 'slots')
    with pytest.raises(RuntimeError):
        with FlashSlots(slots_dir, 1):
            raise RuntimeError('the flash blew up')
    with FlashSlots(slots_dir, 1, wait_timeout=0) as first:  # released above, so free now
        assert (first.slot, first.path) == (0, os.path.join(slots_dir, 'slot-0.lock'))
        with pytest.raises(FlashSlotTimeout, match='holders: slot 0: %d' % os.getpid()):
            FlashSlots(slots_dir, 1, wait_timeout=0.3).acquire()
    with pytest.raises(ValueError):
        FlashSlots(slots_dir, 0)
