# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""Station-wide slots: how many flashes (or image generations) run at once, across processes."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import fcntl
import os
import threading
import time

from ansible_collections.azaion.jetson.plugins.module_utils._tool_runner import log_line, utc_stamp


class FlashSlotTimeout(Exception):
    """No flash slot became free within the wait timeout."""


# The threads of one process (a station module's devices) queue here before they try the slot
# files: at most ``count`` of them poll the locks, where a hundred waiting devices would
# otherwise each try every lock file five times a second, on the CPU the flashes need.
_GATES = {}
_GATES_LOCK = threading.Lock()


def _gate(slots_dir, name, count):
    key = (os.path.realpath(slots_dir), name, count)
    with _GATES_LOCK:
        return _GATES.setdefault(key, threading.BoundedSemaphore(count))


# Taken shared by every flash slot holder and exclusive by a fuse burn: odmfuse.sh cannot choose a
# USB port, so while a device is fused no flash may RCM-boot another, and the reverse.
STATION_LOCK = 'station.lock'


def lock_station(slots_dir, exclusive, label=None, wait=True):
    """Take the station's lock (``<slots_dir>/station.lock``, ``fcntl.flock``) and return its open
    file descriptor (closing it frees the lock): ``exclusive`` for a fuse burn, shared for a flash.
    With ``wait``, waits for the other kind to end (each is time-limited, and the kernel frees the
    lock of a process that dies); without, returns None when the other kind holds it."""
    os.makedirs(slots_dir, exist_ok=True)
    fd = os.open(os.path.join(slots_dir, STATION_LOCK), os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB))
    except (IOError, OSError) as exc:
        os.close(fd)
        if not wait and exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None
        raise
    except BaseException:
        os.close(fd)
        raise
    if exclusive and label:
        try:
            os.ftruncate(fd, 0)
            log_line(fd, '%d %s %s' % (os.getpid(), label, utc_stamp()))
        except (IOError, OSError):
            pass  # the note is for people; the lock is what counts
    return fd


@contextlib.contextmanager
def station_lock(slots_dir, exclusive, label=None):
    """Hold the station's lock (:func:`lock_station`) while the block runs; no ``slots_dir``, no lock."""
    fd = lock_station(slots_dir, exclusive, label) if slots_dir else None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


class FlashSlots(object):
    """Hold one of ``count`` flash slots of the station while the ``with`` block runs.

    A slot is the lock file ``<slots_dir>/<name>-<n>.lock`` held with ``fcntl.flock``: every
    process on the station that flashes (whatever Ansible's forks) takes one first, so at most
    ``count`` flashes run at once. Another ``name`` is another set of slots (image generation
    has its own). All slots are tried without blocking, then again every
    ``poll`` seconds, for at most ``wait_timeout`` seconds (None: until one is free; a holder's
    flash is itself time-limited, and the kernel frees the lock of a process that dies).

    After entering: ``slot`` (the slot number), ``path`` (its lock file) and ``wait_seconds``
    (how long it took). The lock file holds the holder's pid and label, for a person to read.
    """

    def __init__(self, slots_dir, count, wait_timeout=None, label=None, poll=0.2, name='slot',  # pylint: disable=too-many-arguments
                 holds_station=False):
        if int(count) < 1:
            raise ValueError('the number of flash slots must be 1 or more, not %r' % (count,))
        self.slots_dir = slots_dir
        self.count = int(count)
        self.wait_timeout = wait_timeout
        self.label = label
        self.poll = poll
        self.name = name
        self.slot = None
        self.path = None
        self.wait_seconds = None
        self._fd = None
        self._gate = None
        # A slot whose holder talks to a device also holds the station's lock, shared.
        self.holds_station = holds_station
        self._station_fd = None

    def lock_path(self, number):
        return os.path.join(self.slots_dir, '%s-%d.lock' % (self.name, number))

    def _lock(self, number):
        """The open, locked lock file of slot ``number``, or None when someone holds it."""
        fd = os.open(self.lock_path(number), os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (IOError, OSError) as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return None
            raise
        return fd

    def for_each_free(self, action):
        """Call ``action(number)`` for every other slot that nobody holds, holding it meanwhile:
        what a slot's last holder left behind can be cleaned up without racing a new holder."""
        os.makedirs(self.slots_dir, exist_ok=True)
        for number in range(self.count):
            if number == self.slot:
                continue
            fd = self._lock(number)
            if fd is None:
                continue
            try:
                action(number)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def _try(self, number):
        fd = self._lock(number)
        if fd is None:
            return False
        path = self.lock_path(number)
        self._fd, self.slot, self.path = fd, number, path
        try:
            os.ftruncate(fd, 0)
            log_line(fd, '%d %s %s' % (os.getpid(), self.label or '-', utc_stamp()))
        except (IOError, OSError):
            pass  # the note is for people; the lock is what counts
        return True

    def acquire(self):
        os.makedirs(self.slots_dir, exist_ok=True)
        started = time.monotonic()
        gate = _gate(self.slots_dir, self.name, self.count)
        if not gate.acquire(timeout=self.wait_timeout):
            self._busy(started)
        fusing = False
        try:
            while True:
                # The station's lock first: while a device is fused, no slot is taken.
                if self.holds_station:
                    self._station_fd = lock_station(self.slots_dir, exclusive=False, wait=False)
                    fusing = self._station_fd is None
                if not fusing:
                    for number in range(self.count):
                        if self._try(number):
                            self._gate = gate
                            self.wait_seconds = time.monotonic() - started
                            return self
                    self._drop_station()
                if self.wait_timeout is not None and time.monotonic() - started >= self.wait_timeout:
                    self._busy(started, fusing)
                time.sleep(self.poll)
        except BaseException:
            self._drop_station()
            gate.release()
            raise

    def _drop_station(self):
        if self._station_fd is not None:
            os.close(self._station_fd)
            self._station_fd = None

    def _busy(self, started, fusing=False):
        holders = self.holders()
        if fusing:
            try:
                with open(os.path.join(self.slots_dir, STATION_LOCK)) as note:
                    holders.append('the station lock, held to fuse by: %s' % (note.read().strip() or 'unknown'))
            except (IOError, OSError):
                holders.append('the station lock, held to fuse')
        raise FlashSlotTimeout(
            'all %d flash slots in %s stayed busy for %.1f s (holders: %s)'
            % (self.count, self.slots_dir, time.monotonic() - started, '; '.join(holders) or 'unknown'))

    def release(self):
        self._drop_station()
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None
                self._gate.release()
                self._gate = None

    def holders(self):
        """What the slot files say about their holders (pid label time), for messages."""
        notes = []
        for number in range(self.count):
            try:
                with open(self.lock_path(number)) as note:
                    text = note.read().strip()
            except (IOError, OSError):
                continue
            if text:
                notes.append('slot %d: %s' % (number, text))
        return notes

    def __enter__(self):
        return self.acquire()

    def __exit__(self, exc_type, exc_value, traceback):
        self.release()
        return False
