# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A device's APP image (module_utils/_app_image.py, docs/l4t-app-image.md): the group's tar cut
back to its last member, the device's members and a new end marker, checked against the real GNU
tar, ``file`` and ``sha1sum`` on temporary images as NVIDIA's r36.2 makes them."""

import errno
import gzip
import hashlib
import os
import re
import subprocess
import tarfile

import pytest

from ansible_collections.azaion.jetson.plugins.module_utils import _app_image
from ansible_collections.azaion.jetson.plugins.module_utils._app_image import (
    BLOCK,
    FICLONE,
    RECORD_SIZE,
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

TAR = '/usr/bin/tar'
OLD_CONF = b'[device]\nserial = group-image-placeholder\npassword = group-old-secret-0000\n'
FIRST_PASSWORD = b'first-device-pw-Zq9xKk2LmN4pQr8s'
SECOND_PASSWORD = b'second-pw-77'
MTIME = 1700000000


def run(*args):
    return subprocess.run(list(args), capture_output=True, check=True)


def read(path):
    with open(str(path), 'rb') as handle:
        return handle.read()


def gnu_marker_offset(image):
    """Where GNU tar itself finds the end-of-archive marker (``tar -tR``: the block numbers)."""
    listing = run(TAR, '-tR', '-f', str(image)).stdout.decode()
    match = re.search(r'^block (\d+): \*\* Block of NULs \*\*$', listing, re.M)
    assert match, listing
    return int(match.group(1)) * BLOCK


def make_rootfs(root):
    """A small rootfs with what a real one has: directories, files, a symbolic link, a hard
    link, and a device.conf of its own that a device's must replace."""
    (root / 'etc' / 'azaion').mkdir(parents=True)
    (root / 'usr' / 'bin').mkdir(parents=True)
    (root / 'etc' / 'hostname').write_bytes(b'jetson\n')
    (root / 'etc' / 'azaion' / 'device.conf').write_bytes(OLD_CONF)
    (root / 'usr' / 'bin' / 'tool').write_bytes(os.urandom(5000))
    os.chmod(str(root / 'usr' / 'bin' / 'tool'), 0o755)
    os.link(str(root / 'usr' / 'bin' / 'tool'), str(root / 'usr' / 'bin' / 'tool-alias'))
    os.symlink('tool', str(root / 'usr' / 'bin' / 'tool-link'))
    (root / 'empty').write_bytes(b'')
    return root


def make_tar(root, image, *options):
    """The APP image as NVIDIA makes it: ``tar -cpf system.img --numeric-owner -C <rootfs> .``"""
    run(TAR, '-cpf', str(image), '--numeric-owner', *options, '-C', str(root), '.')
    return image


@pytest.fixture
def group(tmp_path):
    return make_tar(make_rootfs(tmp_path / 'rootfs'), tmp_path / 'system.img')


def identity(password, extra=b''):
    conf = b'[device]\nserial = azaion-jetson-0042\npassword = ' + password + b'\n' + extra
    return [
        {'name': './etc/azaion/', 'kind': 'dir', 'mode': 0o750, 'uid': 0, 'gid': 1000, 'mtime': MTIME},
        {'name': './etc/azaion/device.conf', 'kind': 'file', 'data': conf, 'mode': 0o600, 'uid': 1000,
         'gid': 1000, 'mtime': MTIME + 0.5},
    ]


def device_image(group_image, path, password, extra=b''):
    prefix = tar_prefix_end(str(group_image))
    assert copy_image(str(group_image), str(path)) in ('reflink', 'copy')
    tail = identity_tail(identity(password, extra), prefix)
    write_tail(str(path), prefix, tail)
    return prefix, tail


def extract(image, out):
    out.mkdir()
    run(TAR, '-xpf', str(image), '--numeric-owner', '-C', str(out))
    return out


# The walk to the end-of-archive marker


def test_prefix_end_is_where_gnu_tar_finds_the_marker(group):
    prefix = tar_prefix_end(str(group))
    assert prefix == gnu_marker_offset(group)
    data = read(group)
    assert prefix % BLOCK == 0 and len(data) % RECORD_SIZE == 0
    assert len(data) - prefix >= 2 * BLOCK and data[prefix:] == bytes(len(data) - prefix)
    assert any(data[prefix - BLOCK:prefix])  # the last member's data ends right there


def test_a_long_name_and_a_long_link_target_are_walked(tmp_path):
    root = make_rootfs(tmp_path / 'rootfs')
    deep = root / ('d' * 60) / ('e' * 60)
    deep.mkdir(parents=True)
    (deep / ('f' * 90)).write_bytes(b'long-named content\n')
    os.symlink('/' + 'g' * 40 + '/' + 'h' * 80, str(root / 'long-link'))
    image = make_tar(root, tmp_path / 'system.img')
    data = read(image)
    assert b'././@LongLink' in data
    flags = {data[offset + 156:offset + 157] for offset in range(0, len(data), BLOCK)
             if data[offset + 257:offset + 265] == b'ustar  \0'}
    assert {b'L', b'K'} <= flags
    assert tar_prefix_end(str(image)) == gnu_marker_offset(image)


def test_pax_headers_local_and_global_are_walked(tmp_path):
    root = make_rootfs(tmp_path / 'rootfs')
    (root / ('p' * 120)).write_bytes(b'pax long name\n')
    image = make_tar(root, tmp_path / 'system.img', '--format=pax', '--pax-option=comment=group')
    data = read(image)
    flags = [data[offset + 156:offset + 157] for offset in range(0, len(data), BLOCK)
             if data[offset + 257:offset + 263] == b'ustar\0']
    assert flags[0] == b'g' and b'x' in flags
    assert image_format(str(image)) == 'tar'
    assert tar_prefix_end(str(image)) == gnu_marker_offset(image)


def test_a_pax_size_record_overrides_the_size_field(tmp_path):
    """A member over 8 GiB in a pax tar has its size in the pax header only: GNU tar skips that
    many bytes, and so must the walk."""
    image = tmp_path / 'system.img'
    content = os.urandom(1500)
    info = tarfile.TarInfo('./big')
    info.size = 0
    info.mtime = MTIME
    info.pax_headers = {'size': str(len(content))}
    header = info.tobuf(format=tarfile.PAX_FORMAT)
    after = tarfile.TarInfo('./after')
    after.mtime = MTIME
    body = header + content + bytes(-len(content) % BLOCK) + after.tobuf(format=tarfile.PAX_FORMAT)
    image.write_bytes(body + bytes(2 * BLOCK) + bytes(-(len(body) + 2 * BLOCK) % RECORD_SIZE))
    assert b' size=1500\n' in header
    assert tar_prefix_end(str(image)) == gnu_marker_offset(image) == len(body)
    listing = run(TAR, '-tvf', str(image)).stdout.decode()
    assert './after' in listing and ' 1500 ' in listing


def test_old_gnu_sparse_members_with_extension_blocks_are_walked(tmp_path):
    root = tmp_path / 'rootfs'
    root.mkdir()
    with open(str(root / 'holes'), 'wb') as handle:
        for index in range(12):  # more pieces than the header's 4: extension blocks follow it
            handle.seek(index * 256 * 1024)
            handle.write(b'piece %d\n' % index)
        handle.truncate(12 * 256 * 1024)
    (root / 'after').write_bytes(b'after the sparse member\n')
    image = make_tar(root, tmp_path / 'system.img', '--sparse', '--format=gnu')
    data = read(image)
    sparse = [offset for offset in range(0, len(data), BLOCK)
              if data[offset + 257:offset + 265] == b'ustar  \0' and data[offset + 156:offset + 157] == b'S']
    assert sparse and data[sparse[0] + 482] != 0
    assert tar_prefix_end(str(image)) == gnu_marker_offset(image)


def test_a_member_over_8_gib_is_walked_by_seeking_over_its_data(tmp_path, monkeypatch):
    """GNU tar's base-256 size field; the 8 GiB of data (a hole here) are skipped, not read."""
    image = tmp_path / 'system.img'
    info = tarfile.TarInfo('./huge')
    info.size = 8 * 1024 ** 3 + 3
    info.mtime = MTIME
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    assert header[124] == 0x80
    end = BLOCK + info.size + (-info.size % BLOCK)
    with open(str(image), 'wb') as handle:
        handle.write(header)
        handle.seek(end - 1)
        handle.write(b'x')  # the last byte of the member's data
        handle.truncate(end + 2 * BLOCK + (-(end + 2 * BLOCK) % RECORD_SIZE))
    served = []
    real_open = open

    class Counting(object):
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            self.handle.close()

        def read(self, *args):
            chunk = self.handle.read(*args)
            served.append(len(chunk))
            return chunk

        def __getattr__(self, name):
            return getattr(self.handle, name)

    monkeypatch.setattr(_app_image, 'open', lambda *args, **kwargs: Counting(real_open(*args, **kwargs)), raising=False)
    assert tar_prefix_end(str(image)) == end
    assert sum(served) < 64 * 1024
    monkeypatch.undo()
    assert gnu_marker_offset(image) == end


def test_which_members_carry_data_is_as_gnu_tar_reads_them(tmp_path):
    """GNU tar takes a hard link's size as 0 and does not skip a directory's, but skips a
    symbolic link's (Python's tarfile would not): the walk must cut where GNU tar reads."""
    body = b''
    for name, kind, size in (('./d/', tarfile.DIRTYPE, 700), ('./l', tarfile.LNKTYPE, 700),
                             ('./s', tarfile.SYMTYPE, 700), ('./after', tarfile.REGTYPE, 0)):
        info = tarfile.TarInfo(name)
        info.type, info.size, info.mtime = kind, size, MTIME
        info.linkname = 'target' if kind in (tarfile.LNKTYPE, tarfile.SYMTYPE) else ''
        body += info.tobuf(format=tarfile.GNU_FORMAT)
        if kind == tarfile.SYMTYPE:
            body += b'A' * size + bytes(-size % BLOCK)
    image = tmp_path / 'system.img'
    image.write_bytes(body + bytes(RECORD_SIZE - len(body)))
    assert tar_prefix_end(str(image)) == gnu_marker_offset(image) == len(body)
    assert './after' in run(TAR, '-tf', str(image)).stdout.decode()


# A tar without a clean end, or no tar


def damaged(group, tmp_path, change):
    data = bytearray(read(group))
    result = change(data, tar_prefix_end(str(group)))
    path = tmp_path / 'damaged.img'
    path.write_bytes(bytes(data if result is None else result))
    return path


def refusal(path):
    with pytest.raises(AppImageError) as caught:
        tar_prefix_end(str(path))
    message = str(caught.value)
    assert str(path) in message
    for secret in (b'group-old-secret', b'GARBAGE-SECRET'):
        assert secret.decode() not in message
    return message


def test_a_truncated_tar_is_refused(group, tmp_path):
    with tarfile.open(str(group)) as archive:
        tool = [member for member in archive.getmembers() if member.isreg() and member.size == 5000]
    start = tool[0].offset
    cut = damaged(group, tmp_path, lambda d, p: d[:start + BLOCK + 2000])
    assert 'runs past the end of the file' in refusal(cut)
    assert subprocess.run([TAR, '-tf', str(cut)], capture_output=True, check=False).returncode != 0
    half_header = damaged(group, tmp_path, lambda d, p: d[:start + 100])
    assert 'truncated' in refusal(half_header)


def test_garbage_after_the_marker_is_refused(group, tmp_path):
    def garbage(data, prefix):
        data[len(data) - 100:len(data) - 86] = b'GARBAGE-SECRET'

    assert 'clean end' in refusal(damaged(group, tmp_path, garbage))
    assert 'clean end' in refusal(damaged(group, tmp_path, lambda d, p: d + b'GARBAGE-SECRET'))


def test_a_missing_or_half_marker_is_refused(group, tmp_path):
    assert 'end-of-archive marker' in refusal(damaged(group, tmp_path, lambda d, p: d[:p]))
    assert 'single zero block' in refusal(damaged(group, tmp_path, lambda d, p: d[:p + BLOCK]))


def test_a_header_with_a_wrong_checksum_is_refused(group, tmp_path):
    def flip(data, prefix):
        at = bytes(data).index(b'./etc/hostname\0')
        data[at + 2] ^= 0x20

    path = damaged(group, tmp_path, flip)
    assert 'checksum' in refusal(path)
    assert subprocess.run([TAR, '-tf', str(path)], capture_output=True, check=False).returncode != 0


# mtime=0: the same gzip bytes in every pytest-xdist worker, which collect the tests apart.
@pytest.mark.parametrize('content', [b'', b'GARBAGE-SECRET' * 100, gzip.compress(b'x' * 4096, mtime=0)],
                         ids=['empty', 'garbage', 'gzip'])
def test_what_is_not_a_tar_is_refused(tmp_path, content):
    path = tmp_path / 'system.img'
    path.write_bytes(content)
    assert 'not a tar' in refusal(path)


# The image's format, as the flash and ``file`` tell it


def file_says_tar(path):
    return 'tar archive' in run('file', '-b', str(path)).stdout.decode()


def test_image_format_agrees_with_file(group, tmp_path):
    root = make_rootfs(tmp_path / 'v7root')
    v7 = make_tar(root, tmp_path / 'v7.img', '--format=v7')
    zstd = tmp_path / 'system.img.zst'
    run('zstd', '-q', '-o', str(zstd), str(group))
    gz = tmp_path / 'system.img.gz'
    gz.write_bytes(gzip.compress(read(group)))
    sparse = tmp_path / 'sparse.img'
    sparse.write_bytes(b'\x3a\xff\x26\xed' + bytes(4092))
    raw = tmp_path / 'raw.img'
    raw.write_bytes(b'\xeb\x3c\x90' + os.urandom(8189))
    empty = tmp_path / 'empty.img'
    empty.write_bytes(b'')
    short = tmp_path / 'short.img'
    short.write_bytes(read(group)[:300])
    expected = [(group, 'tar'), (v7, 'tar'), (zstd, 'zstd'), (gz, 'gzip'), (sparse, 'sparse'), (raw, 'raw'),
                (empty, 'raw'), (short, 'raw')]
    for path, kind in expected:
        assert image_format(str(path)) == kind, path
        assert file_says_tar(path) == (kind == 'tar'), path
    assert read(v7)[257:262] != b'ustar'
    assert tar_prefix_end(str(v7)) == gnu_marker_offset(v7)


def test_a_first_header_with_a_wrong_checksum_is_no_tar(group, tmp_path):
    """GNU tar does not unpack it as the group's image; file(1)'s magic rules may still name it
    a tar from the look of its fields (file 5.44 does), so only the checksum decides here."""
    bad_sum = damaged(group, tmp_path, lambda d, p: d.__setitem__(0, ord('x')))
    assert image_format(str(bad_sum)) == 'raw'
    assert 'not a tar' in refusal(bad_sum)


def test_a_later_header_with_a_signed_checksum_is_taken_as_gnu_tar_takes_it(tmp_path):
    """Some old tars summed the header as signed chars: GNU tar accepts either sum."""
    first = tarfile.TarInfo('./first')
    first.mtime = MTIME
    second = tarfile.TarInfo('./caf\xe9-\xff')
    second.mtime = MTIME
    second.size = 3
    header = bytearray(second.tobuf(format=tarfile.GNU_FORMAT, encoding='latin-1'))
    header[148:156] = b' ' * 8
    signed_sum = sum(byte - 256 if byte > 127 else byte for byte in header)
    assert signed_sum != sum(header)
    header[148:156] = b'%06o\0 ' % signed_sum
    body = first.tobuf(format=tarfile.GNU_FORMAT) + bytes(header) + b'abc' + bytes(BLOCK - 3)
    image = tmp_path / 'system.img'
    image.write_bytes(body + bytes(RECORD_SIZE - len(body)))
    assert tar_prefix_end(str(image)) == gnu_marker_offset(image) == len(body)
    header[0] ^= 1
    image.write_bytes(body[:BLOCK] + bytes(header) + body[2 * BLOCK:] + bytes(RECORD_SIZE - len(body)))
    assert 'checksum' in refusal(image)


# A device's members appended


def test_appended_members_replace_the_groups_device_conf(group, tmp_path):
    device = tmp_path / 'device.img'
    prefix, tail = device_image(group, device, FIRST_PASSWORD)
    data = read(device)
    assert data[:prefix] == read(group)[:prefix]
    assert len(data) % RECORD_SIZE == 0 and data[prefix:] == tail
    out = extract(device, tmp_path / 'out')
    conf = out / 'etc' / 'azaion' / 'device.conf'
    assert conf.read_bytes() == identity(FIRST_PASSWORD)[1]['data']
    info = os.lstat(str(conf))
    assert (info.st_mode & 0o7777, info.st_uid, info.st_gid, info.st_mtime) == (0o600, 1000, 1000, MTIME)
    directory = os.lstat(str(out / 'etc' / 'azaion'))
    assert (directory.st_mode & 0o7777, directory.st_uid, directory.st_gid) == (0o750, 0, 1000)
    assert (out / 'etc' / 'hostname').read_bytes() == b'jetson\n'
    assert os.readlink(str(out / 'usr' / 'bin' / 'tool-link')) == 'tool'
    assert os.lstat(str(out / 'usr' / 'bin' / 'tool-alias')).st_ino == os.lstat(str(out / 'usr' / 'bin' / 'tool')).st_ino
    listing = run(TAR, '-tvf', str(device), '--numeric-owner').stdout.decode().splitlines()
    confs = [line for line in listing if line.endswith(' ./etc/azaion/device.conf')]
    assert len(confs) == 2 and confs[1].startswith('-rw------- 1000/1000 ')
    assert listing[-1] == confs[1]
    assert file_says_tar(device) and image_format(str(device)) == 'tar'
    # The device's image is a tar with a clean end too: its members end where the marker starts.
    assert tar_prefix_end(str(device)) == gnu_marker_offset(device) == len(data) - len(tail) + tail.rindex(b'\n') + 1 + (
        -(tail.rindex(b'\n') + 1) % BLOCK)


def test_a_long_member_name_gets_gnu_longlink(group, tmp_path):
    prefix = tar_prefix_end(str(group))
    name = './etc/azaion/' + 'n' * 120
    tail = identity_tail([{'name': name, 'kind': 'file', 'data': b'long\n', 'mode': 0o640, 'uid': 7, 'gid': 8,
                           'mtime': MTIME}], prefix)
    device = tmp_path / 'device.img'
    copy_image(str(group), str(device))
    write_tail(str(device), prefix, tail)
    out = extract(device, tmp_path / 'out')
    assert (out / name[2:]).read_bytes() == b'long\n'
    assert b'././@LongLink' in tail


def test_members_after_a_file_start_on_a_block(group, tmp_path):
    prefix = tar_prefix_end(str(group))
    members = [dict(member, name=member['name'].replace('device.conf', 'first.conf')) for member in identity(b'one')]
    members += identity(FIRST_PASSWORD)[1:]
    device = tmp_path / 'device.img'
    copy_image(str(group), str(device))
    write_tail(str(device), prefix, identity_tail(members, prefix))
    out = extract(device, tmp_path / 'out')
    assert (out / 'etc' / 'azaion' / 'first.conf').read_bytes() == members[1]['data']
    assert (out / 'etc' / 'azaion' / 'device.conf').read_bytes() == members[2]['data']


@pytest.mark.parametrize('prefix', [0, 512, 9216, 9728, 10240, 123 * 512])
def test_the_tail_ends_the_image_on_a_record(prefix):
    tail = identity_tail(identity(FIRST_PASSWORD), prefix)
    assert (prefix + len(tail)) % RECORD_SIZE == 0
    members = tail.rindex(b'\n') + 1
    members += -members % BLOCK
    assert tail[members:members + 2 * BLOCK] == bytes(2 * BLOCK) and not any(tail[members:])


def test_identity_tail_refuses_what_is_not_a_member(group):
    with pytest.raises(ValueError):
        identity_tail([{'name': './x', 'kind': 'link', 'mode': 0o644, 'uid': 0, 'gid': 0, 'mtime': 0}], 0)
    with pytest.raises(ValueError):
        identity_tail(identity(FIRST_PASSWORD), 100)


def test_the_sha1sum_file_is_sha1sums_of_the_whole_image(group, tmp_path):
    device = tmp_path / 'device.img'
    prefix, tail = device_image(group, device, FIRST_PASSWORD)
    group_digest = prefix_digest(str(group), prefix)
    digest = group_digest.copy()
    digest.update(tail)
    assert digest.hexdigest() == run('sha1sum', str(device)).stdout.decode().split()[0]
    nvidia = subprocess.run("sha1sum '%s' | cut -f 1 -d ' '" % device, shell=True, capture_output=True, check=True).stdout
    assert sha1_text(digest.hexdigest()) == nvidia
    # The group's digest is left as it was, for the next device.
    assert group_digest.hexdigest() == hashlib.sha1(read(group)[:prefix]).hexdigest()
    with pytest.raises(ValueError):
        sha1_text(digest.hexdigest().upper())


def test_prefix_digest_of_a_short_file_is_refused(group):
    with pytest.raises(AppImageError):
        prefix_digest(str(group), len(read(group)) + BLOCK)


def test_a_second_devices_tail_leaves_no_trace_of_the_first(group, tmp_path):
    device = tmp_path / 'device.img'
    # The first device's tail is longer (a bigger device.conf), so only a truncation removes it all.
    prefix, first = device_image(group, device, FIRST_PASSWORD, extra=b'# ' + FIRST_PASSWORD * 600 + b'\n')
    assert read_tail(str(device), prefix) == first
    second = identity_tail(identity(SECOND_PASSWORD), prefix)
    assert len(second) < len(first)
    write_tail(str(device), prefix, second)
    data = read(device)
    assert FIRST_PASSWORD not in data and len(data) == prefix + len(second)
    assert read_tail(str(device), prefix) == second
    out = extract(device, tmp_path / 'out')
    assert (out / 'etc' / 'azaion' / 'device.conf').read_bytes() == identity(SECOND_PASSWORD)[1]['data']
    digest = prefix_digest(str(group), prefix)
    digest.update(second)
    assert digest.hexdigest() == hashlib.sha1(data).hexdigest()


def test_a_failed_write_leaves_no_trace_of_the_previous_tail(group, tmp_path, monkeypatch):
    device = tmp_path / 'device.img'
    prefix, _first = device_image(group, device, FIRST_PASSWORD)

    def full(*args):
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(os, 'pwrite', full)
    with pytest.raises(AppImageError) as caught:
        write_tail(str(device), prefix, identity_tail(identity(SECOND_PASSWORD), prefix))
    assert 'No space left' in str(caught.value) and SECOND_PASSWORD.decode() not in str(caught.value)
    assert FIRST_PASSWORD not in read(device)


def test_clear_tail_gives_back_the_group_image(group, tmp_path):
    device = tmp_path / 'device.img'
    prefix, _tail = device_image(group, device, FIRST_PASSWORD)
    clear_tail(str(device), prefix, os.path.getsize(str(group)))
    assert read(device) == read(group)
    assert run('sha1sum', str(device)).stdout.split()[0] == run('sha1sum', str(group)).stdout.split()[0]


def test_a_hard_linked_image_is_not_written(group, tmp_path):
    device = tmp_path / 'device.img'
    prefix, _tail = device_image(group, device, FIRST_PASSWORD)
    shared = tmp_path / 'shared.img'
    os.link(str(device), str(shared))
    before = read(device)
    for attempt in (lambda: write_tail(str(device), prefix, identity_tail(identity(SECOND_PASSWORD), prefix)),
                    lambda: clear_tail(str(shared), prefix, os.path.getsize(str(group)))):
        with pytest.raises(AppImageError) as caught:
            attempt()
        assert 'hard link' in str(caught.value)
        assert read(device) == before == read(shared)


def test_a_symbolic_link_is_not_followed(group, tmp_path):
    device = tmp_path / 'device.img'
    prefix, _tail = device_image(group, device, FIRST_PASSWORD)
    link = tmp_path / 'link.img'
    os.symlink(str(device), str(link))
    before = read(device)
    for attempt in (lambda: write_tail(str(link), prefix, identity_tail(identity(SECOND_PASSWORD), prefix)),
                    lambda: clear_tail(str(link), prefix, os.path.getsize(str(group))),
                    lambda: read_tail(str(link), prefix)):
        with pytest.raises(AppImageError) as caught:
            attempt()
        assert 'symbolic link' in str(caught.value)
    assert read(device) == before
    dangling = tmp_path / 'dangling.img'
    os.symlink(str(tmp_path / 'target.img'), str(dangling))
    with pytest.raises(AppImageError):
        copy_image(str(group), str(dangling))
    assert not os.path.lexists(str(tmp_path / 'target.img'))


def test_a_missing_or_foreign_file_is_not_written(group, tmp_path):
    with pytest.raises(AppImageError):
        write_tail(str(tmp_path / 'absent.img'), 0, b'')
    assert not os.path.lexists(str(tmp_path / 'absent.img'))
    with pytest.raises(AppImageError):
        clear_tail(str(tmp_path), 0, 0)
    fifo = tmp_path / 'fifo.img'
    os.mkfifo(str(fifo))
    for attempt in (lambda: write_tail(str(fifo), 0, b''), lambda: clear_tail(str(fifo), 0, 0),
                    lambda: read_tail(str(fifo), 0), lambda: copy_image(str(fifo), str(tmp_path / 'copy.img')),
                    lambda: image_format(str(fifo)), lambda: tar_prefix_end(str(fifo)), lambda: prefix_digest(str(fifo), 0)):
        with pytest.raises(AppImageError) as caught:
            attempt()
        assert 'not a regular file' in str(caught.value)
    assert not os.path.lexists(str(tmp_path / 'copy.img'))
    short = tmp_path / 'short.img'
    short.write_bytes(b'\0' * BLOCK)
    with pytest.raises(AppImageError):
        write_tail(str(short), tar_prefix_end(str(group)), b'\0' * 1024)
    assert read(short) == b'\0' * BLOCK


# A device's copy of the group image


def test_copy_image_makes_a_separate_identical_file(group, tmp_path):
    device = tmp_path / 'device.img'
    assert copy_image(str(group), str(device)) in ('reflink', 'copy')
    assert read(device) == read(group)
    info, source = os.lstat(str(device)), os.lstat(str(group))
    assert info.st_ino != source.st_ino and info.st_nlink == 1 and source.st_nlink == 1
    assert info.st_mode & 0o7777 == 0o600


def test_copy_image_refuses_an_existing_destination(group, tmp_path):
    device = tmp_path / 'device.img'
    device.write_bytes(b'already here')
    with pytest.raises(AppImageError) as caught:
        copy_image(str(group), str(device))
    assert 'already exists' in str(caught.value)
    assert read(device) == b'already here'


def test_copy_image_falls_back_to_reading_and_writing(group, tmp_path, monkeypatch):
    def no_clone(fd, request, arg):
        raise OSError(errno.EOPNOTSUPP, 'Operation not supported')

    def no_range(*args):
        raise OSError(errno.EXDEV, 'Invalid cross-device link')

    monkeypatch.setattr(_app_image.fcntl, 'ioctl', no_clone)
    monkeypatch.setattr(os, 'copy_file_range', no_range, raising=False)
    device = tmp_path / 'device.img'
    assert copy_image(str(group), str(device)) == 'copy'
    assert read(device) == read(group)


def test_copy_image_says_reflink_when_the_clone_succeeds(group, tmp_path, monkeypatch):
    calls = []

    def clone(fd, request, arg):
        calls.append(request)
        os.sendfile(fd, arg, 0, os.fstat(arg).st_size)

    monkeypatch.setattr(_app_image.fcntl, 'ioctl', clone)
    device = tmp_path / 'device.img'
    assert copy_image(str(group), str(device)) == 'reflink'
    assert calls == [FICLONE] == [0x40049409]
    assert read(device) == read(group)


def test_a_failed_copy_leaves_no_partial_file(group, tmp_path, monkeypatch):
    def full(*args):
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(_app_image.fcntl, 'ioctl', full)
    device = tmp_path / 'device.img'
    with pytest.raises(AppImageError) as caught:
        copy_image(str(group), str(device))
    assert 'No space left' in str(caught.value)
    assert not os.path.lexists(str(device))
