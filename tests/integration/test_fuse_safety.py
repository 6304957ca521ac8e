"""Fusing is irreversible: azaion.jetson.provision checks a fuse configuration against the
device's keys and NVIDIA's Orin rules before anything is written, reads a device's fuses before
its first burn, and refuses what NVIDIA's bit rules forbid, end to end over the lab.

The lab station is the one of test_provision.py. Its odmfuse.sh burns as NVIDIA's does (the XML
as given, in order, stopping silently at a fuse it cannot burn); its flash refuses images not
signed with the key whose hash the device holds. A device "fused by another station" holds fuses
and has no state file on this station.
"""

import json
import os

import pytest

from conftest import assert_ok
from lab import l4t_bundle
from lab.batch import fuse_variables
# The batch fixture of test_provision.py, imported to be used here as a fixture.

PORT = '1-1'
SERIAL = 'AZJN-0001'


def fusing(tmp_path, text=None, sbk=False):
    """The inventory variables that ask for fusing, right for their keys (batch.fuse_variables),
    the fuse XML replaced by ``text`` when given; and the configured fuses."""
    variables, configured = fuse_variables(str(tmp_path), sbk=sbk)
    if text is not None:
        with open(variables['jetson_fuse_config'], 'w') as config:
            config.write(text)
    return variables, configured


def fuse_phase(batch):
    with open(os.path.join(batch.lab.workdir, 'devices', SERIAL, 'state.json')) as state:
        return json.load(state)['phases']['fuse']


def burns(batch):
    """odmfuse.sh runs that could burn (not --test)."""
    return [call for call in batch.tool_calls('odmfuse.sh') if '--test' not in call['argv']]


def test_a_matching_pkc_configuration_burns_once_flashes_signed_and_boots(make_provision, tmp_path):
    variables, configured = fusing(tmp_path)
    batch = make_provision({PORT: '7523'}, extra_vars=variables)
    result = batch.run()
    assert_ok(result)
    assert len(burns(batch)) == 1
    assert len([call for call in batch.tool_calls('odmfuse.sh') if '--test' in call['argv']]) == 1
    assert l4t_bundle.burned_fuses(batch.lab.lab_state, PORT) == configured
    phase = fuse_phase(batch)
    assert (phase['status'], phase['fused']) == ('done', True), phase
    # Signed with the key whose hash the device now holds, and it came up.
    assert all('-u' in call['argv'] for call in batch.tool_calls('l4t_initrd_flash_internal.sh'))
    report = batch.report()[SERIAL]
    assert (report['fuse'], report['flash'], report['verify'], report['result']) == ('done', 'done', 'done', 'done')
    # The burner's file held the configuration only while it burned.
    assert not any(name.startswith('.azaion-fuse-burn') for _top, _dirs, files in os.walk(batch.lab.workdir)
                   for name in files)

    again = batch.run()
    assert_ok(again)
    assert len(burns(batch)) == 1 and l4t_bundle.burned_fuses(batch.lab.lab_state, PORT) == configured


def test_a_device_fused_as_configured_by_another_station_is_recorded_fused_with_no_burn(make_provision, tmp_path):
    variables, configured = fusing(tmp_path)
    batch = make_provision({PORT: '7523'}, extra_vars=variables)
    l4t_bundle.prefuse_device(batch.lab.lab_state, PORT, configured)

    check = batch.run('--check')
    assert_ok(check)
    assert batch.tool_calls('odmfuse.sh') == [] and batch.tool_calls('odmfuseread.sh') == []

    result = batch.run()
    assert_ok(result)
    assert batch.tool_calls('odmfuse.sh') == []  # not even a dry run
    assert [call['exit'] for call in batch.tool_calls('odmfuseread.sh')] == [1, 0]  # keyless refused, keyed read
    phase = fuse_phase(batch)
    assert (phase['status'], phase['fused'], phase['burn_started']) == ('done', True, None), phase
    assert l4t_bundle.burned_fuses(batch.lab.lab_state, PORT) == configured
    report = batch.report()[SERIAL]
    assert (report['fuse'], report['result']) == ('done', 'done')
    # The device is PKC fused: it is flashed with its key.
    assert all('-u' in call['argv'] for call in batch.tool_calls('l4t_initrd_flash_internal.sh'))

    again = batch.run()
    assert_ok(again)
    assert batch.tool_calls('odmfuse.sh') == [] and len(batch.tool_calls('odmfuseread.sh')) == 2


def test_a_device_fused_with_another_key_is_refused_before_any_burn(make_provision, tmp_path):
    variables, configured = fusing(tmp_path)
    other = dict(configured, PublicKeyHash='0x' + 'a5' * 64, SecurityMode='0x0')
    batch = make_provision({PORT: '7523'}, extra_vars=variables)
    l4t_bundle.prefuse_device(batch.lab.lab_state, PORT, other)
    result = batch.run()
    assert result.returncode != 0
    # It answers neither without keys nor with this batch's key: whether it is fused is unknown.
    assert 'reading its fuses before burning failed (again with its keys' in result.stdout, result.stdout[-6000:]
    assert l4t_bundle.burned_fuses(batch.lab.lab_state, PORT) == other
    assert burns(batch) == [] and batch.flash_runs(PORT) == []
    phase = fuse_phase(batch)
    assert (phase['status'], phase['fused'], phase['burn_started']) == ('failed', False, None), phase


@pytest.mark.parametrize('case, message', [
    ('another key', 'fuses.xml: PublicKeyHash is 0x%s, but the hash of jetson_pkc_key' % ('5a' * 64)),
    ('short hash', 'fuse PublicKeyHash must be 64 bytes (128 hexadecimal digits) on Orin'),
    ('magic', 'MagicId is "0X45535546", which odmfuse.sh --test does not rewrite'),
    ('algorithm', 'BootSecurityInfo 0x201 says PKC algorithm 1, but jetson_pkc_key'),
    ('sbk for pkc only', 'jetson_sbk_key is set but the configuration burns no SecureBootKey'),
])
def test_a_configuration_that_does_not_fit_the_keys_is_refused_in_the_batch_check(
        make_provision, tmp_path, case, message):
    variables, configured = fusing(tmp_path, sbk=case == 'sbk for pkc only')
    lines = dict(configured)
    if case == 'another key':
        lines['PublicKeyHash'] = '0x' + '5a' * 64
    elif case == 'short hash':
        lines['PublicKeyHash'] = configured['PublicKeyHash'][:66]
    elif case == 'algorithm':
        lines['BootSecurityInfo'] = '0x201'
    l4t_bundle.write_fuse_config(variables['jetson_fuse_config'], lines)
    if case == 'magic':
        with open(variables['jetson_fuse_config']) as xml:
            text = xml.read().replace('0x45535546', '0X45535546')
        with open(variables['jetson_fuse_config'], 'w') as xml:
            xml.write(text)
    batch = make_provision({PORT: '7523'}, extra_vars=variables)
    result = batch.run()
    assert result.returncode != 0
    assert message in result.stdout, result.stdout[-6000:]
    assert '%s: jetson_fuse_config' % SERIAL in result.stdout
    # Refused before anything touched the device or the station's workdir.
    assert batch.tool_calls('odmfuse.sh') == [] and batch.tool_calls('odmfuseread.sh') == []
    assert l4t_bundle.burned_fuses(batch.lab.lab_state, PORT) == {} and batch.flash_runs(PORT) == []
    assert not os.path.exists(os.path.join(batch.lab.workdir, 'devices', SERIAL, 'state.json'))


UNKNOWN_NAME = ('<genericfuse MagicId="0x45535546" version="1.0.0">\n'
                '    <fuse name="PublicKeyHash" size="64" value="0x%s"/>\n'
                '    <fuse name="SecurityMod" size="4" value="0x1"/>\n'
                '</genericfuse>\n' % ('5a' * 64))


def test_a_fuse_config_naming_an_unknown_fuse_is_refused_before_any_tool_runs(make_provision, tmp_path):
    variables, _configured = fusing(tmp_path, text=UNKNOWN_NAME)
    batch = make_provision({PORT: '7523'}, extra_vars=variables)
    result = batch.run()
    assert result.returncode != 0
    message = '%s: fuse SecurityMod is not a Jetson Orin (T234) fuse' % variables['jetson_fuse_config']
    assert message in result.stdout, result.stdout[-6000:]
    assert "use a name of NVIDIA's Jetson Orin reference fuse configuration" in result.stdout
    assert batch.tool_calls('odmfuse.sh') == [] and batch.tool_calls('odmfuseread.sh') == []
    assert l4t_bundle.burned_fuses(batch.lab.lab_state, PORT) == {}
    assert batch.flash_runs(PORT) == []
    assert os.path.exists(variables['jetson_fuse_config'])


def test_oem_keys_are_fused_with_their_ekb_which_the_flash_writes_in_the_devices_tree(make_provision, tmp_path):
    variables, configured = fusing(tmp_path)
    oem_key = '0x' + '3c' * 32
    configured = dict(configured, OemK1=oem_key)
    l4t_bundle.write_fuse_config(variables['jetson_fuse_config'], configured)
    refused = make_provision({PORT: '7523'}, extra_vars=variables).run()
    assert refused.returncode != 0
    assert 'OemK1 is burned, so OP-TEE needs an EKB' in refused.stdout, refused.stdout[-6000:]
    assert oem_key[2:] not in refused.stdout  # a key's value is never shown

    ekb = tmp_path / 'eks_oem.img'
    ekb.write_bytes(b'EKB encrypted with OemK1\n')
    batch = make_provision({PORT: '7523'}, extra_vars=dict(variables, jetson_ekb_file=str(ekb)))
    result = batch.run()
    assert_ok(result)
    assert l4t_bundle.burned_fuses(batch.lab.lab_state, PORT)['OemK1'] == oem_key
    tree_ekb = os.path.join(batch.lab.workdir, 'ports', PORT, 'Linux_for_Tegra', 'bootloader', 'eks_t234.img')
    with open(tree_ekb, 'rb') as placed:
        assert placed.read() == b'EKB encrypted with OemK1\n'
    assert oem_key[2:] not in result.stdout
