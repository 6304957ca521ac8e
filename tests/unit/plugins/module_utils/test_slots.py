# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The station's flash slots (module_utils/_slots.py): at most so many holders, waiting in line; and
the station's lock, shared by the slot holders that talk to a device, exclusive for a fuse burn."""

import fcntl
import os
import threading
import time

import pytest

from lab.processes import in_thread

from ansible_collections.azaion.jetson.plugins.module_utils._slots import (
    STATION_LOCK, FlashSlotTimeout, FlashSlots, lock_station, station_lock)


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


# -- the station's lock: flashes (shared) against a fuse burn (exclusive) --------------------------


def test_a_flash_slot_holder_keeps_a_fuse_burn_out_of_the_station(tmp_path):
    slots_dir = str(tmp_path / 'slots')
    fusing = threading.Event()
    order = []
    slot = FlashSlots(slots_dir, 2, label='flash AZJN-0001 1-4', holds_station=True).acquire()

    def fuse():
        with station_lock(slots_dir, exclusive=True, label='fuse AZJN-0042 1-3'):
            order.append('fuse')
            fusing.set()

    thread, outcome = in_thread(fuse)
    try:
        assert not fusing.wait(0.3)  # the flash holds the station: the burn waits
    finally:
        order.append('flash released')
        slot.release()
    assert fusing.wait(10)
    thread.join(10)
    assert 'error' not in outcome and order == ['flash released', 'fuse']
    assert sorted(os.listdir(slots_dir)) == ['slot-0.lock', STATION_LOCK]
    with open(os.path.join(slots_dir, STATION_LOCK)) as note:
        assert note.read().split()[:3] == [str(os.getpid()), 'fuse', 'AZJN-0042']


def test_a_fuse_burn_keeps_every_flash_slot_holder_out_until_it_ends(tmp_path):
    slots_dir = str(tmp_path / 'slots')
    burn_over = threading.Event()
    order = []
    holding = threading.Event()
    flashing = threading.Event()

    def fuse():
        with station_lock(slots_dir, exclusive=True, label='fuse AZJN-0042 1-3'):
            holding.set()
            burn_over.wait(30)
            order.append('fuse over')

    def flash():
        with FlashSlots(slots_dir, 2, label='flash AZJN-0001 1-4', holds_station=True) as slot:
            order.append('flash')
            flashing.set()
            return slot.slot

    fuser, fuse_outcome = in_thread(fuse)
    assert holding.wait(10)
    flasher, flash_outcome = in_thread(flash)
    try:
        assert not flashing.wait(0.3)  # the burn holds the station: the flash waits
    finally:
        burn_over.set()
    assert flashing.wait(10)
    fuser.join(10)
    flasher.join(10)
    assert 'error' not in fuse_outcome and flash_outcome == {'result': 0}
    assert order == ['fuse over', 'flash']


def test_flash_slot_holders_share_the_station_and_a_burn_waits_for_the_last(tmp_path):
    slots_dir = str(tmp_path / 'slots')
    first = FlashSlots(slots_dir, 2, label='flash AZJN-0001 1-4', holds_station=True).acquire()
    second = FlashSlots(slots_dir, 2, wait_timeout=5, label='flash AZJN-0002 1-5', holds_station=True).acquire()
    assert (first.slot, second.slot) == (0, 1)  # shared: the second flash did not wait for the first
    fusing = threading.Event()

    def fuse():
        with station_lock(slots_dir, exclusive=True):
            fusing.set()

    thread, outcome = in_thread(fuse)
    try:
        first.release()
        assert not fusing.wait(0.3)  # one flash still holds the station
    finally:
        second.release()
    assert fusing.wait(10)
    thread.join(10)
    assert 'error' not in outcome


def test_slots_that_do_not_hold_the_station_and_no_slots_dir_take_no_station_lock(tmp_path):
    slots_dir = str(tmp_path / 'slots')
    with FlashSlots(slots_dir, 1, name='generate'):  # image generation talks to no device
        with station_lock(slots_dir, exclusive=True):
            pass
    with station_lock(None, exclusive=True):  # a fuse without slots_dir
        pass
    assert sorted(os.listdir(slots_dir)) == ['generate-0.lock', STATION_LOCK]


def slot_is_free(slots_dir, number=0):
    """Whether nobody holds flash slot ``number`` (tried with flock, as another process would)."""
    fd = os.open(os.path.join(slots_dir, 'slot-%d.lock' % number), os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (IOError, OSError):
        return False
    finally:
        os.close(fd)  # closing frees a lock taken here
    return True


def test_a_flash_slot_waiting_for_a_fuse_burn_keeps_its_wait_timeout_and_frees_its_slot(tmp_path):
    slots_dir = str(tmp_path / 'slots')
    burn = lock_station(slots_dir, exclusive=True)  # a fuse burn that goes on
    thread, outcome = in_thread(lambda: FlashSlots(slots_dir, 1, wait_timeout=0.3, holds_station=True).acquire())
    thread.join(3)
    stuck = thread.is_alive()
    free_meanwhile = slot_is_free(slots_dir)
    os.close(burn)  # let it go, whatever it did
    thread.join(10)
    if 'result' in outcome:
        outcome['result'].release()
    assert not stuck, 'the flash was still waiting for the station 3 s after its 0.3 s wait timeout'
    assert isinstance(outcome.get('error'), FlashSlotTimeout)
    assert free_meanwhile  # no slot is kept by a flash that cannot start


def test_a_slot_whose_station_lock_cannot_be_taken_is_given_back(tmp_path):
    slots_dir = str(tmp_path / 'slots')
    os.makedirs(os.path.join(slots_dir, STATION_LOCK))  # a directory: the station lock cannot be opened
    with pytest.raises(OSError):
        FlashSlots(slots_dir, 1, wait_timeout=0, holds_station=True).acquire()
    assert slot_is_free(slots_dir)
