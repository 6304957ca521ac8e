# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""Per-port working trees that share the bundle's gigabytes through hard links, without letting
a tool write through them."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import re
import shutil
import stat
import time

from ansible_collections.azaion.jetson.plugins.module_utils._files import write_file_atomic
from ansible_collections.azaion.jetson.plugins.module_utils._workdir import refuse_symlinks


WORKSPACE_MARKER = '.azaion-workspace.json'
STAGING_MARKER = '.azaion-staging.json'
NV_TEGRA_RELEASE = 'nv_tegra/nv_tegra_release'


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

    def __init__(self, private_paths, exclude=()):
        self.private = private_paths
        # Relative paths left out of the clone (a device's device.conf out of a shared tree).
        self.exclude = frozenset(exclude)
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
            if child_rel in self.exclude:
                continue
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


def clone_tree(src, dest, private_paths, preserve=(), exclude=()):
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
    deleted after the rename. Leftovers of interrupted clones of ``dest`` are removed. The
    relative paths in ``exclude`` are left out.

    Raises ValueError, before anything is written, when ``dest`` or its parent directory is a
    symbolic link: the message names the link and where it points.

    Returns the stats: files_linked, files_copied, bytes_copied, symlinks, skipped, seconds.
    """
    started = time.monotonic()
    src = os.path.abspath(src)
    dest = os.path.abspath(dest)
    # A link planted at dest or its parent (a workdir others could write) would have the bundle,
    # and later a device's identity, written wherever it points.
    refuse_symlinks([os.path.dirname(dest), dest])
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

    cloner = _Cloner(private, normalize_relpaths(exclude, 'excluded path'))
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


# What a run that cloned nothing reports.
EMPTY_STATS = dict(files_linked=0, files_copied=0, bytes_copied=0, symlinks=0, skipped=0, seconds=0.0)


def workspace_argument_spec():
    """The options of azaion.jetson.l4t_workspace (and of each device of azaion.jetson.station_trees)."""
    return dict(
        src=dict(type='path', required=True),
        dest=dict(type='path', required=True),
        private_paths=dict(type='list', elements='str', default=['bootloader', 'tools/kernel_flash', 'rootfs/boot']),
        preserve=dict(type='list', elements='str', default=['rootfs/etc/azaion']),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        force=dict(type='bool', default=False),
    )


def _why_outdated(marker, src, stamp, private):
    """Why the working tree described by ``marker`` is not a current clone of ``src`` (None: it is)."""
    if marker is None:
        return 'it was not made by this module (no %s)' % WORKSPACE_MARKER
    if marker.get('source') != src:
        return 'it was made from %s' % marker.get('source')
    if marker.get('private_paths') != private:
        return 'its private paths were %s' % (', '.join(marker.get('private_paths') or []) or 'none')
    if marker.get('source_stamp') != stamp:
        return 'the source changed since it was made'
    return None


def _absent(module, dest):
    leftovers = stale_temporary_trees(dest)
    exists = os.path.lexists(dest)
    if exists and os.path.isdir(dest) and not os.path.islink(dest) and read_workspace_marker(dest) is None \
            and os.listdir(dest) and not module.params['force']:
        module.fail_json(msg='%s is not a working tree made by azaion.jetson.l4t_workspace (no %s), so it is'
                             ' not removed; remove it yourself or set force=true' % (dest, WORKSPACE_MARKER))
    changed = exists or bool(leftovers)
    if changed and not module.check_mode:
        for path in ([dest] if exists else []) + leftovers:
            remove_tree(path)
    if not changed:
        msg = '%s does not exist' % dest
    else:
        msg = '%s %s' % ('would remove' if module.check_mode else 'removed', dest if exists else 'the leftovers of '
                         'interrupted runs next to %s' % dest)
    module.exit_json(changed=changed, dest=dest, rebuilt=False, stats=dict(EMPTY_STATS), msg=msg)


def make_workspace(module):
    """The work of azaion.jetson.l4t_workspace: ``module`` (an AnsibleModule, or a device's stand-in
    in a station run) has its options; ends with ``module.exit_json`` or ``module.fail_json``."""
    params = module.params
    src = os.path.abspath(params['src'])
    dest = os.path.abspath(params['dest'])
    try:
        private = normalize_relpaths(params['private_paths'], 'private_paths entry')
        preserve = normalize_relpaths(params['preserve'], 'preserve entry')
    except ValueError as exc:
        module.fail_json(msg=str(exc))

    real_src = os.path.realpath(src)
    real_dest = os.path.realpath(dest)
    if _is_inside(real_dest, real_src) or _is_inside(real_src, real_dest):
        module.fail_json(msg='dest %s and src %s must not contain each other: a working tree inside the bundle (or'
                             ' around it) would clone itself; put the working trees next to the bundle, under'
                             ' the station\'s work directory' % (dest, src))
    if params['state'] == 'absent':
        _absent(module, dest)

    if not os.path.isdir(src) and module.check_mode and os.path.isabs(src):
        # In a check run, the task that makes src (the station's staging tree) did not run either.
        module.exit_json(changed=True, dest=dest, rebuilt=os.path.exists(dest), stats={},
                         msg='would make %s once %s exists' % (dest, src))
    if not os.path.isdir(src):
        module.fail_json(msg='src %s does not exist or is not a directory; give the Linux_for_Tegra directory'
                             ' of the bundle (or the staging tree)' % src)
    if not os.path.isfile(os.path.join(src, 'flash.sh')):
        module.fail_json(msg='src %s is not a Linux_for_Tegra tree (it has no flash.sh); give the directory'
                             ' that holds flash.sh' % src)

    try:
        stamp = source_stamp(src)
    except (IOError, OSError) as exc:
        module.fail_json(msg='cannot read the identity of %s: %s' % (src, exc.strerror or exc))
    exists = os.path.lexists(dest)
    marker = read_workspace_marker(dest) if exists else None
    if exists:
        if not os.path.isdir(dest) or os.path.islink(dest):
            if not params['force']:
                module.fail_json(msg='dest %s exists and is not a directory; remove it or set force=true' % dest)
        elif marker is None and os.listdir(dest) and not params['force']:
            module.fail_json(msg='dest %s exists and is not a working tree made by azaion.jetson.l4t_workspace (no'
                                 ' %s); remove it, choose another dest, or set force=true to replace it'
                                 % (dest, WORKSPACE_MARKER))
        reason = 'rebuild requested (force=true)' if params['force'] else _why_outdated(marker, src, stamp, private)
    else:
        reason = 'it does not exist'

    if reason is None:
        module.exit_json(changed=False, dest=dest, rebuilt=False, stats=dict(EMPTY_STATS),
                         msg='%s is up to date with %s' % (dest, src))

    rebuilt = exists
    if module.check_mode:
        module.exit_json(changed=True, dest=dest, rebuilt=rebuilt, stats=dict(EMPTY_STATS),
                         msg='would %s %s from %s: %s' % ('rebuild' if rebuilt else 'build', dest, src, reason))
    try:
        stats = clone_tree(src, dest, private, preserve=preserve)
    except (IOError, OSError, ValueError) as exc:
        module.fail_json(msg='cannot make the working tree %s from %s: %s%s'
                             % (dest, src, getattr(exc, 'strerror', None) or exc,
                                ' (%s)' % exc.filename if getattr(exc, 'filename', None) else ''))
    module.exit_json(
        changed=True, dest=dest, rebuilt=rebuilt, stats=stats,
        msg='%s %s from %s (%s; %d files linked, %d copied, %d bytes copied, %.1f s)'
            % ('rebuilt' if rebuilt else 'built', dest, src, reason, stats['files_linked'], stats['files_copied'],
               stats['bytes_copied'], stats['seconds']))
