# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""Crash-safe file writes shared by the collection's modules."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import tempfile


def write_file_atomic(path, data, mode=0o600, uid=None, gid=None):
    """Replace ``path`` with ``data`` (bytes) so that a crash leaves the old file or the new one.

    The temporary file lives in the same directory (so the final rename cannot cross a file
    system), is created with ``mode`` already applied (the content is never readable by
    others, not even for a moment), is flushed to disk before the rename, and the directory is
    flushed after it so the rename itself survives a power cut.  ``os.replace`` swaps a
    symbolic link at ``path`` for the new file rather than writing through it.
    """
    directory = os.path.dirname(path) or '.'
    remove_leftover_temporaries(path)
    # The writer's pid in the name tells a leftover of a killed writer from a write in flight.
    fd, tmp_path = tempfile.mkstemp(prefix='.%s.%d.' % (os.path.basename(path), os.getpid()), suffix='.tmp',
                                    dir=directory)
    try:
        os.fchmod(fd, mode)
        if uid is not None or gid is not None:
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
            # chown clears set-id bits on some systems: apply the mode once more.
            os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _remove_quietly(tmp_path)
        raise
    os.close(fd)
    try:
        os.replace(tmp_path, path)
    except BaseException:
        _remove_quietly(tmp_path)
        raise
    fsync_directory(directory)


def read_all(fd):
    """Everything left to read from the open file descriptor ``fd``."""
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b''.join(chunks)
        chunks.append(chunk)


def remove_leftover_temporaries(path):
    """Remove the temporary files that :func:`write_file_atomic` left beside ``path`` when it
    was killed before its rename (a device.conf's may hold a password, and a staging rootfs's
    would be flashed); return their names. A temporary file of a writer still alive (another
    thread of this process, or another process, writing the same path: the flashes of a
    station all write its udev rules) is a write in flight, and is left alone."""
    directory = os.path.dirname(path) or '.'
    prefix = '.' + os.path.basename(path) + '.'
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    leftovers = sorted(name for name in names if name.startswith(prefix) and name.endswith('.tmp')
                       and not _writer_alive(name[len(prefix):]))
    for name in leftovers:
        _remove_quietly(os.path.join(directory, name))
    return leftovers


def _writer_alive(rest):
    """Whether the writer whose pid leads ``rest`` (``<pid>.<random>.tmp``) still runs."""
    pid = rest.split('.', 1)[0]
    if not pid.isdigit():
        return False  # not named by write_file_atomic as it is now: a leftover
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True


def fsync_directory(directory):
    """Flush a directory entry change (a rename or a new file) to disk."""
    dir_fd = os.open(directory, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass
