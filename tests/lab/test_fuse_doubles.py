"""The fuse doubles are as unkind as NVIDIA's r36.2 tools (public copy:
github.com/johnnynunez/Linux_for_Tegra): bootloader/tegrasign_v3.py, bootloader/tegrarcm_v2,
odmfuse.sh and odmfuseread.sh, run as real processes over a lab bundle. Each test shows one
way the double bites a fuse role that trusts the tools' exit codes or output."""

import os
import subprocess

import pytest

from . import keys
from . import l4t_bundle as l4t
from . import l4t_host
from . import usb_sysfs

TEGRASIGN = 'bootloader/tegrasign_v3.py'


NANO = 'jetson-orin-nano-devkit'
ODMFUSE = 'odmfuse.sh'
ODMFUSEREAD = 'odmfuseread.sh'
TEGRARCM = 'bootloader/tegrarcm_v2'
FRESH_BOOT_SECURITY_INFO = '0x1e0'  # what a fresh Orin reads: reserved bits set


class FuseLab:
    """A bundle, its lab state, a station host root and a fake USB sysfs with one fresh Orin
    Nano in recovery mode on 1-3."""

    def __init__(self, root):
        self.root = str(root)
        self.state = os.path.join(self.root, 'lab-state')
        self.sysfs = usb_sysfs.make_usb_sysfs(os.path.join(self.root, 'sysfs'), {'1-3': '7523'})
        self.host = os.path.join(self.root, 'host')
        self.tree = l4t.make_bundle(os.path.join(self.root, 'bundle'), self.state, self.sysfs, host_root=self.host)

    def run(self, tool, *args, cwd=None):
        return subprocess.run([os.path.join(self.tree, tool)] + list(args), cwd=cwd or self.tree, text=True,
                              capture_output=True, stdin=subprocess.DEVNULL, timeout=60, check=False)

    def config(self, name, fuses, magic=l4t.FUSE_MAGIC):
        return l4t.write_fuse_config(os.path.join(self.root, name), fuses, magic=magic)

    def burn(self, fuses, *options, magic=l4t.FUSE_MAGIC):
        return self.run(ODMFUSE, '-X', self.config('fuses.xml', fuses, magic), '-i', '0x23', *options, NANO)

    def read(self, *options):
        result = self.run(ODMFUSEREAD, '-i', '0x23', *options, NANO)
        if result.returncode:
            return result, None
        with open(os.path.join(self.tree, 'bootloader', 'fuse_info.txt')) as info:
            return result, [tuple(line.split(': ', 1)) for line in info.read().splitlines()]

    def fuses(self, port='1-3'):
        return l4t.burned_fuses(self.state, port)

    def uart(self, port='1-3'):
        return l4t.uart_log(self.state, port)

    def events(self):
        return [(event['event'], event.get('fuse') or event.get('verdict')) for event in l4t.fuse_events(self.state)]


@pytest.fixture(name='lab')
def fixture_lab(tmp_path):
    return FuseLab(tmp_path)


@pytest.fixture(name='tree')
def fixture_tree(lab):
    return lab.tree


@pytest.fixture(name='pkc', scope='session')
def fixture_pkc(tmp_path_factory):
    path = keys.make_pkc_key(str(tmp_path_factory.mktemp('keys') / 'pkc.pem'), 'rsa-3k')
    return path, keys.pkc_key_hash(path)


def output(result):
    return result.stdout + result.stderr


def tegrasign(tree, key, cwd):
    return subprocess.run([os.path.join(tree, TEGRASIGN), '--pubkeyhash', 'ppp', 'hhh', '--key', key],
                          cwd=cwd, capture_output=True, text=True, check=False)


def fuse_format_hash(stdout):
    lines = [line for line in stdout.splitlines() if 'tegra-fuse' in line]
    assert len(lines) == 1, stdout
    return lines[0].rsplit(' ', 1)[1]  # as generate_key_hash_v3: rev | awk '{print $1}' | rev


@pytest.mark.parametrize('kind, words', [('rsa-3k', ('Valid RSA key', 'Saving pkc public key in ppp')),
                                         ('ecp256', ('Valid ECC key', 'Saving public key in ppp for ECC'))])
def test_tegrasign_hash_is_64_bytes_stable_per_key_and_differs_per_key(tree, tmp_path, kind, words):
    key, other = keys.make_pkc_key(str(tmp_path / 'key.pem'), kind), keys.make_pkc_key(str(tmp_path / 'other.pem'), kind)
    assert oct(os.stat(key).st_mode & 0o777) == '0o600'
    first, again, another = (tegrasign(tree, path, str(tmp_path)) for path in (key, key, other))
    assert first.returncode == again.returncode == another.returncode == 0
    for word in words:
        assert word in first.stdout
    value = fuse_format_hash(first.stdout)
    assert value.startswith('0x') and len(value) == 2 + 128 and value == value.lower()
    assert value == fuse_format_hash(again.stdout) == keys.pkc_key_hash(key)
    assert value != fuse_format_hash(another.stdout)
    with open(tmp_path / 'hhh', 'rb') as hash_file:
        assert len(hash_file.read()) == 64
    assert os.path.getsize(tmp_path / 'ppp') > 0


def test_tegrasign_refuses_a_file_that_is_not_a_key(tree, tmp_path):
    junk = tmp_path / 'sbk.key'
    keys.make_sbk_key(str(junk))
    result = tegrasign(tree, str(junk), str(tmp_path))
    assert result.returncode == 1 and 'tegra-fuse' not in result.stdout
    assert 'Invalid key format' in result.stdout


def test_sbk_key_is_nvidias_format(tmp_path):
    value = keys.make_sbk_key(str(tmp_path / 'sbk.key'), '0x' + '0123456789ABCDEF' * 4)
    assert value == '0123456789abcdef' * 4
    with open(tmp_path / 'sbk.key') as sbk:
        assert sbk.read().split() == ['0x01234567', '0x89abcdef'] * 4


# -- odmfuse.sh --test: the device decides ------------------------------------------------------

def test_test_mode_is_a_dry_run_only_for_the_exact_magic_spelling(lab):
    dry = lab.burn({'ReservedOdm0': '0x1'}, '--test')
    assert dry.returncode == 0, output(dry)
    assert 'For test mode, set magic ID to 0x54534554 ("TEST").' in dry.stdout
    assert lab.fuses() == {} and lab.uart()[-1] == 'I> Dry run detected, returning now.'
    # sed "s/0x45535546/0x54534554/" is case-sensitive; the device reads the magic as a number.
    real = lab.burn({'ReservedOdm1': '0x1'}, '--test', magic='0X45535546')
    assert real.returncode == 0 and 'would be burned' in real.stdout
    assert lab.fuses() == {'ReservedOdm1': '0x1'}  # burned for real under --test
    assert lab.uart()[-2:] == ['I> ReservedOdm1 burned', 'I> Fuse burning done']
    assert lab.events() == [('test', 'dry-run'), ('test', 'burned')]


def test_test_mode_exits_0_whatever_the_device_decides(lab):
    l4t.set_device_fuses(lab.state, '1-3', {'BootSecurityInfo': FRESH_BOOT_SECURITY_INFO})
    refused = lab.burn({'BootSecurityInfo': '0x209'}, '--test')
    assert refused.returncode == 0, output(refused)
    assert 'E> FUSE: Failed to burn fuse BootSecurityInfo: trying to turn 1 into 0' in '\n'.join(lab.uart())
    bad_magic = lab.burn({'ReservedOdm0': '0x1'}, '--test', magic='0x12345678')
    assert bad_magic.returncode == 0
    assert lab.uart()[-1] == 'E> FUSE: Invalid fuse magic id 0x12345678, nothing burned'
    assert lab.fuses() == {'BootSecurityInfo': FRESH_BOOT_SECURITY_INFO}
    assert lab.events() == [('stopped', 'BootSecurityInfo'), ('test', 'stopped'), ('test', 'bad-magic')]
    assert l4t.fuse_events(lab.state)[0]['dry_run'] is True


# -- the burner: in order, stops silently ----------------------------------------------------------

def test_a_fresh_modules_reserved_bits_stop_a_0x209_burn_after_the_key_hash_and_odmfuse_reports_success(lab, pkc):
    """The public report: a fresh Orin reads BootSecurityInfo 0x1e0; a burn of 0x209 stopped at
    "trying to turn 1 into 0" with PublicKeyHash already burned, and odmfuse.sh said success."""
    key, key_hash = pkc
    l4t.set_device_fuses(lab.state, '1-3', {'BootSecurityInfo': FRESH_BOOT_SECURITY_INFO})
    burn = lab.burn({'PublicKeyHash': key_hash, 'BootSecurityInfo': '0x209', 'SecurityMode': '0x1'})
    assert burn.returncode == 0 and 'burned successfully' in burn.stdout
    assert lab.fuses() == {'BootSecurityInfo': FRESH_BOOT_SECURITY_INFO, 'PublicKeyHash': key_hash}
    uart = lab.uart()
    assert uart[uart.index('I> 1. Start PublicKeyHash burn') + 1] == 'I> PublicKeyHash burned'
    assert uart[-2:] == ['I> 2. Start BootSecurityInfo burn',
                         'E> FUSE: Failed to burn fuse BootSecurityInfo: trying to turn 1 into 0 '
                         '(burned 0x1e0, asked 0x209)']
    assert lab.events() == [('stopped', 'BootSecurityInfo'), ('burn', 'stopped')]
    # Keeping the reserved bits burns; the device is PKC fused now, so the key is needed.
    assert lab.burn({'BootSecurityInfo': '0x3e9'}).returncode == 1
    again = lab.burn({'BootSecurityInfo': '0x3e9'}, '-k', key)
    assert again.returncode == 0, output(again)
    assert lab.fuses()['BootSecurityInfo'] == '0x3e9'


def test_odm_lock_stops_a_burn_of_its_reserved_odm_fuses(lab):
    assert lab.burn({'OdmLock': '0x1'}).returncode == 0
    burn = lab.burn({'ReservedOdm1': '0x5', 'ReservedOdm0': '0x7', 'ReservedOdm4': '0x1'})
    assert burn.returncode == 0
    assert lab.fuses() == {'OdmLock': '0x1', 'ReservedOdm1': '0x5'}
    assert lab.uart()[-1] == 'E> FUSE: Failed to burn fuse ReservedOdm0: ReservedOdm0 is locked by OdmLock 0x1'
    # A lock burned earlier in the same file counts too (0x5: 0x4 alone would clear bit 0).
    assert lab.burn({'OdmLock': '0x5', 'ReservedOdm2': '0x1'}).returncode == 0
    assert lab.fuses() == {'OdmLock': '0x5', 'ReservedOdm1': '0x5'}
    assert lab.events()[-2:] == [('stopped', 'ReservedOdm2'), ('burn', 'stopped')]


def test_security_mode_burned_mid_file_stops_the_fuses_after_it(lab):
    burn = lab.burn({'ReservedOdm0': '0x1', 'SecurityMode': '0x1', 'ReservedOdm1': '0x1'})
    assert burn.returncode == 0 and 'burned successfully' in burn.stdout
    assert lab.fuses() == {'ReservedOdm0': '0x1', 'SecurityMode': '0x1'}
    assert lab.uart()[-1] == 'E> FUSE: Failed to burn fuse ReservedOdm1: SecurityMode is burned, the fuses are locked'
    # Burned before the call: odmfuse.sh refuses on the host.
    refused = lab.burn({'ReservedOdm1': '0x1'})
    assert refused.returncode == 1 and "SecurityMode is burned, you can't burn any manufacturing fuses now." in refused.stdout
    assert lab.events() == [('stopped', 'ReservedOdm1'), ('burn', 'stopped'), ('refused', None)]


def test_a_value_longer_than_its_fuse_stops_and_a_short_key_hash_is_burned_zero_extended(lab):
    assert lab.burn({'OdmId': '0x' + '1' * 18, 'ReservedOdm0': '0x1'}).returncode == 0
    assert lab.fuses() == {}
    assert lab.uart()[-1] == 'E> FUSE: Failed to burn fuse OdmId: value 0x%s is longer than the fuse (8 bytes)' % ('1' * 18)
    assert lab.burn({'PublicKeyHash': '0x' + 'ab' * 32}).returncode == 0  # 32 bytes: a SHA-256, not NVIDIA's
    assert lab.fuses() == {'PublicKeyHash': '0x' + 'ab' * 32}
    for key in ('rsa-3k', 'ecp256'):  # no key's hash is that: the module takes no image any more
        path = keys.make_pkc_key(os.path.join(lab.root, key + '.pem'), key)
        result, _info = lab.read('-k', path)
        assert result.returncode == 1 and 'rejected the RCM messages' in result.stdout


def test_a_planted_silent_failure_still_burns_nothing(lab):
    l4t.plant_silent_fuse_failure(lab.state, '1-3')
    burn = lab.burn({'ReservedOdm0': '0x1'})
    assert burn.returncode == 0 and 'burned successfully' in burn.stdout
    assert lab.fuses() == {} and lab.uart() == []
    assert lab.events() == [('silent', None)]


# -- odmfuseread.sh --------------------------------------------------------------------------------

def test_read_back_prints_nvidias_list_zero_padded_without_0x(lab, pkc):
    key, key_hash = pkc
    l4t.set_device_fuses(lab.state, '1-3', {'BootSecurityInfo': FRESH_BOOT_SECURITY_INFO})
    assert lab.burn({'PublicKeyHash': key_hash, 'OdmId': '0x42', 'OemK1': '0x' + '11' * 32,
                     'ReservedOdm7': '0xabc'}).returncode == 0
    result, info = lab.read('-k', key)
    assert result.returncode == 0, output(result)
    assert [name for name, _value in info] == list(l4t.READABLE_FUSES)
    values = dict(info)
    assert values['PublicKeyHash'] == key_hash[2:] and len(values['PublicKeyHash']) == 128
    assert (values['BootSecurityInfo'], values['OdmId'], values['ReservedOdm7'], values['SecurityMode']) == \
        ('000001e0', '0000000000000042', '00000abc', '00000000')
    assert 'OemK1' not in values and 'OemK1' in lab.fuses()  # key fuses are never read
    assert 'Fuse reading is done.' in result.stdout


def test_keys_must_be_the_ones_the_device_needs_and_its_own(lab, pkc):
    key, key_hash = pkc
    sbk = os.path.join(lab.root, 'sbk.key')
    keys.make_sbk_key(sbk)
    # Unfused: an SBK alone is refused.
    result, _info = lab.read('-S', sbk)
    assert result.returncode == 1 and "L4T doesn't support SBK by itself." in result.stdout
    unfused = lab.burn({'ReservedOdm0': '0x1'}, '-S', sbk)
    assert unfused.returncode == 1 and 'L4T does not support SBK individually' in unfused.stdout

    assert lab.burn({'PublicKeyHash': key_hash}).returncode == 0  # PKC only
    result, _info = lab.read()
    assert result.returncode == 1 and 'Error: PKC key file is not provided for PKC protected target board.' in result.stdout
    for run in (lambda: lab.read('-k', key, '-S', sbk)[0], lambda: lab.burn({'ReservedOdm0': '0x1'}, '-k', key, '-S', sbk)):
        with_sbk = run()
        assert with_sbk.returncode == 1
        assert 'Error: SBK key file is provided for PKC protected target board.' in with_sbk.stdout
    other = keys.make_pkc_key(os.path.join(lab.root, 'other.pem'), 'rsa-3k')
    result, _info = lab.read('-k', other)
    assert result.returncode == 1 and 'rejected the RCM messages signed with' in result.stdout
    assert lab.read('-k', key)[0].returncode == 0

    # SBK + PKC: both, and the device's own SBK.
    l4t.set_device_fuses(lab.state, '1-3', {'SecureBootKey': '0x' + keys.make_sbk_key(os.path.join(lab.root, 'own.key'))})
    result, _info = lab.read('-k', key)
    assert result.returncode == 1 and 'Either PKC or SBK key is not provided' in result.stdout
    result, _info = lab.read('-k', key, '-S', sbk)
    assert result.returncode == 1 and 'not its SecureBootKey' in result.stdout
    assert lab.read('-k', key, '-S', os.path.join(lab.root, 'own.key'))[0].returncode == 0


# -- tegrarcm_v2 --uid: the chip's identity ------------------------------------------------------

def uid(lab, *instance):
    result = lab.run(TEGRARCM, '--new_session', '--chip', '0x23', *instance, '--uid', cwd=os.path.join(lab.tree, 'bootloader'))
    lines = [line for line in result.stdout.splitlines() if 'BR_CID' in line]
    return result, lines[0].split(' ')[1] if lines else None  # flash.sh: grep BR_CID | cut -d' ' -f2


def test_tegrarcm_uid_is_per_port_stable_across_power_cycles_and_new_for_a_swapped_module(lab, pkc):
    usb_sysfs.add_device(lab.sysfs, '1-4', '7623')
    first, second = l4t.device_ecid(lab.state, lab.sysfs, '1-3'), l4t.device_ecid(lab.state, lab.sysfs, '1-4')
    assert first != second and len(first) == 34
    assert uid(lab, '--instance', '1-3')[1] == first and uid(lab, '--instance', '1-4')[1] == second
    assert uid(lab)[1] == first  # without --instance: the first device, whatever was meant
    assert (l4t.device_chip_sku(lab.state, lab.sysfs, '1-3'), l4t.device_chip_sku(lab.state, lab.sysfs, '1-4')) == ('D5', 'D6')
    # The device leaves recovery mode (a flash) and the operator power-cycles it back: same chip.
    usb_sysfs.remove_device(lab.sysfs, '1-3')
    assert l4t.device_ecid(lab.state, lab.sysfs, '1-3') == first  # kept by the lab
    failed, cid = uid(lab, '--instance', '1-3')
    assert failed.returncode == 1 and cid is None
    l4t_host.power_cycle_into_recovery(lab.state, lab.host, lab.sysfs, '1-3')
    assert uid(lab, '--instance', '1-3')[1] == first
    assert usb_sysfs.chip_identity(lab.sysfs, '1-3') == (first[2:], 'D5')
    # Another module on the port is another chip.
    usb_sysfs.remove_device(lab.sysfs, '1-3')
    usb_sysfs.add_device(lab.sysfs, '1-3', '7523')
    swapped = uid(lab, '--instance', '1-3')[1]
    assert swapped not in (first, second) and swapped == l4t.device_ecid(lab.state, lab.sysfs, '1-3')
    # Its fuses show in BR_CID as flash.sh get_fuse_level decodes them: 8 production, 1 RSA 3K.
    assert lab.burn({'PublicKeyHash': pkc[1]}).returncode == 0
    fused = uid(lab, '--instance', '1-3')[1]
    assert fused == l4t.br_cid(lab.state, lab.sysfs, '1-3') == '0x81' + swapped[4:]


def test_tegrarcm_uid_without_a_device_fails(lab):
    usb_sysfs.remove_device(lab.sysfs, '1-3')
    result, cid = uid(lab)
    assert result.returncode == 1 and cid is None
    assert 'Check if device is in recovery' in result.stdout
