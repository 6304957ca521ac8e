"""Images that cannot take a device's members (docs/l4t-app-image.md) under flash_image_mode auto
(each such device gets images of its own, and the log and the report say why) and shared (the
device is refused, naming it, the format and the fix), over the lab's NVIDIA-format doubles."""

import os

import pytest

from conftest import assert_ok

R38_RELEASE = '# R38 (release), REVISION: 4.0, GCID: 00000000, BOARD: generic, EABI: aarch64, DATE: lab\n'
PORTS = {'1-1': '7523', '1-2': '7523'}


def sparse(batch):
    batch.group_vars['flash_extra_args'] = ['--sparse']
    batch.write_inventory()
    return {}, 'its APP image is generated sparse (--sparse in flash_extra_args)'


def compressed(batch):
    with open(os.path.join(batch.lab.bundle, 'nv_tegra', 'nv_tegra_release'), 'w') as release:
        release.write(R38_RELEASE)
    return {}, 'its bundle is L4T R38, whose APP image is a zstd-compressed tar'


def encrypted(batch):
    # NVIDIA's generic passphrase: the lab's generation knows no ECID with FUSELEVEL set.
    batch.group_vars['flash_extra_args'] = ['-p', '--generic-passphrase']
    batch.write_inventory()
    return {'ROOTFS_ENC': '1'}, 'its rootfs is generated encrypted (ROOTFS_ENC=1 on the station)'


FORMATS = {'sparse': sparse, 'zstd': compressed, 'encrypted': encrypted}


@pytest.mark.parametrize('image_format', ['sparse', 'zstd'])
def test_under_auto_a_device_whose_images_cannot_be_shared_gets_its_own_and_the_report_says_why(
        make_provision, image_format):
    batch = make_provision(PORTS)
    env, why = FORMATS[image_format](batch)
    result = batch.run(**env)
    assert_ok(result)
    assert len(batch.generations()) == 2  # one per device, each in its port tree
    assert sorted(run['tree'] for run in batch.flash_runs()) == sorted(
        os.path.join(batch.lab.workdir, 'ports', port, 'Linux_for_Tegra') for port in PORTS)
    # Said in the run's warnings and in the report.
    assert result.stderr.count('gets images generated for it alone (flash_image_mode auto): ' + why) == 2
    report = batch.report()
    assert all(row['result'] == 'done' and row['image'].startswith('own (' + why) for row in report.values())
    assert '2 image generations for 2 devices' in result.stdout
    assert batch.holds_its_own_identity()
    assert batch.passwords_only_where_they_belong()


def test_under_auto_an_encrypted_rootfs_gets_images_of_its_own_which_need_a_layout_with_app_enc(make_provision):
    # The collection's layouts (flash_l4t_t234_nvme.xml) have no APP_ENC partition: the device's
    # own generation fails, as NVIDIA's would, naming it; no shared image was made for it.
    batch = make_provision({'1-1': '7523'})
    env, why = encrypted(batch)
    result = batch.run(**env)
    assert result.returncode != 0
    assert 'gets images generated for it alone (flash_image_mode auto): ' + why in result.stderr
    assert len(batch.generations()) == 1 and batch.flash_runs() == []
    assert 'has no APP_ENC partition' in result.stdout
    assert not os.path.exists(os.path.join(batch.lab.workdir, 'images'))
    assert batch.passwords_only_where_they_belong()


@pytest.mark.parametrize('image_format', sorted(FORMATS))
def test_under_shared_the_batch_check_refuses_each_device_naming_the_format_and_the_fix(make_provision, image_format):
    batch = make_provision(PORTS, extra_vars={'flash_image_mode': 'shared'})
    env, why = FORMATS[image_format](batch)
    result = batch.run(**env)
    assert result.returncode != 0
    for serial in batch.serials.values():
        assert ('%s: flash_image_mode is shared, but its images cannot be shared: %s' % (serial, why)) in result.stdout
    assert 'or set flash_image_mode to auto (images of its own where they cannot be shared) or per_device' in result.stdout
    assert batch.generations() == [] and batch.flash_runs() == []
    assert batch.api.write_count() == 0


def test_a_tar_without_a_clean_end_is_found_after_generation_and_refused_under_shared(make_provision):
    batch = make_provision({'1-1': '7523'}, extra_vars={'flash_image_mode': 'shared'})
    result = batch.run(LAB_APP_TAR_TRUNCATED='1')
    assert result.returncode != 0
    assert len(batch.generations()) == 1 and batch.flash_runs() == []
    error = batch.flash_state('AZJN-0001')['error']
    assert 'not flashing AZJN-0001 on USB port 1-1 with flash_image_mode shared' in error
    assert 'is tar without a clean end' in error and 'set flash_image_mode to auto' in error


def test_a_tar_without_a_clean_end_falls_back_to_images_of_its_own_under_auto(make_provision):
    batch = make_provision({'1-1': '7523'})
    result = batch.run(LAB_APP_TAR_TRUNCATED='1')
    # Found once the group was generated: the device's own generation follows, in its port tree
    # (the lab's disk "fills up" every time: what its flash then writes is the double's affair).
    assert len(batch.generations()) == 2
    assert [call['cwd'] for call in batch.generations()][1] == os.path.join(batch.lab.workdir, 'ports', '1-1',
                                                                            'Linux_for_Tegra')
    assert 'gets images generated for it alone (flash_image_mode auto): its image group' in result.stderr
    assert 'is tar without a clean end' in batch.report()['AZJN-0001']['image']
    assert batch.passwords_only_where_they_belong()
