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
import time
from xml.etree import ElementTree

from ansible_collections.azaion.jetson.plugins.module_utils._device_state import SERIAL_PATTERN, DeviceState
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
# An Orin SBK is 32 bytes.
SBK_BYTES = 32
# Once burned, the device talks only to tools given the matching key, the read-back included.
KEY_FOR_FUSE = (('PublicKeyHash', 'pkc_key'), ('SecureBootKey', 'sbk_key'))

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
    if root.tag != 'genericfuse' or magic is None or magic.lower() != FUSE_MAGIC:
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
        size = element.get('size')
        if size is not None:
            try:
                size = int(size, 0)
            except ValueError:
                raise FuseError('%s: fuse %s: size %r is not a number of bytes; give its size in bytes' % (path, name, size))
            if size <= 0:
                raise FuseError('%s: fuse %s: size %d is not a number of bytes; give its size in bytes' % (path, name, size))
            if _hex_digit_count(value) > 2 * size:
                raise FuseError('%s: fuse %s: %s is longer than its size (%d bytes); fix its value or its size'
                                % (path, name, shown, size))
        if name == 'SecureBootKey':
            if (size is not None and size != SBK_BYTES) or _hex_digit_count(value) != 2 * SBK_BYTES:
                raise FuseError('%s: fuse SecureBootKey must be %d bytes (%d hexadecimal digits) on Orin; give the '
                                'whole key' % (path, SBK_BYTES, 2 * SBK_BYTES))
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


def compare_fuses(fuses, read_back):
    """The fuses whose read-back differs from the configuration, in the configuration's order.

    Each mismatch is a dict: ``name``, ``expected`` (as written in the configuration),
    ``read_back`` (as odmfuseread.sh printed it; None when the fuse was not in its output).
    Values compare as numbers (:func:`normalize_value`). Fuses odmfuseread.sh does not read are
    skipped (the secret keys among them: their values must not travel).
    """
    mismatches = []
    for fuse in fuses:
        name = fuse['name']
        if name not in READABLE_FUSES:
            continue
        got = read_back.get(name)
        if got is not None:
            try:
                if normalize_value(got) == normalize_value(fuse['value']):
                    continue
            except ValueError:
                pass
        mismatches.append(dict(name=name, expected=fuse['value'], read_back=got))
    return mismatches


def describe_mismatches(mismatches):
    """``Name: expected X, read back Y`` for each mismatch, joined with ``; ``."""
    parts = []
    for mismatch in mismatches:
        got = mismatch['read_back']
        parts.append('%s: expected %s, read back %s' % (
            mismatch['name'], mismatch['expected'], 'nothing' if got is None else got))
    return '; '.join(parts)


def classify_device_fuses(fuses, read):
    """Where a device stands before any burn, from what odmfuseread.sh read (``read``).

    Returns a dict: ``matching`` (names of the readable configured fuses that already hold their
    configured, non-zero value), ``unburned`` (those that still read 0) and ``differing`` (the
    others, as :func:`compare_fuses` mismatches: another value, or not in the read at all).
    Fuses odmfuseread.sh does not read (the secret keys among them) are in none of them.
    """
    matching, unburned, differing = [], [], []
    for fuse in fuses:
        name = fuse['name']
        if name not in READABLE_FUSES:
            continue
        got = read.get(name)
        try:
            held = normalize_value(got) if got is not None else None
        except ValueError:
            held = None
        if held == '0':
            unburned.append(name)
        elif held is not None and held == normalize_value(fuse['value']):
            matching.append(name)
        else:
            differing.append(dict(name=name, expected=fuse['value'], read_back=got))
    return dict(matching=matching, unburned=unburned, differing=differing)


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
        if board != 'auto':
            self.check_board(board)
        return fuses

    def check_board(self, board):
        if not os.path.isfile(os.path.join(self.params['l4t_dir'], board + '.conf')):
            self.fail('refusing to fuse: %s has no %s.conf; give the board configuration of this device'
                      % (self.params['l4t_dir'], board))

    def check_usb(self):
        """The only Jetson in recovery mode must be on usb_instance; its product id is returned."""
        wanted = self.params['usb_instance']
        root = self.params['usb_sysfs_root']
        if not os.path.isdir(root):
            self.fail('refusing to fuse: usb_sysfs_root %s is not a directory' % root)
        try:
            found = recovery_devices(root)
        except (IOError, OSError) as exc:
            self.fail('refusing to fuse: cannot scan %s for Jetsons in recovery mode: %s' % (root, exc))
        ports = list(found)  # in port order
        if not ports:
            self.fail('refusing to fuse: no Jetson is in recovery mode on this station (expected one on '
                      'USB port %s); put the device in recovery mode' % wanted)
        if len(ports) > 1:
            self.fail('refusing to fuse %s: %d Jetsons are in recovery mode on this station (USB ports %s); '
                      'odmfuse.sh cannot choose a USB port: disconnect or power off the others '
                      'and keep only the one on %s. Nothing was burned.'
                      % (self.params['serial'], len(ports), ', '.join(ports), wanted))
        if ports[0] != wanted:
            self.fail('refusing to fuse %s: the Jetson in recovery mode is on USB port %s, not on %s '
                      '(usb_instance); odmfuse.sh cannot choose a USB port: disconnect or power off the '
                      'others and put this device in recovery mode on %s. Nothing was burned.'
                      % (self.params['serial'], ports[0], wanted, wanted))
        return found[wanted]

    def resolve_board(self, product):
        board = self.params['board_config']
        if board != 'auto':
            return board
        key = RECOVERY_PRODUCTS.get(product)
        config = BOARD_CONFIGS.get(key) if key else None
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

    def run(self, argv):
        self.commands.append(list(argv))
        try:
            result = run_tool(argv, cwd=self.params['l4t_dir'], log_path=self.log_path,
                              timeout=self.params['timeout'])
        except (IOError, OSError) as exc:
            self.fail('cannot run %s (log %s): %s' % (os.path.basename(argv[0]), self.log_path, exc))
        finally:
            redact_file(self.log_path, self.secrets)
        return result

    def tool_args(self, board, with_sbk, with_pkc=True):
        args = ['-i', self.params['chip_id']]
        if with_pkc and self.params['pkc_key']:
            args += ['-k', self.params['pkc_key']]
        if with_sbk and self.params['sbk_key']:
            args += ['-S', self.params['sbk_key']]
        return args + [board]

    @staticmethod
    def describe_run(name, run, timeout):
        if run.timed_out:
            return '%s did not finish within %d seconds and was killed' % (name, timeout)
        return '%s exited with %s' % (name, run.rc)

    def read_fuses(self, board, with_keys=True):
        """Run odmfuseread.sh (with the configured keys, or none): (the fuses read, error message or None)."""
        info_path = os.path.join(self.params['l4t_dir'], FUSE_INFO_RELPATH)
        try:
            os.unlink(info_path)  # a stale read-back must never pass for this one
        except OSError:
            pass
        argv = [os.path.join(self.params['l4t_dir'], 'odmfuseread.sh')] + self.tool_args(board, with_keys, with_keys)
        run = self.run(argv)
        if run.rc != 0 or run.timed_out:
            return None, self.describe_run('odmfuseread.sh', run, self.params['timeout'])
        try:
            return parse_fuse_info(info_path), None
        except FuseError as exc:
            return None, str(exc)

    def read_back(self, fuses, board):
        """Run odmfuseread.sh and compare: (mismatches, error message or None)."""
        read, error = self.read_fuses(board)
        if error is not None:
            return None, error
        return compare_fuses(fuses, read), None

    # -- the flow ------------------------------------------------------------------------------

    def main(self):
        params = self.params
        # The tools run in l4t_dir: every path they are given must not depend on the cwd.
        for option in ('l4t_dir', 'fuse_config', 'pkc_key', 'sbk_key', 'usb_sysfs_root', 'state_file', 'log_dir'):
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
        product = self.check_usb()
        board = self.resolve_board(product)
        burn_started = phase.get('burn_started')
        verify_only = bool(burn_started)
        verifiable = verifiable_fuses(fuses)

        if self.module.check_mode:
            if verify_only:
                self.exit('an earlier run started burning %s at %s without a verified result: a real run '
                          'would only read the fuses back (never burn again); nothing was run in check mode'
                          % (serial, _utc(burn_started)))
            self.exit('would fuse %s on %s with %s (%s): a real run first reads its fuses with odmfuseread.sh '
                      '(already holding the configured values: recorded as fused, nothing burned; holding other '
                      'values or part of them: refused, nothing burned; unburned: odmfuse.sh --test, the burn, '
                      'then a read-back); nothing was run in check mode' % (serial, port, params['fuse_config'], board),
                      changed=True)

        self.started = time.time()
        self.open_log()

        if verify_only:
            self.verify_earlier_burn(fuses, board, burn_started, verifiable)

        self.record('running', fused=False, burn_started=None, dry_run_ok=False, mismatches=[], error=None)
        self.read_before_burning(fuses, board)
        common = ['-X', params['fuse_config']] + self.tool_args(board, False)
        odmfuse = os.path.join(params['l4t_dir'], 'odmfuse.sh')

        dry_run = self.run([odmfuse, '--test'] + common)
        if dry_run.rc != 0 or dry_run.timed_out:
            error = 'the dry run failed (%s); nothing was burned' % self.describe_run(
                'odmfuse.sh --test', dry_run, params['timeout'])
            self.record('failed', fused=False, error=error)
            self.fail(self._with_log('%s: %s. Fix the cause and run again.' % (serial, error)))
        self.dry_run_ok = True

        # From here on the burn may happen: a crash leaves this record, and the next run refuses
        # to burn blindly.
        self.record('running', fused=False, dry_run_ok=True, burn_started=time.time())
        burn = self.run([odmfuse] + common)
        burn_ok = burn.rc == 0 and not burn.timed_out
        burn_said = self.describe_run('odmfuse.sh', burn, params['timeout'])

        mismatches, read_error = self.read_back(fuses, board)
        if read_error is not None:
            error = ('%s, then the read-back failed (%s): whether fuses were burned is unknown'
                     % ('odmfuse.sh reported success' if burn_ok else burn_said, read_error))
            self.record('failed', fused=False, error=error)
            self.fail(self._with_log('%s: %s; do not retry blindly: check the device (serial console, '
                                     'odmfuseread.sh) before anything else. The next run only reads the '
                                     'fuses back.' % (serial, error)))
        if mismatches:
            what = describe_mismatches(mismatches)
            if burn_ok:
                error = 'odmfuse.sh reported success but the read-back differs: %s' % what
            else:
                error = '%s and the read-back differs: %s' % (burn_said, what)
            self.record('failed', fused=False, error=error, mismatches=mismatches)
            self.fail(self._with_log('%s: %s; do not retry blindly: check the device (serial console, '
                                     'odmfuseread.sh). The next run never burns it again, it only reads '
                                     'the fuses back.' % (serial, error)), mismatches=mismatches)

        self.record('done', fused=True, error=None, mismatches=[])
        msg = 'fused %s on %s and verified %d fuse%s by reading them back' % (
            serial, port, len(verifiable), '' if len(verifiable) == 1 else 's')
        if not burn_ok:
            msg += ' (%s, but the device holds the configured fuses: it was fused already)' % burn_said
        unverified = unverifiable_fuses(fuses)
        if unverified:
            msg += '; %s never read back and were not compared' % ', '.join(unverified)
        self.exit(msg, changed=burn_ok, fused=True)

    def verify_earlier_burn(self, fuses, board, burn_started, verifiable):
        """An earlier run started the burn and recorded no verified result: read back only."""
        serial = self.params['serial']
        self.record('running', fused=False, burn_started=burn_started, readback_only=True)
        mismatches, read_error = self.read_back(fuses, board)
        if read_error is None and not mismatches:
            self.record('done', fused=True, burn_started=burn_started, error=None, mismatches=[])
            self.exit('%s: an earlier run started burning at %s; the read-back now matches %d fuse%s, so the '
                      'device is recorded as fused (nothing was burned by this run)'
                      % (serial, _utc(burn_started), len(verifiable), '' if len(verifiable) == 1 else 's'),
                      fused=True)
        if read_error is not None:
            error = 'an earlier run started burning at %s and the read-back failed (%s)' % (_utc(burn_started), read_error)
        else:
            error = ('an earlier run started burning at %s and the read-back differs: %s'
                     % (_utc(burn_started), describe_mismatches(mismatches)))
        self.record('failed', fused=False, burn_started=burn_started, error=error, mismatches=mismatches or [])
        self.fail(self._with_log(
            '%s: %s. The module never burns a device twice: a person must check it (serial console, '
            'odmfuseread.sh) and, if it still needs fusing, burn it by hand with odmfuse.sh; a re-run then '
            'verifies it and records it as fused.' % (serial, error)), mismatches=mismatches or [])

    def read_before_burning(self, fuses, board):
        """Read the device's fuses before anything is burned; return only when all are unburned.

        The state file is this station's memory only: a device may arrive fused by another station,
        or half-burned. Fuse bits only go from 0 to 1 (odmfuse.sh burns over what is there), so a
        second burn of other values would leave neither. A PKC/SBK-fused device answers only tools
        given its keys (odmfuse.func, check_sbk_pkc) while an unfused one answers without them: the
        first read goes without keys, and only when it is refused and keys are configured, the read
        is tried again with them.
        """
        serial = self.params['serial']
        read, error = self.read_fuses(board, with_keys=False)
        keyed = bool(self.params['pkc_key'] or self.params['sbk_key'])
        if error is not None and keyed:
            read, error = self.read_fuses(board, with_keys=True)
        if error is not None:
            error = ('reading its fuses before burning failed (%s%s), so whether it is fused already is unknown; '
                     'nothing was burned' % ('again with its keys, ' if keyed else '', error))
            self.record('failed', fused=False, error=error)
            self.fail(self._with_log(
                '%s: %s. Check the device (serial console, USB cable, odmfuseread.sh)%s, then run again.'
                % (serial, error, '' if keyed else '; a device PKC or SBK fused already answers only with its '
                   'keys: give pkc_key and sbk_key if it is')))
        found = classify_device_fuses(fuses, read)
        unverified = unverifiable_fuses(fuses)
        not_compared = ('; %s never read back and were not compared' % ', '.join(unverified)) if unverified else ''
        if not found['differing'] and not found['unburned']:
            self.record('done', fused=True, error=None, mismatches=[])
            self.exit('%s already holds the configured fuses (%s read back by odmfuseread.sh before any burn): '
                      'recorded as fused, nothing was burned%s' % (serial, ', '.join(found['matching']), not_compared),
                      fused=True)
        if not found['differing'] and not found['matching']:
            return
        if found['differing']:
            error = 'the device holds fuses other than the configured ones: %s' % describe_mismatches(found['differing'])
        else:
            error = ('the device holds part of the configured fuses: %s already burned as configured, %s still '
                     'unburned' % (', '.join(found['matching']), ', '.join(found['unburned'])))
        self.record('failed', fused=False, error=error, mismatches=found['differing'])
        self.fail(self._with_log(
            '%s: refusing to fuse, %s. Nothing was burned: fuse bits only go from 0 to 1, so burning over them would '
            'mix the two. A person must check the device (serial console, odmfuseread.sh): if it belongs to another '
            'product, take it out of this batch; if it must have this configuration, burn what is missing by hand '
            'with odmfuse.sh, and a re-run then reads it and records it as fused.' % (serial, error)),
            mismatches=found['differing'])
