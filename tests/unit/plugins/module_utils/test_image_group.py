"""A group's images, a flash slot's copy and the device's members in it, with real GNU tar."""

import fcntl
import hashlib
import json
import os
import subprocess

import pytest

from ansible_collections.azaion.jetson.plugins.module_utils._app_image import AppImageError, identity_tail, write_tail
from ansible_collections.azaion.jetson.plugins.module_utils._workdir import WorkdirError
from ansible_collections.azaion.jetson.plugins.module_utils._image_group import (
    ImageGroup,
    ImageGroupError,
    check_tail,
    clear_slot,
    identity_members,
    remove_stale_groups,
)

PASSWORD = '0123456789abcdef0123456789abcdef'
OTHER_PASSWORD = 'fedcba9876543210fedcba9876543210'
IMAGE = 'tools/kernel_flash/images/external/system.img'


def sha1(path):
    with open(path, 'rb') as content:
        return hashlib.sha1(content.read()).hexdigest()


def make_rootfs(path, password=PASSWORD):
    os.makedirs(os.path.join(path, 'etc', 'azaion'))
    with open(os.path.join(path, 'etc', 'hostname'), 'w') as hostname:
        hostname.write('jetson\n')
    conf = os.path.join(path, 'etc', 'azaion', 'device.conf')
    with open(conf, 'w') as device_conf:
        device_conf.write('AZAION_DEVICE_EMAIL=azaion-jetson-0001@azaion.com\nAZAION_DEVICE_PASSWORD=%s\n' % password)
    os.chmod(conf, 0o600)
    os.chmod(os.path.dirname(conf), 0o750)
    if os.geteuid() == 0:
        os.chown(conf, 1000, 1000)
    return path


def make_group(tmp_path, image_format='tar'):
    """A generated group as NVIDIA's package_images leaves it: the APP tar, its .sha1sum and
    flash.cfg naming it; then its record."""
    group = ImageGroup(str(tmp_path / 'images'), 'f' * 64)
    images = os.path.join(group.tree, 'tools', 'kernel_flash', 'images', 'external')
    os.makedirs(images)
    os.makedirs(os.path.join(group.tree, 'rootfs', 'etc'))
    source = tmp_path / 'staged'
    os.makedirs(str(source / 'etc'))
    (source / 'etc' / 'hostname').write_text('jetson\n')
    image = os.path.join(images, 'system.img')
    if image_format == 'tar':
        subprocess.run(['tar', '-cpf', image, '--numeric-owner', '-C', str(source), '.'], check=True)
    else:
        with open(image, 'wb') as sparse:
            sparse.write(b'\x3a\xff\x26\xed' + b'\0' * 4092)
    with open(image + '.sha1sum', 'w') as checksum:
        checksum.write(sha1(image) + '\n')
    with open(os.path.join(images, 'flash.cfg'), 'w') as cfg:
        cfg.write('APP_ext=system.img\nexternal_device=nvme0n1p1\nCHIPID=0x23\n')
    group.write_record(4, 'external', {'generation': 'one'}, 1.0)
    return group


def test_a_slot_copy_takes_the_devices_members_which_gnu_tar_unpacks_and_the_copy_is_cleared_after(tmp_path):
    group = make_group(tmp_path)
    group_image = os.path.join(group.tree, IMAGE)
    before = sha1(group_image)
    rootfs = make_rootfs(str(tmp_path / 'port-rootfs'))

    tree, how = group.prepare_slot(2)
    assert how in ('reflink', 'copy') and tree.endswith('/slot-2/Linux_for_Tegra')
    assert os.path.realpath(os.path.join(tree, 'rootfs')) == os.path.realpath(os.path.join(group.tree, 'rootfs'))
    copy = os.path.join(tree, IMAGE)
    assert os.stat(copy).st_nlink == 1
    # Every other file of images/ is the group's own, by a hard link.
    assert os.stat(os.path.join(tree, IMAGE + '.sha1sum')).st_ino == os.stat(group_image + '.sha1sum').st_ino

    group.write_identity(tree, rootfs)
    with open(copy + '.sha1sum') as checksum:
        assert checksum.read() == sha1(copy) + '\n'
    assert subprocess.run(['file', copy], capture_output=True, text=True, check=True).stdout.count('tar archive') == 1
    unpacked = tmp_path / 'device'
    unpacked.mkdir()
    subprocess.run(['tar', '-xpf', copy, '--numeric-owner', '-C', str(unpacked)], check=True)
    conf = unpacked / 'etc' / 'azaion' / 'device.conf'
    assert PASSWORD in conf.read_text() and (unpacked / 'etc' / 'hostname').read_text() == 'jetson\n'
    in_tree = os.stat(os.path.join(rootfs, 'etc', 'azaion', 'device.conf'))
    assert (os.stat(str(conf)).st_mode & 0o7777, os.stat(str(conf)).st_uid) == (0o600, in_tree.st_uid)
    assert os.stat(str(conf.parent)).st_mode & 0o7777 == 0o750
    assert sha1(group_image) == before

    group.clear_identity(tree)
    assert sha1(copy) == before and PASSWORD.encode() not in open(copy, 'rb').read()
    with open(copy + '.sha1sum') as checksum:
        assert checksum.read() == before + '\n'
    # Made once per generation: the next flash in the slot uses the same copy.
    assert group.prepare_slot(2) == (tree, how) and os.stat(copy).st_ino == os.stat(os.path.join(tree, IMAGE)).st_ino


def test_a_copy_left_mid_append_by_a_killed_flash_is_cleared_by_the_next_flash_on_the_station(tmp_path):
    group = make_group(tmp_path)
    tree, _how = group.prepare_slot(0)
    copy = os.path.join(tree, IMAGE)
    image = group.record['images'][0]
    tail = identity_tail(identity_members(make_rootfs(str(tmp_path / 'rootfs'))), image['prefix_end'])
    write_tail(copy, image['prefix_end'], tail[:len(tail) // 2])  # killed half-way
    assert PASSWORD.encode() in open(copy, 'rb').read()

    assert clear_slot(group.images_dir, 0) == [os.path.dirname(tree)]
    assert sha1(copy) == sha1(os.path.join(group.tree, IMAGE))
    assert clear_slot(group.images_dir, 1) == []


def test_a_slot_copy_that_is_a_hard_link_of_the_groups_image_is_never_written(tmp_path):
    group = make_group(tmp_path)
    tree, _how = group.prepare_slot(0)
    copy = os.path.join(tree, IMAGE)
    os.unlink(copy)
    os.link(os.path.join(group.tree, IMAGE), copy)  # planted, or a copy gone wrong
    before = sha1(copy)

    with pytest.raises(AppImageError, match='link'):
        group.write_identity(tree, make_rootfs(str(tmp_path / 'rootfs')))
    assert sha1(os.path.join(group.tree, IMAGE)) == before


def test_a_device_conf_that_is_a_link_is_refused(tmp_path):
    rootfs = make_rootfs(str(tmp_path / 'rootfs'))
    conf = os.path.join(rootfs, 'etc', 'azaion', 'device.conf')
    os.rename(conf, conf + '.real')
    os.symlink(conf + '.real', conf)
    with pytest.raises(OSError):
        identity_members(rootfs)


def test_an_image_that_cannot_take_a_member_is_the_groups_problem(tmp_path):
    assert make_group(tmp_path / 'tar').problem() == ''
    assert 'is sparse, not a tar' in make_group(tmp_path / 'sparse', image_format='sparse').problem()
    raw = make_group(tmp_path / 'raw')
    with open(os.path.join(raw.tree, IMAGE), 'wb') as ext4:
        ext4.write(b'\0' * 1024 + b'\x53\xef' + b'\0' * 3070)  # an ext4 superblock's magic: written raw
    raw.write_record(4, 'external', {'generation': 'one'}, 1.0)
    assert 'is raw, not a tar' in raw.problem()
    truncated = make_group(tmp_path / 'truncated')
    image = os.path.join(truncated.tree, IMAGE)
    with open(image, 'r+b') as cut:
        cut.truncate(700)  # inside its first member: a disk that filled up while tar wrote
    truncated.write_record(4, 'external', {'generation': 'one'}, 1.0)
    assert 'is tar without a clean end' in truncated.problem()


def test_members_that_do_not_read_back_as_the_devices_are_refused(tmp_path):
    members = identity_members(make_rootfs(str(tmp_path / 'rootfs')))
    tail = identity_tail(members, 0)
    check_tail(tail, members)
    members[1]['data'] = members[1]['data'].replace(PASSWORD.encode(), OTHER_PASSWORD.encode())
    with pytest.raises(ImageGroupError, match='does not read back'):
        check_tail(tail, members)


def test_a_group_of_an_older_staging_is_removed_unless_a_run_uses_it(tmp_path):
    images = tmp_path / 'images'
    for name, stamp in (('old-in-use', 'line-1'), ('old-free', 'line-1'), ('current', 'line-2')):
        (images / name).mkdir(parents=True)
        (images / name / 'group.json').write_text(json.dumps({'stamp': stamp}))
    with open(str(images / 'old-in-use') + '.lock', 'w') as in_use:
        fcntl.flock(in_use, fcntl.LOCK_SH)
        assert remove_stale_groups(str(images), 'current', 'line-2') == ['old-free']
    assert sorted(os.listdir(str(images))) == ['current', 'old-free.lock', 'old-in-use', 'old-in-use.lock']


def test_a_planted_link_where_the_group_goes_is_never_written_through(tmp_path):
    outside = tmp_path / 'outside'
    outside.mkdir()
    images = tmp_path / 'images'
    images.mkdir()
    group = ImageGroup(str(images), 'a' * 64)
    os.symlink(str(outside), group.dir)
    with pytest.raises(WorkdirError, match='is a symbolic link to'):
        group.lock(exclusive=True)
    assert os.listdir(str(outside)) == []
