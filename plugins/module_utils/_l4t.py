# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""Station-side helpers around NVIDIA's Linux_for_Tegra (L4T) tools.

Shared by the modules that run on the factory station: finding Jetsons in recovery mode on the
USB bus, running NVIDIA's long, noisy tools with a log and a hard time limit, the per-device
state file, the station-wide limit on simultaneous flashes, and per-port working trees that
share the bundle's gigabytes through hard links without letting a tool write through them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import ctypes
import errno
import fcntl
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import time

from ansible_collections.azaion.jetson.plugins.module_utils._files import write_file_atomic

NVIDIA_VENDOR = '0955'
# idProduct of an Orin in recovery mode (RCM) -> board name used by this collection.
RECOVERY_PRODUCTS = {
    '7523': 'orin-nano-8gb',
    '7623': 'orin-nano-4gb',
    '7323': 'orin-nx-16gb',
    '7423': 'orin-nx-8gb',
    '7023': 'agx-orin-64gb',
    '7223': 'agx-orin-32gb',
}
# Board name -> the Linux_for_Tegra board config (``<name>.conf``) that flashes it. Orin NX
# modules use the Orin Nano devkit carrier config in L4T r36.
BOARD_CONFIGS = {
    'orin-nano-8gb': 'jetson-orin-nano-devkit',
    'orin-nano-4gb': 'jetson-orin-nano-devkit',
    'orin-nx-16gb': 'jetson-orin-nano-devkit',
    'orin-nx-8gb': 'jetson-orin-nano-devkit',
    'agx-orin-64gb': 'jetson-agx-orin-devkit',
    'agx-orin-32gb': 'jetson-agx-orin-devkit',
}

# Board name -> what NVIDIA's flash.sh would otherwise read from the module's EEPROM and fuses.
# Given in the environment of image generation, they keep flash.sh from probing (and rebooting)
# the first Jetson in recovery mode on the station, whichever port it is on: FAB stops the EEPROM
# read, FUSELEVEL the fuse-level read, and BOARDSKU picks the SDRAM configuration in
# p3767.conf.common, so it must be right for the module (docs/l4t-parallel-flash.md). BOARDREV
# and FAB are those of the production modules; check the module label on the floor.
BOARD_IDENTITY = {
    'orin-nx-16gb': {'BOARDID': '3767', 'FAB': '300', 'BOARDSKU': '0000', 'BOARDREV': 'A.0'},
    'orin-nx-8gb': {'BOARDID': '3767', 'FAB': '300', 'BOARDSKU': '0001', 'BOARDREV': 'A.0'},
    'orin-nano-8gb': {'BOARDID': '3767', 'FAB': '300', 'BOARDSKU': '0003', 'BOARDREV': 'A.0'},
    'orin-nano-4gb': {'BOARDID': '3767', 'FAB': '300', 'BOARDSKU': '0004', 'BOARDREV': 'A.0'},
    'agx-orin-64gb': {'BOARDID': '3701', 'FAB': '300', 'BOARDSKU': '0005', 'BOARDREV': 'A.0'},
    'agx-orin-32gb': {'BOARDID': '3701', 'FAB': '300', 'BOARDSKU': '0004', 'BOARDREV': 'A.0'},
}
BOARD_IDENTITY_KEYS = ('BOARDID', 'FAB', 'BOARDSKU', 'BOARDREV', 'FUSELEVEL')
DEFAULT_FUSELEVEL = 'fuselevel_production'

USB_PORT_PATTERN = re.compile(r'^[1-9][0-9]*-[1-9][0-9]*(\.[1-9][0-9]*)*$')
WORKSPACE_MARKER = '.azaion-workspace.json'
STAGING_MARKER = '.azaion-staging.json'
NV_TEGRA_RELEASE = 'nv_tegra/nv_tegra_release'
DEFAULT_KILL_GRACE = 5.0


# ---------------------------------------------------------------------------------------------
# The USB bus
# ---------------------------------------------------------------------------------------------

def _read_attribute(directory, name):
    with open(os.path.join(directory, name)) as attribute:
        return attribute.read().strip()


def _port_sort_key(port):
    bus, _sep, path = port.partition('-')
    try:
        return (int(bus), [int(part) for part in path.split('.')])
    except ValueError:
        return (0, [])


def recovery_devices(sysfs_root):
    """Port -> idProduct of every Jetson in recovery mode under ``sysfs_root``.

    ``sysfs_root`` is ``/sys/bus/usb/devices`` (or a fake tree in tests). Its entries are
    symbolic links into the device hierarchy: they are followed. The port is
    ``<busnum>-<devpath>`` read from the device's attributes (the form NVIDIA's
    ``--usb-instance`` takes), not the entry's name. Entries without ``idVendor`` (interfaces
    such as ``1-3:1.0``), other vendors, other products and unreadable entries are skipped. A
    missing ``sysfs_root`` gives an empty dict.
    """
    found = {}
    try:
        names = os.listdir(sysfs_root)
    except (IOError, OSError):
        return found
    for name in names:
        entry = os.path.join(sysfs_root, name)
        if not os.path.isdir(entry):  # follows the symlink, as sysfs needs
            continue
        try:
            vendor = _read_attribute(entry, 'idVendor').lower()
            if vendor != NVIDIA_VENDOR:
                continue
            product = _read_attribute(entry, 'idProduct').lower()
            if product not in RECOVERY_PRODUCTS:
                continue
            port = '%d-%s' % (int(_read_attribute(entry, 'busnum')), _read_attribute(entry, 'devpath'))
        except (IOError, OSError, ValueError):
            continue
        found[port] = product
    return dict((port, found[port]) for port in sorted(found, key=_port_sort_key))


# ---------------------------------------------------------------------------------------------
# Running NVIDIA's tools
# ---------------------------------------------------------------------------------------------

ToolRun = collections.namedtuple('ToolRun', ['rc', 'timed_out', 'seconds', 'log_path'])
ToolRun.__doc__ = """What run_tool did: ``rc`` (exit status; -N when killed by signal N, 126/127 when
the program could not be started), ``timed_out`` (bool), ``seconds`` (wall time, float) and
``log_path`` (where its output went)."""


def _utc_stamp(epoch=None):
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(epoch))


def _open_log(log_path):
    directory = os.path.dirname(log_path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.fchmod(fd, 0o640)
    return fd


def _log_line(fd, text):
    data = (text + '\n').encode('utf-8', 'replace')
    while data:
        data = data[os.write(fd, data):]


def _signal_group(pgid, signum):
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


PR_SET_PDEATHSIG = 1


def _terminate_with_parent():
    """In the tool's process, before exec: SIGTERM when the module dies, even by SIGKILL.

    The tool runs in a session of its own (so that a timeout can kill its whole group), which
    also takes it out of reach of a signal sent to the module's process group. Without this, a
    controller killed mid-flash would leave the tool flashing with nobody to clean up after it.
    Linux only; elsewhere the tool simply outlives a killed module.
    """
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


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
    try:
        _log_line(log_fd, '==> %s azaion.jetson: running %s (in %s, time limit %s s)'
                  % (_utc_stamp(), ' '.join(argv), cwd, timeout))
        try:
            process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log_fd,
                                       stderr=subprocess.STDOUT, close_fds=True, start_new_session=True,
                                       preexec_fn=_terminate_with_parent)
        except (IOError, OSError) as exc:
            rc = 127 if exc.errno == errno.ENOENT else 126
            _log_line(log_fd, '==> %s azaion.jetson: cannot run %s: %s' % (_utc_stamp(), argv[0], exc.strerror or exc))
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
            _log_line(log_fd, '==> %s azaion.jetson: timed out after %s s; process group killed (exit %s)'
                      % (_utc_stamp(), timeout, rc))
        else:
            _log_line(log_fd, '==> %s azaion.jetson: exit %s after %.1f s' % (_utc_stamp(), rc, seconds))
        return ToolRun(rc, timed_out, seconds, log_path)
    finally:
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


# ---------------------------------------------------------------------------------------------
# The per-device state file
# ---------------------------------------------------------------------------------------------

class DeviceStateError(ValueError):
    """The state file exists but cannot be read as this collection writes it."""


class DeviceState(object):
    """The state of one device on the station, a JSON file::

        {"serial": "AZJN-0042",
         "phases": {"flash": {"status": "done", "started": 1.7e9, "finished": 1.7e9,
                              "seconds": 312.5, "error": null, ...}}}

    ``status`` is one of done, failed, running, skipped. Only the device's own tasks write its
    file, so no locking is needed; every write replaces the file atomically (mode 0640). It
    never holds a secret.
    """

    STATUSES = ('done', 'failed', 'running', 'skipped')

    def __init__(self, path, serial=None):
        self.path = path
        self.serial = serial

    def load(self):
        """The whole state as a dict; {} when the file does not exist yet."""
        try:
            with open(self.path, 'rb') as state_file:
                raw = state_file.read()
        except FileNotFoundError:
            return {}
        except (IOError, OSError) as exc:
            raise DeviceStateError('cannot read the device state %s: %s' % (self.path, exc.strerror or exc))
        try:
            data = json.loads(raw.decode('utf-8'))
        except ValueError:
            raise DeviceStateError('the device state %s is not JSON; move it aside (the device\'s phases'
                                   ' will then run again)' % self.path)
        if not isinstance(data, dict) or not isinstance(data.get('phases', {}), dict):
            raise DeviceStateError('the device state %s is not a state file of this collection; move it aside'
                                   % self.path)
        return data

    def phase(self, name):
        """The record of phase ``name`` (a copy), or {} when it never ran."""
        phase = self.load().get('phases', {}).get(name)
        return dict(phase) if isinstance(phase, dict) else {}

    def record(self, name, **fields):
        """Merge ``fields`` into phase ``name``, write the file atomically, return the phase."""
        status = fields.get('status')
        if status is not None and status not in self.STATUSES:
            raise ValueError('status must be one of %s, not %r' % (', '.join(self.STATUSES), status))
        data = self.load()
        if self.serial is not None:
            data['serial'] = self.serial
        else:
            data.setdefault('serial', None)
        phases = data.setdefault('phases', {})
        phase = phases.get(name)
        if not isinstance(phase, dict):
            phase = {}
        phase.update(fields)
        phases[name] = phase
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        payload = json.dumps(data, indent=2, sort_keys=True) + '\n'
        write_file_atomic(self.path, payload.encode('utf-8'), mode=0o640)
        return dict(phase)


# ---------------------------------------------------------------------------------------------
# Station-wide limit on simultaneous flashes
# ---------------------------------------------------------------------------------------------

class FlashSlotTimeout(Exception):
    """No flash slot became free within the wait timeout."""


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

    def __init__(self, slots_dir, count, wait_timeout=None, label=None, poll=0.2, name='slot'):
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
            _log_line(fd, '%d %s %s' % (os.getpid(), self.label or '-', _utc_stamp()))
        except (IOError, OSError):
            pass  # the note is for people; the lock is what counts
        return True

    def acquire(self):
        os.makedirs(self.slots_dir, exist_ok=True)
        started = time.monotonic()
        while True:
            for number in range(self.count):
                if self._try(number):
                    self.wait_seconds = time.monotonic() - started
                    return self
            waited = time.monotonic() - started
            if self.wait_timeout is not None and waited >= self.wait_timeout:
                raise FlashSlotTimeout(
                    'all %d flash slots in %s stayed busy for %.1f s (holders: %s)'
                    % (self.count, self.slots_dir, waited, '; '.join(self.holders()) or 'unknown'))
            time.sleep(self.poll)

    def release(self):
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

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


# ---------------------------------------------------------------------------------------------
# Per-port working trees
# ---------------------------------------------------------------------------------------------

def normalize_relpaths(paths, what='path'):
    """Clean relative paths (``bootloader/``, ``./rootfs/boot``) into ``a/b`` form.

    Raises ValueError for an absolute path, an empty one or one that climbs with ``..``.
    """
    cleaned = []
    for path in paths or ():
        text = str(path).strip()
        if text.startswith('/'):
            raise ValueError('%s %s must be relative to the tree, not absolute' % (what, text))
        norm = os.path.normpath(text) if text else ''
        if norm in ('', '.') or norm == '..' or norm.startswith('../'):
            raise ValueError('%s %r must name a path inside the tree' % (what, text))
        if norm not in cleaned:
            cleaned.append(norm)
    return cleaned


def _is_inside(path, directory):
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _under(relpath, prefixes):
    for prefix in prefixes:
        if relpath == prefix or relpath.startswith(prefix + '/'):
            return True
    return False


def source_stamp(src):
    """A cheap identity of the source tree, to tell when a working tree is out of date.

    The content of ``<src>/.azaion-staging.json`` (written by the rootfs role after staging,
    parsed as JSON when it is JSON) when present; otherwise the path, the modification time of
    ``src`` and the text of ``nv_tegra/nv_tegra_release`` (None when absent).
    """
    marker = os.path.join(src, STAGING_MARKER)
    try:
        with open(marker, 'rb') as staging:
            raw = staging.read().decode('utf-8', 'replace')
    except FileNotFoundError:
        raw = None
    if raw is not None:
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    release = None
    try:
        with open(os.path.join(src, NV_TEGRA_RELEASE), 'rb') as release_file:
            release = release_file.read().decode('utf-8', 'replace')
    except (IOError, OSError):
        pass
    return {'path': os.path.abspath(src), 'mtime': os.stat(src).st_mtime, 'nv_tegra_release': release}


def read_workspace_marker(dest):
    """The ``.azaion-workspace.json`` of a working tree as a dict, or None (missing/invalid)."""
    try:
        with open(os.path.join(dest, WORKSPACE_MARKER), 'rb') as marker:
            data = json.loads(marker.read().decode('utf-8'))
    except (IOError, OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_temporary_trees(dest):
    """Leftovers of interrupted clones of ``dest`` (``dest.tmp-<pid>``/``dest.old-<pid>`` whose
    process is gone), as paths."""
    parent = os.path.dirname(dest) or '.'
    base = os.path.basename(dest)
    pattern = re.compile(r'^%s\.(tmp|old)-([0-9]+)$' % re.escape(base))
    stale = []
    try:
        names = os.listdir(parent)
    except (IOError, OSError):
        return stale
    for name in names:
        match = pattern.match(name)
        if match and not _pid_alive(int(match.group(2))):
            stale.append(os.path.join(parent, name))
    return sorted(stale)


def _recover_interrupted_swap(dest):
    """A process killed between moving the old tree aside and renaming the new one into place
    leaves no ``dest`` but a ``dest.old-<pid>``: put the newest such tree back (it holds the
    preserved paths) before the leftovers are cleaned up."""
    if os.path.lexists(dest):
        return
    olds = [path for path in stale_temporary_trees(dest) if re.search(r'\.old-[0-9]+$', path)]
    if olds:
        newest = max(olds, key=lambda path: os.lstat(path).st_mtime)
        os.rename(newest, dest)


def remove_tree(path):
    """Remove a tree (or a file, or a link) that may hold read-only directories."""
    if os.path.islink(path) or not os.path.isdir(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return

    def onerror(func, failed, _exc_info):
        parent = os.path.dirname(failed)
        try:
            os.chmod(parent, stat.S_IMODE(os.lstat(parent).st_mode) | stat.S_IWUSR | stat.S_IXUSR)
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, stat.S_IMODE(os.lstat(failed).st_mode) | stat.S_IRWXU)
            func(failed)
        except FileNotFoundError:
            pass

    shutil.rmtree(path, onerror=onerror)


class _Cloner(object):
    """Replicates a tree: hard links (or copies) for files, fresh directories, symlinks as links."""

    LINK_FALLBACK_ERRNOS = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES)

    def __init__(self, private_paths):
        self.private = private_paths
        self.as_root = hasattr(os, 'geteuid') and os.geteuid() == 0
        self.stats = {'files_linked': 0, 'files_copied': 0, 'bytes_copied': 0, 'symlinks': 0, 'skipped': 0}

    def _owner(self, path, st, follow=True):
        if self.as_root:
            os.chown(path, st.st_uid, st.st_gid, follow_symlinks=follow)

    def copy_file(self, src, dst, st):
        shutil.copy2(src, dst, follow_symlinks=False)
        self._owner(dst, st)
        if self.as_root:
            os.chmod(dst, stat.S_IMODE(st.st_mode))  # chown may clear set-id bits
        self.stats['files_copied'] += 1
        self.stats['bytes_copied'] += st.st_size

    def file(self, src, dst, relpath, st):
        if _under(relpath, self.private):
            self.copy_file(src, dst, st)
            return
        try:
            os.link(src, dst)
        except OSError as exc:
            if exc.errno not in self.LINK_FALLBACK_ERRNOS:
                raise
            self.copy_file(src, dst, st)
            return
        self.stats['files_linked'] += 1

    def tree(self, src, dst, relpath='', skip_top=()):
        """Replicate directory ``src`` into the new directory ``dst`` (``relpath``: where
        ``src`` sits in the source tree, for the private-path test)."""
        st = os.lstat(src)
        os.mkdir(dst, 0o700)
        with os.scandir(src) as entries:
            children = sorted(entries, key=lambda entry: entry.name)
        for entry in children:
            if not relpath and entry.name in skip_top:
                continue
            child_rel = entry.name if not relpath else relpath + '/' + entry.name
            target = os.path.join(dst, entry.name)
            child_st = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(child_st.st_mode):
                os.symlink(os.readlink(entry.path), target)
                self._owner(target, child_st, follow=False)
                self.stats['symlinks'] += 1
            elif stat.S_ISDIR(child_st.st_mode):
                self.tree(entry.path, target, child_rel)
            elif stat.S_ISREG(child_st.st_mode):
                self.file(entry.path, target, child_rel, child_st)
            else:
                self.stats['skipped'] += 1  # device nodes, FIFOs, sockets
        # Mode and owner last, so a read-only source directory does not stop the clone.
        self._owner(dst, st)
        os.chmod(dst, stat.S_IMODE(st.st_mode))

    def entry(self, src, dst, relpath):
        """Replicate whatever ``src`` is (directory, file or link) to the new path ``dst``."""
        st = os.lstat(src)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), dst)
            self._owner(dst, st, follow=False)
            self.stats['symlinks'] += 1
        elif stat.S_ISDIR(st.st_mode):
            self.tree(src, dst, relpath)
        elif stat.S_ISREG(st.st_mode):
            self.file(src, dst, relpath, st)


def _ensure_parent_dirs(root, relpath, template_root):
    """Create the missing parents of ``root/relpath`` like those of ``template_root/relpath``."""
    parts = relpath.split('/')[:-1]
    for index in range(len(parts)):
        sub = '/'.join(parts[:index + 1])
        path = os.path.join(root, sub)
        if os.path.isdir(path) and not os.path.islink(path):
            continue
        if os.path.lexists(path):
            os.unlink(path)
        template = os.path.join(template_root, sub)
        mode = stat.S_IMODE(os.stat(template).st_mode) if os.path.isdir(template) else 0o755
        os.mkdir(path, mode)


def clone_tree(src, dest, private_paths, preserve=()):
    """Make ``dest`` a working tree of ``src`` without copying the bundle's gigabytes.

    Every regular file is hard-linked, except those under ``private_paths`` (relative paths
    such as ``bootloader``, ``tools/kernel_flash``, ``rootfs/boot``), which are copied with
    their times, modes and (as root) owners: NVIDIA's tools rewrite files there in place, and
    through a hard link that would rewrite the bundle. A link that fails with EXDEV, EPERM,
    EMLINK or EACCES (another file system, a file the user may not link) becomes a copy.
    Directories are created fresh with the source's mode and owner, symbolic links are
    recreated as links (never followed), device nodes, FIFOs and sockets are skipped.

    The tree is built in ``dest.tmp-<pid>`` and renamed into place with its
    ``.azaion-workspace.json`` already written, so an interrupted clone never looks complete.
    When ``dest`` exists, the relative paths in ``preserve`` (such as ``rootfs/etc/azaion``,
    where the device's device.conf lives) are carried over from it into the new tree (hard
    links: they are never lost, even by a crash half-way), then the old tree is moved aside and
    deleted after the rename. Leftovers of interrupted clones of ``dest`` are removed.

    Returns the stats: files_linked, files_copied, bytes_copied, symlinks, skipped, seconds.
    """
    started = time.monotonic()
    src = os.path.abspath(src)
    dest = os.path.abspath(dest)
    if not os.path.isdir(src):
        raise ValueError('the source tree %s is not a directory' % src)
    real_src, real_dest = os.path.realpath(src), os.path.realpath(dest)
    if _is_inside(real_dest, real_src) or _is_inside(real_src, real_dest):
        raise ValueError('the working tree %s and its source %s must not contain each other' % (dest, src))
    private = normalize_relpaths(private_paths, 'private path')
    keep = normalize_relpaths(preserve, 'preserved path')
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    _recover_interrupted_swap(dest)
    for leftover in stale_temporary_trees(dest):
        remove_tree(leftover)
    tmp = '%s.tmp-%d' % (dest, os.getpid())
    if os.path.lexists(tmp):
        remove_tree(tmp)

    cloner = _Cloner(private)
    aside = None
    try:
        cloner.tree(src, tmp, skip_top=(WORKSPACE_MARKER,))
        existing = os.path.isdir(dest) and not os.path.islink(dest)
        if existing:
            carrier = _Cloner(())  # hard links only: the preserved data is never copied around
            for relpath in keep:
                old = os.path.join(dest, relpath)
                if not os.path.lexists(old):
                    continue
                new = os.path.join(tmp, relpath)
                if os.path.lexists(new):
                    remove_tree(new)
                _ensure_parent_dirs(tmp, relpath, dest)
                carrier.entry(old, new, relpath)
        marker = {
            'source': src,
            'source_stamp': source_stamp(src),
            'private_paths': private,
            'preserve': keep,
            'created': time.time(),
        }
        tmp_mode = stat.S_IMODE(os.lstat(tmp).st_mode)
        if not tmp_mode & stat.S_IWUSR:
            os.chmod(tmp, tmp_mode | stat.S_IWUSR)
        write_file_atomic(os.path.join(tmp, WORKSPACE_MARKER),
                          (json.dumps(marker, indent=2, sort_keys=True) + '\n').encode('utf-8'), mode=0o644)
        if not tmp_mode & stat.S_IWUSR:
            os.chmod(tmp, tmp_mode)
        if os.path.lexists(dest):
            aside = '%s.old-%d' % (dest, os.getpid())
            if os.path.lexists(aside):
                remove_tree(aside)
            os.rename(dest, aside)
        os.rename(tmp, dest)
    except BaseException:
        if aside is not None and not os.path.lexists(dest) and os.path.lexists(aside):
            os.rename(aside, dest)  # put the old tree back rather than leave no tree at all
        if os.path.lexists(tmp):
            remove_tree(tmp)
        raise
    if aside is not None:
        remove_tree(aside)
    stats = dict(cloner.stats)
    stats['seconds'] = round(time.monotonic() - started, 3)
    return stats
