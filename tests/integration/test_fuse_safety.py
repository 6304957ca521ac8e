"""Fusing is irreversible: azaion.jetson.provision reads a device's fuses before its first burn,
and refuses a fuse configuration naming a fuse Orin does not have, end to end over the lab.

The lab station is the one of test_provision.py (its fake odmfuse.sh burns over fuses that are
already burned as the real one does: the OR of the values, unless SecurityMode locks them). A
device "fused by another station" holds fuses and has no state file on this station.
"""

import json
import os

from conftest import assert_ok
from lab import l4t_bundle
# The batch fixture of test_provision.py, imported to be used here as a fixture.
from test_provision import make_provision  # noqa: F401 pylint: disable=unused-import

PORT = '1-1'
SERIAL = 'AZJN-0001'
CONFIGURED = {'PublicKeyHash': '0x' + '5a' * 32, 'SecurityMode': '0x1'}


def fusing(tmp_path, fuses=None, text=None):
    """The inventory variables that ask for fusing with that configuration (and a PKC key)."""
    fuse_xml = str(tmp_path / 'fuses.xml')
    if text is None:
        l4t_bundle.write_fuse_config(fuse_xml, fuses or CONFIGURED)
    else:
        with open(fuse_xml, 'w') as config:
            config.write(text)
    pkc_key = tmp_path / 'pkc.pem'
    pkc_key.write_text('lab PKC key pair\n')
    return {'jetson_fuse_enabled': True, 'jetson_fuse_config': fuse_xml, 'jetson_pkc_key': str(pkc_key)}


def fuse_phase(batch):
    with open(os.path.join(batch.lab.workdir, 'devices', SERIAL, 'state.json')) as state:
        return json.load(state)['phases']['fuse']


def burns(batch):
    """odmfuse.sh runs that could burn (not --test)."""
    return [call for call in batch.tool_calls('odmfuse.sh') if '--test' not in call['argv']]


def test_a_device_fused_as_configured_by_another_station_is_recorded_fused_with_no_burn(make_provision, tmp_path):
    batch = make_provision({PORT: '7523'}, extra_vars=fusing(tmp_path))
    l4t_bundle.prefuse_device(batch.lab.lab_state, PORT, CONFIGURED)

    check = batch.run('--check')
    assert_ok(check)
    assert batch.tool_calls('odmfuse.sh') == [] and batch.tool_calls('odmfuseread.sh') == []

    result = batch.run()
    assert_ok(result)
    assert batch.tool_calls('odmfuse.sh') == []  # not even a dry run
    assert [call['exit'] for call in batch.tool_calls('odmfuseread.sh')] == [1, 0]  # keyless refused, keyed read
    phase = fuse_phase(batch)
    assert (phase['status'], phase['fused'], phase['burn_started']) == ('done', True, None), phase
    assert l4t_bundle.burned_fuses(batch.lab.lab_state, PORT) == CONFIGURED
    report = batch.report()[SERIAL]
    assert (report['fuse'], report['result']) == ('done', 'done')
    # The device is PKC fused: it is flashed with its key.
    assert all('-u' in call['argv'] for call in batch.tool_calls('l4t_initrd_flash_internal.sh'))

    again = batch.run()
    assert_ok(again)
    assert batch.tool_calls('odmfuse.sh') == [] and len(batch.tool_calls('odmfuseread.sh')) == 2


def test_a_device_fused_with_other_values_is_refused_naming_the_fuses_and_nothing_is_burned(make_provision, tmp_path):
    other = {'PublicKeyHash': '0x' + 'a5' * 32}  # another product's key, SecurityMode still open
    batch = make_provision({PORT: '7523'}, extra_vars=fusing(tmp_path))
    l4t_bundle.prefuse_device(batch.lab.lab_state, PORT, other)

    result = batch.run()
    assert result.returncode != 0
    assert result.recap[SERIAL]['failed'] >= 1
    assert 'holds fuses other than the configured ones: PublicKeyHash: expected %s, read back %s' % (
        CONFIGURED['PublicKeyHash'], other['PublicKeyHash']) in result.stdout, result.stdout[-6000:]
    assert 'take it out of this batch' in result.stdout
    # Burning over it would have left 0xffff... (0x5a.. | 0xa5..): nothing was burned, not even a dry run.
    assert batch.tool_calls('odmfuse.sh') == [] and burns(batch) == []
    assert l4t_bundle.burned_fuses(batch.lab.lab_state, PORT) == other
    assert batch.flash_runs(PORT) == []  # a device whose fuse phase failed goes no further
    phase = fuse_phase(batch)
    assert (phase['status'], phase['fused'], phase['burn_started']) == ('failed', False, None), phase
    assert [mismatch['name'] for mismatch in phase['mismatches']] == ['PublicKeyHash']

    again = batch.run()
    assert again.returncode != 0 and burns(batch) == []
    assert l4t_bundle.burned_fuses(batch.lab.lab_state, PORT) == other


UNKNOWN_NAME = ('<genericfuse MagicId="0x45535546" version="1.0.0">\n'
                '    <fuse name="PublicKeyHash" size="64" value="0x%s"/>\n'
                '    <fuse name="SecurityMod" size="4" value="0x1"/>\n'
                '</genericfuse>\n' % ('5a' * 32))


def test_a_fuse_config_naming_an_unknown_fuse_is_refused_before_any_tool_runs(make_provision, tmp_path):
    variables = fusing(tmp_path, text=UNKNOWN_NAME)
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
