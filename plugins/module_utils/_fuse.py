# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""Fuse configurations (NVIDIA genericfuse XML), odmfuseread.sh's ``fuse_info.txt``, the
comparison of what was meant to be burned with what a device really holds, and the fusing of one
device (:class:`Fuser`, the work of azaion.jetson.l4t_fuse and of each device of
azaion.jetson.station_fuse).

Values of secret key fuses (SecureBootKey, OemK1...) never appear in an error message or a
mismatch; :func:`secret_values` gives them to whoever must mask them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shutil
import subprocess
import tempfile
import time
from xml.etree import ElementTree

from ansible_collections.azaion.jetson.plugins.module_utils._device_state import SERIAL_PATTERN, DeviceState
from ansible_collections.azaion.jetson.plugins.module_utils._slots import station_lock
from ansible_collections.azaion.jetson.plugins.module_utils._tool_runner import log_tail, run_tool
from ansible_collections.azaion.jetson.plugins.module_utils._usb import (
    BOARD_CONFIGS,
    RECOVERY_PRODUCTS,
    USB_PORT_PATTERN,
    recovery_devices,
)

FUSE_MAGIC = '0x45535546'
FUSE_INFO_RELPATH = os.path.join('bootloader', 'fuse_info.txt')

# The fuses a Jetson Orin (T234) fuse configuration may name: the fuses of NVIDIA's "Jetson Orin
# Reference Fuse Configuration File" (Jetson Linux Developer Guide, Security > Secure Boot,
# docs.nvidia.com/jetson/archives/r38.4/DeveloperGuide/SD/Security/SecureBoot.html), plus OdmLock
# and SwReserved, which NVIDIA's own odmfuse.sh writes into the fuse XML it burns for 0x23 (its -l
# and -r options) and odmfuseread.sh reads (odmfuse.sh and odmfuse.func of the r36 BSP, public copy
# in github.com/Seeed-Studio/Linux_for_Tegra). Left out: DebugAuthentication (odmfuse.sh refuses it
# for 0x23, "not verified yet"), the Xavier-only Kek0/Kek1/Kek2/Kek256 and JtagDisable, and Thor's.
ORIN_FUSES = frozenset((
    'OdmId', 'OdmInfo', 'ArmJtagDisable',
    'ReservedOdm0', 'ReservedOdm1', 'ReservedOdm2', 'ReservedOdm3',
    'ReservedOdm4', 'ReservedOdm5', 'ReservedOdm6', 'ReservedOdm7',
    'OptInEnable', 'PublicKeyHash', 'PkcPubkeyHash1', 'PkcPubkeyHash2',
    'SecureBootKey', 'Kdk0', 'PscOdmStatic', 'OemK1', 'OemK2',
    'BootSecurityInfo', 'SecurityMode', 'OdmLock', 'SwReserved',
))
# The fuses odmfuseread.sh reads on Orin into fuse_info.txt, a fixed list (FUSES_KEYS_T234,
# FUSES_MANUFACTURING_T234 and FUSES_ODM_RESERVED of odmfuse.func, same repository): only these
# can be verified by a read-back; any other configured fuse is never compared.
READABLE_FUSES = frozenset((
    'PublicKeyHash', 'BootSecurityInfo', 'ArmJtagDisable', 'SecurityMode', 'SwReserved',
    'DebugAuthentication', 'OdmId', 'OdmLock',
    'ReservedOdm0', 'ReservedOdm1', 'ReservedOdm2', 'ReservedOdm3',
    'ReservedOdm4', 'ReservedOdm5', 'ReservedOdm6', 'ReservedOdm7',
))
# Key fuses: secret (their values are masked wherever they could travel), and never read back.
SECRET_FUSES = frozenset(('SecureBootKey', 'OemK1', 'OemK2', 'Kdk0'))
# The size in bytes of each Orin fuse, as the on-device burner takes it (docs/l4t-fusing.md):
# the key hashes 64, the keys 32, OdmId 8, every other fuse 4. A configuration must give exactly
# these sizes: a 32-byte PublicKeyHash is burned as given and leaves a module that boots nothing.
FUSE_SIZES = dict((name, 4) for name in ORIN_FUSES)
FUSE_SIZES.update(PublicKeyHash=64, PkcPubkeyHash1=64, PkcPubkeyHash2=64,
                  SecureBootKey=32, OemK1=32, OemK2=32, Kdk0=32, OdmId=8)
# Fuses that hold a whole key or key hash: written with all their digits, and on a device they
# read either 0 (unburned) or exactly that key; adding bits to one is never right.
KEY_FUSES = SECRET_FUSES | frozenset(('PublicKeyHash', 'PkcPubkeyHash1', 'PkcPubkeyHash2'))
# Once burned, the device talks only to tools given the matching key, the read-back included.
KEY_FOR_FUSE = (('PublicKeyHash', 'pkc_key'), ('SecureBootKey', 'sbk_key'))
# BootSecurityInfo: bits 0-2 the PKC algorithm (as odmfuse.sh writes it for each key type),
# bit 3 SBK encryption, bits 5-8 reserved: fresh Orin modules read 0x1e0 there, and the burner
# refuses a value that would clear them (docs/l4t-fusing.md).
BSI_ALGORITHM_MASK = 0x7
BSI_SBK = 0x8
BSI_RESERVED_MASK = 0x1e0
PKC_ALGORITHMS = {'rsa-3k': 1, 'ecp256': 2, 'ecp521': 3}
# The fuses the OEM keys need beside the XML: an EKB encrypted with that key, flashed to the
# device's EKS partition, or OP-TEE fails at boot.
EKB_FUSES = ('OemK1', 'OemK2')
# SecurityMode locks every other fuse, and OdmLock bit n locks ReservedOdm<n>: both go last in
# the file the burner gets (it burns in order and stops at the first fuse it cannot burn).
LAST_FUSES = ('OdmLock', 'SecurityMode')

_HEX_WORD = re.compile(r'^(?:0[xX])?([0-9a-fA-F]+)$')
_NAME = re.compile(r'^[A-Za-z][A-Za-z0-9_]*$')


class FuseError(Exception):
    """A fuse configuration or read-back cannot be used; the message names the file and the fix."""


def normalize_value(value):
    """A fuse value in one spelling: lowercase hex digits, no ``0x``, no leading zeros.

    ``0x0001``, ``0X1`` and ``1`` are the same value; NVIDIA allows the ``0x`` to be left out and
    odmfuseread.sh prints some fuses zero-padded without it. A value made of several words
    (``0x00000000 0x000000AB``) is taken as the words' digits one after the other. Raises
    ValueError for anything that is not hexadecimal.
    """
    words = str(value).split()
    if not words:
        raise ValueError('empty value')
    digits = []
    for word in words:
        match = _HEX_WORD.match(word)
        if match is None:
            raise ValueError('not hexadecimal')
        digits.append(match.group(1))
    return ''.join(digits).lower().lstrip('0') or '0'


def _hex_digit_count(value):
    return sum(len(_HEX_WORD.match(word).group(1)) for word in str(value).split())


def _name_fix(name):
    """What to do about a fuse name outside ORIN_FUSES, for the error message."""
    same = [known for known in ORIN_FUSES if known.lower() == name.lower()]
    if same:
        return 'correct it to %s (fuse names are case-sensitive)' % same[0]
    return ('use a name of NVIDIA\'s Jetson Orin reference fuse configuration (%s)'
            % ', '.join(sorted(ORIN_FUSES)))


def parse_fuse_config_text(text, path='fuse config'):
    """The fuses of a genericfuse XML as an ordered list of dicts: name, size (int or None), value.

    Raises FuseError naming ``path`` when the text is not XML, not an NVIDIA fuse configuration
    (root element ``genericfuse`` with ``MagicId="0x45535546"``), names no fuse, names one twice,
    names a fuse that Orin does not have (:data:`ORIN_FUSES`), or holds a value that is not
    hexadecimal or does not fit its size. Secret values are never quoted in the message.
    """
    try:
        root = ElementTree.fromstring(text)
    except (ElementTree.ParseError, ValueError, LookupError) as exc:  # LookupError: an unknown encoding
        raise FuseError('%s is not XML (%s); give an NVIDIA fuse configuration (genericfuse XML) file' % (path, exc))
    magic = root.get('MagicId')
    if root.tag == 'genericfuse' and magic is not None and magic.strip().lower() == FUSE_MAGIC and magic != FUSE_MAGIC:
        # odmfuse.sh --test makes its dry run by rewriting exactly this spelling: any other one
        # burns for real in the "dry run".
        raise FuseError('%s: MagicId is "%s", which odmfuse.sh --test does not rewrite to its dry-run magic (it '
                        'matches "%s" exactly), so the dry run would burn; fix it to "%s"'
                        % (path, magic, FUSE_MAGIC, FUSE_MAGIC))
    if root.tag != 'genericfuse' or magic != FUSE_MAGIC:
        found = '<%s%s>' % (root.tag, ' MagicId="%s"' % magic if magic is not None else '')
        raise FuseError('%s is not an NVIDIA fuse configuration: its root element is %s, not '
                        '<genericfuse MagicId="%s">; give an NVIDIA fuse configuration file' % (path, found, FUSE_MAGIC))
    fuses = []
    seen = set()
    for index, element in enumerate(root, 1):
        if element.tag != 'fuse':
            raise FuseError('%s: element %d is <%s>; remove it, a fuse configuration holds <fuse/> elements only'
                            % (path, index, element.tag))
        name = (element.get('name') or '').strip()
        if not _NAME.match(name):
            raise FuseError('%s: fuse %d has no valid name attribute; give it the name of the fuse to burn' % (path, index))
        if name not in ORIN_FUSES:
            raise FuseError('%s: fuse %s is not a Jetson Orin (T234) fuse; %s' % (path, name, _name_fix(name)))
        if name in seen:
            raise FuseError('%s: fuse %s is named twice; remove one: burn each fuse once, all in one file' % (path, name))
        seen.add(name)
        shown = 'its value' if name in SECRET_FUSES else 'value %r' % element.get('value')
        value = element.get('value')
        if value is None or not value.strip():
            raise FuseError('%s: fuse %s has no value; give it the value to burn' % (path, name))
        try:
            normalize_value(value)
        except ValueError:
            raise FuseError('%s: fuse %s: %s is not hexadecimal; give it in hexadecimal (0x...)' % (path, name, shown))
        size, wanted = element.get('size'), FUSE_SIZES[name]
        try:
            size = int(size, 0) if size is not None else None
        except ValueError:
            size = -1
        if size != wanted:
            raise FuseError('%s: fuse %s: size %s is not its size on Orin; give size="%d"'
                            % (path, name, 'missing' if size is None else repr(element.get('size')), wanted))
        digits = _hex_digit_count(value)
        if name in KEY_FUSES and digits != 2 * wanted:
            raise FuseError('%s: fuse %s must be %d bytes (%d hexadecimal digits) on Orin, %s has %d; give the whole %s'
                            % (path, name, wanted, 2 * wanted, shown, digits,
                               'key hash' if name not in SECRET_FUSES else 'key'))
        if digits > 2 * wanted and len(normalize_value(value)) > 2 * wanted:
            raise FuseError('%s: fuse %s: %s is longer than its size (%d bytes); fix its value'
                            % (path, name, shown, wanted))
        fuses.append(dict(name=name, size=size, value=value.strip()))
    if not fuses:
        raise FuseError('%s names no fuse: nothing to burn; give at least one <fuse/> element' % path)
    return fuses


def parse_fuse_config(path):
    """:func:`parse_fuse_config_text` of the file at ``path``, with clear errors for an unreadable file."""
    try:
        with open(path, 'rb') as config:
            data = config.read()
    except (IOError, OSError) as exc:
        if not os.path.exists(path):
            raise FuseError('fuse configuration %s does not exist; give the path of a fuse XML file on the station' % path)
        raise FuseError('cannot read fuse configuration %s: %s; make it a readable file' % (path, exc.strerror or exc))
    return parse_fuse_config_text(data, path=path)


def parse_fuse_info_text(text):
    """``Name: value`` lines as odmfuseread.sh writes them into bootloader/fuse_info.txt -> dict.

    Blank lines, comments and lines without a colon are skipped; a name given twice keeps its
    last value.
    """
    info = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith('#') or ':' not in line:
            continue
        name, value = line.split(':', 1)
        name, value = name.strip(), value.strip()
        if _NAME.match(name):
            info[name] = value
    return info


def parse_fuse_info(path):
    """:func:`parse_fuse_info_text` of ``path``; FuseError when it is missing or unreadable."""
    try:
        with open(path, 'r') as info:
            text = info.read()
    except (IOError, OSError) as exc:
        if not os.path.exists(path):
            raise FuseError('odmfuseread.sh wrote no %s' % path)
        raise FuseError('cannot read %s: %s' % (path, exc.strerror or exc))
    return parse_fuse_info_text(text)


def verifiable_fuses(fuses):
    """The names of the fuses a read-back can confirm (those odmfuseread.sh reads)."""
    return [fuse['name'] for fuse in fuses if fuse['name'] in READABLE_FUSES]


def unverifiable_fuses(fuses):
    """The names of the fuses odmfuseread.sh never reads back (the secret keys among them)."""
    return [fuse['name'] for fuse in fuses if fuse['name'] not in READABLE_FUSES]


def keys_needed(fuses):
    """The key options the read-back needs after this burn: [(fuse name, option name)]."""
    names = set(fuse['name'] for fuse in fuses)
    return [(fuse, option) for fuse, option in KEY_FOR_FUSE if fuse in names]


def secret_values(fuses):
    """The values of the secret fuses in the spellings a tool may print, for masking."""
    values = set()
    for fuse in fuses:
        if fuse['name'] not in SECRET_FUSES:
            continue
        digits = ''.join(_HEX_WORD.match(word).group(1) for word in fuse['value'].split())
        if len(digits) < 8:  # too short to mask without mangling unrelated text
            continue
        for spelling in (fuse['value'], digits, '0x' + digits):
            values.update((spelling, spelling.lower(), spelling.upper()))
    return sorted(values)


def fuse_number(value):
    """A fuse value as a number (:func:`normalize_value` of it)."""
    return int(normalize_value(value), 16)


def _significant(name, number):
    """The bits of a fuse that a comparison looks at: BootSecurityInfo without its reserved bits."""
    return number & ~BSI_RESERVED_MASK if name == 'BootSecurityInfo' else number


def _held(read, name):
    """What odmfuseread.sh read of ``name`` as a number, or None (not read, or not a number)."""
    got = read.get(name)
    try:
        return fuse_number(got) if got is not None else None
    except ValueError:
        return None


def compare_fuses(fuses, read_back):
    """The fuses whose read-back differs from the configuration, in the configuration's order.

    Each mismatch is a dict: ``name``, ``expected`` (as written in the configuration),
    ``read_back`` (as odmfuseread.sh printed it; None when the fuse was not in its output).
    Values compare as bit sets, BootSecurityInfo without its reserved bits. Fuses odmfuseread.sh
    does not read are skipped (the secret keys among them: their values must not travel).
    """
    mismatches = []
    for fuse in fuses:
        name = fuse['name']
        if name not in READABLE_FUSES:
            continue
        held = _held(read_back, name)
        if held is None or _significant(name, held) != _significant(name, fuse_number(fuse['value'])):
            mismatches.append(dict(name=name, expected=fuse['value'], read_back=read_back.get(name)))
    return mismatches


def describe_mismatches(mismatches):
    """``Name: expected X, read back Y`` for each mismatch, joined with ``; ``."""
    parts = []
    for mismatch in mismatches:
        got = mismatch['read_back']
        parts.append('%s: expected %s, read back %s' % (
            mismatch['name'], mismatch['expected'], 'nothing' if got is None else got))
    return '; '.join(parts)


def plan_burn(fuses, read):
    """What burning ``fuses`` into a device that holds ``read`` (odmfuseread.sh's fuse_info)
    would do, by NVIDIA's bit rules, before anything is burned.

    Returns a dict:
    - ``matching``: readable configured fuses the device already holds as configured;
    - ``refusals``: why the burn must not start, each naming the fuse, what the configuration
      wants and what the device holds (a burned bit the configuration would clear, another key's
      hash, a ReservedOdm locked by OdmLock, anything to add after SecurityMode), or a fuse that
      could not be read;
    - ``burn``: the fuses to give the burner, in its order: the configuration's, with OdmLock and
      SecurityMode last, and BootSecurityInfo keeping the reserved bits the device holds (the
      burner refuses to clear them).
    """
    matching, refusals = [], []
    burn_values = {}
    held_security_mode = _held(read, 'SecurityMode')
    odm_lock = _held(read, 'OdmLock') or 0
    for fuse in fuses:
        name, want = fuse['name'], fuse_number(fuse['value'])
        burn_values[name] = fuse['value']
        if name not in READABLE_FUSES:
            continue
        held = _held(read, name)
        if held is None:
            refusals.append('%s: odmfuseread.sh read no value of it (%r)' % (name, read.get(name)))
            continue
        if name == 'BootSecurityInfo' and held & BSI_RESERVED_MASK & ~want:
            want |= held & BSI_RESERVED_MASK
            burn_values[name] = '0x%x' % want
        if _significant(name, held) == _significant(name, want):
            matching.append(name)
            continue
        shown = 'configured %s, held %s' % (fuse['value'], read.get(name))
        if name in KEY_FUSES and held:
            refusals.append('%s holds another key hash (%s); a key fuse is burned once' % (name, shown))
        elif held & ~want:
            refusals.append('%s would clear burned bits (0x%x; %s); fuse bits only go from 0 to 1'
                            % (name, held & ~want, shown))
        elif name.startswith('ReservedOdm') and int(name[len('ReservedOdm'):]) < 4 \
                and odm_lock & (1 << int(name[len('ReservedOdm'):])):
            refusals.append('%s is locked by OdmLock bit %s (%s)' % (name, name[len('ReservedOdm'):], shown))
    if held_security_mode and len(matching) < len(verifiable_fuses(fuses)):
        refusals.append('SecurityMode is burned (read %s): no fuse can be added after it' % read.get('SecurityMode'))
    order = [fuse['name'] for fuse in fuses if fuse['name'] not in LAST_FUSES]
    order += [name for name in LAST_FUSES if name in burn_values]
    burn = [dict(name=name, size=FUSE_SIZES[name], value=burn_values[name]) for name in order]
    return dict(matching=matching, refusals=refusals, burn=burn)


def burn_config_text(fuses):
    """The genericfuse XML the burner gets: ``fuses`` in the given order, the MagicId exactly as
    odmfuse.sh --test rewrites it, every size given."""
    lines = ['<genericfuse MagicId="%s" version="1.0.0">' % FUSE_MAGIC]
    lines += ['<fuse name="%s" size="%d" value="%s"/>' % (fuse['name'], FUSE_SIZES[fuse['name']], fuse['value'])
              for fuse in fuses]
    lines.append('</genericfuse>')
    return '\n'.join(lines) + '\n'


def _run_quietly(argv, cwd=None, timeout=60):
    """Run a helper tool and return (exit status, its output as text)."""
    try:
        process = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
    except (IOError, OSError) as exc:
        return None, str(exc.strerror or exc)
    try:
        output, _unused = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _unused = process.communicate()
        return None, 'did not finish within %d seconds' % timeout
    return process.returncode, output.decode('utf-8', 'replace')


def pkc_key_type(key_path):
    """The PKC key type as odmfuse.sh's get_pkc_keytype tells it for Orin: rsa-3k, ecp256 or
    ecp521, from ``ssh-keygen -l -f <key>`` (its size and, last, its type). FuseError otherwise."""
    status, output = _run_quietly(['ssh-keygen', '-l', '-f', key_path])
    if status is None and 'No such file' in output:
        raise FuseError('ssh-keygen is not installed on the station (it tells the PKC key type, as NVIDIA\'s '
                        'odmfuse.sh does); install openssh-client')
    if 'are too open' in output:
        raise FuseError('%s can be read by other users, so ssh-keygen (and NVIDIA\'s odmfuse.sh) ignore it; make '
                        'it mode 0600' % key_path)
    words = output.split()
    if status != 0 or not words:
        raise FuseError('%s is not a PKC key ssh-keygen can read (%s); give the PEM private key the devices are '
                        'signed with' % (key_path, output.strip().splitlines()[-1] if output.strip() else status))
    size, kind = words[0], words[-1].strip('()').lower()
    found = {('rsa', '3072'): 'rsa-3k', ('ecdsa', '256'): 'ecp256', ('ecdsa', '521'): 'ecp521'}.get((kind, size))
    if found is None:
        raise FuseError('%s is a %s-bit %s key; Orin takes RSA 3072, ECDSA P-256 or ECDSA P-521 keys'
                        % (key_path, size, kind.upper()))
    return found


TEGRASIGN = os.path.join('bootloader', 'tegrasign_v3.py')
_PKC_HASH_LINE = re.compile(r'tegra-fuse format \(big-endian\):\s*(0x[0-9a-fA-F]+)')


def pkc_key_hash(l4t_dir, key_path):
    """The PublicKeyHash of ``key_path`` as odmfuse.sh's generate_key_hash_v3 derives it: the
    bundle's ``bootloader/tegrasign_v3.py --pubkeyhash <pub> <hash> --key <key>``, in a
    directory of its own (it writes there), the line ``tegra-fuse format (big-endian): 0x...``."""
    tool = os.path.join(l4t_dir, TEGRASIGN)
    if not os.path.isfile(tool):
        raise FuseError('%s has no %s to derive the PublicKeyHash of the key from; give jetson_l4t_dir an L4T '
                        'Linux_for_Tegra bundle' % (l4t_dir, TEGRASIGN))
    scratch = tempfile.mkdtemp(prefix='azaion-pkh-')
    try:
        status, output = _run_quietly([tool, '--pubkeyhash', 'ppp', 'hhh', '--key', os.path.abspath(key_path)],
                                      cwd=scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    match = _PKC_HASH_LINE.search(output)
    if status != 0 or match is None:
        raise FuseError('%s --pubkeyhash could not derive the hash of %s (exit %s): %s'
                        % (TEGRASIGN, key_path, status, output.strip().splitlines()[-1] if output.strip() else ''))
    return match.group(1).lower()


def sbk_key_value(key_path):
    """The SBK of an NVIDIA SBK key file (words such as ``0x01234567 0x89abcdef ...``) as one
    number, as odmfuse.sh reads it; FuseError for a file that is not hexadecimal words."""
    try:
        with open(key_path) as key:
            return fuse_number(key.read())
    except (IOError, OSError) as exc:
        raise FuseError('cannot read the SBK key file %s: %s' % (key_path, exc.strerror or exc))
    except ValueError:
        raise FuseError('%s is not an SBK key file (hexadecimal words such as 0x01234567 ...)' % key_path)


def key_problems(fuses, l4t_dir, pkc_key=None, sbk_key=None, ekb_file=None):
    """What in the configuration does not fit the keys the devices will be signed with, or
    NVIDIA's rules for Orin, each naming the fuse, what was expected and what was found. Secret
    values are never quoted."""
    values = dict((fuse['name'], fuse['value']) for fuse in fuses)
    problems = []
    bsi = fuse_number(values['BootSecurityInfo']) if 'BootSecurityInfo' in values else None
    if 'PublicKeyHash' in values and pkc_key:
        try:
            expected = pkc_key_hash(l4t_dir, pkc_key)
            if fuse_number(expected) != fuse_number(values['PublicKeyHash']):
                problems.append('PublicKeyHash is %s, but the hash of jetson_pkc_key %s is %s (tegrasign_v3.py '
                                '--pubkeyhash); burn the hash of the key the devices are signed with'
                                % (values['PublicKeyHash'], pkc_key, expected))
            kind = pkc_key_type(pkc_key)
            if bsi is None:
                nvidia = 0x200 | PKC_ALGORITHMS[kind]  # what odmfuse.sh burns for this key type
                problems.append('PublicKeyHash is burned without BootSecurityInfo; add BootSecurityInfo 0x%x for '
                                'the %s key (0x%x with an SBK)' % (nvidia, kind, nvidia | BSI_SBK))
            elif bsi & BSI_ALGORITHM_MASK != PKC_ALGORITHMS[kind]:
                problems.append('BootSecurityInfo %s says PKC algorithm %d, but jetson_pkc_key %s is %s (algorithm '
                                '%d: 1 RSA-3K, 2 ECDSA P-256, 3 ECDSA P-521)'
                                % (values['BootSecurityInfo'], bsi & BSI_ALGORITHM_MASK, pkc_key, kind,
                                   PKC_ALGORITHMS[kind]))
        except FuseError as exc:
            problems.append(str(exc))
    elif bsi is not None and bsi & BSI_ALGORITHM_MASK:
        problems.append('BootSecurityInfo %s names a PKC algorithm but no PublicKeyHash is burned; add the '
                        'PublicKeyHash of jetson_pkc_key' % values['BootSecurityInfo'])
    if 'SecureBootKey' in values:
        if 'PublicKeyHash' not in values:
            problems.append('SecureBootKey is burned without PublicKeyHash: NVIDIA\'s tools support SBK only with '
                            'PKC; add the PublicKeyHash of jetson_pkc_key')
        if sbk_key:
            try:
                if sbk_key_value(sbk_key) != fuse_number(values['SecureBootKey']):
                    problems.append('SecureBootKey is not the key in jetson_sbk_key %s; burn the SBK the images are '
                                    'encrypted with' % sbk_key)
            except FuseError as exc:
                problems.append(str(exc))
        if bsi is not None and not bsi & BSI_SBK:
            problems.append('SecureBootKey is burned but BootSecurityInfo %s lacks the SBK bit 0x8; set it (0x%x)'
                            % (values['BootSecurityInfo'], bsi | BSI_SBK))
    else:
        if bsi is not None and bsi & BSI_SBK:
            problems.append('BootSecurityInfo %s has the SBK bit 0x8 but no SecureBootKey is burned; clear it (0x%x)'
                            % (values['BootSecurityInfo'], bsi & ~BSI_SBK))
        if sbk_key:
            problems.append('jetson_sbk_key is set but the configuration burns no SecureBootKey: the device stays '
                            'PKC-only, and NVIDIA\'s tools refuse an SBK for it (odmfuseread.sh -S exits 1); unset '
                            'jetson_sbk_key')
    for name in EKB_FUSES:
        if name in values and not ekb_file:
            problems.append('%s is burned, so OP-TEE needs an EKB encrypted with it on the device, and no '
                            'jetson_ekb_file is given to the flash; set jetson_ekb_file to the EKB image '
                            '(eks_t234.img) made with this %s' % (name, name))
    return problems


def redact_file(path, secrets):
    """Replace every occurrence of ``secrets`` in the text file ``path`` with ``********``.

    A tool's log must not keep a key fuse's value that the tool printed. Returns True when the
    file was rewritten; a missing file is left alone.
    """
    secrets = [secret for secret in secrets if secret]
    if not secrets:
        return False
    try:
        with open(path, 'rb') as log:
            data = log.read()
    except (IOError, OSError):
        return False
    redacted = data
    for secret in sorted(secrets, key=len, reverse=True):
        redacted = redacted.replace(secret.encode('utf-8'), b'********')
    if redacted == data:
        return False
    with open(path, 'wb') as log:
        log.write(redacted)
    return True


# The phase of the device's state file that records the burn.
FUSE_PHASE = 'fuse'
# The tool that reads the chip's unique id (ECID), as flash.sh's get_fuse_level runs it.
TEGRARCM = os.path.join('bootloader', 'tegrarcm_v2')
_BR_CID = re.compile(r'BR_CID:\s*(0[xX][0-9a-fA-F]+)')


def chip_identity(br_cid):
    """The part of a BR_CID that names the chip whatever its fuses: flash.sh's get_fuse_level
    reads the fuse level from its first digit and the boot authentication from its second
    (``${ECID:2:1}``, ``${ECID:3:2} & 0xf0``), which a burn changes."""
    return br_cid.lower()[4:]


# The file the burner gets, in the device's working tree for the burn only: it holds the keys.
BURN_CONFIG = '.azaion-fuse-burn.xml'
_CHIP_ID = re.compile(r'^0[xX][0-9a-fA-F]+$')
_BOARD = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._+-]*$')


def fuse_argument_spec():
    """The options of azaion.jetson.l4t_fuse (and of each device of azaion.jetson.station_fuse)."""
    return dict(
        l4t_dir=dict(type='path', required=True),
        fuse_config=dict(type='path', required=True),
        board_config=dict(type='str', required=True),
        chip_id=dict(type='str', default='0x23'),
        pkc_key=dict(type='path', no_log=False),
        sbk_key=dict(type='path', no_log=False),
        ekb_file=dict(type='path'),
        slots_dir=dict(type='path'),
        usb_instance=dict(type='str', required=True),
        usb_sysfs_root=dict(type='path', default='/sys/bus/usb/devices'),
        state_file=dict(type='path', required=True),
        serial=dict(type='str', required=True),
        log_dir=dict(type='path', required=True),
        timeout=dict(type='int', default=600),
    )


def _utc(epoch):
    """An epoch time of the state file, for a person (UTC)."""
    try:
        return time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(float(epoch)))
    except (TypeError, ValueError):
        return str(epoch)


class Fuser(object):
    """One device's fusing (one call of azaion.jetson.l4t_fuse): the checks, the tools and the state
    records. :meth:`main` ends with ``module.exit_json`` or ``module.fail_json``."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.commands = []
        self.log_path = None
        self.dry_run_ok = False
        self.secrets = []
        self.state = None
        self.started = None
        self.uid = None
        self.burns_sbk = False
        # The keys the device answered before the burn; after it, those the configuration burns.
        self.device_keys = ()

    # -- results -------------------------------------------------------------------------------

    def _result(self, **fields):
        result = dict(changed=False, fused=False, dry_run_ok=self.dry_run_ok, mismatches=[],
                      log_path=self.log_path, commands=self.commands)
        result.update(fields)
        return result

    def fail(self, msg, **fields):
        self.module.fail_json(msg=msg, **self._result(**fields))

    def exit(self, msg, **fields):
        self.module.exit_json(msg=msg, **self._result(**fields))

    def _with_log(self, msg):
        if self.log_path:
            tail = log_tail(self.log_path)
            if tail:
                msg += '\nLast lines of %s:\n%s' % (self.log_path, tail)
        return msg

    # -- state ---------------------------------------------------------------------------------

    def record(self, status, **fields):
        record = dict(status=status, started=self.started, log_path=self.log_path)
        if status == 'running':
            record.update(finished=None, seconds=None)
        else:
            finished = time.time()
            record.update(finished=finished, seconds=round(finished - self.started, 3))
        record.update(fields)
        try:
            self.state.record(FUSE_PHASE, **record)
        except (IOError, OSError, ValueError) as exc:
            self.fail(self._with_log('cannot record the fuse phase in %s: %s'
                                     % (self.params['state_file'], exc)),
                      fused=record.get('fused', False))

    # -- checks --------------------------------------------------------------------------------

    def check_inputs(self):
        """Everything odmfuse.sh would not check for us, before any tool runs."""
        params = self.params
        if not SERIAL_PATTERN.match(params['serial']):
            self.fail('serial %r may hold letters, digits, ".", "_" and "-" only (it names the log file)'
                      % params['serial'])
        if not USB_PORT_PATTERN.match(params['usb_instance']):
            self.fail('usb_instance %r is not a USB port path such as 1-3 or 1-8.4' % params['usb_instance'])
        if not _CHIP_ID.match(params['chip_id']):
            self.fail('chip_id %r is not a hexadecimal Tegra id such as 0x23 (Orin)' % params['chip_id'])
        if params['timeout'] <= 0:
            self.fail('timeout must be a positive number of seconds, not %d' % params['timeout'])
        board = params['board_config']
        if board != 'auto' and (not _BOARD.match(board) or board.endswith('.conf')):
            self.fail('board_config %r is not a board configuration name: give the name of a .conf '
                      'file in l4t_dir without the suffix, such as jetson-orin-nano-devkit' % board)

        try:
            fuses = parse_fuse_config(params['fuse_config'])
        except FuseError as exc:
            self.fail('refusing to fuse: %s' % exc)
        self.secrets = secret_values(fuses)
        for secret in self.secrets:
            self.module.no_log_values.add(secret)
        if not verifiable_fuses(fuses):
            self.fail('refusing to fuse: %s names only fuses that odmfuseread.sh never reads back (%s), so '
                      'the burn could not be verified; burn them together with the other fuses '
                      '(SecurityMode, BootSecurityInfo...) in one configuration'
                      % (params['fuse_config'], ', '.join(unverifiable_fuses(fuses))))

        for option, flag in (('pkc_key', '-k'), ('sbk_key', '-S')):
            path = params[option]
            if path is not None and not os.path.isfile(path):
                self.fail('refusing to fuse: %s %s does not exist or is not a file (it is passed to the '
                          'tools as %s)' % (option, path, flag))
        for fuse, option in keys_needed(fuses):
            if params[option] is None:
                self.fail('refusing to fuse: %s burns %s, after which the device answers only tools given '
                          'its key: give %s so that the fuses can be read back'
                          % (params['fuse_config'], fuse, option))

        l4t_dir = params['l4t_dir']
        if not os.path.isdir(l4t_dir):
            self.fail('refusing to fuse: l4t_dir %s is not a directory; give the device\'s Linux_for_Tegra '
                      'working tree' % l4t_dir)
        for tool in ('odmfuse.sh', 'odmfuseread.sh'):
            path = os.path.join(l4t_dir, tool)
            if not os.path.isfile(path) or not os.access(path, os.X_OK):
                self.fail('refusing to fuse: %s has no executable %s; is it a Linux_for_Tegra tree?'
                          % (l4t_dir, tool))
        if not os.path.isfile(os.path.join(l4t_dir, TEGRARCM)):
            self.fail('refusing to fuse: %s has no %s to read the chip\'s identity with; is it a Linux_for_Tegra '
                      'tree?' % (l4t_dir, TEGRARCM))
        if board != 'auto':
            self.check_board(board)
        problems = key_problems(fuses, l4t_dir, params['pkc_key'], params['sbk_key'], params['ekb_file'])
        if problems:
            self.fail('refusing to fuse %s: %s does not fit its keys or Orin: %s. Nothing was burned.'
                      % (params['serial'], params['fuse_config'], '; '.join(problems)))
        return fuses

    def check_board(self, board):
        if not os.path.isfile(os.path.join(self.params['l4t_dir'], board + '.conf')):
            self.fail('refusing to fuse: %s has no %s.conf; give the board configuration of this device'
                      % (self.params['l4t_dir'], board))

    def bus_problem(self):
        """(what is wrong with the station's bus for fusing this device, or None; the device's USB
        product id): the only Jetson in recovery mode must be on usb_instance."""
        wanted = self.params['usb_instance']
        root = self.params['usb_sysfs_root']
        if not os.path.isdir(root):
            return 'usb_sysfs_root %s is not a directory' % root, None
        try:
            found = recovery_devices(root)
        except (IOError, OSError) as exc:
            return 'cannot scan %s for Jetsons in recovery mode: %s' % (root, exc), None
        ports = list(found)  # in port order
        if not ports:
            return ('no Jetson is in recovery mode on this station (expected one on USB port %s); put the device in '
                    'recovery mode' % wanted), None
        if len(ports) > 1:
            return ('%d Jetsons are in recovery mode on this station (USB ports %s); odmfuse.sh cannot choose a USB '
                    'port: disconnect or power off the others and keep only the one on %s'
                    % (len(ports), ', '.join(ports), wanted)), None
        if ports[0] != wanted:
            return ('the Jetson in recovery mode is on USB port %s, not on %s (usb_instance); odmfuse.sh cannot '
                    'choose a USB port: disconnect or power off the others and put this device in recovery mode '
                    'on %s' % (ports[0], wanted, wanted)), None
        return None, found[wanted]

    def check_usb(self):
        """Before anything runs: the device's USB product id, or a failure with nothing burned."""
        problem, product = self.bus_problem()
        if problem:
            self.fail('refusing to fuse %s: %s. Nothing was burned.' % (self.params['serial'], problem))
        return product

    def resolve_board(self, product):
        board = self.params['board_config']
        if board != 'auto':
            return board
        boards = RECOVERY_PRODUCTS.get(product, ())
        configs = sorted(set(BOARD_CONFIGS[name] for name in boards))
        if len(configs) > 1:
            # 0955:7023 is an AGX Orin 32GB, 64GB or Industrial (docs/l4t-board-identity.md).
            self.fail('refusing to fuse: board_config is auto but the module on %s (USB product 0955:%s) may be %s, '
                      'whose board configurations differ (%s); name it in board_config (jetson_board in the '
                      'inventory), whichever module it is'
                      % (self.params['usb_instance'], product, ', '.join(boards), ' or '.join(configs)))
        config = configs[0] if configs else None
        if not config:
            self.fail('refusing to fuse: board_config is auto but the module on %s (USB product 0955:%s) '
                      'has no known board configuration; name it in board_config'
                      % (self.params['usb_instance'], product))
        self.check_board(config)
        return config

    # -- tools ---------------------------------------------------------------------------------

    def open_log(self):
        log_dir = self.params['log_dir']
        try:
            if not os.path.isdir(log_dir):
                os.makedirs(log_dir, 0o750)
        except OSError as exc:
            self.fail('cannot create log_dir %s: %s' % (log_dir, exc.strerror or exc))
        stamp = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(self.started))
        self.log_path = os.path.join(log_dir, '%s-fuse-%s.log' % (self.params['serial'], stamp))

    def run(self, argv, cwd=None, before_start=None):
        """Run one tool on the device, after checking that it is still the only Jetson in
        recovery mode and on its port (odmfuse.sh and odmfuseread.sh take whichever is there),
        and calling ``before_start``."""
        problem, _product = self.bus_problem()
        if problem:
            self.stop('before %s: %s' % (os.path.basename(argv[0]), problem))
        if before_start is not None:
            before_start()
        self.commands.append(list(argv))
        try:
            result = run_tool(argv, cwd=cwd or self.params['l4t_dir'], log_path=self.log_path,
                              timeout=self.params['timeout'])
        except (IOError, OSError) as exc:
            self.stop('cannot run %s (log %s): %s' % (os.path.basename(argv[0]), self.log_path, exc))
        finally:
            redact_file(self.log_path, self.secrets)
        return result

    def stop(self, error):
        """Stop fusing this device: recorded failed, with the start of a burn kept if there was one
        (the next run then only reads the fuses back)."""
        burn_started = self.state.phase(FUSE_PHASE).get('burn_started') if self.state else None
        self.record('failed', fused=False, burn_started=burn_started, error=error)
        if burn_started:
            error += ('; a burn had started, so whether fuses were burned is unknown: check the device (serial '
                      'console, odmfuseread.sh); the next run only reads the fuses back')
        else:
            error += '. Nothing was burned'
        self.fail(self._with_log('%s: %s.' % (self.params['serial'], error)))

    def chip_uid(self):
        """The chip's unique id (ECID) on usb_instance: ``tegrarcm_v2 --new_session --chip <id>
        --instance <port> --uid``, its ``BR_CID`` line, as flash.sh's get_fuse_level reads it."""
        try:
            start = os.path.getsize(self.log_path)
        except OSError:
            start = 0
        run = self.run([os.path.join(self.params['l4t_dir'], TEGRARCM), '--new_session', '--chip',
                        self.params['chip_id'], '--instance', self.params['usb_instance'], '--uid'],
                       cwd=os.path.join(self.params['l4t_dir'], 'bootloader'))
        try:
            with open(self.log_path, 'rb') as log:
                log.seek(start)
                output = log.read().decode('utf-8', 'replace')
        except (IOError, OSError):
            output = ''
        match = _BR_CID.search(output)
        if run.rc != 0 or run.timed_out or match is None:
            self.stop('reading the chip\'s identity failed (%s)'
                      % self.describe_run(TEGRARCM, run, self.params['timeout']))
        return match.group(1).lower()

    def tool_args(self, board, keys):
        """The tools' options: the chip, the keys (``keys``: () none, ('pkc',) the PKC key, ('pkc',
        'sbk') both: a PKC-only device refuses an SBK, an unfused one any key), the board."""
        args = ['-i', self.params['chip_id']]
        if 'pkc' in keys and self.params['pkc_key']:
            args += ['-k', self.params['pkc_key']]
        if 'sbk' in keys and self.params['sbk_key']:
            args += ['-S', self.params['sbk_key']]
        return args + [board]

    def key_sets(self):
        """The keys a device may answer, fewest first: none (unfused), the PKC key, and the PKC
        key with the SBK when the configuration burns one (NVIDIA supports SBK only with PKC)."""
        sets = [()]
        if self.params['pkc_key']:
            sets.append(('pkc',))
            if self.burns_sbk:
                sets.append(('pkc', 'sbk'))
        return sets

    def read_answered(self, board, key_sets):
        """Read the fuses with each of ``key_sets`` in turn until the device answers:
        (read, error of the last try or None, the keys it answered)."""
        error = None
        for keys in key_sets:
            read, error = self.read_fuses(board, keys)
            if error is None:
                return read, None, keys
        return None, error, None

    def read_after_burn(self, board):
        """Read the fuses after a burn (or what may have been one): with the keys the whole
        configuration gives the device, then, as a burn that stopped early leaves a device that
        answers fewer keys (a PKC-only one refuses an SBK), with fewer. (read, error or None)."""
        read, error, _keys = self.read_answered(board, reversed(self.key_sets()))
        return read, error

    @staticmethod
    def describe_run(name, run, timeout):
        if run.timed_out:
            return '%s did not finish within %d seconds and was killed' % (name, timeout)
        return '%s exited with %s' % (name, run.rc)

    def read_fuses(self, board, keys):
        """Run odmfuseread.sh with ``keys`` (see :meth:`tool_args`): (the fuses read, error message or None)."""
        info_path = os.path.join(self.params['l4t_dir'], FUSE_INFO_RELPATH)
        try:
            os.unlink(info_path)  # a stale read-back must never pass for this one
        except OSError:
            pass
        argv = [os.path.join(self.params['l4t_dir'], 'odmfuseread.sh')] + self.tool_args(board, keys)
        run = self.run(argv)
        if run.rc != 0 or run.timed_out:
            return None, self.describe_run('odmfuseread.sh', run, self.params['timeout'])
        try:
            return parse_fuse_info(info_path), None
        except FuseError as exc:
            return None, str(exc)

    def write_burn_config(self, fuses):
        """The file odmfuse.sh gets (mode 0600, in the device's working tree): the fuses in the
        burner's order; removed when the burn is over."""
        path = os.path.join(self.params['l4t_dir'], BURN_CONFIG)
        self.remove_burn_config()
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, 'w') as config:
            config.write(burn_config_text(fuses))
        return path

    def remove_burn_config(self):
        try:
            os.unlink(os.path.join(self.params['l4t_dir'], BURN_CONFIG))
        except OSError:
            pass

    # -- the flow ------------------------------------------------------------------------------

    def main(self):
        params = self.params
        # The tools run in l4t_dir: every path they are given must not depend on the cwd.
        for option in ('l4t_dir', 'fuse_config', 'pkc_key', 'sbk_key', 'ekb_file', 'usb_sysfs_root', 'state_file',
                       'log_dir', 'slots_dir'):
            if params[option] is not None:
                params[option] = os.path.abspath(params[option])
        serial, port = params['serial'], params['usb_instance']
        self.state = DeviceState(params['state_file'], serial=serial)
        try:
            self.state.load()
            phase = self.state.phase(FUSE_PHASE) or {}
        except (IOError, OSError, ValueError) as exc:
            self.fail('cannot read the state file %s: %s; fix or move it, the module never fuses '
                      'without knowing whether the device is fused' % (params['state_file'], exc))

        if phase.get('status') == 'done' and phase.get('fused'):
            self.exit('%s is already fused (recorded in %s at %s); a device is never fused twice'
                      % (serial, params['state_file'], _utc(phase['finished']) if phase.get('finished') else 'an earlier run'), fused=True)

        if self.module.check_mode and not os.path.isdir(params['l4t_dir']):
            # In a check run, the task that makes the device's working tree did not run either.
            self.exit('would fuse %s once its working tree %s is made; nothing was run in check mode'
                      % (serial, params['l4t_dir']), changed=True)
        fuses = self.check_inputs()
        self.burns_sbk = any(fuse['name'] == 'SecureBootKey' for fuse in fuses)
        product = self.check_usb()
        board = self.resolve_board(product)
        burn_started = phase.get('burn_started')

        if self.module.check_mode:
            if burn_started:
                self.exit('an earlier run started burning %s at %s without a verified result: a real run '
                          'would only read the fuses back (never burn again); nothing was run in check mode'
                          % (serial, _utc(burn_started)))
            self.exit('would fuse %s on %s with %s (%s): a real run holds the station\'s lock, pins the chip\'s '
                      'identity, reads its fuses with odmfuseread.sh (already holding the configured values: recorded '
                      'as fused, nothing burned; a value the configuration would clear, another key, a locked fuse: '
                      'refused, nothing burned), then odmfuse.sh --test, the burn and a read-back, each on this device '
                      'alone; nothing was run in check mode' % (serial, port, params['fuse_config'], board),
                      changed=True)

        self.started = time.time()
        self.open_log()
        # The flashes of the station wait while a device is fused: odmfuse.sh takes whichever
        # Jetson is in recovery mode, and a flash's RCM boot must not meet it.
        with station_lock(params['slots_dir'], exclusive=True, label='fuse %s %s' % (serial, port)):
            try:
                self.fuse(fuses, board, burn_started)
            finally:
                self.remove_burn_config()

    def fuse(self, fuses, board, burn_started):
        params = self.params
        serial, port = params['serial'], params['usb_instance']
        self.uid = self.chip_uid()
        if burn_started:
            self.verify_earlier_burn(fuses, board, burn_started)

        self.record('running', fused=False, burn_started=None, dry_run_ok=False, mismatches=[], error=None,
                    chip_uid=self.uid)
        burn = self.read_before_burning(fuses, board)
        # The device answers the keys its first read needed: odmfuse.sh reads it first too.
        common = ['-X', self.write_burn_config(burn)] + self.tool_args(board, self.device_keys)
        odmfuse = os.path.join(params['l4t_dir'], 'odmfuse.sh')

        # From here on fuses may be burned: a dry run whose magic were not rewritten burns for
        # real. A crash leaves this record, and the next run refuses to burn blindly. It is
        # written once the bus is found right, so that a second Jetson found then leaves none.
        dry_run = self.run([odmfuse, '--test'] + common, before_start=lambda: self.record(
            'running', fused=False, burn_started=time.time(), chip_uid=self.uid))
        if dry_run.rc != 0 or dry_run.timed_out:
            self.stop('the dry run failed (%s)' % self.describe_run('odmfuse.sh --test', dry_run, params['timeout']))
        self.dry_run_ok = True
        self.record('running', fused=False, dry_run_ok=True)
        burn_run = self.run([odmfuse] + common)
        burn_ok = burn_run.rc == 0 and not burn_run.timed_out
        burn_said = self.describe_run('odmfuse.sh', burn_run, params['timeout'])

        read, read_error = self.read_after_burn(board)
        self.check_same_chip()
        if read_error is not None:
            self.stop('%s, then the read-back failed (%s)' % (
                'odmfuse.sh reported success' if burn_ok else burn_said, read_error))
        mismatches = compare_fuses(burn, read)
        if mismatches:
            missed = set(mismatch['name'] for mismatch in mismatches)
            took = [name for name in verifiable_fuses(burn) if name not in missed]
            error = ('partial burn: %s; %s took, %s did not (%s)'
                     % ('odmfuse.sh reported success' if burn_ok else burn_said,
                        ', '.join(took) or 'none', ', '.join(sorted(missed, key=[f['name'] for f in burn].index)),
                        describe_mismatches(mismatches)))
            self.record('failed', fused=False, error=error, mismatches=mismatches)
            self.fail(self._with_log('%s: %s. Do not retry blindly: check the device (serial console, '
                                     'odmfuseread.sh). The next run never burns it again, it only reads '
                                     'the fuses back.' % (serial, error)), mismatches=mismatches, changed=bool(took))

        self.record('done', fused=True, error=None, mismatches=[])
        verifiable = verifiable_fuses(burn)
        msg = 'fused %s on %s (chip %s) and verified %d fuse%s by reading them back' % (
            serial, port, self.uid, len(verifiable), '' if len(verifiable) == 1 else 's')
        if not burn_ok:
            msg += ' (%s, but the device holds the configured fuses: it was fused already)' % burn_said
        unverified = unverifiable_fuses(fuses)
        if unverified:
            msg += '; %s never read back and were not compared' % ', '.join(unverified)
        self.exit(msg, changed=burn_ok, fused=True)

    def check_same_chip(self):
        """The chip on the port after the last tool must be the one pinned before the first."""
        uid = self.chip_uid()
        if chip_identity(uid) != chip_identity(self.uid):
            self.stop('the chip on USB port %s changed while it was being fused (ECID %s before, %s after): another '
                      'device was put on the port or the cable was moved; everything was stopped'
                      % (self.params['usb_instance'], self.uid, uid))

    def verify_earlier_burn(self, fuses, board, burn_started):
        """An earlier run started the burn and recorded no verified result: read back only."""
        serial = self.params['serial']
        self.record('running', fused=False, burn_started=burn_started, readback_only=True, chip_uid=self.uid)
        read, read_error = self.read_after_burn(board)
        self.check_same_chip()
        if read_error is None:
            plan = plan_burn(fuses, read)
            mismatches = compare_fuses(plan['burn'], read)
            if not mismatches:
                verifiable = verifiable_fuses(fuses)
                self.record('done', fused=True, burn_started=burn_started, error=None, mismatches=[])
                self.exit('%s: an earlier run started burning at %s; the read-back now matches %d fuse%s, so the '
                          'device is recorded as fused (nothing was burned by this run)'
                          % (serial, _utc(burn_started), len(verifiable), '' if len(verifiable) == 1 else 's'),
                          fused=True)
            error = ('an earlier run started burning at %s and the read-back differs: %s'
                     % (_utc(burn_started), describe_mismatches(mismatches)))
        else:
            mismatches = []
            error = 'an earlier run started burning at %s and the read-back failed (%s)' % (_utc(burn_started), read_error)
        self.record('failed', fused=False, burn_started=burn_started, error=error, mismatches=mismatches)
        self.fail(self._with_log(
            '%s: %s. The module never burns a device twice: a person must check it (serial console, '
            'odmfuseread.sh) and, if it still needs fusing, burn it by hand with odmfuse.sh; a re-run then '
            'verifies it and records it as fused.' % (serial, error)), mismatches=mismatches)

    def read_before_burning(self, fuses, board):
        """Read the device's fuses before anything is burned, and return the fuses to burn (in the
        burner's order) when NVIDIA's bit rules allow the configuration over what it holds.

        The state file is this station's memory only: a device may arrive fused by another station,
        or half-burned, or fresh with reserved bits set. A PKC/SBK-fused device answers only tools
        given its keys (odmfuse.func, check_sbk_pkc) while an unfused one answers without them: the
        first read goes without keys, and only when it is refused and keys are configured, the read
        is tried again with them.
        """
        serial = self.params['serial']
        keyed = bool(self.params['pkc_key'])
        read, error, self.device_keys = self.read_answered(board, self.key_sets())
        if error is not None:
            self.stop('reading its fuses before burning failed (%s%s), so whether it is fused already is unknown%s'
                      % ('again with its keys, ' if keyed else '', error,
                         '' if keyed else '; a device PKC or SBK fused already answers only with its keys: give '
                         'pkc_key and sbk_key if it is'))
        plan = plan_burn(fuses, read)
        unverified = unverifiable_fuses(fuses)
        not_compared = ('; %s never read back and were not compared' % ', '.join(unverified)) if unverified else ''
        if not plan['refusals'] and len(plan['matching']) == len(verifiable_fuses(fuses)):
            self.check_same_chip()  # what is recorded must be the pinned chip's (a burn re-pins at its end)
            self.record('done', fused=True, error=None, mismatches=[])
            self.exit('%s already holds the configured fuses (%s read back by odmfuseread.sh before any burn): '
                      'recorded as fused, nothing was burned%s' % (serial, ', '.join(plan['matching']), not_compared),
                      fused=True)
        if plan['refusals']:
            self.check_same_chip()
            error = 'refusing to fuse, by NVIDIA\'s fuse rules: %s' % '; '.join(plan['refusals'])
            self.record('failed', fused=False, error=error)
            self.fail(self._with_log(
                '%s: %s. Nothing was burned. A person must check the device (serial console, odmfuseread.sh): if it '
                'belongs to another product, take it out of this batch; if it must have this configuration, fix the '
                'configuration or burn what is missing by hand with odmfuse.sh, and a re-run then reads it and '
                'records it as fused.' % (serial, error)))
        return plan['burn']
