"""The lab's L4T doubles build images for a chip, and a device runs only the images made for it.

NVIDIA's r36.2 flash.sh (public copy: github.com/johnnynunez/Linux_for_Tegra) picks the BPMP
firmware from the chip SKU: CHIP_SKU from the environment, else what it reads from the device
(only when FUSELEVEL is unset), else the board config's DEFAULT_CHIP_SKU, which for every p3767
module is the Orin NX's (00:00:00:D3, TE980M). An offline generation sets FUSELEVEL, so without
CHIP_SKU an Orin Nano (D5/D6, TE950M) gets the Orin NX's firmware and never comes up
(docs/l4t-board-identity.md). Images made with -u are signed with that key, with -v encrypted
with that SBK: a fused device rejects the others. These tests show each double biting, and the
right inputs passing.
"""

import os

import pytest

from . import keys
from . import l4t_bundle as l4t
from . import l4t_host, usb_sysfs
from .test_l4t_host import INTERNAL, NANO, NVME_ARGS, Station, bare_env, conf_of, output

AGX = 'jetson-agx-orin-devkit'
INDUSTRIAL = 'jetson-agx-orin-devkit-industrial'
# NVIDIA's table (README_initrd_flash.txt), without CHIP_SKU: what an offline generation had.
OFFLINE = {'BOARDID': '3767', 'FAB': '300', 'FUSELEVEL': 'fuselevel_production'}
MODULES = {  # product: BOARDSKU, chip SKU, the BPMP firmware it needs
    '7323': ('0000', '00:00:00:D3', 'TE980M-A1'),
    '7423': ('0001', '00:00:00:D4', 'TE980M-A1'),
    '7523': ('0003', '00:00:00:D5', 'TE950M-A1'),
    '7623': ('0004', '00:00:00:D6', 'TE950M-A1'),
}


def generate(station, tree, *options, board=NANO, env):
    return station.run(tree, INTERNAL, '--no-flash', *options, *NVME_ARGS, board, 'internal', env=env)


def flash(station, tree, port):
    station.install_rules_once()
    with open(os.path.join(tree, 'tools', 'kernel_flash', 'initrdflashparam.txt')) as params:
        saved = params.read().replace('"', '').split()
    return station.run(tree, INTERNAL, '--usb-instance', port, '--device-instance', '0', '--flash-only', *saved)


def images_of(tree):
    record = l4t.images_record(tree)
    return record['chip_sku'], record['bpmp']


@pytest.mark.parametrize('product', sorted(MODULES))
def test_an_offline_generation_without_chip_sku_builds_the_orin_nx_firmware_which_no_orin_nano_boots(
        tmp_path, product):
    boardsku, chip_sku, firmware = MODULES[product]
    station = Station(tmp_path, {'1-3': product})
    tree = station.tree('a', conf=conf_of('a'))
    offline = dict(OFFLINE, BOARDSKU=boardsku)

    result = generate(station, tree, env=bare_env(**offline))
    assert result.returncode == 0, output(result)
    assert 'Chip SKU(00:00:00:D3) ramcode() fuselevel(fuselevel_production) board_FAB(300)' in result.stdout
    assert images_of(tree) == ('00:00:00:D3', 'TE980M-A1')  # p3767.conf.common's DEFAULT_CHIP_SKU
    assert l4t_host.probes(station.state) == []
    flashed = flash(station, tree, '1-3')
    if firmware == 'TE980M-A1':  # an Orin NX: the default is its own firmware
        assert flashed.returncode == 0, output(flashed)
        assert station.device_conf('1-3') == conf_of('a')
        return

    # An Orin Nano: the boot chain hangs, the flashing initrd never comes up, the run times out
    # as NVIDIA's wait_for_booting does; the device has left recovery mode and is not written.
    assert flashed.returncode == 1
    assert flashed.stdout.endswith('Waiting for target to boot-up...\nTimeout\n'), output(flashed)
    assert [(failure['reason'], failure['usb_instance'], failure['chip_sku'], failure['needs'], failure['images'])
            for failure in l4t.boot_failures(station.state)] == \
        [('bpmp-firmware', '1-3', chip_sku, firmware, 'TE980M-A1')]
    assert station.in_recovery() == {} and l4t_host.gadget_interfaces(station.host) == []
    assert station.device_conf('1-3') is None
    assert [(run['exit'], run['device']) for run in l4t.flash_runs(station.state)] == [(1, None)]

    # Power-cycled into recovery mode (the same chip), and generated with its CHIP_SKU: it boots.
    l4t_host.power_cycle_into_recovery(station.state, station.host, station.sysfs, '1-3')
    assert station.in_recovery() == {'1-3': product}
    result = generate(station, tree, env=bare_env(CHIP_SKU=chip_sku, **offline))
    assert result.returncode == 0, output(result)
    assert images_of(tree) == (chip_sku, firmware)
    flashed = flash(station, tree, '1-3')
    assert flashed.returncode == 0, output(flashed)
    assert station.device_conf('1-3') == conf_of('a')
    assert len(l4t.boot_failures(station.state)) == 1


def test_without_fuselevel_the_chip_is_read_from_the_first_device_in_recovery_whichever_it_is(tmp_path):
    # flash.sh reads the chip only when it reads the fuse level, and of the FIRST device on the
    # station: the Orin NX on 1-3, for the Orin Nano's images of 1-4.
    station = Station(tmp_path, {'1-3': '7323', '1-4': '7523'})
    tree = station.tree('a', conf=conf_of('a'))
    result = generate(station, tree, env=bare_env(BOARDID='3767', FAB='300', BOARDSKU='0003'))
    assert result.returncode == 0, output(result)
    assert images_of(tree) == ('00:00:00:D3', 'TE980M-A1')
    assert [probe['kind'] for probe in l4t_host.probes(station.state)] == ['fuselevel'] * 3
    assert flash(station, tree, '1-4').returncode == 1
    assert [failure['chip_sku'] for failure in l4t.boot_failures(station.state)] == ['00:00:00:D5']

    # Alone on the station, the Orin Nano's own chip is read.
    alone = Station(tmp_path / 'alone', {'1-4': '7523'})
    tree = alone.tree('a', conf=conf_of('a'))
    assert generate(alone, tree, env=bare_env(BOARDID='3767', FAB='300', BOARDSKU='0003')).returncode == 0
    assert images_of(tree) == ('00:00:00:D5', 'TE950M-A1')
    assert flash(alone, tree, '1-4').returncode == 0
    assert alone.device_conf('1-4') == conf_of('a')


def test_the_agx_orin_industrial_needs_its_own_config_identity_and_chip_sku(tmp_path):
    station = Station(tmp_path, {})
    usb_sysfs.add_device(station.sysfs, '1-3', '7023', chip_sku='90')  # p3701-0008: chip SKU 90
    tree = station.tree('a', conf=conf_of('a'))
    identity = dict(BOARDID='3701', FAB='500', BOARDSKU='0008', FUSELEVEL='fuselevel_production')

    # Without CHIP_SKU: p3701.conf.common's DEFAULT_CHIP_SKU (D0), the AGX Orin's TE990M.
    assert generate(station, tree, board=INDUSTRIAL, env=bare_env(**identity)).returncode == 0
    assert images_of(tree) == ('00:00:00:D0', 'TE990M-A1')
    hung = flash(station, tree, '1-3')
    assert hung.returncode == 1 and 'Timeout' in hung.stdout
    assert [(failure['chip_sku'], failure['needs']) for failure in l4t.boot_failures(station.state)] == \
        [('00:00:00:90', 'TE992M-A1')]
    l4t_host.power_cycle_into_recovery(station.state, station.host, station.sysfs, '1-3')

    # The AGX Orin devkit config with the 64GB's identity: the images are for another module.
    other = dict(identity)
    other.update(BOARDSKU='0005', CHIP_SKU='00:00:00:90')
    result = generate(station, tree, board=AGX, env=bare_env(**other))
    assert result.returncode == 0, output(result)
    mismatch = flash(station, tree, '1-3')
    assert mismatch.returncode == 1 and 'board mismatch' in mismatch.stdout and 'needs 0008' in mismatch.stdout

    result = generate(station, tree, board=INDUSTRIAL, env=bare_env(CHIP_SKU='00:00:00:90', **identity))
    assert result.returncode == 0, output(result)
    assert images_of(tree) == ('00:00:00:90', 'TE992M-A1')
    flashed = flash(station, tree, '1-3')
    assert flashed.returncode == 0, output(flashed)
    assert station.device_conf('1-3') == conf_of('a')


@pytest.mark.parametrize('board, firmware', [(INDUSTRIAL, 'TE992M-A1'), (AGX, 'TE990M-A1')])
def test_an_int_fused_chip_keeps_the_default_firmware_but_on_the_industrial_config(tmp_path, board, firmware):
    # process_chip_sku_version leaves SKU 00 alone; p3737-0000-p3701-0008.conf gives it TE992M.
    station = Station(tmp_path, {})
    tree = station.tree('a')
    env = bare_env(BOARDID='3701', FAB='500', BOARDSKU='0008', CHIP_SKU='00:00:00:00', FUSELEVEL='fuselevel_production')
    assert generate(station, tree, board=board, env=env).returncode == 0
    assert images_of(tree) == ('00:00:00:00', firmware)


def test_a_chip_sku_in_no_table_leaves_no_firmware_and_fails_the_generation(tmp_path):
    station = Station(tmp_path, {})
    tree = station.tree('a')
    result = generate(station, tree, env=bare_env(CHIP_SKU='00:00:00:D0', BOARDSKU='0003', **OFFLINE))
    assert result.returncode == 1
    assert 'bpmp_t234-_prod.bin is not found' in result.stdout and 'chip SKU 00:00:00:D0' in result.stdout


# -- signed and encrypted images ------------------------------------------------------------------

NANO_8GB = dict(OFFLINE, BOARDSKU='0003', CHIP_SKU='00:00:00:D5')


@pytest.fixture
def pkc_keys(tmp_path):
    directory = tmp_path / 'keys'
    directory.mkdir()
    return (keys.make_pkc_key(str(directory / 'pkc.pem'), 'ecp256'),
            keys.make_pkc_key(str(directory / 'other.pem'), 'ecp256'))


def test_a_pkc_fused_device_runs_only_images_signed_with_its_key(tmp_path, pkc_keys):
    key, other = pkc_keys
    station = Station(tmp_path, {'1-3': '7523'})
    l4t.prefuse_device(station.state, '1-3', {'PublicKeyHash': keys.pkc_key_hash(key), 'SecurityMode': '0x1'})
    tree = station.tree('a', conf=conf_of('a'))

    for signing in ([], ['-u', other]):
        result = generate(station, tree, *signing, env=bare_env(**NANO_8GB))
        assert result.returncode == 0, output(result)
        assert l4t.images_record(tree)['pkc_hash'] == (keys.pkc_key_hash(other)[2:] if signing else '')
        rejected = flash(station, tree, '1-3')
        # What a rejected Orin shows on the host (a USB write timeout), and the lab's record of why.
        assert rejected.returncode == 1 and 'ERROR: might be timeout in USB write.' in rejected.stdout
        assert station.in_recovery() == {'1-3': '7523'} and station.device_conf('1-3') is None
    assert [(failure['reason'], failure['why']) for failure in l4t.boot_failures(station.state)] == [
        ('signature', 'the device is PKC fused and the images are not signed'),
        ('signature', "the images are signed with another key than the device's PublicKeyHash")]

    result = generate(station, tree, '-u', key, env=bare_env(**NANO_8GB))
    assert result.returncode == 0, output(result)
    flashed = flash(station, tree, '1-3')
    assert flashed.returncode == 0, output(flashed)
    assert station.device_conf('1-3') == conf_of('a')


def test_signing_with_a_file_that_is_no_key_fails_the_generation(tmp_path):
    station = Station(tmp_path, {'1-3': '7523'})
    tree = station.tree('a')
    junk = tmp_path / 'pkc.pem'
    junk.write_text('lab PKC key pair\n')
    result = generate(station, tree, '-u', str(junk), env=bare_env(**NANO_8GB))
    assert result.returncode == 1 and 'Invalid key format' in result.stdout


def test_encrypted_images_run_only_on_the_device_with_that_sbk_and_an_sbk_device_runs_no_other(tmp_path, pkc_keys):
    key = pkc_keys[0]
    sbk, other_sbk = str(tmp_path / 'keys' / 'sbk.key'), str(tmp_path / 'keys' / 'other-sbk.key')
    value = keys.make_sbk_key(sbk)
    keys.make_sbk_key(other_sbk)
    station = Station(tmp_path, {'1-3': '7523', '1-4': '7523'})
    l4t.prefuse_device(station.state, '1-3', {'PublicKeyHash': keys.pkc_key_hash(key),
                                              'SecureBootKey': '0x' + value})
    l4t.prefuse_device(station.state, '1-4', {'PublicKeyHash': keys.pkc_key_hash(key)})
    tree = station.tree('a', conf=conf_of('a'))

    def generated(*options):
        result = generate(station, tree, '-u', key, *options, env=bare_env(**NANO_8GB))
        assert result.returncode == 0, output(result)

    generated()  # signed, not encrypted: the SBK device rejects it
    assert flash(station, tree, '1-3').returncode == 1
    generated('-v', other_sbk)  # encrypted with another SBK
    assert flash(station, tree, '1-3').returncode == 1
    assert flash(station, tree, '1-4').returncode == 1  # encrypted, and 1-4 has no SBK at all
    assert [(failure['usb_instance'], failure['reason'], failure['why']) for failure in
            l4t.boot_failures(station.state)] == [
        ('1-3', 'encryption', 'the device has SecureBootKey burned and the images are not encrypted'),
        ('1-3', 'encryption', "the images are encrypted with another SBK than the device's SecureBootKey"),
        ('1-4', 'encryption', 'the images are encrypted with an SBK and the device has no SecureBootKey burned')]
    record = l4t.images_record(tree)
    assert record['sbk_digest'] and value not in open(
        os.path.join(tree, 'tools', 'kernel_flash', 'images', 'lab_identity')).read()

    generated('-v', sbk)
    flashed = flash(station, tree, '1-3')
    assert flashed.returncode == 0, output(flashed)
    assert station.device_conf('1-3') == conf_of('a')


def test_flash_sh_reads_the_chip_of_its_own_device_unless_fuselevel_is_given(tmp_path):
    station = Station(tmp_path, {'1-3': '7623', '1-4': '7623'})
    tree = station.tree('a', conf=conf_of('a'))
    # flash.sh on its own port, without FUSELEVEL: it reads the Orin Nano's chip and boots it.
    result = station.run(tree, 'flash.sh', '--usb-instance', '1-3', NANO, 'internal')
    assert result.returncode == 0, output(result)
    assert 'Chip SKU(00:00:00:D6)' in result.stdout
    # With FUSELEVEL and no CHIP_SKU: the Orin NX's firmware, and the Orin Nano hangs.
    hung = station.run(tree, 'flash.sh', '--usb-instance', '1-4', NANO, 'internal',
                       env=bare_env(**dict(OFFLINE, BOARDSKU='0004')))
    assert hung.returncode == 1 and 'Timeout' in hung.stdout
    assert [(failure['usb_instance'], failure['tool']) for failure in l4t.boot_failures(station.state)] == \
        [('1-4', 'flash.sh')]
    assert station.in_recovery() == {}
