# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""One image generation for every device that differs only by its identity (an image group),
and each flash's own APP image made from it in bytes (docs/l4t-app-image.md).

On the station, under the flash's ``images_dir``:

- ``<group>/Linux_for_Tegra``: a working tree cloned from a device's port tree without its
  device.conf, where NVIDIA's tool generates the images once (``--no-flash --massflash N``);
- ``<group>/group.json``: what was generated, for which fingerprint, and each APP image's
  prefix (where its end-of-archive marker starts);
- ``<group>/slot-<k>/Linux_for_Tegra``: what the flash in slot ``k`` runs from. Every file is a
  hard link into the group's tree, its ``rootfs`` is a link to the group's rootfs (made here,
  only the chroot NVIDIA's tools run in), and each APP image is the slot's own copy (a reflink
  where the file system has them). Before a flash, the copy is cut back to the group image's
  last member and gets the device's ``./etc/azaion/`` and ``./etc/azaion/device.conf`` after it
  and a new end-of-archive marker; its ``.sha1sum`` is the prefix's SHA-1 extended. After the
  flash (done, failed, or on the next run after a kill) the copy is the group's image again.
- ``<group>.lock``: held shared by every device that uses the group, from its generation to the
  end of its flash, and exclusively to generate it or remove it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import io
import json
import os
import re
import stat
import tarfile
import threading
import time

from ansible_collections.azaion.jetson.plugins.module_utils._app_image import (
    AppImageError,
    clear_tail,
    copy_image,
    identity_tail,
    image_format,
    prefix_digest,
    read_tail,
    sha1_text,
    tar_prefix_end,
    write_tail,
)
from ansible_collections.azaion.jetson.plugins.module_utils._device_conf import DEVICE_CONF_RELPATH
from ansible_collections.azaion.jetson.plugins.module_utils._files import read_all, write_file_atomic
from ansible_collections.azaion.jetson.plugins.module_utils._workdir import refuse_symlinks
from ansible_collections.azaion.jetson.plugins.module_utils._workspace import (
    NV_TEGRA_RELEASE,
    WORKSPACE_MARKER,
    _Cloner,
    clone_tree,
    remove_tree,
)

GROUP_RECORD = 'group.json'
SLOT_RECORD = 'slot.json'
TREE = 'Linux_for_Tegra'
IMAGES_RELDIR = 'tools/kernel_flash/images'
# What a generation leaves in its tree: an image set (tens of gigabytes on a real station).
GENERATED_IMAGES = (IMAGES_RELDIR, 'bootloader/system.img', 'bootloader/system.img.raw')
# The flash.cfg names of the APP images package_images makes (APP, and APP_b for an A/B rootfs;
# "_ext" in images/external/): docs/l4t-app-image.md.
APP_NAME = re.compile(r'^APP(_b)?(_ext)?$')
# The device's members, in the order the flashing initrd must unpack them.
IDENTITY_DIR = './' + os.path.dirname(DEVICE_CONF_RELPATH) + '/'
IDENTITY_FILE = './' + DEVICE_CONF_RELPATH

# The SHA-1 of each group image's prefix, computed once per generation in this process: Python's
# hashlib cannot store its state, so another run computes it again, once.
_PREFIX_DIGESTS = {}
_PREFIX_LOCK = threading.Lock()


# An image set holds the rootfs about three times (the raw ext4 image, its sparse form and the
# APP tar): what the disk check takes a group's system.img to need before one was generated.
APP_SHARE_OF_IMAGE_SET = 3


class ImageGroupError(Exception):
    """The group's images cannot serve a device; the message says why and what to do."""


def unshareable_format(extra_args, environ, tree):
    """Why the APP images NVIDIA's tool will generate from ``tree`` with ``extra_args`` and the
    environment ``environ`` cannot take a device's members, as far as it is known before they
    are generated ('' when they can; docs/l4t-app-image.md)."""
    if '--sparse' in extra_args:
        return 'its APP image is generated sparse (--sparse in flash_extra_args), not as a tar that can take a member'
    if str(environ.get('ROOTFS_ENC', '')) == '1':
        return ('its rootfs is generated encrypted (ROOTFS_ENC=1 on the station): the rootfs is the APP_ENC partition,'
                ' which nothing can be added to without the disk key')
    try:
        with open(os.path.join(tree, NV_TEGRA_RELEASE)) as release:
            first = release.readline()
    except (IOError, OSError):
        first = ''
    match = re.match(r'^#\s*R([0-9]+)', first)
    if match and int(match.group(1)) >= 38:
        return 'its bundle is L4T R%s, whose APP image is a zstd-compressed tar that cannot take a member' % match.group(1)
    return ''


def read_json(path):
    """A JSON record as a dict ({} when missing, unreadable or not an object)."""
    try:
        with open(path, 'rb') as record:
            data = json.loads(record.read().decode('utf-8'))
    except (IOError, OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_flash_cfg(path):
    """The NAME=value lines of an images/<location>/flash.cfg (l4t_flash_from_kernel.sh sources it)."""
    values = {}
    try:
        with open(path) as cfg:
            for line in cfg:
                name, sep, value = line.strip().partition('=')
                if sep and re.match(r'^[A-Za-z_][A-Za-z0-9_]*$', name):
                    values[name] = value.strip('"')
    except (IOError, OSError):
        pass
    return values


def app_images(tree, location):
    """The relative paths of the APP images the flash of ``location`` (internal or external)
    writes, as its flash.cfg names them (one file may serve APP and APP_b)."""
    cfg = read_flash_cfg(os.path.join(tree, IMAGES_RELDIR, location, 'flash.cfg'))
    names = sorted(set(value for key, value in cfg.items() if APP_NAME.match(key) and value))
    return ['%s/%s/%s' % (IMAGES_RELDIR, location, name) for name in names]


def partition_names(tree, location):
    """The partitions images/<location>/flash.idx has rows for (its second column, the part
    after the last colon, as package_images reads it)."""
    names = []
    try:
        with open(os.path.join(tree, IMAGES_RELDIR, location, 'flash.idx')) as index:
            for line in index:
                fields = line.split(',')
                if len(fields) > 1:
                    names.append(fields[1].strip().split(':')[-1])
    except (IOError, OSError):
        pass
    return names


def describe_image(tree, relpath):
    """The image's record: its size and, for a tar with a clean end, where its prefix ends."""
    path = os.path.join(tree, relpath)
    kind = image_format(path)
    entry = dict(relpath=relpath, format=kind, size=os.path.getsize(path), prefix_end=None, problem=None)
    if kind == 'tar':
        try:
            entry['prefix_end'] = tar_prefix_end(path)
        except AppImageError as exc:
            entry.update(format='tar without a clean end', problem=str(exc))
    return entry


def identity_members(rootfs):
    """The device's ``./etc/azaion/`` and ``./etc/azaion/device.conf`` as tar members, with the
    content, mode, numeric owner and time they have in its rootfs (never through a link)."""
    conf_path = os.path.join(rootfs, DEVICE_CONF_RELPATH)
    dir_st = os.lstat(os.path.dirname(conf_path))
    fd = os.open(conf_path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        conf_st = os.fstat(fd)
        if not stat.S_ISDIR(dir_st.st_mode) or not stat.S_ISREG(conf_st.st_mode):
            raise ImageGroupError('%s is not a regular file in a real directory' % conf_path)
        data = read_all(fd)
    finally:
        os.close(fd)
    return [
        dict(name=IDENTITY_DIR, kind='dir', mode=stat.S_IMODE(dir_st.st_mode), uid=dir_st.st_uid,
             gid=dir_st.st_gid, mtime=int(dir_st.st_mtime)),
        dict(name=IDENTITY_FILE, kind='file', data=data, mode=stat.S_IMODE(conf_st.st_mode),
             uid=conf_st.st_uid, gid=conf_st.st_gid, mtime=int(conf_st.st_mtime)),
    ]


def check_tail(tail, members):
    """Read the appended members back as GNU tar would, and compare them with the device's."""
    try:
        with tarfile.open(fileobj=io.BytesIO(tail), mode='r:') as archive:
            # tarfile names a directory without its trailing slash.
            found = dict((info.name.rstrip('/'), (info, archive.extractfile(info).read() if info.isfile() else None))
                         for info in archive.getmembers())
    except (tarfile.TarError, EOFError) as exc:
        raise ImageGroupError('the image\'s new members do not read back as a tar (%s)' % exc)
    for member in members:
        info, data = found.get(member['name'].rstrip('/'), (None, None))
        wanted_kind = info is not None and (info.isdir() if member['kind'] == 'dir' else info.isfile())
        if (not wanted_kind or (info.mode, info.uid, info.gid) != (member['mode'], member['uid'], member['gid'])
                or (member['kind'] == 'file' and data != member['data'])):
            raise ImageGroupError('the image\'s member %s does not read back as the device\'s own' % member['name'])


class ImageGroup(object):
    """The images of one group on the station (see the module's docstring for the layout)."""

    def __init__(self, images_dir, fingerprint):
        self.images_dir = images_dir
        self.fingerprint = fingerprint
        self.name = fingerprint[:16]
        self.dir = os.path.join(images_dir, self.name)
        self.tree = os.path.join(self.dir, TREE)
        self.record_path = os.path.join(self.dir, GROUP_RECORD)
        self.lock_fd = None
        self.record = {}

    # -- the group's lock -------------------------------------------------------------------------

    def lock(self, exclusive):
        """Take the group's lock (blocking): exclusive to generate, shared to use its images."""
        if self.lock_fd is None:
            # The run writes the group's images and their copies here: never through a link.
            refuse_symlinks([self.images_dir, self.dir, self.tree])
            os.makedirs(self.images_dir, mode=0o700, exist_ok=True)
            self.lock_fd = os.open(os.path.join(self.images_dir, self.name + '.lock'),
                                   os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)

    def release(self):
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None

    # -- the generation ---------------------------------------------------------------------------

    def current(self, instances):
        """The group's record when its images serve this fingerprint and ``instances`` device
        instances; None otherwise."""
        record = read_json(self.record_path)
        if (record.get('fingerprint') == self.fingerprint and isinstance(record.get('instances'), int)
                and record['instances'] >= instances and os.path.isdir(self.tree)):
            return record
        return None

    def make_tree(self, port_tree, private_paths):
        """The group's tree: a clone of the port tree (hard links; ``private_paths`` copied, since
        the generation writes them in place), without the device's device.conf."""
        try:
            os.unlink(self.record_path)
        except FileNotFoundError:
            pass
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        for entry in os.listdir(self.dir):
            if entry.startswith('slot-'):
                remove_tree(os.path.join(self.dir, entry))
        clone_tree(port_tree, self.tree, private_paths, exclude=('rootfs/' + DEVICE_CONF_RELPATH,))

    def write_record(self, instances, location, stamp, seconds):
        """Describe what the generation made: every APP image, and the size of the image set."""
        images = [describe_image(self.tree, relpath) for relpath in app_images(self.tree, location)]
        encrypted = [name for name in partition_names(self.tree, location) if name.startswith('APP_ENC')]
        record = dict(fingerprint=self.fingerprint, generation='%s-%d' % (self.name, int(time.time() * 1000)),
                      instances=instances, location=location, stamp=stamp, generated=time.time(),
                      encrypted_rootfs=bool(encrypted),
                      seconds=round(seconds, 3), images=images,
                      image_set_bytes=sum(tree_bytes(os.path.join(self.tree, relpath)) for relpath in GENERATED_IMAGES),
                      app_bytes=sum(image['size'] for image in images))
        write_file_atomic(self.record_path, (json.dumps(record, indent=2, sort_keys=True) + '\n').encode('utf-8'),
                          mode=0o600)
        self.record = record
        return record

    def problem(self):
        """Why the group's images cannot take a device's members ('' when they can)."""
        images = self.record.get('images') or []
        if self.record.get('encrypted_rootfs'):
            # With ROOTFS_ENC, APP is the /boot partition and the rootfs is APP_ENC (docs/l4t-app-image.md).
            return ('its rootfs is encrypted (ROOTFS_ENC): the rootfs is the APP_ENC partition, which nothing can be'
                    ' added to without the disk key, and APP is /boot')
        if not images:
            return ('its images name no APP image in images/%s/flash.cfg (an encrypted rootfs, ROOTFS_ENC, has'
                    ' none)' % self.record.get('location'))
        for image in images:
            if image['format'] != 'tar':
                return 'its APP image %s is %s, not a tar that can take a member' % (image['relpath'], image['format'])
        return ''

    # -- a flash slot's images --------------------------------------------------------------------

    def slot_tree(self, slot):
        return os.path.join(self.dir, 'slot-%d' % int(slot), TREE)

    def prepare_slot(self, slot):
        """The slot's tree for the group's current generation (made once per generation)."""
        tree = self.slot_tree(slot)
        slot_dir = os.path.dirname(tree)
        record_path = os.path.join(slot_dir, SLOT_RECORD)
        if read_json(record_path).get('generation') == self.record['generation'] and os.path.isdir(tree):
            return tree, read_json(record_path).get('copy')
        remove_tree(slot_dir)
        os.makedirs(slot_dir, mode=0o700)
        _Cloner(()).tree(self.tree, tree, skip_top=('rootfs', WORKSPACE_MARKER))
        os.symlink(os.path.join(self.tree, 'rootfs'), os.path.join(tree, 'rootfs'))
        how = None
        for image in self.record['images']:
            path = os.path.join(tree, image['relpath'])
            os.unlink(path)
            how = copy_image(os.path.join(self.tree, image['relpath']), path)
        write_file_atomic(record_path, (json.dumps(dict(generation=self.record['generation'], copy=how)) + '\n')
                          .encode('utf-8'), mode=0o600)
        return tree, how

    def prefix_sha1(self, image):
        key = (os.path.join(self.tree, image['relpath']), self.record['generation'])
        with _PREFIX_LOCK:
            if key not in _PREFIX_DIGESTS:
                _PREFIX_DIGESTS[key] = prefix_digest(key[0], image['prefix_end'])
            return _PREFIX_DIGESTS[key]

    def write_identity(self, tree, rootfs):
        """Give the slot's APP images the device's identity (see the module's docstring)."""
        members = identity_members(rootfs)
        for image in self.record['images']:
            path = os.path.join(tree, image['relpath'])
            tail = identity_tail(members, image['prefix_end'])
            write_tail(path, image['prefix_end'], tail)
            digest = self.prefix_sha1(image).copy()
            digest.update(tail)
            write_file_atomic(path + '.sha1sum', sha1_text(digest.hexdigest()), mode=0o644)
            check_tail(read_tail(path, image['prefix_end']), members)

    def clear_identity(self, tree):
        """Make the slot's APP images the group's again: no device's password stays in them."""
        for image in self.record.get('images') or ():
            path = os.path.join(tree, image['relpath'])
            if not os.path.lexists(path):
                continue
            if os.lstat(path).st_size != image['size'] or read_tail(path, image['prefix_end']).strip(b'\0'):
                clear_tail(path, image['prefix_end'], image['size'])
            with open(os.path.join(self.tree, image['relpath'] + '.sha1sum'), 'rb') as group_sum:
                group_text = group_sum.read()
            try:
                with open(path + '.sha1sum', 'rb') as slot_sum:
                    if slot_sum.read() == group_text:
                        continue
            except (IOError, OSError):
                pass
            write_file_atomic(path + '.sha1sum', group_text, mode=0o644)


def tree_bytes(path):
    """The bytes the files under ``path`` (or the file ``path``) take, each inode once."""
    if os.path.isfile(path) and not os.path.islink(path):
        return os.lstat(path).st_size
    total, seen = 0, set()
    for root, _dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def generated_sizes(images_dir):
    """The real (image set, APP images) bytes of the largest group generated on the station, or
    None before any was."""
    sizes = []
    try:
        names = os.listdir(images_dir)
    except (IOError, OSError):
        return None
    for name in names:
        record = read_json(os.path.join(images_dir, name, GROUP_RECORD))
        if isinstance(record.get('image_set_bytes'), int) and isinstance(record.get('app_bytes'), int):
            sizes.append((record['image_set_bytes'], record['app_bytes']))
    return max(sizes) if sizes else None


def clear_slot(images_dir, slot):
    """Clear the device identity out of flash slot ``slot``'s copy of every group's APP images (a
    flash killed mid-way left it there); the caller holds the slot. Returns the slots cleared."""
    cleared = []
    try:
        names = sorted(os.listdir(images_dir))
    except FileNotFoundError:
        return cleared
    for name in names:
        slot_dir = os.path.join(images_dir, name, 'slot-%d' % int(slot))
        record = read_json(os.path.join(images_dir, name, GROUP_RECORD))
        if not os.path.isdir(slot_dir) or os.path.islink(slot_dir):
            continue
        if not record.get('images'):
            remove_tree(slot_dir)  # of a generation whose record is gone: its copies go whole
            cleared.append(slot_dir)
            continue
        group = ImageGroup(images_dir, record['fingerprint'])
        group.record = record
        try:
            group.clear_identity(os.path.join(slot_dir, TREE))
        except (AppImageError, IOError, OSError):
            # A copy that cannot be cleared goes whole: the slot makes a new one.
            remove_tree(slot_dir)
        cleared.append(slot_dir)
    return cleared


def remove_stale_groups(images_dir, keep, stamp):
    """Remove the groups generated from another staging than ``stamp`` that no run uses (their
    lock is free): a new staging, bundle or key makes new groups, and the old ones are gigabytes."""
    removed = []
    try:
        names = sorted(os.listdir(images_dir))
    except FileNotFoundError:
        return removed
    for name in names:
        path = os.path.join(images_dir, name)
        if name == keep or not os.path.isdir(path) or os.path.islink(path):
            continue
        if read_json(os.path.join(path, GROUP_RECORD)).get('stamp') == stamp:
            continue
        fd = os.open(path + '.lock', os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (IOError, OSError):
            os.close(fd)
            continue
        try:
            remove_tree(path)
            removed.append(name)
        finally:
            os.close(fd)
    return removed
