"""The lab's initrd flash makes and writes the other APP image formats as NVIDIA's tools do.

tests/lab/test_app_image.py pins the default format, an uncompressed tar. NVIDIA's r36.2 scripts
(public copy: github.com/johnnynunez/Linux_for_Tegra) make others, and the doubles make them too
(tests/lab/l4t_scripts/l4t_initrd_flash_internal.sh: package_images; lab_common.sh:
lab_write_device, lab_unpack_app, lab_device_sees):

* ``--sparse`` (package_images of l4t_create_images_for_kernel_flash.sh): the APP image is the
  Android sparse system.img, still named system.img with its .sha1sum; the device writes it with
  write_sparse_image (l4t_flash_from_kernel.sh). The lab's sparse image is a real one (magic
  3a ff 26 ed, a RAW and a DONT_CARE chunk) whose expansion is the lab's stand-in for the ext4
  image, a tar of the rootfs.
* ``ROOTFS_ENC=1`` (the board configs' _enc_rfs layouts, build_boot_fsimg and
  build_enc_root_fsimg of disk_encryption_helper.func): APP is the boot partition
  (system_boot.img, a tar of boot/), and the rootfs is APP_ENC, system_root_encrypted.img, a sparse
  LUKS container with no .sha1sum and no flash.cfg line, written by flash_partition. Its
  passphrase comes from the -i key (optional: a missing key file is ignored, the default key is
  16 zero bytes) and the ECID of the chip flash.sh probed, so generation fails with FUSELEVEL set
  unless flash.sh gets --generic-passphrase, and only that chip opens the rootfs.
* r38 (the tree's nv_tegra/nv_tegra_release says R38; r38.4 is not in the public mirror, the facts
  are docs/l4t-app-image.md's): the APP tar is zstd-compressed, --sparse gives system.img.zst, and
  do_write_APP decompresses; r36.2's writes a zstd image raw.
* ``ROOTFS_AB=1``: APP_b, system.img_b with its .sha1sum and APP_b= in flash.cfg, written to a
  partition of its own (the lab's storage/<port>.b).
* ``LAB_APP_TAR_TRUNCATED=1`` (a lab knob): a disk that filled up while tar wrote; package_images
  never checks tar's status, so generation succeeds with a tar cut inside its last member, and
  its unpack fails on the device.
* NFS: the device reads images/ through its NFS mount (nv_flash_from_network.sh) and resolves
  symbolic links itself, in its own namespace: a link to another place of the host is a missing
  file there; a hard link is a file.
"""

import hashlib
import io
import os
import shutil
import struct
import subprocess
import tarfile

import pytest

from . import l4t_bundle as l4t
from .test_app_image import LAYOUTS, PORT, conf_tar, flash, image_path
from .test_l4t_host import INTERNAL, NANO, OUTER, Station, conf_of, identity_env, output

SPARSE_MAGIC = b'\x3a\xff\x26\xed'
ZSTD_MAGIC = b'\x28\xb5\x2f\xfd'
LUKS_MAGIC = b'LUKS\xba\xbe'
R38_RELEASE = ('# R38 (release), REVISION: 4.0, GCID: 41110000, BOARD: generic, EABI: aarch64, '
               'DATE: Mon Nov 10 00:00:00 UTC 2025\n# KERNEL_VARIANT: oot\nINSTALL_TYPE=\n')
EXTLINUX = 'LABEL primary\n  LINUX /boot/Image\n  APPEND ${cbootargs} root=/dev/mapper/crypt_root\n'
# An A/B layout for the NVMe, as NVIDIA's flash_l4t_t234_nvme_rootfs_ab.xml names its partitions.
NVME_AB_XML = ('<?xml version="1.0"?>\n<partition_layout version="01.00.0000">\n'
               '  <device type="external" instance="0" sector_size="512" num_sectors="EXT_NUM_SECTORS">\n'
               '    <partition name="APP" id="1" type="data">\n      <filename> APPFILE </filename>\n    </partition>\n'
               '    <partition name="APP_b" id="2" type="data">\n      <filename> APPFILE_b </filename>\n'
               '    </partition>\n  </device>\n</partition_layout>\n')

needs_zstd = pytest.mark.skipif(shutil.which('zstd') is None, reason='the r38 doubles need zstd')


def generate(station, tree, *options, location='internal', env=None, **variables):
    """Run the generation with ``options`` and the environment's ``variables`` (ROOTFS_AB...);
    the CompletedProcess, whatever its exit status."""
    env = dict(env or identity_env('0003'), **variables)
    return station.run(tree, INTERNAL, '--no-flash', *options, *LAYOUTS[location], NANO, 'internal', env=env)


def generated(station, tree, *options, **kwargs):
    result = generate(station, tree, *options, **kwargs)
    assert result.returncode == 0, output(result)
    return result


def flash_on(station, tree, port):
    """test_app_image.flash, on another port."""
    station.install_rules_once()
    with open(os.path.join(tree, 'tools', 'kernel_flash', 'initrdflashparam.txt')) as params:
        saved = params.read().replace('"', '').split()
    return station.run(tree, INTERNAL, '--usb-instance', port, '--device-instance', '0', '--flash-only', *saved)


def station_with_tree(tmp_path, ports=None, boot=False):
    """A station and a tree whose rootfs holds conf_of('a') (and a boot/ with extlinux.conf)."""
    station = Station(tmp_path, ports or {PORT: '7523'})
    tree = station.tree('a', conf=conf_of('a'))
    if boot:
        write(os.path.join(tree, 'rootfs', 'boot', 'extlinux', 'extlinux.conf'), EXTLINUX)
        write(os.path.join(tree, 'rootfs', 'boot', 'Image'), 'a kernel\n')
    return station, tree


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write(text)


def read(path):
    with open(path, 'rb') as handle:
        return handle.read()


def make_r38(tree):
    """The tree says it is L4T r38: its nv_tegra/nv_tegra_release's first line, which flash.sh
    prints as the BSP information and which the doubles read (lab_l4t_major)."""
    write(os.path.join(tree, 'nv_tegra', 'nv_tegra_release'), R38_RELEASE)


def images_dir(tree, location='internal'):
    return l4t.app_image_dir(tree, location)


def power_cycle(station):
    l4t.power_cycle_into_recovery(station.state, station.host, station.sysfs, PORT)


def storage(station, slot=''):
    """What the device on PORT holds in APP (slot '') or APP_b (slot '.b')."""
    return l4t.device_storage(station.state, PORT) + slot


def conf_in(directory):
    path = os.path.join(directory, 'etc', 'azaion', 'device.conf')
    return read(path).decode() if os.path.isfile(path) else None


def expand_sparse(data):
    """simg2img, in Python: the raw image an Android sparse image (v1.0) stands for."""
    magic, major, _minor, header_size, chunk_header_size, block, total, chunks, _checksum = struct.unpack(
        '<IHHHHIIII', data[:28])
    assert (magic, major, header_size, chunk_header_size) == (0xed26ff3a, 1, 28, 12)
    parts, offset = [], 28
    for _chunk in range(chunks):
        kind, _reserved, blocks, size = struct.unpack('<HHII', data[offset:offset + 12])
        body = data[offset + 12:offset + size]
        if kind == 0xcac1:
            assert len(body) == blocks * block
            parts.append(body)
        elif kind == 0xcac2:
            parts.append(body[:4] * (blocks * block // 4))
        elif kind == 0xcac3:
            parts.append(bytes(blocks * block))
        offset += size
    raw = b''.join(parts)
    assert len(raw) == total * block and offset == len(data)
    return raw


def tar_member(data, name):
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return archive.extractfile(name).read().decode()


def flash_idx_rows(tree, location='internal'):
    """(partition, file name) of each row of that images directory's flash.idx."""
    rows = []
    with open(os.path.join(images_dir(tree, location), 'flash.idx')) as index:
        for line in index:
            columns = [column.strip() for column in line.split(',')]
            if len(columns) == 8:
                rows.append((columns[1].split(':')[2], columns[4]))
    return rows


def is_tar(path):
    return read(path)[257:262] == b'ustar'


def sha1_ok(path):
    return read(path + '.sha1sum').decode() == hashlib.sha1(read(path)).hexdigest() + '\n'


def every_image_byte(tree):
    images = os.path.join(tree, 'tools', 'kernel_flash', 'images')
    return b''.join(read(os.path.join(top, name)) for top, _dirs, names in os.walk(images) for name in names)


# -- --sparse ------------------------------------------------------------------------------------

@pytest.mark.parametrize('location', sorted(LAYOUTS))
def test_sparse_generation_writes_the_sparse_system_img_with_its_sha1sum_and_flash_cfg(tmp_path, location):
    station, tree = station_with_tree(tmp_path)
    generated(station, tree, '--sparse', location=location)
    image = image_path(tree, location)
    data = read(image)
    assert data[:4] == SPARSE_MAGIC
    assert tar_member(expand_sparse(data), './etc/azaion/device.conf') == conf_of('a')
    if shutil.which('file'):
        assert 'Android sparse image' in subprocess.run(['file', image], capture_output=True, text=True, check=True).stdout
    assert sha1_ok(image)
    key = 'APP_ext' if location == 'external' else 'APP'
    assert l4t.flash_cfg(tree, location)[key] == 'system.img'
    assert flash_idx_rows(tree, location) == [('APP', 'system.img')]
    assert l4t.images_record(tree)['sparse'] == '1'
    # bootloader/system.img stays the lab's tar, the stand-in of the raw ext4 image.
    assert is_tar(os.path.join(tree, 'bootloader', 'system.img'))

    result = flash(station, tree)
    assert result.returncode == 0, output(result)
    assert l4t.device_meta(station.state, PORT)['app'] == 'sparse'
    assert station.device_conf(PORT) == conf_of('a')


def test_the_outer_script_passes_sparse_on_to_the_generation(tmp_path):
    station, tree = station_with_tree(tmp_path)
    result = station.run(tree, OUTER, '--usb-instance', PORT, '--sparse', NANO, 'internal', env=identity_env('0003'))
    assert result.returncode == 0, output(result)
    assert read(image_path(tree, 'internal'))[:4] == SPARSE_MAGIC
    assert l4t.device_meta(station.state, PORT)['app'] == 'sparse'
    assert station.device_conf(PORT) == conf_of('a')


def sparse_image(raw, block=4096):
    """An Android sparse image of ``raw`` as another tool may make one: a RAW chunk for each
    block with data, a FILL chunk (pattern 0) for each run of zero blocks, a CRC32 chunk, and a
    DONT_CARE chunk for 16 unused blocks."""
    raw += bytes(-len(raw) % block)
    chunks, index = [], 0
    while index < len(raw) // block:
        data = raw[index * block:(index + 1) * block]
        if data == bytes(block):
            end = index
            while end < len(raw) // block and raw[end * block:(end + 1) * block] == bytes(block):
                end += 1
            chunks.append(struct.pack('<HHII', 0xcac2, 0, end - index, 16) + bytes(4))
            index = end
        else:
            chunks.append(struct.pack('<HHII', 0xcac1, 0, 1, 12 + block) + data)
            index += 1
    chunks.append(struct.pack('<HHII', 0xcac4, 0, 0, 16) + bytes(4))
    chunks.append(struct.pack('<HHII', 0xcac3, 0, 16, 12))
    header = struct.pack('<IHHHHIIII', 0xed26ff3a, 1, 0, 28, 12, block, len(raw) // block + 16, len(chunks), 0)
    return header + b''.join(chunks)


def test_a_sparse_image_of_fill_crc_and_dont_care_chunks_is_expanded_as_simg2img_does(tmp_path):
    station, tree = station_with_tree(tmp_path)
    generated(station, tree, '--sparse')
    image = image_path(tree, 'internal')
    raw = conf_tar(None, conf_of('chunks')) + bytes(3 * 4096) + conf_tar(None, conf_of('after-the-end'))
    with open(image, 'wb') as handle:
        handle.write(sparse_image(raw))
    assert expand_sparse(read(image))[:len(raw)] == raw

    result = flash(station, tree)
    assert result.returncode == 0, output(result)
    assert l4t.device_meta(station.state, PORT)['app'] == 'sparse'
    assert station.device_conf(PORT) == conf_of('chunks')


def test_a_sparse_image_simg2img_refuses_fails_the_flash_and_leaves_the_partition_blank(tmp_path):
    station, tree = station_with_tree(tmp_path)
    generated(station, tree, '--sparse')
    image = image_path(tree, 'internal')
    with open(image, 'r+b') as handle:  # cut inside the RAW chunk
        handle.truncate(os.path.getsize(image) // 2)

    result = flash(station, tree)
    assert result.returncode == 1
    assert 'simg2img %s APP failed' % image in result.stdout and 'Flash failure' in result.stdout
    assert l4t.device_meta(station.state, PORT)['app'] == 'failed'
    assert not os.path.lexists(storage(station))


# -- ROOTFS_ENC=1 --------------------------------------------------------------------------------

def probing_env():
    """The board identity without FUSELEVEL: flash.sh's get_fuse_level reads the first device in
    recovery mode, its ECID among it."""
    env = identity_env('0003')
    del env['FUSELEVEL']
    return env


def test_rootfs_enc_needs_the_ecid_of_a_probed_chip_or_a_generic_passphrase(tmp_path):
    station, tree = station_with_tree(tmp_path, boot=True)
    offline = generate(station, tree, ROOTFS_ENC='1')  # FUSELEVEL set: get_fuse_level never ran
    assert offline.returncode == 1
    assert 'ERROR: build_enc_root_fsimg: ECID is null .' in offline.stdout

    generated(station, tree, '-p', '--generic-passphrase', ROOTFS_ENC='1')
    assert l4t.images_record(tree)['enc_ecid'] == 'generic'
    generated(station, tree, env=probing_env(), ROOTFS_ENC='1')
    ecid = l4t.device_ecid(station.state, station.sysfs, PORT)
    assert l4t.images_record(tree)['enc_ecid'] == ecid[2:]


def test_rootfs_enc_makes_app_the_boot_partition_and_the_rootfs_an_encrypted_app_enc(tmp_path):
    station, tree = station_with_tree(tmp_path, boot=True)
    key = str(tmp_path / 'sym2_t234.key')
    write(key, '0x' + 'a5' * 16 + '\n')
    generated(station, tree, '-i', key, env=probing_env(), ROOTFS_ENC='1')
    directory = images_dir(tree)
    assert l4t.flash_cfg(tree) == {'APP': 'system_boot.img', 'external_device': '', 'CHIPID': '0x23'}
    assert flash_idx_rows(tree) == [('APP', 'system_boot.img'), ('APP_ENC', 'system_root_encrypted.img')]
    boot = os.path.join(directory, 'system_boot.img')
    assert sha1_ok(boot)
    with tarfile.open(boot) as archive:
        names = archive.getnames()
    assert './boot/extlinux/extlinux.conf' in names and not any('azaion' in name for name in names)
    # The rootfs: a sparse image of a LUKS container, copied as the flash.idx row names it.
    encrypted = read(os.path.join(directory, 'system_root_encrypted.img'))
    assert encrypted[:4] == SPARSE_MAGIC and expand_sparse(encrypted)[:6] == LUKS_MAGIC
    assert not os.path.exists(os.path.join(directory, 'system_root_encrypted.img.sha1sum'))
    # Nothing of the rootfs, nor the key, is readable in the images.
    everything = every_image_byte(tree)
    assert b'LOADER_PASSWORD' not in everything and b'a5' * 16 not in everything

    result = flash(station, tree)
    assert result.returncode == 0, output(result)
    meta = l4t.device_meta(station.state, PORT)
    assert (meta['app'], meta['app_enc'], meta['enc_unlock']) == ('tar', 'encrypted', 'yes')
    # APP holds the boot partition; the rootfs is in APP_ENC, which the lab does not open.
    assert os.path.isfile(os.path.join(storage(station), 'boot', 'extlinux', 'extlinux.conf'))
    assert station.device_conf(PORT) is None
    assert not os.path.lexists(storage(station, '.enc'))


def test_a_member_appended_to_the_app_tar_of_an_encrypted_rootfs_lands_in_the_boot_partition(tmp_path):
    station, tree = station_with_tree(tmp_path, boot=True)
    generated(station, tree, env=probing_env(), ROOTFS_ENC='1')
    boot = os.path.join(images_dir(tree), 'system_boot.img')
    other = tmp_path / 'other'
    write(str(other / 'etc' / 'azaion' / 'device.conf'), conf_of('appended'))
    subprocess.run(['tar', '-rpf', boot, '--numeric-owner', '-C', str(other), './etc/azaion/device.conf'], check=True)

    result = flash(station, tree)
    assert result.returncode == 0, output(result)
    # APP is mounted at /boot on the device: the file is /boot/etc/azaion/device.conf there.
    meta = l4t.device_meta(station.state, PORT)
    assert (meta['app'], meta['app_enc']) == ('tar', 'encrypted')
    assert conf_in(storage(station)) == conf_of('appended')


def test_an_encrypted_rootfs_opens_only_on_the_chip_it_was_generated_for(tmp_path):
    station, tree = station_with_tree(tmp_path, {'1-3': '7523', '1-4': '7523'}, boot=True)
    generated(station, tree, env=probing_env(), ROOTFS_ENC='1')  # the first device in recovery: 1-3
    result = flash_on(station, tree, '1-4')
    assert result.returncode == 0, output(result)  # the flash itself does not know
    meta = l4t.device_meta(station.state, '1-4')
    assert (meta['app_enc'], meta['enc_unlock']) == ('encrypted', 'no')


def test_the_enc_key_is_optional_a_missing_key_file_is_ignored_and_a_bad_one_fails(tmp_path):
    station, tree = station_with_tree(tmp_path, boot=True)
    generated(station, tree, '-i', str(tmp_path / 'no-such.key'), env=probing_env(), ROOTFS_ENC='1')
    raw = expand_sparse(read(os.path.join(images_dir(tree), 'system_root_encrypted.img')))
    header = dict(line.split('=', 1) for line in raw[8:4096].rstrip(b'\0').decode().splitlines() if '=' in line)
    assert header['key_sha256'] == hashlib.sha256(b'0' * 32).hexdigest()  # gen_luks_passphrase.py's default

    bad = str(tmp_path / 'bad.key')
    write(bad, 'a5a5\n')
    result = generate(station, tree, '-i', bad, env=probing_env(), ROOTFS_ENC='1')
    assert result.returncode == 1
    assert 'Add LUKS header on system_root_encrypted.img failed.' in result.stdout


def test_rootfs_enc_without_a_boot_extlinux_conf_fails_and_a_missing_app_enc_image_fails_the_flash(tmp_path):
    station, tree = station_with_tree(tmp_path)
    result = generate(station, tree, env=probing_env(), ROOTFS_ENC='1')
    assert result.returncode == 1
    assert '/boot/extlinux/extlinux.conf is not found, exiting...' in result.stdout

    write(os.path.join(tree, 'rootfs', 'boot', 'extlinux', 'extlinux.conf'), EXTLINUX)
    generated(station, tree, env=probing_env(), ROOTFS_ENC='1')
    missing = os.path.join(images_dir(tree), 'system_root_encrypted.img')
    os.remove(missing)
    result = flash(station, tree)
    assert result.returncode == 1
    assert 'Cannot find file %s' % missing in result.stdout
    meta = l4t.device_meta(station.state, PORT)
    assert meta['app'] == 'tar' and 'app_enc' not in meta  # APP was written before


# -- r38: zstd -----------------------------------------------------------------------------------

@needs_zstd
def test_r38_compresses_the_app_tar_with_zstd_and_its_flash_decompresses_it(tmp_path):
    station, tree = station_with_tree(tmp_path)
    make_r38(tree)
    generated(station, tree)
    image = image_path(tree, 'internal')
    assert read(image)[:4] == ZSTD_MAGIC
    tar = subprocess.run(['zstd', '-dc', image], capture_output=True, check=True).stdout
    assert tar_member(tar, './etc/azaion/device.conf') == conf_of('a')
    assert sha1_ok(image) and l4t.flash_cfg(tree)['APP'] == 'system.img'
    assert l4t.images_record(tree)['release'] == 'R38'

    result = flash(station, tree)
    assert result.returncode == 0, output(result)
    assert l4t.device_meta(station.state, PORT)['app'] == 'tar-zstd'
    assert station.device_conf(PORT) == conf_of('a')


@needs_zstd
def test_r38_sparse_is_system_img_zst(tmp_path):
    station, tree = station_with_tree(tmp_path)
    make_r38(tree)
    generated(station, tree, '--sparse')
    image = os.path.join(images_dir(tree), 'system.img.zst')
    sparse = subprocess.run(['zstd', '-dc', image], capture_output=True, check=True).stdout
    assert sparse[:4] == SPARSE_MAGIC
    assert tar_member(expand_sparse(sparse), './etc/azaion/device.conf') == conf_of('a')
    assert sha1_ok(image) and l4t.flash_cfg(tree)['APP'] == 'system.img.zst'

    result = flash(station, tree)
    assert result.returncode == 0, output(result)
    assert l4t.device_meta(station.state, PORT)['app'] == 'sparse-zstd'
    assert station.device_conf(PORT) == conf_of('a')


@needs_zstd
def test_an_r36_flash_writes_a_zstd_image_raw(tmp_path):
    station, tree = station_with_tree(tmp_path)
    make_r38(tree)
    generated(station, tree)
    write(os.path.join(tree, 'nv_tegra', 'nv_tegra_release'), l4t.NV_TEGRA_RELEASE)  # back to R36

    result = flash(station, tree)
    assert result.returncode == 0, output(result)  # neither sparse nor tar: dd
    assert l4t.device_meta(station.state, PORT)['app'] == 'raw'
    assert station.device_conf(PORT) is None


# -- ROOTFS_AB=1 ---------------------------------------------------------------------------------

def test_rootfs_ab_writes_app_and_app_b_images_and_the_flash_writes_both_slots(tmp_path):
    station, tree = station_with_tree(tmp_path)
    generated(station, tree, ROOTFS_AB='1')
    directory = images_dir(tree)
    assert l4t.flash_cfg(tree) == {'APP': 'system.img', 'APP_b': 'system.img_b', 'external_device': '',
                                   'CHIPID': '0x23'}
    assert flash_idx_rows(tree) == [('APP', 'system.img'), ('APP_b', 'system.img_b')]
    for name in ('system.img', 'system.img_b'):
        assert sha1_ok(os.path.join(directory, name))
        with tarfile.open(os.path.join(directory, name)) as archive:
            assert archive.extractfile('./etc/azaion/device.conf').read().decode() == conf_of('a')

    result = flash(station, tree)
    assert result.returncode == 0, output(result)
    meta = l4t.device_meta(station.state, PORT)
    assert (meta['app'], meta['app_b']) == ('tar', 'tar')
    assert conf_in(storage(station)) == conf_of('a') and conf_in(storage(station, '.b')) == conf_of('a')

    # Flashed again without A/B: the new partition table has no APP_b.
    generated(station, tree)
    power_cycle(station)
    result = flash(station, tree)
    assert result.returncode == 0, output(result)
    assert 'app_b' not in l4t.device_meta(station.state, PORT)
    assert not os.path.lexists(storage(station, '.b'))


@pytest.mark.parametrize('missing', ['system.img_b', 'system.img_b.sha1sum'])
def test_a_missing_app_b_image_or_sha1sum_fails_the_flash_after_app_was_written(tmp_path, missing):
    station, tree = station_with_tree(tmp_path)
    generated(station, tree, ROOTFS_AB='1')
    path = os.path.join(images_dir(tree), missing)
    os.remove(path)

    result = flash(station, tree)
    assert result.returncode == 1
    if missing.endswith('.sha1sum'):
        assert 'Sha1 checksum file %s is not found !!!' % path in result.stdout
    else:
        assert 'APP image %s is not found !!!' % path in result.stdout
    assert 'Failed to write to APP_b' in result.stdout
    meta = l4t.device_meta(station.state, PORT)
    assert meta['app'] == 'tar' and 'app_b' not in meta
    assert [(run['exit'], run['device']) for run in l4t.flash_runs(station.state)] == [(1, PORT)]


def test_rootfs_ab_on_the_nvme_follows_the_external_layout(tmp_path):
    station, tree = station_with_tree(tmp_path)
    generated(station, tree, location='external', ROOTFS_AB='1')  # flash_l4t_t234_nvme.xml: APP alone
    assert 'APP_b_ext' not in l4t.flash_cfg(tree, 'external')
    assert l4t.flash_cfg(tree, 'internal')['APP_b'] == 'system.img_b'

    write(os.path.join(tree, 'tools', 'kernel_flash', 'flash_l4t_t234_nvme.xml'), NVME_AB_XML)
    generated(station, tree, location='external', ROOTFS_AB='1')
    assert l4t.flash_cfg(tree, 'external') == {'APP_ext': 'system.img', 'APP_b_ext': 'system.img_b',
                                               'external_device': 'nvme0n1p1', 'CHIPID': '0x23'}
    result = flash(station, tree)
    assert result.returncode == 0, output(result)
    meta = l4t.device_meta(station.state, PORT)
    assert (meta['app'], meta['app_b']) == ('tar', 'tar') and conf_in(storage(station, '.b')) == conf_of('a')


# -- LAB_APP_TAR_TRUNCATED=1 ---------------------------------------------------------------------

@pytest.mark.parametrize('release', ['R36', pytest.param('R38', marks=needs_zstd)])
def test_a_tar_cut_short_by_a_full_disk_passes_generation_and_fails_on_the_device(tmp_path, release):
    station, tree = station_with_tree(tmp_path)
    if release == 'R38':
        make_r38(tree)
    result = generated(station, tree, LAB_APP_TAR_TRUNCATED='1')  # package_images ignores tar's status
    assert 'No space left on device' in result.stderr
    image = image_path(tree, 'internal')
    assert sha1_ok(image)  # the sha1 of what was written
    if release == 'R36':
        blocks = subprocess.run(['tar', '-tRf', image], capture_output=True, text=True, check=False)
        assert blocks.returncode != 0 and 'Unexpected EOF' in blocks.stderr
        assert '** Block of NULs **' not in blocks.stdout  # no end-of-archive marker
    else:
        assert subprocess.run(['zstd', '-t', image], capture_output=True, check=False).returncode != 0

    result = flash(station, tree)
    assert result.returncode == 1
    assert 'Failed to write to APP' in result.stdout
    assert l4t.device_meta(station.state, PORT)['app'] == 'partial'


def test_the_knob_cuts_the_tar_inside_its_last_member(tmp_path):
    station, tree = station_with_tree(tmp_path)
    generated(station, tree)
    whole = read(image_path(tree, 'internal'))
    generated(station, tree, LAB_APP_TAR_TRUNCATED='1')
    cut = read(image_path(tree, 'internal'))
    with tarfile.open(fileobj=io.BytesIO(whole)) as archive:
        last = archive.getmembers()[-1]
    assert whole.startswith(cut)
    assert last.offset < len(cut) < last.offset_data + max(last.size, 1)


# -- NFS: what the device sees of images/ ---------------------------------------------------------

def moved_out(tree, tmp_path, name='system.img'):
    """Move images/internal/<name> out of the tree; return its new path."""
    outside = tmp_path / 'elsewhere'
    os.makedirs(outside, exist_ok=True)
    target = str(outside / name)
    shutil.move(os.path.join(images_dir(tree), name), target)
    return target


def test_an_image_linked_to_another_place_of_the_host_is_missing_on_the_device(tmp_path):
    station, tree = station_with_tree(tmp_path)
    generated(station, tree)
    image = image_path(tree, 'internal')
    os.symlink(moved_out(tree, tmp_path), image)  # fine on the host: the file is there

    result = flash(station, tree)
    assert result.returncode == 1
    assert 'APP image %s is not found !!!' % image in result.stdout
    assert station.device_conf(PORT) is None and l4t.device_meta(station.state, PORT) == {}


def test_a_sha1sum_linked_out_of_the_export_is_missing_and_a_hard_link_is_a_file(tmp_path):
    station, tree = station_with_tree(tmp_path)
    generated(station, tree)
    image = image_path(tree, 'internal')
    os.symlink(moved_out(tree, tmp_path, 'system.img.sha1sum'), image + '.sha1sum')
    result = flash(station, tree)
    assert result.returncode == 1
    assert 'Sha1 checksum file %s.sha1sum is not found !!!' % image in result.stdout

    os.remove(image + '.sha1sum')
    outside = moved_out(tree, tmp_path)
    os.link(outside, image)  # a hard link: a file of the export
    write(image + '.sha1sum', hashlib.sha1(read(outside)).hexdigest() + '\n')
    power_cycle(station)  # the failed flash left it in the flashing initrd
    result = flash(station, tree)
    assert result.returncode == 0, output(result)
    assert station.device_conf(PORT) == conf_of('a')


def test_relative_links_resolve_inside_the_images_mount_only(tmp_path):
    station, tree = station_with_tree(tmp_path)
    generated(station, tree)
    images = os.path.join(tree, 'tools', 'kernel_flash', 'images')
    image = image_path(tree, 'internal')
    # Beside images/, in the exported tools/kernel_flash: the device mounts images/ alone, and
    # ".." at the top of the mount leaves it.
    shutil.move(image, os.path.join(tree, 'tools', 'kernel_flash', 'system.img'))
    os.symlink('../../system.img', image)
    result = flash(station, tree)
    assert result.returncode == 1 and 'APP image %s is not found !!!' % image in result.stdout
    power_cycle(station)

    os.remove(image)
    os.makedirs(os.path.join(images, 'shared'))
    shutil.move(os.path.join(tree, 'tools', 'kernel_flash', 'system.img'), os.path.join(images, 'shared', 'system.img'))
    os.symlink('../shared/system.img', image)
    result = flash(station, tree)
    assert result.returncode == 0, output(result)
    assert station.device_conf(PORT) == conf_of('a')


def test_an_absolute_link_resolves_in_the_devices_namespace_the_exported_rootfs(tmp_path):
    station, tree = station_with_tree(tmp_path)
    generated(station, tree)
    image = image_path(tree, 'internal')
    other = str(tmp_path / 'other.img')
    conf_tar(other, conf_of('from-the-rootfs'))
    shutil.copy(other, os.path.join(tree, 'rootfs', 'lab.img'))
    os.remove(image)
    os.symlink('/lab.img', image)  # on the host: /lab.img, which is not there
    result = flash(station, tree)
    assert result.returncode == 0, output(result)
    assert station.device_conf(PORT) == conf_of('from-the-rootfs')


@pytest.mark.parametrize('link', ['images', 'internal'])
def test_an_images_or_internal_directory_linked_out_of_the_export_is_missing(tmp_path, link):
    station, tree = station_with_tree(tmp_path)
    generated(station, tree)
    images = os.path.join(tree, 'tools', 'kernel_flash', 'images')
    directory = images if link == 'images' else os.path.join(images, 'internal')
    outside = str(tmp_path / 'elsewhere' / link)
    os.makedirs(os.path.dirname(outside))
    shutil.move(directory, outside)
    os.symlink(outside, directory)

    result = flash(station, tree)
    assert result.returncode == 1
    # flash.cfg is not read either: APP names nothing.
    assert 'APP image %s/ is not found !!!' % os.path.join(images, 'internal') in result.stdout
    assert station.device_conf(PORT) is None


def test_an_images_directory_linked_inside_the_export_is_mounted(tmp_path):
    station, tree = station_with_tree(tmp_path)
    generated(station, tree)
    images = os.path.join(tree, 'tools', 'kernel_flash', 'images')
    shutil.move(images, images + '.real')
    os.symlink(os.path.join(tree, 'tools', 'kernel_flash', 'images.real'), images)  # the server resolves it

    result = flash(station, tree)
    assert result.returncode == 0, output(result)
    assert station.device_conf(PORT) == conf_of('a')
