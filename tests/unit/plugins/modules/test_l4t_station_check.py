"""azaion.jetson.l4t_station_check against a lab station: its bundle, its host root (NFS, IPv6,
udev) and the lab admin API on loopback. It names every problem, and changes nothing but the
station's workdir: made, or closed to mode 0700, once the station passes."""

import json
import os

import pytest
from ansible.module_utils.basic import AnsibleModule

from lab import keys, l4t_bundle, l4t_host, usb_sysfs
from lab.admin_api import LabAdminAPI

from ansible_collections.azaion.jetson.plugins.modules.l4t_station_check import main

TOOLS = ['flash.sh', 'tools/kernel_flash/l4t_initrd_flash.sh', 'odmfuse.sh']


@pytest.fixture
def station(tmp_path):
    lab_state = str(tmp_path / 'lab-state')
    os.makedirs(lab_state)
    host_root = l4t_host.make_host_root(str(tmp_path / 'host'), lab_state)
    bundle = l4t_bundle.make_bundle(str(tmp_path / 'bundle'), lab_state, str(tmp_path / 'sysfs'), host_root=host_root)
    return dict(l4t_dir=bundle, station_root=host_root, workdir=str(tmp_path / 'station'), concurrency=2,
                image_space_mb=1, tools=TOOLS, devices=[], usb_sysfs_root=str(tmp_path / 'sysfs'))


def snapshot(top):
    return sorted((root, tuple(sorted(files))) for root, _dirs, files in os.walk(top))


def test_a_ready_station_with_a_reachable_admin_api_passes_and_only_its_workdir_is_made(module_runner, station,
                                                                                        tmp_path):
    before = snapshot(str(tmp_path))
    with LabAdminAPI(token='lab-token-0123456789abcdef') as api:
        result = module_runner(main, dict(station, api_url=api.url))
        assert api.write_count() == 0
        assert [entry['method'] for entry in api.request_log()] == ['GET']  # answered 401: reachable
    assert result.get('failed') is not True, result
    assert result['problems'] == [] and result['changed'] is True
    assert snapshot(str(tmp_path)) == sorted(before + [(station['workdir'], ())])
    assert os.stat(station['workdir']).st_mode & 0o7777 == 0o700
    assert module_runner(main, station)['changed'] is False


def test_every_problem_is_named_at_once_the_admin_api_with_the_flasher_and_the_bundle(module_runner, station):
    with open(os.path.join(station['station_root'], 'proc', 'sys', 'net', 'ipv6', 'conf', 'all', 'disable_ipv6'),
              'w') as flag:
        flag.write('1\n')
    with LabAdminAPI(token='lab-token-0123456789abcdef') as api:
        url = api.url
    result = module_runner(main, dict(station, api_url=url))  # the API is down now
    assert result['failed'] is True
    assert len(result['problems']) == 2, result['problems']
    assert 'the admin API does not answer from this station' in result['problems'][0]
    assert 'connection refused' in result['problems'][0]
    assert 'IPv6 is off on the station' in result['problems'][1]

    os.unlink(os.path.join(station['l4t_dir'], 'odmfuse.sh'))
    missing = module_runner(main, dict(station, initrd=False))
    assert missing['problems'] == ['the L4T bundle %s is missing or incomplete (%s not found): set jetson_l4t_dir to '
                                   'its Linux_for_Tegra directory' % (station['l4t_dir'],
                                                                      os.path.join(station['l4t_dir'], 'odmfuse.sh'))]


def test_the_admin_api_alone_needs_no_bundle(module_runner, tmp_path):
    with LabAdminAPI(token='lab-token-0123456789abcdef') as api:
        result = module_runner(main, dict(workdir=str(tmp_path), initrd=False, api_url=api.url, devices=[]))
    assert result.get('failed') is not True and result['problems'] == []
    refused = module_runner(main, dict(workdir=str(tmp_path), tools=['flash.sh'], devices=[]))
    assert refused['failed'] is True and 'l4t_dir is required' in refused['msg']


# -- the devices: what only the station can tell ------------------------------------------------

def device(tmp_path, name, port, **fields):
    """A device context as the controller makes it (the keys the check reads)."""
    context = dict(name=name, serial=name, email='azaion-jetson-%s@azaion.com' % name[-4:], usb_instance=port,
                   board='', own_rootfs='', fuse_enabled=False, fuse_config='', pkc_key='', sbk_key='',
                   state_file=str(tmp_path / 'station' / 'devices' / name / 'state.json'))
    context.update(fields)
    return context


def test_devices_in_recovery_mode_with_good_paths_pass(module_runner, station, tmp_path):
    usb_sysfs.make_usb_sysfs(station['usb_sysfs_root'], {'1-1': '7523', '1-2': '7323'})
    own = tmp_path / 'rootfs' / 'AZJN-0002'
    own.mkdir(parents=True)
    devices = [device(tmp_path, 'AZJN-0001', '1-1', board='orin-nano-8gb'),
               device(tmp_path, 'AZJN-0002', '1-2', own_rootfs=str(own))]
    result = module_runner(main, dict(station, devices=devices))
    assert result.get('failed') is not True and result['problems'] == [], result


def test_each_device_problem_names_the_device_the_variable_and_the_fix(module_runner, station, tmp_path):
    usb_sysfs.make_usb_sysfs(station['usb_sysfs_root'], {'1-1': '7523', '1-3': '7323'})
    rootfs = tmp_path / 'rootfs'
    (rootfs / 'AZJN-0003').mkdir(parents=True)
    os.symlink(str(rootfs / 'AZJN-0003'), str(rootfs / 'alias'))  # two names, one directory
    os.symlink(station['l4t_dir'], str(tmp_path / 'bundle-link'))
    devices = [
        device(tmp_path, 'AZJN-0001', '1-1', board='orin-nx-16gb'),  # an Orin Nano 8GB is on 1-1
        device(tmp_path, 'AZJN-0002', '1-2'),  # nothing in recovery mode on 1-2
        device(tmp_path, 'AZJN-0003', '1-3', own_rootfs=str(rootfs / 'AZJN-0003')),
        device(tmp_path, 'AZJN-0004', '1-4', own_rootfs=str(rootfs / 'alias'), pkc_key=str(tmp_path / 'no-key.pem')),
        device(tmp_path, 'AZJN-0005', '1-5', own_rootfs=str(tmp_path / 'bundle-link' / 'rootfs')),
        device(tmp_path, 'AZJN-0006', '1-6', fuse_enabled=True, fuse_config=str(tmp_path / 'missing-fuses.xml')),
    ]
    # Only the devices whose pending phases need recovery mode are looked for on the bus.
    pending = {'AZJN-0003': ['verify'], 'AZJN-0004': ['identity'], 'AZJN-0005': ['identity'], 'AZJN-0006': ['fuse']}
    result = module_runner(main, dict(station, devices=devices, pending_phases=pending, tools=[], initrd=False))
    assert result['failed'] is True
    problems = result['problems']
    expected = {
        'AZJN-0001': 'jetson_board is orin-nx-16gb, but the Jetson in recovery mode on USB port 1-1 is an orin-nano-8gb',
        'AZJN-0002': 'no Jetson is in recovery mode on USB port 1-2 (jetson_usb_instance); put the device',
        'AZJN-0003, AZJN-0004': 'jetson_rootfs_dir %s and %s are one directory' % (rootfs / 'AZJN-0003', rootfs / 'alias'),
        'AZJN-0005': 'jetson_rootfs_dir %s is inside the bundle jetson_l4t_dir' % (tmp_path / 'bundle-link' / 'rootfs'),
        'AZJN-0006': 'jetson_fuse_config: ',
    }
    for name, words in expected.items():
        assert [problem for problem in problems if problem.startswith(name + ': ') and words in problem], (name, problems)
    # AZJN-0004's key is not used by its pending phase (identity), so not checked; AZJN-0006's
    # port is empty, and fusing needs recovery mode.
    assert not any('no-key.pem' in problem for problem in problems)
    assert any(problem.startswith('AZJN-0006: no Jetson is in recovery mode on USB port 1-6') for problem in problems)
    assert len(problems) == 6, problems


def test_a_key_file_the_flash_will_use_must_be_there_and_the_workdir_outside_the_bundle(module_runner, station, tmp_path):
    usb_sysfs.make_usb_sysfs(station['usb_sysfs_root'], {'1-1': '7523'})
    devices = [device(tmp_path, 'AZJN-0001', '1-1', pkc_key=str(tmp_path / 'keys' / 'pkc.pem'))]
    workdir = os.path.join(station['l4t_dir'], 'work')
    result = module_runner(main, dict(station, devices=devices, workdir=workdir, tools=[], initrd=False))
    assert result['problems'] == [
        'jetson_workdir %s is inside the bundle jetson_l4t_dir %s once symbolic links are resolved; set jetson_workdir'
        ' outside the bundle, which is never to be written' % (workdir, station['l4t_dir']),
        'AZJN-0001: jetson_pkc_key %s is not a readable file on the station; put the file there or fix'
        ' jetson_pkc_key' % (tmp_path / 'keys' / 'pkc.pem')]


def test_a_staging_rootfs_a_phase_will_write_into_must_be_a_directory_outside_the_stations_trees(
        module_runner, station, tmp_path):
    usb_sysfs.make_usb_sysfs(station['usb_sysfs_root'], {'1-1': '7523', '1-2': '7523'})
    staging = os.path.join(station['workdir'], 'staging', 'Linux_for_Tegra', 'rootfs')
    os.makedirs(staging)
    os.symlink(staging, str(tmp_path / 'looks-elsewhere'))
    devices = [device(tmp_path, 'AZJN-0001', '1-1', own_rootfs=str(tmp_path / 'not-made-yet')),
               device(tmp_path, 'AZJN-0002', '1-2', own_rootfs=str(tmp_path / 'looks-elsewhere')),
               device(tmp_path, 'AZJN-0003', '1-3', own_rootfs=str(tmp_path / 'only-verified'))]
    pending = {'AZJN-0001': ['identity', 'flash', 'verify'], 'AZJN-0002': ['identity'], 'AZJN-0003': ['verify']}
    result = module_runner(main, dict(station, devices=devices, pending_phases=pending, tools=[], initrd=False))
    assert result['problems'] == [
        "AZJN-0001: jetson_rootfs_dir %s is not a directory on the station; make the device's staging rootfs there (or"
        ' fix jetson_rootfs_dir) before its identity and flash' % (tmp_path / 'not-made-yet'),
        "AZJN-0002: jetson_rootfs_dir %s is inside the station's own trees under jetson_workdir once symbolic links are"
        ' resolved; set it to a rootfs outside them' % (tmp_path / 'looks-elsewhere')]
    assert result['devices'] == {'AZJN-0001': result['problems'][:1], 'AZJN-0002': result['problems'][1:],
                                 'AZJN-0003': []}


# -- fuse configurations against the devices' keys ------------------------------------------------

def test_each_fuse_configuration_that_does_not_fit_its_devices_keys_is_named_and_nothing_changes(
        module_runner, station, tmp_path):
    """The batch check refuses, per device, what l4t_fuse would refuse before burning: every
    problem named with the device, the file and the fuse, before any device is touched."""
    ports = dict(('1-%d' % number, '7523') for number in range(1, 9))
    usb_sysfs.make_usb_sysfs(station['usb_sysfs_root'], ports)
    key_dir = tmp_path / 'keys'
    key_dir.mkdir()
    pkc = keys.make_pkc_key(str(key_dir / 'pkc.pem'), 'ecp256')
    other = keys.make_pkc_key(str(key_dir / 'other.pem'), 'ecp256')
    pkh = keys.pkc_key_hash(pkc)
    sbk = str(key_dir / 'sbk.key')
    sbk_value = keys.make_sbk_key(sbk)
    ekb = str(key_dir / 'eks_t234.img')
    with open(ekb, 'wb') as image:
        image.write(b'lab EKB image\n')
    good = {'PublicKeyHash': pkh, 'BootSecurityInfo': '0x202', 'SecurityMode': '0x1'}
    oem = dict([('PublicKeyHash', pkh), ('OemK1', '0x' + '3c' * 32), ('BootSecurityInfo', '0x202'),
                ('SecurityMode', '0x1')])
    sbk_fuses = dict([('PublicKeyHash', pkh), ('SecureBootKey', '0x' + sbk_value), ('BootSecurityInfo', '0x20a'),
                      ('SecurityMode', '0x1')])

    def config(name, fuses, magic=l4t_bundle.FUSE_MAGIC):
        return l4t_bundle.write_fuse_config(str(key_dir / name), fuses, magic=magic)

    cases = [  # name, its fuse configuration, its keys, what its problem says (None: none)
        ('AZJN-0011', config('other-key.xml', dict(good, PublicKeyHash=keys.pkc_key_hash(other))), dict(pkc_key=pkc),
         'PublicKeyHash is %s, but the hash of jetson_pkc_key %s is %s' % (keys.pkc_key_hash(other), pkc, pkh)),
        ('AZJN-0012', config('algorithm.xml', dict(good, BootSecurityInfo='0x201')), dict(pkc_key=pkc),
         'BootSecurityInfo 0x201 says PKC algorithm 1, but jetson_pkc_key %s is ecp256' % pkc),
        ('AZJN-0013', config('good.xml', good), dict(pkc_key=pkc, sbk_key=sbk),
         'jetson_sbk_key is set but the configuration burns no SecureBootKey'),
        ('AZJN-0014', config('oem.xml', oem), dict(pkc_key=pkc),
         'OemK1 is burned, so OP-TEE needs an EKB encrypted with it on the device, and no jetson_ekb_file'),
        ('AZJN-0015', config('magic.xml', good, magic='0X45535546'), dict(pkc_key=pkc),
         'MagicId is "0X45535546", which odmfuse.sh --test does not rewrite'),
        ('AZJN-0016', str(key_dir / 'good.xml'), dict(pkc_key=pkc), None),
        ('AZJN-0017', config('oem-ekb.xml', oem), dict(pkc_key=pkc, ekb_file=ekb), None),
        ('AZJN-0018', config('sbk.xml', sbk_fuses), dict(pkc_key=pkc, sbk_key=sbk), None),
    ]
    devices = [device(tmp_path, name, '1-%d' % (index + 1), board='orin-nano-8gb', fuse_enabled=True,
                      fuse_config=path, **device_keys)
               for index, (name, path, device_keys, _problem) in enumerate(cases)]
    pending = dict((name, ['fuse']) for name, _path, _keys, _problem in cases)
    before = snapshot(str(tmp_path))
    result = module_runner(main, dict(station, devices=devices, pending_phases=pending, tools=[], initrd=False))
    assert result['failed'] is True and not result.get('changed')
    for name, path, _keys, problem in cases:
        found = result['devices'][name]
        if problem is None:
            assert found == [], (name, found)
            continue
        assert len(found) == 1 and problem in found[0], (name, found)
        assert found[0].startswith('%s: jetson_fuse_config' % name) and path in found[0]
    assert len(result['problems']) == 5, result['problems']
    assert snapshot(str(tmp_path)) == before  # nothing written, nothing run on a device
    assert l4t_bundle.tool_calls(os.path.join(str(tmp_path), 'lab-state')) == []
    assert sbk_value not in json.dumps(result).lower()  # the SBK is compared, never quoted


# -- the workdir: the run's user's alone, mode 0700 -----------------------------------------------

@pytest.fixture
def warnings(monkeypatch):
    """The module's warnings (in pytest's process they go to the display, not into the result)."""
    given = []
    monkeypatch.setattr(AnsibleModule, 'warn', lambda _module, warning: given.append(warning))
    return given


def make_open_workdir(workdir, *directories):
    """A workdir left open to everyone (mode 0777), holding ``directories`` of the run's own."""
    os.makedirs(workdir)
    os.chmod(workdir, 0o777)
    for relpath in directories:
        os.makedirs(os.path.join(workdir, relpath))


def test_an_open_workdir_holding_only_the_runs_own_entries_is_closed_with_a_warning(module_runner, station, warnings):
    workdir = station['workdir']
    make_open_workdir(workdir, 'ports/1-1/Linux_for_Tegra', 'staging/Linux_for_Tegra', 'devices/AZJN-0001', 'logs')
    checked = module_runner(main, station, check_mode=True)
    assert checked.get('failed') is not True and checked['changed'] is True, checked
    assert warnings == ["jetson_workdir %s was open to others (mode 0777) though it holds every device's password;"
                        " none of the run's own entries in it is a symbolic link or another user's, so it would be"
                        ' closed to mode 0700' % workdir]
    assert os.stat(workdir).st_mode & 0o7777 == 0o777

    closed = module_runner(main, station)
    assert closed.get('failed') is not True and closed['changed'] is True and closed['problems'] == []
    assert 'so it was closed to mode 0700' in warnings[1]
    assert os.stat(workdir).st_mode & 0o7777 == 0o700
    assert module_runner(main, station)['changed'] is False and len(warnings) == 2


def test_an_open_workdir_with_a_planted_link_is_refused_and_left_as_it_was(module_runner, station, tmp_path):
    workdir = station['workdir']
    make_open_workdir(workdir, 'ports')
    outside = tmp_path / 'outside'
    outside.mkdir()
    os.symlink(str(outside), os.path.join(workdir, 'ports', '1-1'))
    result = module_runner(main, station)
    assert result['failed'] is True and not result.get('changed')
    assert result['problems'] == [
        'jetson_workdir %s is open to others (mode 0777), and what is in it was not all made by the run: ports/1-1 is a'
        ' symbolic link to %s; the run does not close (nor write in) a workdir that may hold what others planted:'
        ' remove those entries, then chmod 0700 %s' % (workdir, outside, workdir)]
    assert os.stat(workdir).st_mode & 0o7777 == 0o777 and os.listdir(str(outside)) == []


def test_a_workdir_that_is_a_link_is_refused_naming_its_real_path(module_runner, station, tmp_path):
    real = tmp_path / 'real-workdir'
    real.mkdir(mode=0o700)
    os.symlink(str(real), station['workdir'])
    result = module_runner(main, station)
    assert result['failed'] is True
    assert result['problems'] == ['jetson_workdir %s is a symbolic link to %s; set jetson_workdir to the real path %s,'
                                  ' the run follows no link it did not make' % (station['workdir'], real, real)]


def test_a_missing_workdir_is_made_only_when_the_station_passes_and_never_in_check_mode(module_runner, station):
    os.unlink(os.path.join(station['l4t_dir'], 'odmfuse.sh'))
    refused = module_runner(main, station)
    assert refused['failed'] is True and not os.path.lexists(station['workdir'])
    checked = module_runner(main, dict(station, tools=[], initrd=False), check_mode=True)
    assert checked['changed'] is True and not os.path.lexists(station['workdir'])


def free_mib(path):
    while not os.path.isdir(path):
        path = os.path.dirname(path)
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize // (1024 * 1024)


def test_the_disk_asked_for_is_one_image_set_and_a_system_img_per_slot_per_image_group(module_runner, station, tmp_path):
    usb_sysfs.make_usb_sysfs(station['usb_sysfs_root'], {'1-1': '7523', '1-2': '7523', '1-3': '7323'})
    devices = [device(tmp_path, 'AZJN-%04d' % number, '1-%d' % number) for number in (1, 2, 3)]
    # Two boards: two image groups. Per image set 27 % of what is free: two image sets per slot
    # (4 x 27 %) would not fit, two groups of one image set and a third of one per slot's copy
    # would (2 x 5/3 x 27 % = 90 %).
    image_set = free_mib(station['workdir']) * 27 // 100
    checked = dict(station, devices=devices, image_space_mb=image_set)
    shared = module_runner(main, checked)
    assert shared.get('failed') is not True, shared['problems']
    per_device = module_runner(main, dict(checked, image_mode='per_device'))
    assert len(per_device['problems']) == 1 and 'the images of 4 devices at once need about' in per_device['problems'][0]

    # Once the station has generated a group, its real size is what counts.
    one_group = dict(station, devices=devices[:2], image_space_mb=image_set * 3)
    assert 'the images of 1 image group(s) (one image set and 2 copies of system.img each)' in \
        module_runner(main, one_group)['problems'][0]
    group = os.path.join(station['workdir'], 'images', '0123456789abcdef')
    os.makedirs(group)
    with open(os.path.join(group, 'group.json'), 'w') as record:
        json.dump({'image_set_bytes': 3 * 2 ** 30, 'app_bytes': 2 ** 30}, record)
    assert module_runner(main, one_group)['problems'] == []


def test_shared_images_refuse_each_device_whose_images_cannot_be_shared_naming_why_and_the_fix(
        module_runner, station, tmp_path):
    usb_sysfs.make_usb_sysfs(station['usb_sysfs_root'], {'1-1': '7523', '1-2': '7523'})
    own = tmp_path / 'rootfs' / 'AZJN-0002'
    own.mkdir(parents=True)
    devices = [device(tmp_path, 'AZJN-0001', '1-1'), device(tmp_path, 'AZJN-0002', '1-2', own_rootfs=str(own))]
    shared = dict(station, devices=devices, image_mode='shared')
    assert module_runner(main, shared)['problems'] == [
        'AZJN-0002: flash_image_mode is shared, but its images cannot be shared: it has a staging rootfs of its own'
        ' (jetson_rootfs_dir), which holds its device.conf; fix that, or set flash_image_mode to auto (images of its'
        ' own where they cannot be shared) or per_device']
    assert module_runner(main, dict(shared, image_mode='auto'))['problems'] == []

    sparse = module_runner(main, dict(shared, devices=devices[:1], extra_args=['--sparse']))['problems']
    assert sparse == ['AZJN-0001: flash_image_mode is shared, but its images cannot be shared: its APP image is'
                      ' generated sparse (--sparse in flash_extra_args), not as a tar that can take a member; fix that,'
                      ' or set flash_image_mode to auto (images of its own where they cannot be shared) or per_device']
    with open(os.path.join(station['l4t_dir'], 'nv_tegra', 'nv_tegra_release'), 'w') as release:
        release.write('# R38 (release), REVISION: 4.0\n')
    compressed = module_runner(main, dict(shared, devices=devices[:1]))['problems']
    assert len(compressed) == 1 and 'L4T R38, whose APP image is a zstd-compressed tar' in compressed[0]
