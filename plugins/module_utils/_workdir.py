# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""The station's workdir (``jetson_workdir``): its layout, and keeping it closed to others.

It holds every device's password (the device.conf in each port tree, owned by the image's user,
uid 1000, which on a station is a real person's account), so it is the run's user's alone, mode
0700. A workdir someone else could write may hold what they planted: a symbolic link where a
port tree goes would have the bundle and a device's identity written wherever it points.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat

try:
    import pwd
except ImportError:  # not a POSIX system: uids are shown as numbers
    pwd = None

# The top-level directories of a workdir; plugin_utils/_station.py builds the station's paths
# from these names.
STAGING = 'staging'          # staging/Linux_for_Tegra: the bundle's clone where the rootfs is staged
PORTS = 'ports'              # ports/<port>/Linux_for_Tegra: each USB port's clone of the staging tree
DEVICES = 'devices'          # devices/<serial>/: each device's records (state.json, identity-sync.json)
IMAGES = 'images'            # images/<group>: the flash phase's image generations, shared by devices
LOGS = 'logs'
FLASH_SLOTS = 'flash-slots'
REPORTS = 'reports'

# How many levels below each the collection makes itself: what workdir_problems looks at. Deeper
# lie the clones of the bundle (the staging, port and image group trees), with the bundle's own
# links, which it does not enter.
WORKDIR_LAYOUT = (
    (STAGING, 1),
    (PORTS, 2),
    (DEVICES, 2),
    (IMAGES, 1),
    (LOGS, 1),
    (FLASH_SLOTS, 1),
    (REPORTS, 1),
)
# The trees the run clones from the bundle and remakes: the last level of each in WORKDIR_LAYOUT.
# A clone takes the bundle's owner (as root), so there another user's entry is the run's own doing.
STATION_TREES = (STAGING, PORTS)

WORKDIR_MODE = 0o700


class WorkdirError(ValueError):
    """A path under the workdir that the collection will not write through; the message names
    it, where it points, and the fix."""


def ensure_workdir(workdir):
    """Make ``workdir`` (mode 0700, the run's user's) when it does not exist; return whether it
    was made. An existing one is left as it is: see :func:`workdir_problems`.

    Missing parents are made 0755, whatever the umask: they are the station's ordinary
    directories (such as ``/var/lib``), which others may pass through, but not write in: in a
    parent others can write, anyone could swap the workdir for a link of theirs.
    """
    if os.path.lexists(workdir):
        return False
    missing = []
    parent = os.path.dirname(os.path.abspath(workdir))
    while not os.path.lexists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o755)
        except FileExistsError:
            continue  # made meanwhile (another station's run on this host): not ours to change
        os.chmod(directory, 0o755)
    try:
        os.mkdir(workdir, WORKDIR_MODE)  # never open, not even for a moment
    except FileExistsError:
        return False  # made meanwhile by someone else: workdir_problems judges it
    os.chmod(workdir, WORKDIR_MODE)  # exactly 0700, whatever the umask
    return True


def workdir_problems(workdir):
    """What is wrong with an existing ``workdir``: ``(problems, closable)``.

    ``problems`` are messages, each naming jetson_workdir, what is wrong and the fix: a workdir
    that is a symbolic link, not a directory, or another user's; an entry on the collection's
    own paths (see WORKDIR_LAYOUT) that is a symbolic link or another user's; a workdir open to
    group or others (readable too: it holds every device's password). ``closable`` is True when
    being open is the only problem, so that :func:`close_workdir` fixes them all. A workdir that
    does not exist has none.
    """
    try:
        st = os.lstat(workdir)
    except FileNotFoundError:
        return [], False
    if stat.S_ISLNK(st.st_mode):
        return ['jetson_workdir %s is a symbolic link to %s; set jetson_workdir to the real path %s, the run follows'
                ' no link it did not make' % (workdir, os.readlink(workdir), os.path.realpath(workdir))], False
    if not stat.S_ISDIR(st.st_mode):
        return ['jetson_workdir %s is not a directory; move it away or set jetson_workdir to a directory of its own'
                % workdir], False
    if st.st_uid != os.geteuid():
        return ['jetson_workdir %s is owned by %s, not by the run\'s user %s, so it may hold what they put there;'
                ' move it away, or set jetson_workdir to a directory that does not exist yet (the run makes it)'
                % (workdir, describe_uid(st.st_uid), describe_uid(os.geteuid()))], False
    planted = _planted_entries(workdir)
    mode = stat.S_IMODE(st.st_mode)
    if planted and mode & 0o077:
        return ['jetson_workdir %s is open to others (mode %04o), and what is in it was not all made by the run: %s;'
                ' the run does not close (nor write in) a workdir that may hold what others planted: remove those'
                ' entries, then chmod 0700 %s' % (workdir, mode, '; '.join(planted), workdir)], False
    if planted:
        return ['jetson_workdir %s holds what the run did not make: %s; the run writes only through what it made'
                ' itself: remove those entries' % (workdir, '; '.join(planted))], False
    if mode & 0o077:
        return ['jetson_workdir %s is open to others (mode %04o), but it holds every device\'s password; chmod 0700'
                ' %s' % (workdir, mode, workdir)], True
    return [], False


def _planted_entries(workdir):
    """The entries on the collection's own paths under ``workdir`` that it did not make, each
    described: symbolic links (and where they point) and entries of another user. Every
    top-level entry is looked at; the walk goes as deep as WORKDIR_LAYOUT says, never into a
    link or another user's directory (already named), nor into the bundle's clones."""
    found = []
    levels = dict(WORKDIR_LAYOUT)

    def look_in(relpath):
        for name in sorted(os.listdir(os.path.join(workdir, relpath))):
            entry = relpath + '/' + name if relpath else name
            try:
                st = os.lstat(os.path.join(workdir, entry))
            except FileNotFoundError:
                continue  # gone since the listing
            top = entry.split('/')[0]
            below = entry.count('/')  # how many levels below its top-level directory
            if stat.S_ISLNK(st.st_mode):
                found.append('%s is a symbolic link to %s' % (entry, os.readlink(os.path.join(workdir, entry))))
            elif st.st_uid != os.geteuid() and not (top in STATION_TREES and below == levels[top]):
                found.append('%s is owned by %s' % (entry, describe_uid(st.st_uid)))
            elif stat.S_ISDIR(st.st_mode) and below < levels.get(top, 0):
                look_in(entry)

    look_in('')
    return found


def close_workdir(workdir):
    """Close ``workdir`` to everyone but its owner (mode 0700)."""
    os.chmod(workdir, WORKDIR_MODE)


def check_no_planted_link(workdir, path):
    """Raise WorkdirError when ``path`` (under ``workdir``), or any directory between the two, is
    a symbolic link: for the modules that write under the workdir, before they write. The
    workdir itself is :func:`workdir_problems`' to judge. Parts that do not exist yet pass."""
    workdir, path = os.path.abspath(workdir), os.path.abspath(path)
    relpath = os.path.relpath(path, workdir)
    if relpath == os.pardir or relpath.startswith(os.pardir + os.sep):
        raise WorkdirError('%s is not under jetson_workdir %s' % (path, workdir))
    parts = [] if relpath == os.curdir else relpath.split(os.sep)
    refuse_symlinks([os.path.join(workdir, *parts[:index + 1]) for index in range(len(parts))])


def refuse_symlinks(paths):
    """Raise WorkdirError naming the first of ``paths`` that is a symbolic link, and where it points."""
    for path in paths:
        if os.path.islink(path):
            raise WorkdirError('%s is a symbolic link to %s, which the run did not make and does not write'
                               ' through; remove the link (the run makes the directory itself)'
                               % (path, os.readlink(path)))


def describe_uid(uid):
    """``uid 1000 (alice)``, or ``uid 1000`` for a uid without a user."""
    try:
        return 'uid %d (%s)' % (uid, pwd.getpwuid(uid).pw_name)
    except (KeyError, AttributeError):
        return 'uid %d' % uid
