"""One image generation per image group, each device's identity appended to its flash's own APP
image (docs/l4t-app-image.md), over the lab: NVIDIA-format APP tars, real GNU tar on the device."""

import glob
import hashlib
import json
import os

from conftest import assert_ok
from lab import labkit
from lab.test_app_formats import NVME_AB_XML

ONE_BOARD = dict(('1-%d' % number, '7523') for number in range(1, 7))


def group_images(batch):
    """Each group's APP image (the tree's images/external/system.img) -> its record."""
    images = {}
    for record_path in glob.glob(os.path.join(batch.lab.workdir, 'images', '*', 'group.json')):
        with open(record_path) as record:
            group = json.load(record)
        for image in group['images']:
            images[os.path.join(os.path.dirname(record_path), 'Linux_for_Tegra', image['relpath'])] = image
    return images


def sha1(path):
    with open(path, 'rb') as content:
        return hashlib.sha1(content.read()).hexdigest()


def test_six_devices_of_one_board_on_three_slots_share_one_generation_and_each_boots_its_own_identity(
        make_provision):
    batch = make_provision(ONE_BOARD, flash_seconds=1.0, extra_vars={'jetson_flash_concurrency': 3})
    first = batch.run()
    assert_ok(first)

    generations = batch.generations()
    assert len(generations) == 1 and generations[0]['argv'][:3] == ['--no-flash', '--massflash', '3']
    assert batch.holds_its_own_identity()
    for port, serial in batch.serials.items():
        email = 'azaion-jetson-%s@azaion.com' % serial.rsplit('-', 1)[1]
        assert batch.lab.loaders.loader(port).login_attempts() == [{'email': email, 'ok': True}]
        # What device.conf has in its port tree, it has on the device: mode and numeric owner.
        in_tree = os.stat(os.path.join(batch.lab.workdir, 'ports', port, 'Linux_for_Tegra', 'rootfs', 'etc', 'azaion',
                                       'device.conf'))
        on_device = os.stat(os.path.join(batch.lab.storage(port), 'etc', 'azaion', 'device.conf'))
        assert (on_device.st_mode & 0o7777, on_device.st_uid, on_device.st_gid) == (
            in_tree.st_mode & 0o7777, in_tree.st_uid, in_tree.st_gid)
        assert on_device.st_mode & 0o7777 == 0o600 and on_device.st_uid != 0
        assert batch.flash_state(serial)['status'] == 'done'
    # Every flash from its slot's tree, the slots' copies of the group's image and nothing else.
    runs = batch.flash_runs()
    assert len(runs) == 6 and {run['instance'] for run in runs} <= {0, 1, 2}
    assert all(run['tree'].endswith('/slot-%d/Linux_for_Tegra' % run['instance']) for run in runs)

    # The group's image was never written: it is what the generation checksummed. Each slot's
    # copy is its own file and, its flash over, byte for byte the group's again.
    images = group_images(batch)
    assert len(images) == 1
    image_path, image = list(images.items())[0]
    with open(image_path + '.sha1sum') as generated_sum:
        assert sha1(image_path) == generated_sum.read().strip()
    copies = glob.glob(os.path.join(batch.lab.workdir, 'images', '*', 'slot-*', 'Linux_for_Tegra', image['relpath']))
    assert len(copies) == 3
    for copy in copies:
        assert os.stat(copy).st_nlink == 1 and os.stat(copy).st_ino != os.stat(image_path).st_ino
        assert sha1(copy) == sha1(image_path)
    assert batch.passwords_only_where_they_belong()
    assert batch.station_is_clean()

    # The report: one generation for the six, and each flash in its parts on the timeline.
    assert '1 image generation for 6 devices' in first.stdout
    with open(os.path.join(batch.lab.workdir, 'reports', 'batch.json')) as report_json:
        report = json.load(report_json)
    assert (report['summary']['generations'], report['summary']['generated_devices']) == (1, 6)
    for row in report['devices']:
        assert row['image'].startswith('shared ') and row['flash_write_seconds'] >= 1.0
        parts = [part['phase'] for part in row['timeline'] if part['phase'].startswith('flash')]
        assert parts[-2:] == ['flash (slot wait)', 'flash'] and parts[0] in ('flash (generation)', 'flash (generation, shared)')
    with open(os.path.join(batch.lab.workdir, 'reports', 'batch.html')) as report_html:
        page = report_html.read()
    assert '1 image generation for 6 devices' in page and 'data-phase="flash (slot wait)"' in page

    # The finished re-run generates nothing and flashes nothing.
    again = batch.run()
    assert_ok(again)
    assert all(counts['changed'] == 0 for counts in again.recap.values()), again.recap
    assert len(batch.generations()) == 1 and len(batch.flash_runs()) == 6


def test_a_rotation_reflashes_every_device_from_the_same_generation(make_provision):
    batch = make_provision({'1-1': '7523', '1-2': '7523'})
    assert_ok(batch.run())
    before = dict((port, labkit.read_device_conf(batch.lab.storage(port))['AZAION_DEVICE_PASSWORD']) for port in batch.serials)

    for port in batch.serials:
        batch.lab.power_cycle(port)  # back into recovery mode, to be flashed again
    rotated = batch.run('-e', 'identity_rotate=true')
    assert_ok(rotated)
    assert len(batch.generations()) == 1 and len(batch.flash_runs()) == 4
    assert batch.holds_its_own_identity()
    after = dict((port, labkit.read_device_conf(batch.lab.storage(port))['AZAION_DEVICE_PASSWORD']) for port in batch.serials)
    assert all(after[port] != before[port] for port in batch.serials)
    assert batch.passwords_only_where_they_belong()


def test_per_device_images_are_generated_in_each_port_tree_and_removed_after_the_flash(make_provision):
    batch = make_provision({'1-1': '7523', '1-2': '7523'}, extra_vars={'flash_image_mode': 'per_device'})
    assert_ok(batch.run())
    runs = batch.flash_runs()
    assert len(batch.generations()) == 2
    assert sorted(run['tree'] for run in runs) == sorted(
        os.path.join(batch.lab.workdir, 'ports', port, 'Linux_for_Tegra') for port in batch.serials)
    assert batch.holds_its_own_identity()
    assert glob.glob(os.path.join(batch.lab.workdir, 'ports', '*', 'Linux_for_Tegra', 'tools', 'kernel_flash', 'images')) == []
    assert not os.path.exists(os.path.join(batch.lab.workdir, 'images'))
    assert batch.passwords_only_where_they_belong()


def test_a_new_staging_makes_a_new_generation_and_the_next_device_gets_the_new_rootfs(make_provision):
    batch = make_provision({'1-1': '7523', '1-2': '7523'})
    assert_ok(batch.run('--limit', 'AZJN-0001'))
    # A new staging of the station's rootfs: a file of its own and a new stamp, as the rootfs
    # phase writes them after it staged.
    staging = os.path.join(batch.lab.workdir, 'staging', 'Linux_for_Tegra')
    with open(os.path.join(staging, 'rootfs', 'etc', 'azaion-line'), 'w') as line:
        line.write('line 2\n')
    with open(os.path.join(staging, '.azaion-staging.json'), 'w') as stamp:
        json.dump({'staged': 2.0, 'steps': [], 'generation': 'line-2'}, stamp)

    assert_ok(batch.run())
    assert len(batch.generations()) == 2 and [run['usb_instance'] for run in batch.flash_runs()] == ['1-1', '1-2']
    with open(os.path.join(batch.lab.storage('1-2'), 'etc', 'azaion-line')) as line:
        assert line.read() == 'line 2\n'
    assert batch.holds_its_own_identity()
    # The old staging's group is gone (gigabytes on a real station); the new one is kept.
    assert len(group_images(batch)) == 1
    assert batch.passwords_only_where_they_belong()


def test_an_ab_rootfs_gets_the_devices_members_in_app_and_app_b_from_one_generation(make_provision):
    batch = make_provision({'1-1': '7523', '1-2': '7523'})
    # An NVMe layout with APP_b (NVIDIA's A/B rootfs) in the bundle, and ROOTFS_AB=1 on the station.
    with open(os.path.join(batch.lab.bundle, 'tools', 'kernel_flash', 'flash_l4t_t234_nvme.xml'), 'w') as layout:
        layout.write(NVME_AB_XML)
    assert_ok(batch.run(ROOTFS_AB='1'))
    assert len(batch.generations()) == 1
    assert sorted(os.path.basename(path) for path in group_images(batch)) == ['system.img', 'system.img_b']
    for port in batch.serials:
        assert labkit.read_device_conf(batch.lab.storage(port) + '.b') == labkit.read_device_conf(batch.lab.storage(port))
    assert batch.holds_its_own_identity()
    assert batch.passwords_only_where_they_belong()
