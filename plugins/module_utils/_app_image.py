# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""A device's own APP image: a copy of its group's rootfs tar with the device's files appended.

NVIDIA's r36.2 initrd flash writes ``tools/kernel_flash/images/<internal|external>/system.img``,
an uncompressed GNU tar of the rootfs, by formatting the partition and unpacking it with
``tar -xpf`` (docs/l4t-app-image.md).  A later member replaces an earlier one of the same name,
and reading stops at the first end-of-archive marker, so a device's image is the group's tar cut
back to the end of its last member, then the device's members (``./etc/azaion/`` and its
``device.conf``), then a new marker: the group's multi-GB prefix is shared (a reflink where the
file system can, one SHA-1 pass for the group) and only a few KiB differ per device.

No message quotes a byte of an image: a device.conf holds the device's password.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import hashlib
import os
import re
import stat
import tarfile

from ansible_collections.azaion.jetson.plugins.module_utils._files import fsync_directory

RECORD_SIZE = 10240
BLOCK = 512

CHUNK = 1024 * 1024
FICLONE = 0x40049409

SPARSE_MAGIC = b'\x3a\xff\x26\xed'  # 0xed26ff3a, little-endian
ZSTD_MAGIC = b'\x28\xb5\x2f\xfd'
GZIP_MAGIC = b'\x1f\x8b'

# Where an ioctl(FICLONE) that cannot clone says so: the file system has no reflinks (ext4,
# tmpfs), the two files are on different file systems, or the kernel is too old.
REFLINK_UNSUPPORTED = frozenset(getattr(errno, name) for name in (
    'EOPNOTSUPP', 'ENOTTY', 'EXDEV', 'EINVAL', 'EPERM', 'ENOSYS') if hasattr(errno, name))

_CHKSUM = slice(148, 156)
_SIZE = slice(124, 136)
_TYPEFLAG = 156
# GNU tar: a hard link's size is 0 on tape whatever its header says, and a directory's data is
# never skipped; every other type (regular, symbolic link, device, GNU and pax extension
# headers, unknown) is followed by its size in data, rounded up to the block.
_NO_DATA_TYPES = (b'1', b'5')
_PAX_TYPES = (b'x', b'X')
_PAX_GLOBAL = b'g'
_OLD_GNU_SPARSE = b'S'
_PAX_HEADER_LIMIT = 64 * CHUNK
_PAX_RECORD = re.compile(br'([0-9]+) ')
_MODE_BITS = 0o7777


class AppImageError(Exception):
    """An APP image that cannot be walked, extended or copied: which file, what is wrong, and what
    it means; never a byte of the file."""


def image_format(path):
    """What the APP image at ``path`` is, from its first bytes: ``'tar'``, ``'sparse'`` (an
    Android sparse image), ``'zstd'``, ``'gzip'`` or ``'raw'`` (anything else, an empty file too).

    Only a tar is unpacked on the device and can take a device's members appended; every other
    image is written to the partition as it is (docs/l4t-app-image.md).  The tar test is the one
    built into the ``file`` tool, which comes before its magic numbers: the first 512-byte
    header's checksum is right, whatever its magic (ustar, GNU, or an old V7 header).  ``file``'s
    magic rules (file 5.44) also call a header a tar from the look of its fields, even with a
    wrong checksum; GNU tar does not unpack such an image cleanly, and it is not called a tar here.
    """
    with open(_open_regular(path), 'rb') as handle:
        head = handle.read(BLOCK)
    if _file_says_tar(head):
        return 'tar'
    if head.startswith(SPARSE_MAGIC):
        return 'sparse'
    if head.startswith(ZSTD_MAGIC):
        return 'zstd'
    if head.startswith(GZIP_MAGIC):
        return 'gzip'
    return 'raw'


def tar_prefix_end(path):
    """The offset of the end-of-archive marker of the tar at ``path``: the end of its last
    member's padded data, where a device's members go.

    The initrd's ``tar -xpf`` stops at the first end-of-archive marker (docs/l4t-app-image.md),
    so members written there are unpacked after all of the group's, and replace any of the same
    name.  The walk reads only the 512-byte headers (and the small pax extension headers, whose
    ``size`` record overrides a member's size) and seeks over member data, so a multi-GB image
    costs a few reads per member.  Whatever is not a tar with a clean end is refused: a header
    with a wrong checksum, a member cut short, no marker, or anything but zeros after it (the
    zeros are what :func:`clear_tail` puts back, so they must be all there was).
    """
    with open(_open_regular(path), 'rb', buffering=64 * 1024) as handle:
        size = os.fstat(handle.fileno()).st_size
        if not _file_says_tar(handle.read(BLOCK)):
            raise AppImageError('%s is not a tar archive (its first 512-byte header has no valid tar checksum): a device\'s '
                                'files can only be appended to a tar APP image' % path)
        offset = 0
        global_size = None
        next_size = None
        while True:
            handle.seek(offset)
            header = handle.read(BLOCK)
            if len(header) < BLOCK:
                if header:
                    raise AppImageError('%s ends in the middle of a tar header at byte %d: the image is truncated'
                                        % (path, offset))
                raise AppImageError('%s ends after its last member without the end-of-archive marker (two 512-byte zero '
                                    'blocks): the image is truncated or not a whole tar' % (path,))
            if header == bytes(BLOCK):
                _check_clean_end(handle, path, offset, size)
                return offset
            if not _header_checksum_ok(header, unsigned_only=False):
                raise AppImageError('%s has a tar header with a wrong checksum at byte %d: the image is damaged or not a '
                                    'tar' % (path, offset))
            typeflag = header[_TYPEFLAG:_TYPEFLAG + 1]
            member_size = _header_size(header, path, offset)
            data_start = offset + BLOCK
            if typeflag == _OLD_GNU_SPARSE and header[482] != 0:
                data_start = _skip_sparse_extensions(handle, path, data_start)
            if typeflag in _PAX_TYPES or typeflag == _PAX_GLOBAL:
                pax_size = _pax_size(handle, path, data_start, member_size, size)
                if typeflag == _PAX_GLOBAL:
                    global_size = pax_size if pax_size is not None else global_size
                elif pax_size is not None:
                    next_size = pax_size
            elif typeflag in _NO_DATA_TYPES:
                member_size = 0
                next_size = None
            else:
                if typeflag not in (b'L', b'K'):
                    if next_size is not None:
                        member_size = next_size
                    elif global_size is not None:
                        member_size = global_size
                    next_size = None
            end = data_start + _padded(member_size)
            if end > size:
                raise AppImageError('%s has a tar member at byte %d whose data runs past the end of the file: the image '
                                    'is truncated' % (path, offset))
            offset = end


def identity_tail(members, prefix_end):
    """The bytes that follow the group image's last member in a device's image: the tar headers
    and padded data of ``members``, a new end-of-archive marker, and zeros up to GNU tar's
    10240-byte record, counted from the start of the image (docs/l4t-app-image.md).

    ``members`` is a list of dicts: ``name`` (``'./etc/azaion/'``, ``'./etc/azaion/device.conf'``),
    ``kind`` (``'dir'`` or ``'file'``), ``data`` (bytes, files only), ``mode``, ``uid``, ``gid``
    and ``mtime``.  The headers are GNU tar's (a name over 100 characters gets its ``././@LongLink``
    member) with numeric owners only: the initrd unpacks with ``-p``, so the mode and owners are
    the ones the device gets.
    """
    if prefix_end < 0 or prefix_end % BLOCK:
        raise ValueError('prefix_end must be a non-negative multiple of %d, not %r' % (BLOCK, prefix_end))
    parts = []
    for member in members:
        info = tarfile.TarInfo(member['name'])
        kind = member['kind']
        if kind == 'dir':
            info.type = tarfile.DIRTYPE
            data = b''
        elif kind == 'file':
            info.type = tarfile.REGTYPE
            data = bytes(member['data'])
        else:
            raise ValueError('a member\'s kind must be dir or file, not %r' % (kind,))
        info.size = len(data)
        info.mode = int(member['mode']) & _MODE_BITS
        info.uid = int(member['uid'])
        info.gid = int(member['gid'])
        info.mtime = int(member['mtime'])
        info.uname = ''
        info.gname = ''
        parts.append(info.tobuf(format=tarfile.GNU_FORMAT, encoding='utf-8', errors='surrogateescape'))
        if data:
            parts.append(data)
            parts.append(bytes(_padded(len(data)) - len(data)))
    parts.append(bytes(2 * BLOCK))
    tail = b''.join(parts)
    return tail + bytes(-(prefix_end + len(tail)) % RECORD_SIZE)


def prefix_digest(path, prefix_end):
    """A ``hashlib.sha1()`` fed with the first ``prefix_end`` bytes of ``path``: the group
    image's share of every device's ``system.img.sha1sum`` (the SHA-1 of the whole image,
    docs/l4t-app-image.md), read once; each device's is a ``.copy()`` updated with its tail."""
    digest = hashlib.sha1()
    left = prefix_end
    with open(_open_regular(path), 'rb', buffering=0) as handle:
        while left:
            chunk = handle.read(min(CHUNK, left))
            if not chunk:
                raise AppImageError('%s is shorter than the %d bytes of its members: the image changed or was truncated '
                                    'after it was read' % (path, prefix_end))
            digest.update(chunk)
            left -= len(chunk)
    return digest


def write_tail(path, prefix_end, tail):
    """Make ``path``, a device's copy of its group image, end with ``tail`` after its first
    ``prefix_end`` bytes.

    The file is truncated first, so no byte of another device's tail (its password) survives
    past the new end.  The file must already exist and be the only name of its inode: a symbolic
    link is not followed, and a hard link is refused, since writing through it would change an
    image others share (the group's, or another device's).
    """
    fd = _open_own_copy(path, prefix_end)
    try:
        os.ftruncate(fd, prefix_end)
        view = memoryview(tail)
        offset = prefix_end
        while view:
            written = os.pwrite(fd, view, offset)
            view = view[written:]
            offset += written
        os.ftruncate(fd, prefix_end + len(tail))
        os.fsync(fd)
    except OSError as exc:
        raise AppImageError('could not write the device\'s members into %s: %s' % (path, exc.strerror or exc))
    finally:
        os.close(fd)


def read_tail(path, prefix_end):
    """The bytes of ``path`` after its first ``prefix_end``: what a device's copy holds beyond
    the group's members, to tell whether it already has this device's tail.  A symbolic link
    is not followed."""
    fd = _open_regular(path, os.O_NOFOLLOW)
    try:
        if os.fstat(fd).st_size < prefix_end:
            raise AppImageError('%s is shorter than its group image\'s %d bytes of members: it is not a copy of that '
                                'image' % (path, prefix_end))
        parts = []
        offset = prefix_end
        while True:
            chunk = os.pread(fd, CHUNK, offset)
            if not chunk:
                break
            parts.append(chunk)
            offset += len(chunk)
        return b''.join(parts)
    finally:
        os.close(fd)


def clear_tail(path, prefix_end, size):
    """Put back zeros after the first ``prefix_end`` bytes of ``path``, up to ``size`` (the
    group image's size): the copy becomes byte for byte the group image again, whose end marker
    and padding :func:`tar_prefix_end` made sure are zeros, and holds no device's password.
    Guarded as :func:`write_tail` is (no symbolic link followed, no hard link written)."""
    if size < prefix_end:
        raise ValueError('size (%r) must not be below prefix_end (%r)' % (size, prefix_end))
    fd = _open_own_copy(path, prefix_end)
    try:
        os.ftruncate(fd, prefix_end)
        os.ftruncate(fd, size)
        os.fsync(fd)
    except OSError as exc:
        raise AppImageError('could not clear the device\'s members out of %s: %s' % (path, exc.strerror or exc))
    finally:
        os.close(fd)


def copy_image(src, dst):
    """Make ``dst``, which must not exist, a copy of the image ``src``; return ``'reflink'`` or
    ``'copy'``.

    A reflink shares the group's multi-GB blocks (btrfs, XFS) so a device's copy costs only the
    blocks its tail changes; where the file system cannot clone, the bytes are copied.  ``dst``
    is created with mode 0600 (it will hold a password) and never through a symbolic link; a
    failed copy leaves no partial ``dst``.
    """
    src_fd = _open_regular(src)
    try:
        info = os.fstat(src_fd)
        try:
            dst_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0),
                             0o600)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                raise AppImageError('%s already exists: a device\'s copy of its group image is made only where there is '
                                    'none' % dst)
            raise AppImageError('could not create %s: %s' % (dst, exc.strerror or exc))
        try:
            os.fchmod(dst_fd, 0o600)
            how = _clone_or_copy(src_fd, dst_fd, info.st_size)
            if how is None or os.fstat(dst_fd).st_size != info.st_size:
                raise AppImageError('%s changed size while it was copied to %s: nothing may write the group image '
                                    'while devices\' copies are made' % (src, dst))
            os.fsync(dst_fd)
        except BaseException as exc:
            os.close(dst_fd)
            _remove_quietly(dst)
            if isinstance(exc, OSError):
                raise AppImageError('could not copy %s to %s: %s' % (src, dst, exc.strerror or exc))
            raise
        os.close(dst_fd)
    finally:
        os.close(src_fd)
    fsync_directory(os.path.dirname(dst) or '.')
    return how


def sha1_text(hexdigest):
    """The content of a ``system.img.sha1sum``: the image's SHA-1 in lowercase hex and a newline,
    as NVIDIA's ``sha1sum system.img | cut -f 1 -d ' '`` writes it (docs/l4t-app-image.md)."""
    if not re.match(r'\A[0-9a-f]{40}\Z', hexdigest):
        raise ValueError('a SHA-1 hex digest is 40 lowercase hex digits')
    return (hexdigest + '\n').encode('ascii')


def _file_says_tar(head):
    """Whether ``file`` calls ``head`` (the first bytes of a file) a tar archive: a whole first
    header whose checksum field, read as ``file`` reads it, is the unsigned sum of the header
    with that field counted as spaces."""
    if len(head) < BLOCK:
        return False
    return _header_checksum_ok(head[:BLOCK], unsigned_only=True)


def _header_checksum_ok(header, unsigned_only):
    """A header's checksum check: ``file`` takes the unsigned sum only, GNU tar either sum."""
    recorded = _checksum_field(header[_CHKSUM])
    if recorded is None:
        return False
    blanked = header[:_CHKSUM.start] + b' ' * 8 + header[_CHKSUM.stop:]
    if sum(blanked) == recorded:
        return True
    if unsigned_only:
        return False
    return sum(byte - 256 if byte > 127 else byte for byte in blanked) == recorded


def _checksum_field(field):
    """The checksum field's value as ``file``'s from_oct reads it: leading spaces, octal digits,
    then a NUL or a space or the end of the field; None for anything else (a blank field too)."""
    text = field.lstrip(b' \t\n\v\f\r')
    if not text:
        return None
    match = re.match(br'[0-7]*', text)
    digits = match.group(0)
    rest = text[len(digits):]
    if rest and rest[:1] not in (b'\0', b' ', b'\t', b'\n', b'\v', b'\f', b'\r'):
        return None
    return int(digits, 8) if digits else 0


def _header_size(header, path, offset):
    """A header's size field: octal digits, or GNU's base-256 (first byte 0x80) for sizes of
    8 GiB and more; a negative or unreadable size is refused."""
    field = header[_SIZE]
    if field[0] & 0x80:
        if field[0] == 0xff:
            raise AppImageError('%s has a tar header with a negative size at byte %d: the image is damaged'
                                % (path, offset))
        return int.from_bytes(bytes([field[0] & 0x7f]) + field[1:], 'big')
    text = field.split(b'\0', 1)[0].strip(b' ')
    if not text:
        return 0
    if not re.match(br'\A[0-7]+\Z', text):
        raise AppImageError('%s has a tar header with an unreadable size at byte %d: the image is damaged'
                            % (path, offset))
    return int(text, 8)


def _skip_sparse_extensions(handle, path, position):
    """Skip the extension blocks that follow an old GNU sparse header (its isextended byte set):
    each holds more of the sparse map and says, in its byte 504, whether another follows."""
    while True:
        handle.seek(position)
        block = handle.read(BLOCK)
        if len(block) < BLOCK:
            raise AppImageError('%s ends in the middle of a sparse member\'s map at byte %d: the image is truncated'
                                % (path, position))
        position += BLOCK
        if block[504] == 0:
            return position


def _pax_size(handle, path, position, length, size):
    """The ``size`` record of a pax extension header's data (it overrides the next member's size
    field, or, from a global header, that of every member after it), or None."""
    if position + _padded(length) > size:
        raise AppImageError('%s has a tar member at byte %d whose data runs past the end of the file: the image is '
                            'truncated' % (path, position - BLOCK))
    if length > _PAX_HEADER_LIMIT:
        raise AppImageError('%s has a pax extension header of %d bytes at byte %d: far beyond what a rootfs tar holds, '
                            'the image is damaged' % (path, length, position - BLOCK))
    handle.seek(position)
    records = handle.read(length)
    found = None
    start = 0
    # Records are '<length> <keyword>=<value>\n', <length> counting the whole record.
    while start < len(records) and records[start:start + 1] != b'\0':
        match = _PAX_RECORD.match(records, start)
        record_end = start + int(match.group(1)) if match else 0
        record = records[match.end():record_end] if match else b''
        if not match or record_end > len(records) or not record.endswith(b'\n') or b'=' not in record:
            raise AppImageError('%s has a pax extension header at byte %d whose records cannot be read: the image is '
                                'damaged' % (path, position - BLOCK))
        keyword, value = record[:-1].split(b'=', 1)
        if keyword == b'size':
            if not re.match(br'\A[0-9]+\Z', value):
                raise AppImageError('%s has a pax extension header at byte %d with an unreadable size: the image is '
                                    'damaged' % (path, position - BLOCK))
            found = int(value)
        start = record_end
    return found


def _check_clean_end(handle, path, offset, size):
    """From the first zero block to the end of the file: the two zero blocks of the marker,
    then only zeros (GNU tar's padding to its record)."""
    if size - offset < 2 * BLOCK:
        raise AppImageError('%s ends with a single zero block after its last member, not the two of an end-of-archive '
                            'marker: the image is truncated' % (path,))
    handle.seek(offset)
    while True:
        chunk = handle.read(CHUNK)
        if not chunk:
            return
        if chunk.count(0) != len(chunk):
            raise AppImageError('%s is a tar without a clean end: there is data after its end-of-archive marker at byte '
                                '%d, which the flash would not unpack' % (path, offset))


def _padded(length):
    return -(-length // BLOCK) * BLOCK


def _open_regular(path, flags=0):
    """A read-only descriptor of the regular file ``path`` (O_NONBLOCK: a FIFO or a device put
    where an image should be is refused, not waited on); ``flags`` adds O_NOFOLLOW."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | flags | getattr(os, 'O_CLOEXEC', 0))
    except OSError as exc:
        raise AppImageError(_open_error(path, exc))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise AppImageError('%s is not a regular file: an APP image is one' % path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_own_copy(path, prefix_end):
    """Open a device's copy for writing: it exists, it is a regular file reached by no symbolic
    link and it is its inode's only name, and it holds at least the group's members."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0))
    except OSError as exc:
        raise AppImageError(_open_error(path, exc))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise AppImageError('%s is not a regular file: an APP image is one' % path)
        if info.st_nlink != 1:
            raise AppImageError('%s has %d names (hard links): writing a device\'s members into it would change an image '
                                'that other names share' % (path, info.st_nlink))
        if info.st_size < prefix_end:
            raise AppImageError('%s is shorter than its group image\'s %d bytes of members: it is not a copy of that '
                                'image' % (path, prefix_end))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_error(path, exc):
    if exc.errno == errno.ELOOP:
        return '%s is a symbolic link: a device\'s APP image is opened only as the file itself' % path
    if exc.errno == errno.ENOENT:
        return '%s does not exist' % path
    return 'could not open %s: %s' % (path, exc.strerror or exc)


def _clone_or_copy(src_fd, dst_fd, length):
    """Clone ``src_fd`` into ``dst_fd`` (FICLONE), or copy its ``length`` bytes where the file
    system cannot clone; None when the source ends before ``length``."""
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
        return 'reflink'
    except OSError as exc:
        if exc.errno not in REFLINK_UNSUPPORTED:
            raise
    done = 0
    copy_file_range = getattr(os, 'copy_file_range', None)
    while copy_file_range is not None and done < length:
        try:
            copied = copy_file_range(src_fd, dst_fd, min(CHUNK * 64, length - done), done, done)
        except OSError as exc:
            if exc.errno not in REFLINK_UNSUPPORTED:
                raise
            break
        if not copied:
            return None
        done += copied
    while done < length:
        chunk = os.pread(src_fd, min(CHUNK, length - done), done)
        if not chunk:
            return None
        view = memoryview(chunk)
        while view:
            written = os.pwrite(dst_fd, view, done)
            view = view[written:]
            done += written
    return 'copy'


def _remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass
