"""The lab's initrd flash follows NVIDIA's r36.2 APP image format: the device gets the IMAGE.

NVIDIA's r36.2 package_images (tools/kernel_flash/l4t_create_images_for_kernel_flash.sh; public
copy: github.com/johnnynunez/Linux_for_Tegra) leaves the APP partition's image in
tools/kernel_flash/images/<internal|external>/: an uncompressed tar of the rootfs
("tar -cpf ... --numeric-owner"), its sha1 in <image>.sha1sum, and APP=system.img (APP_ext= for
the external device) in that directory's flash.cfg. On the device, do_write_APP
(tools/kernel_flash/l4t_flash_from_kernel.sh) takes the image flash.cfg names, fails without it
or without its .sha1sum (the comparison itself is commented out in r36.2), and for a tar archive
formats the partition and unpacks it with GNU tar ("tar -xpf --numeric-owner", no -i): a later
member replaces an earlier one of the same name, and reading stops at the first end-of-archive
marker. Anything else is written raw. So what a device gets is what the image holds when the
flash runs, whatever the tree's rootfs holds by then.
"""

import hashlib
import io
import os
import subprocess
import tarfile

import pytest

from . import l4t_bundle as l4t
from .test_l4t_host import INTERNAL, NANO, NVME_ARGS, Station, conf_of, identity_env, output

PORT = '1-3'
# The internal storage (the board's own layout, rootdev internal) and NVIDIA's NVMe command.
LAYOUTS = {'internal': [], 'external': NVME_ARGS}


@pytest.fixture(params=sorted(LAYOUTS))
def location(request):
    return request.param


def generate(station, tree, location):
    result = station.run(tree, INTERNAL, '--no-flash', *LAYOUTS[location], NANO, 'internal',
                         env=identity_env('0003'))
    assert result.returncode == 0, output(result)


def flash(station, tree):
    station.install_rules_once()
    with open(os.path.join(tree, 'tools', 'kernel_flash', 'initrdflashparam.txt')) as params:
        saved = params.read().replace('"', '').split()
    return station.run(tree, INTERNAL, '--usb-instance', PORT, '--device-instance', '0', '--flash-only', *saved)


def image_path(tree, location):
    return os.path.join(l4t.app_image_dir(tree, location), 'system.img')


def station_with_tree(tmp_path, location, name='a'):
    station = Station(tmp_path, {PORT: '7523'})
    tree = station.tree(name, conf=conf_of(name))
    generate(station, tree, location)
    return station, tree


def conf_tar(path, conf, extra=None):
    """A tar archive (bytes when ``path`` is None) holding ./etc/azaion/device.conf = ``conf``
    and, if given, ./etc/<extra> = ``extra``."""
    buffer = io.BytesIO()
    with tarfile.open(path, 'w', fileobj=None if path else buffer, format=tarfile.GNU_FORMAT) as archive:
        for name, text in (('./etc/azaion/device.conf', conf), ('./etc/' + (extra or ''), extra)):
            if text is None:
                continue
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            archive.addfile(info, io.BytesIO(data))
    return path or buffer.getvalue()


def test_generation_writes_an_uncompressed_tar_its_sha1sum_and_flash_cfg(tmp_path, location):
    station, tree = station_with_tree(tmp_path, location)
    image = image_path(tree, location)
    with open(image, 'rb') as image_file:
        data = image_file.read()
    assert data[257:262] == b'ustar'  # what file(1) calls a tar archive: no compression
    with tarfile.open(image, 'r:') as archive:
        member = archive.getmember('./etc/azaion/device.conf')
        assert archive.extractfile(member).read().decode() == conf_of('a')
        assert (member.uid, member.gid) == (os.getuid(), os.getgid())  # --numeric-owner
    # package_images: sha1sum system.img | cut -f 1 -d ' ' > system.img.sha1sum
    with open(image + '.sha1sum') as sha1_file:
        assert sha1_file.read() == hashlib.sha1(data).hexdigest() + '\n'
    external_device = 'nvme0n1p1' if location == 'external' else ''
    key = 'APP_ext' if location == 'external' else 'APP'
    assert l4t.flash_cfg(tree, location) == {key: 'system.img', 'external_device': external_device,
                                             'CHIPID': '0x23'}
    if location == 'external':  # the internal storage's image is generated too
        assert l4t.flash_cfg(tree, 'internal')['APP'] == 'system.img'
    assert station.in_recovery() == {PORT: '7523'}


def test_generation_rewrites_the_images_in_place_so_a_hard_linked_clone_writes_through(tmp_path, location):
    station, tree = station_with_tree(tmp_path, location)
    directory = l4t.app_image_dir(tree, location)
    names = ('system.img', 'system.img.sha1sum', 'flash.cfg')
    inodes = [os.stat(os.path.join(directory, name)).st_ino for name in names]
    clone = str(tmp_path / 'clone' / 'Linux_for_Tegra')
    os.makedirs(os.path.dirname(clone))
    subprocess.run(['cp', '-al', tree, clone], check=True)
    conf = os.path.join(clone, 'rootfs', 'etc', 'azaion', 'device.conf')
    os.remove(conf)  # a new file in the clone's rootfs only
    with open(conf, 'w') as conf_file:
        conf_file.write(conf_of('clone'))

    generate(station, clone, location)
    assert [os.stat(os.path.join(directory, name)).st_ino for name in names] == inodes
    with tarfile.open(image_path(tree, location)) as archive:
        assert archive.extractfile('./etc/azaion/device.conf').read().decode() == conf_of('clone')


def test_the_device_gets_the_image_not_the_trees_rootfs_as_it_is_at_flash_time(tmp_path, location):
    station, tree = station_with_tree(tmp_path, location)
    rootfs = os.path.join(tree, 'rootfs')
    with open(os.path.join(rootfs, 'etc', 'azaion', 'device.conf'), 'w') as conf_file:
        conf_file.write(conf_of('changed'))  # in place, after the generation
    with open(os.path.join(rootfs, 'etc', 'added-after-generation'), 'w') as added:
        added.write('not in the image\n')

    result = flash(station, tree)
    assert result.returncode == 0, output(result)
    assert station.device_conf(PORT) == conf_of('a')
    assert not os.path.lexists(os.path.join(l4t.device_storage(station.state, PORT), 'etc', 'added-after-generation'))
    assert l4t.device_meta(station.state, PORT)['app'] == 'tar'


def test_a_member_appended_after_the_last_one_replaces_the_earlier_one_of_the_same_name(tmp_path, location):
    station, tree = station_with_tree(tmp_path, location)
    image = image_path(tree, location)
    other = tmp_path / 'other'
    os.makedirs(other / 'etc' / 'azaion')
    (other / 'etc' / 'azaion' / 'device.conf').write_text(conf_of('appended'))
    # tar -r writes the member over the end-of-archive marker and a new marker after it.
    subprocess.run(['tar', '-rpf', image, '--numeric-owner', '-C', str(other), './etc/azaion/device.conf'],
                   check=True)
    with tarfile.open(image) as archive:
        assert [name for name in archive.getnames() if name.endswith('device.conf')] == \
            ['./etc/azaion/device.conf'] * 2

    result = flash(station, tree)  # the stale .sha1sum is not compared, as in r36.2
    assert result.returncode == 0, output(result)
    assert station.device_conf(PORT) == conf_of('appended')


def test_data_after_an_end_of_archive_marker_is_ignored(tmp_path, location):
    station, tree = station_with_tree(tmp_path, location)
    with open(image_path(tree, location), 'ab') as image:  # a whole second archive, after the marker
        image.write(conf_tar(None, conf_of('after-the-end'), extra='after-the-end'))

    result = flash(station, tree)
    assert result.returncode == 0, output(result)
    assert station.device_conf(PORT) == conf_of('a')
    assert not os.path.lexists(os.path.join(l4t.device_storage(station.state, PORT), 'etc', 'after-the-end'))


def test_a_missing_sha1sum_fails_the_flash(tmp_path, location):
    station, tree = station_with_tree(tmp_path, location)
    os.remove(image_path(tree, location) + '.sha1sum')

    result = flash(station, tree)
    assert result.returncode == 1
    assert 'Sha1 checksum file %s.sha1sum is not found !!!' % image_path(tree, location) in result.stdout
    assert 'Failed to write to APP' in result.stdout
    assert station.device_conf(PORT) is None and l4t.device_meta(station.state, PORT) == {}
    assert [(run['exit'], run['device']) for run in l4t.flash_runs(station.state)] == [(1, None)]


def test_the_flash_takes_the_image_flash_cfg_names_and_fails_without_it(tmp_path, location):
    station, tree = station_with_tree(tmp_path, location)
    directory = l4t.app_image_dir(tree, location)
    key = 'APP_ext' if location == 'external' else 'APP'
    cfg = os.path.join(directory, 'flash.cfg')
    with open(cfg) as cfg_file:
        text = cfg_file.read()
    with open(cfg, 'w') as cfg_file:
        cfg_file.write(text.replace('%s=system.img' % key, '%s=missing.img' % key))
    missing = flash(station, tree)
    assert missing.returncode == 1
    assert 'APP image %s is not found !!!' % os.path.join(directory, 'missing.img') in missing.stdout
    assert station.device_conf(PORT) is None

    other = Station(tmp_path / 'second', {PORT: '7523'})
    tree = other.tree('b', conf=conf_of('b'))
    generate(other, tree, location)
    directory = l4t.app_image_dir(tree, location)
    conf_tar(os.path.join(directory, 'named.img'), conf_of('named'))
    with open(os.path.join(directory, 'named.img.sha1sum'), 'w') as sha1_file:
        sha1_file.write('not compared\n')
    with open(os.path.join(directory, 'flash.cfg'), 'a') as cfg_file:
        cfg_file.write('%s=named.img\n' % key)  # sourced: the later assignment wins
    named = flash(other, tree)
    assert named.returncode == 0, output(named)
    assert other.device_conf(PORT) == conf_of('named')


def test_an_image_that_is_not_a_tar_archive_is_written_raw(tmp_path, location):
    station, tree = station_with_tree(tmp_path, location)
    with open(image_path(tree, location), 'wb') as image:
        image.write(b'\x53\xef' + b'\0' * 4094)  # not a tar archive: dd'd to the partition

    result = flash(station, tree)
    assert result.returncode == 0, output(result)
    assert l4t.device_meta(station.state, PORT)['app'] == 'raw'
    assert not os.path.lexists(l4t.device_storage(station.state, PORT))  # nothing the lab reads
    assert station.device_conf(PORT) is None


def test_a_tar_that_breaks_off_fails_the_flash_and_leaves_the_formatted_storage_partly_written(tmp_path, location):
    station, tree = station_with_tree(tmp_path, location)
    image = image_path(tree, location)
    with tarfile.open(image) as archive:
        cut = archive.getmember('./etc/azaion/device.conf').offset_data + 1
    with open(image, 'r+b') as image_file:  # broken off inside the device.conf's data
        image_file.truncate(cut)

    result = flash(station, tree)
    assert result.returncode == 1
    assert 'Failed to write to APP' in result.stdout
    # mkfs.ext4 ran before tar: the storage holds what tar unpacked, not what it held before.
    assert l4t.device_meta(station.state, PORT)['app'] == 'partial'
    assert os.path.isdir(os.path.join(l4t.device_storage(station.state, PORT), 'etc', 'azaion'))
    assert [(run['exit'], run['device']) for run in l4t.flash_runs(station.state)] == [(1, PORT)]
