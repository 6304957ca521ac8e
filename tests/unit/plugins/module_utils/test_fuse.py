# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The pure logic of fusing: fuse configurations, fuse_info.txt, the comparison, masking."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import subprocess

import pytest

from lab import keys
from lab import l4t_bundle as l4t
from lab.usb_sysfs import make_usb_sysfs

from ansible_collections.azaion.jetson.plugins.module_utils import _fuse as fu

PKH = '0x' + '5a' * 64
# Every refusal of a fuse configuration ends with what to do about it.
FIX = re.compile(r'; (give|remove|use|correct|fix|make)\b')
SBK = '0x' + '0123456789abcdef' * 4


def config(*fuses, **attributes):
    magic = attributes.get('magic', fu.FUSE_MAGIC)
    return '<genericfuse MagicId="%s" version="1.0.0">\n%s</genericfuse>\n' % (
        magic, ''.join('  <fuse name="%s" size="%s" value="%s"/>\n' % fuse for fuse in fuses))


# -- values -----------------------------------------------------------------------------------

@pytest.mark.parametrize('value, normal', [
    ('0x1', '1'), ('0X0001', '1'), ('1', '1'), ('0x0', '0'), ('00000000', '0'), ('0x', None),
    ('0xABCdef', 'abcdef'), ('000001e0', '1e0'), ('0x00000000 0x000000AB', 'ab'), (' 0x10 ', '10'),
])
def test_normalize_value(value, normal):
    if normal is None:
        with pytest.raises(ValueError):
            fu.normalize_value(value)
    else:
        assert fu.normalize_value(value) == normal


@pytest.mark.parametrize('value', ['', '   ', 'xyz', '0x12g', '-1', '0x1.5'])
def test_normalize_value_refuses_what_is_not_hexadecimal(value):
    with pytest.raises(ValueError):
        fu.normalize_value(value)


# -- fuse configurations ----------------------------------------------------------------------

def test_parses_the_lab_fuse_config_in_order(tmp_path):
    path = l4t.write_fuse_config(str(tmp_path / 'fuses.xml'),
                                 {'PublicKeyHash': PKH, 'SecureBootKey': SBK, 'SecurityMode': '0x1'})
    assert fu.parse_fuse_config(path) == [
        dict(name='PublicKeyHash', size=64, value=PKH),
        dict(name='SecureBootKey', size=32, value=SBK),
        dict(name='SecurityMode', size=4, value='0x1'),
    ]


def test_value_without_0x_is_accepted():
    fuses = fu.parse_fuse_config_text('<genericfuse MagicId="0x45535546"><fuse name="OdmId" size="8" value="ab12"/>'
                                      '</genericfuse>')
    assert fuses == [dict(name='OdmId', size=8, value='ab12')]


@pytest.mark.parametrize('text, message', [
    ('not xml <', 'cfg.xml is not XML'),
    ('<partition_layout version="1"/>', 'cfg.xml is not an NVIDIA fuse configuration: its root element is <partition_layout>'),
    (config(('SecurityMode', 4, '0x1'), magic='0x46555345'), 'MagicId="0x46555345">, not <genericfuse MagicId="0x45535546">'),
    ('<genericfuse><fuse name="SecurityMode" value="0x1"/></genericfuse>', 'not an NVIDIA fuse configuration'),
    (config(), 'names no fuse'),
    ('<genericfuse MagicId="0x45535546"><key name="x"/></genericfuse>', 'element 1 is <key>'),
    ('<genericfuse MagicId="0x45535546"><fuse value="0x1"/></genericfuse>', 'fuse 1 has no valid name'),
    ('<genericfuse MagicId="0x45535546"><fuse name="SecurityMode"/></genericfuse>', 'fuse SecurityMode has no value'),
    (config(('SecurityMode', 4, '0x1'), ('SecurityMode', 4, '0x1')), 'SecurityMode is named twice'),
    (config(('SecurityMode', 4, 'yes')), "value 'yes' is not hexadecimal"),
    (config(('SecurityMode', 'four', '0x1')), "size 'four' is not its size on Orin; give size=\"4\""),
    (config(('SecurityMode', 0, '0x1')), "size '0' is not its size on Orin; give size=\"4\""),
    (config(('SecurityMode', 1, '0x123')), "size '1' is not its size on Orin"),
    ('<genericfuse MagicId="0x45535546"><fuse name="OdmId" value="0x1"/></genericfuse>',
     'fuse OdmId: size missing is not its size on Orin; give size="8"'),
    (config(('SecurityMode', 4, '0x123456789')), 'longer than its size (4 bytes)'),
    (config(('SecureBootKey', 32, '0x1234')), 'SecureBootKey must be 32 bytes (64 hexadecimal digits) on Orin'),
    (config(('SecureBootKey', 16, '0x' + '12' * 16)), "size '16' is not its size on Orin; give size=\"32\""),
    (config(('PublicKeyHash', 32, '0x' + '12' * 32)), "size '32' is not its size on Orin; give size=\"64\""),
    (config(('PublicKeyHash', 64, '0x' + '12' * 32)), 'PublicKeyHash must be 64 bytes (128 hexadecimal digits)'),
    (config(('OemK1', 32, '0x' + '12' * 33)), 'OemK1 must be 32 bytes'),
    (config(('SecurityMode', 4, '0x1'), magic='0X45535546'), 'MagicId is "0X45535546", which odmfuse.sh --test does not rewrite'),
    (config(('SecurityMode', 4, '0x1'), magic=' 0x45535546'), 'so the dry run would burn; fix it to "0x45535546"'),
    (config(('SecurityMod', 4, '0x1')), 'cfg.xml: fuse SecurityMod is not a Jetson Orin (T234) fuse; use a name of'),
    (config(('securitymode', 4, '0x1')), '; correct it to SecurityMode (fuse names are case-sensitive)'),
    (config(('Kek2', 16, '0x' + '12' * 16)), 'fuse Kek2 is not a Jetson Orin (T234) fuse'),  # Xavier's
    (config(('SecurityMode', 4, '0x1'), ('OdmId', 8, '0x1'), ('Sku', 4, '0x1')), 'fuse Sku is not a Jetson Orin'),
])
def test_bad_fuse_configs_are_named_clearly(text, message):
    with pytest.raises(fu.FuseError) as error:
        fu.parse_fuse_config_text(text, path='cfg.xml')
    assert message in str(error.value)
    assert FIX.search(str(error.value)), str(error.value)


def test_every_fuse_of_nvidias_orin_reference_configuration_is_accepted():
    names = sorted(fu.ORIN_FUSES)
    fuses = fu.parse_fuse_config_text(config(*[(name, fu.FUSE_SIZES[name],
                                                '0x' + '12' * fu.FUSE_SIZES[name] if name in fu.KEY_FUSES else '0x1')
                                               for name in names]))
    assert [fuse['name'] for fuse in fuses] == names
    assert {'PublicKeyHash', 'SecureBootKey', 'OemK1', 'OemK2', 'Kdk0', 'OptInEnable', 'PkcPubkeyHash1',
            'ReservedOdm7', 'BootSecurityInfo', 'SecurityMode', 'OdmLock'} <= fu.ORIN_FUSES


def test_an_unknown_fuse_is_named_without_quoting_any_value():
    with pytest.raises(fu.FuseError) as error:
        fu.parse_fuse_config_text(config(('SecureBootKey', 32, SBK), ('OemKey1', 32, SBK)), path='cfg.xml')
    assert 'fuse OemKey1 is not a Jetson Orin (T234) fuse' in str(error.value)
    assert SBK[2:] not in str(error.value) and 'OemK1' in str(error.value)  # the list of names to use


@pytest.mark.parametrize('content, message', [
    (None, 'does not exist'),
    (b'', 'is not XML'),
    (b'\xff\xfe\x00garbage', 'is not XML'),
    (b'<?xml version="1.0" encoding="no-such-encoding"?><genericfuse/>', 'is not XML'),
    (b'<genericfuse MagicId="0x45535546"><fuse name="Sku" size="4" value="0x1"/></genericfuse>', 'fuse Sku is not'),
])
def test_parse_fuse_config_raises_fuse_error_for_every_bad_file(tmp_path, content, message):
    path = str(tmp_path / 'fuses.xml')
    if content is not None:
        with open(path, 'wb') as bad:
            bad.write(content)
    with pytest.raises(fu.FuseError) as error:
        fu.parse_fuse_config(path)
    assert message in str(error.value) and path in str(error.value)
    assert FIX.search(str(error.value)), str(error.value)


def test_secret_values_are_never_quoted_in_errors():
    secret = 'zz' + '12' * 40
    with pytest.raises(fu.FuseError) as error:
        fu.parse_fuse_config_text(config(('OemK1', 32, secret)), path='cfg.xml')
    assert 'OemK1: its value is not hexadecimal' in str(error.value)
    assert secret not in str(error.value)


def test_missing_and_unreadable_config_files(tmp_path):
    with pytest.raises(fu.FuseError, match='fuse configuration .*missing.xml does not exist'):
        fu.parse_fuse_config(str(tmp_path / 'missing.xml'))
    with pytest.raises(fu.FuseError, match='cannot read fuse configuration'):
        fu.parse_fuse_config(str(tmp_path))  # a directory


def test_key_fuses_and_what_they_need():
    fuses = fu.parse_fuse_config_text(config(('PublicKeyHash', 64, PKH), ('SecureBootKey', 32, SBK),
                                             ('OemK1', 32, SBK), ('OptInEnable', 4, '0x1'), ('SecurityMode', 4, '0x1')))
    assert fu.verifiable_fuses(fuses) == ['PublicKeyHash', 'SecurityMode']
    # OptInEnable is no secret, but odmfuseread.sh does not read it either.
    assert fu.unverifiable_fuses(fuses) == ['SecureBootKey', 'OemK1', 'OptInEnable']
    fuses = fuses[:3] + fuses[4:]
    assert fu.keys_needed(fuses) == [('PublicKeyHash', 'pkc_key'), ('SecureBootKey', 'sbk_key')]
    assert fu.keys_needed(fuses[3:]) == []
    secrets = fu.secret_values(fuses)
    assert SBK in secrets and SBK[2:] in secrets and SBK[2:].upper() in secrets
    assert PKH not in secrets and '0x1' not in secrets


# -- fuse_info.txt ----------------------------------------------------------------------------

def test_parses_fuse_info_as_the_lab_odmfuseread_writes_it(tmp_path):
    sysfs = make_usb_sysfs(str(tmp_path / 'sysfs'), {'1-3': '7523'})
    state = str(tmp_path / 'state')
    tree = l4t.make_bundle(str(tmp_path / 'bundle'), state, sysfs)
    read = subprocess.run([os.path.join(tree, 'odmfuseread.sh'), '-i', '0x23', 'jetson-orin-nano-devkit'],
                          cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    assert read.returncode == 0, read.stdout
    info = fu.parse_fuse_info(os.path.join(tree, fu.FUSE_INFO_RELPATH))
    # The lab reads NVIDIA's fixed list of Orin fuses, the one the module trusts for verification.
    # ... each zero-padded to its size, without 0x, as r36.2 prints it.
    assert info == dict((name, '0' * 2 * fu.FUSE_SIZES.get(name, 4)) for name in fu.READABLE_FUSES)
    assert fu.READABLE_FUSES <= fu.ORIN_FUSES | {'DebugAuthentication'}


def test_parses_fuse_info_as_printed_by_nvidia():
    text = ('PublicKeyHash: ABCDEF0123\nBootSecurityInfo: 000001e0\n\n# a comment\n'
            '[ 0.0091 ] Reading fuses\nnot a field\nSecurityMode : 00000001 \nOdmId: 1\nOdmId: 2\n')
    assert fu.parse_fuse_info_text(text) == {
        'PublicKeyHash': 'ABCDEF0123', 'BootSecurityInfo': '000001e0', 'SecurityMode': '00000001', 'OdmId': '2'}


def test_missing_fuse_info(tmp_path):
    with pytest.raises(fu.FuseError, match='odmfuseread.sh wrote no'):
        fu.parse_fuse_info(str(tmp_path / 'fuse_info.txt'))


# -- the comparison ---------------------------------------------------------------------------

FUSES = fu.parse_fuse_config_text(config(('PublicKeyHash', 64, PKH), ('SecureBootKey', 32, SBK),
                                         ('BootSecurityInfo', 4, '0x209'), ('SecurityMode', 4, '0x1')))


def test_a_matching_read_back_has_no_mismatch_whatever_the_spelling():
    read = {'PublicKeyHash': PKH.upper().replace('0X', ''), 'BootSecurityInfo': '00000209',
            'SecurityMode': '0x00000001', 'OdmLock': '0x0'}
    assert fu.compare_fuses(FUSES, read) == []


def test_mismatches_name_the_fuse_and_both_values_in_config_order():
    read = {'PublicKeyHash': '0x0', 'BootSecurityInfo': '0x3e1', 'SecurityMode': 'garbage'}
    mismatches = fu.compare_fuses(FUSES, read)
    assert mismatches == [
        dict(name='PublicKeyHash', expected=PKH, read_back='0x0'),
        dict(name='BootSecurityInfo', expected='0x209', read_back='0x3e1'),
        dict(name='SecurityMode', expected='0x1', read_back='garbage'),
    ]
    text = fu.describe_mismatches(mismatches)
    assert text.startswith('PublicKeyHash: expected %s, read back 0x0; BootSecurityInfo: expected 0x209' % PKH)


def test_a_fuse_missing_from_the_read_back_is_a_mismatch_but_a_key_fuse_is_not_compared():
    mismatches = fu.compare_fuses(FUSES, {'PublicKeyHash': PKH, 'SecurityMode': '0x1'})
    assert mismatches == [dict(name='BootSecurityInfo', expected='0x209', read_back=None)]
    assert fu.describe_mismatches(mismatches) == 'BootSecurityInfo: expected 0x209, read back nothing'
    assert SBK not in repr(fu.compare_fuses(FUSES, {}))


# -- before the first burn: NVIDIA's bit rules ------------------------------------------------

UNBURNED = dict.fromkeys(fu.READABLE_FUSES, '00000000')


def held(**fuses):
    read = dict(UNBURNED)
    read.update(fuses)
    return read


def test_an_unburned_device_burns_everything_with_security_mode_last():
    fuses = fu.parse_fuse_config_text(config(('SecurityMode', 4, '0x1'), ('PublicKeyHash', 64, PKH),
                                             ('OdmLock', 4, '0x1'), ('ReservedOdm0', 4, '0x12'),
                                             ('BootSecurityInfo', 4, '0x201')))
    plan = fu.plan_burn(fuses, UNBURNED)
    assert plan['refusals'] == [] and plan['matching'] == []
    assert [fuse['name'] for fuse in plan['burn']] == ['PublicKeyHash', 'ReservedOdm0', 'BootSecurityInfo',
                                                       'OdmLock', 'SecurityMode']


def test_a_fresh_module_with_reserved_bits_keeps_them_in_the_burn():
    plan = fu.plan_burn(FUSES, held(BootSecurityInfo='000001e0'))
    assert plan['refusals'] == []
    assert dict((fuse['name'], fuse['value']) for fuse in plan['burn'])['BootSecurityInfo'] == '0x3e9'
    # ... and what the device then holds compares equal to the configuration.
    assert fu.compare_fuses(FUSES, {'PublicKeyHash': PKH, 'BootSecurityInfo': '000003e9', 'SecurityMode': '1'}) == []


def test_a_device_that_already_holds_the_configuration_matches_with_reserved_bits_masked():
    plan = fu.plan_burn(FUSES, held(PublicKeyHash=PKH[2:], BootSecurityInfo='000003e9', SecurityMode='00000001'))
    assert plan['refusals'] == [] and plan['matching'] == ['PublicKeyHash', 'BootSecurityInfo', 'SecurityMode']


def test_a_value_that_only_adds_bits_is_burned():
    fuses = fu.parse_fuse_config_text(config(('ReservedOdm4', 4, '0x33'), ('SecurityMode', 4, '0x1')))
    plan = fu.plan_burn(fuses, held(ReservedOdm4='00000011'))
    assert plan['refusals'] == [] and plan['matching'] == []


@pytest.mark.parametrize('config_fuses, read, refusal', [
    ((('ReservedOdm4', 4, '0x11'),), held(ReservedOdm4='00000022'),
     'ReservedOdm4 would clear burned bits (0x22; configured 0x11, held 00000022)'),
    ((('PublicKeyHash', 64, PKH),), held(PublicKeyHash='a5' * 64), 'PublicKeyHash holds another key hash'),
    ((('PublicKeyHash', 64, PKH),), held(PublicKeyHash='00' * 63 + '5a'), 'PublicKeyHash holds another key hash'),
    ((('ReservedOdm2', 4, '0x7'),), held(OdmLock='00000004'), 'ReservedOdm2 is locked by OdmLock bit 2'),
    ((('ReservedOdm1', 4, '0x7'), ('SecurityMode', 4, '0x1')), held(SecurityMode='00000001'),
     'SecurityMode is burned (read 00000001): no fuse can be added after it'),
    ((('BootSecurityInfo', 4, '0x201'),), held(BootSecurityInfo='00000202'), 'BootSecurityInfo would clear burned bits'),
    ((('SecurityMode', 4, '0x1'),), {'SecurityMode': 'garbage'}, 'SecurityMode: odmfuseread.sh read no value'),
])
def test_what_nvidias_rules_forbid_is_refused_before_the_burn(config_fuses, read, refusal):
    plan = fu.plan_burn(fu.parse_fuse_config_text(config(*config_fuses)), read)
    assert any(refusal in text for text in plan['refusals']), plan['refusals']


def test_a_locked_reserved_odm_that_already_holds_its_value_is_no_refusal():
    fuses = fu.parse_fuse_config_text(config(('ReservedOdm2', 4, '0x7'), ('SecurityMode', 4, '0x1')))
    plan = fu.plan_burn(fuses, held(OdmLock='00000004', ReservedOdm2='00000007'))
    assert plan['refusals'] == [] and plan['matching'] == ['ReservedOdm2']


def test_the_burn_file_has_the_exact_magic_and_every_size(tmp_path):
    text = fu.burn_config_text(fu.plan_burn(FUSES, UNBURNED)['burn'])
    assert text.startswith('<genericfuse MagicId="0x45535546" version="1.0.0">')
    assert [(fuse['name'], fuse['size']) for fuse in fu.parse_fuse_config_text(text)] == [
        ('PublicKeyHash', 64), ('SecureBootKey', 32), ('BootSecurityInfo', 4), ('SecurityMode', 4)]


# -- masking ----------------------------------------------------------------------------------

def test_redact_file_masks_every_spelling(tmp_path):
    log = tmp_path / 'fuse.log'
    log.write_text('burning %s\nburning %s\nother 0x1\n' % (SBK, SBK[2:].upper()))
    assert fu.redact_file(str(log), fu.secret_values(FUSES)) is True
    assert log.read_text() == 'burning ********\nburning ********\nother 0x1\n'
    assert fu.redact_file(str(log), fu.secret_values(FUSES)) is False  # nothing left to mask
    assert fu.redact_file(str(tmp_path / 'missing.log'), ['x' * 10]) is False
    assert fu.redact_file(str(log), []) is False


# -- the configuration against the keys ---------------------------------------------------------

@pytest.fixture(scope='module')
def key_lab(tmp_path_factory):
    """A lab bundle (its tegrasign_v3.py derives key hashes) and keys of each kind Orin takes."""
    root = tmp_path_factory.mktemp('keys')
    tree = l4t.make_bundle(str(root / 'bundle'), str(root / 'state'), make_usb_sysfs(str(root / 'sysfs'), {}))
    made = dict((kind, keys.make_pkc_key(str(root / ('%s.pem' % kind)), kind)) for kind in ('ecp256', 'rsa-2k'))
    sbk_path = str(root / 'sbk.key')
    return dict(tree=tree, keys=made, sbk=sbk_path, sbk_value='0x' + keys.make_sbk_key(sbk_path),
                ekb=str(root / 'eks_t234.img'))


def signed(lab, bsi='0x202', sbk=None, extra=()):
    """An ECDSA P-256 configuration for the lab's key: its hash, BootSecurityInfo, SecurityMode."""
    fuses = [('PublicKeyHash', 64, keys.pkc_key_hash(lab['keys']['ecp256']))]
    if sbk:
        fuses.append(('SecureBootKey', 32, sbk))
    fuses += list(extra) + [('BootSecurityInfo', 4, bsi), ('SecurityMode', 4, '0x1')]
    return fu.parse_fuse_config_text(config(*fuses))


def test_a_configuration_that_fits_its_keys_has_no_problem(key_lab):
    assert fu.key_problems(signed(key_lab), key_lab['tree'], key_lab['keys']['ecp256']) == []
    assert fu.key_problems(signed(key_lab, bsi='0x20a', sbk=key_lab['sbk_value']), key_lab['tree'],
                           key_lab['keys']['ecp256'], key_lab['sbk']) == []
    assert fu.key_problems(signed(key_lab, extra=[('OemK1', 32, SBK)]), key_lab['tree'], key_lab['keys']['ecp256'],
                           ekb_file=key_lab['ekb']) == []


@pytest.mark.parametrize('case, problem', [
    ('other key', 'but the hash of jetson_pkc_key'),
    ('algorithm', 'BootSecurityInfo 0x201 says PKC algorithm 1, but jetson_pkc_key'),
    ('no bsi', 'PublicKeyHash is burned without BootSecurityInfo; add BootSecurityInfo 0x202'),
    ('other sbk', 'SecureBootKey is not the key in jetson_sbk_key'),
    ('sbk without bit', 'SecureBootKey is burned but BootSecurityInfo 0x202 lacks the SBK bit 0x8'),
    ('bit without sbk', 'BootSecurityInfo 0x20a has the SBK bit 0x8 but no SecureBootKey is burned'),
    ('sbk for pkc only', 'jetson_sbk_key is set but the configuration burns no SecureBootKey'),
    ('sbk without pkc', 'SecureBootKey is burned without PublicKeyHash'),
    ('oem key without ekb', 'OemK1 is burned, so OP-TEE needs an EKB'),
    ('rsa 2k', 'is a 2048-bit RSA key; Orin takes RSA 3072, ECDSA P-256 or ECDSA P-521 keys'),
])
def test_a_configuration_that_does_not_fit_its_keys_is_refused(key_lab, case, problem):
    pkc, sbk, ekb = key_lab['keys']['ecp256'], None, None
    if case == 'other key':
        fuses = fu.parse_fuse_config_text(config(('PublicKeyHash', 64, PKH), ('BootSecurityInfo', 4, '0x202')))
    elif case == 'algorithm':
        fuses = signed(key_lab, bsi='0x201')
    elif case == 'no bsi':
        fuses = fu.parse_fuse_config_text(config(('PublicKeyHash', 64, keys.pkc_key_hash(pkc))))
    elif case == 'other sbk':
        fuses, sbk = signed(key_lab, bsi='0x20a', sbk=SBK), key_lab['sbk']
    elif case == 'sbk without bit':
        fuses, sbk = signed(key_lab, sbk=key_lab['sbk_value']), key_lab['sbk']
    elif case == 'bit without sbk':
        fuses = signed(key_lab, bsi='0x20a')
    elif case == 'sbk for pkc only':
        fuses, sbk = signed(key_lab), key_lab['sbk']
    elif case == 'sbk without pkc':
        fuses, pkc, sbk = fu.parse_fuse_config_text(config(('SecureBootKey', 32, key_lab['sbk_value']),
                                                           ('SecurityMode', 4, '0x1'))), None, key_lab['sbk']
    elif case == 'oem key without ekb':
        fuses = signed(key_lab, extra=[('OemK1', 32, SBK)])
    else:
        pkc = key_lab['keys']['rsa-2k']
        fuses = fu.parse_fuse_config_text(config(('PublicKeyHash', 64, keys.pkc_key_hash(pkc)),
                                                 ('BootSecurityInfo', 4, '0x201')))
    problems = fu.key_problems(fuses, key_lab['tree'], pkc, sbk, ekb)
    assert any(problem in text for text in problems), problems
    text = repr(problems)
    assert SBK[2:] not in text and key_lab['sbk_value'][2:] not in text  # no secret value is quoted


def test_the_key_hash_is_the_bundles_tegrasign_output(key_lab):
    assert fu.pkc_key_hash(key_lab['tree'], key_lab['keys']['ecp256']) == keys.pkc_key_hash(key_lab['keys']['ecp256'])
    assert fu.pkc_key_type(key_lab['keys']['ecp256']) == 'ecp256'
    with pytest.raises(fu.FuseError, match='has no bootloader/tegrasign_v3.py'):
        fu.pkc_key_hash(str(key_lab['ekb']) + '-no-bundle', key_lab['keys']['ecp256'])


def test_the_batch_check_checks_a_shared_configuration_and_key_once(key_lab, tmp_path, monkeypatch):
    from ansible_collections.azaion.jetson.plugins.module_utils import _device_checks  # pylint: disable=import-outside-toplevel
    xml = l4t.write_fuse_config(str(tmp_path / 'fuses.xml'), {'PublicKeyHash': PKH, 'BootSecurityInfo': '0x202'})
    derived = []
    hash_of = fu.pkc_key_hash
    monkeypatch.setattr(fu, 'pkc_key_hash', lambda *args: derived.append(args) or hash_of(*args))
    devices = [dict(name='AZJN-%04d' % number, fuse_enabled=True, fuse_config=xml, pkc_key=key_lab['keys']['ecp256'])
               for number in range(5)]
    problems = _device_checks.file_problems(devices, dict.fromkeys([d['name'] for d in devices], ('fuse',)),
                                            key_lab['tree'])
    # Each device is named with the one problem of their shared configuration; the key's hash is derived once.
    assert [problem.split(':')[0] for problem in problems] == [device['name'] for device in devices]
    assert all('but the hash of jetson_pkc_key' in problem for problem in problems)
    assert len(derived) == 1
