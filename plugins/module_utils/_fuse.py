# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""Fuse configurations (NVIDIA genericfuse XML), odmfuseread.sh's ``fuse_info.txt`` and the
comparison of what was meant to be burned with what a device really holds.

Pure logic: no tool is run here. Values of secret key fuses (SecureBootKey, OemK1...) never
appear in an error message or a mismatch; the caller gets them from :func:`secret_values` so it
can mask them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
from xml.etree import ElementTree

FUSE_MAGIC = '0x45535546'
FUSE_INFO_RELPATH = os.path.join('bootloader', 'fuse_info.txt')

# Key fuses: secret, and never read back by odmfuseread.sh, so they cannot be verified.
SECRET_FUSES = frozenset(('SecureBootKey', 'OemK1', 'OemK2', 'Kek0', 'Kek1', 'Kek2', 'Kek256'))
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


def parse_fuse_config_text(text, path='fuse config'):
    """The fuses of a genericfuse XML as an ordered list of dicts: name, size (int or None), value.

    Raises FuseError naming ``path`` when the text is not XML, not an NVIDIA fuse configuration
    (root element ``genericfuse`` with ``MagicId="0x45535546"``), names no fuse, names one twice,
    or holds a value that is not hexadecimal or does not fit its size. Secret values are never
    quoted in the message.
    """
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise FuseError('%s is not XML (%s): give an NVIDIA fuse configuration file' % (path, exc))
    magic = root.get('MagicId')
    if root.tag != 'genericfuse' or magic is None or magic.lower() != FUSE_MAGIC:
        found = '<%s%s>' % (root.tag, ' MagicId="%s"' % magic if magic is not None else '')
        raise FuseError('%s is not an NVIDIA fuse configuration: its root element is %s, not '
                        '<genericfuse MagicId="%s">' % (path, found, FUSE_MAGIC))
    fuses = []
    seen = set()
    for index, element in enumerate(root, 1):
        if element.tag != 'fuse':
            raise FuseError('%s: element %d is <%s>; a fuse configuration holds <fuse/> elements only'
                            % (path, index, element.tag))
        name = (element.get('name') or '').strip()
        if not _NAME.match(name):
            raise FuseError('%s: fuse %d has no valid name attribute' % (path, index))
        if name in seen:
            raise FuseError('%s: fuse %s is named twice; burn each fuse once, all in one file' % (path, name))
        seen.add(name)
        shown = 'its value' if name in SECRET_FUSES else 'value %r' % element.get('value')
        value = element.get('value')
        if value is None or not value.strip():
            raise FuseError('%s: fuse %s has no value' % (path, name))
        try:
            normalize_value(value)
        except ValueError:
            raise FuseError('%s: fuse %s: %s is not hexadecimal' % (path, name, shown))
        size = element.get('size')
        if size is not None:
            try:
                size = int(size, 0)
            except ValueError:
                raise FuseError('%s: fuse %s: size %r is not a number of bytes' % (path, name, size))
            if size <= 0:
                raise FuseError('%s: fuse %s: size %d is not a number of bytes' % (path, name, size))
            if _hex_digit_count(value) > 2 * size:
                raise FuseError('%s: fuse %s: %s is longer than its size (%d bytes)' % (path, name, shown, size))
        if name == 'SecureBootKey':
            if (size is not None and size != SBK_BYTES) or _hex_digit_count(value) != 2 * SBK_BYTES:
                raise FuseError('%s: fuse SecureBootKey must be %d bytes (%d hexadecimal digits) on Orin'
                                % (path, SBK_BYTES, 2 * SBK_BYTES))
        fuses.append(dict(name=name, size=size, value=value.strip()))
    if not fuses:
        raise FuseError('%s names no fuse: nothing to burn' % path)
    return fuses


def parse_fuse_config(path):
    """:func:`parse_fuse_config_text` of the file at ``path``, with clear errors for an unreadable file."""
    try:
        with open(path, 'rb') as config:
            data = config.read()
    except (IOError, OSError) as exc:
        if not os.path.exists(path):
            raise FuseError('fuse configuration %s does not exist' % path)
        raise FuseError('cannot read fuse configuration %s: %s' % (path, exc.strerror or exc))
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
    """The names of the fuses a read-back can confirm (every fuse except the secret keys)."""
    return [fuse['name'] for fuse in fuses if fuse['name'] not in SECRET_FUSES]


def unverifiable_fuses(fuses):
    """The names of the secret key fuses, which odmfuseread.sh never reads back."""
    return [fuse['name'] for fuse in fuses if fuse['name'] in SECRET_FUSES]


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
    Values compare as numbers (:func:`normalize_value`). Secret key fuses are skipped: they
    never read back, and their values must not travel.
    """
    mismatches = []
    for fuse in fuses:
        name = fuse['name']
        if name in SECRET_FUSES:
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
