"""Secure-boot keys for the lab: PKC private keys, SBK files, and the lab's public-key hash.

``pkc_key_hash`` gives the value the lab's ``bootloader/tegrasign_v3.py`` double prints as
``tegra-fuse format (big-endian): 0x...``: SHA-512 of the key's public key in DER. NVIDIA's
r36.2 tegrasign_v3.py (public copy: github.com/johnnynunez/Linux_for_Tegra) hashes its own
public-key blob padded to PCP_SIZE instead; what the lab keeps is that the hash is 64 bytes,
the same for the same key and different for another key. Standard library and openssl only.
"""

import hashlib
import os
import subprocess

# openssl genpkey arguments of each key kind odmfuse.sh accepts (-i 0x23 takes rsa-3k and EC).
_KEY_KINDS = {
    'rsa-3k': ('-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:3072'),
    'rsa-2k': ('-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'),
    'ecp256': ('-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'),
    'ecp521': ('-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-521'),
}


def make_pkc_key(path, kind='rsa-3k'):
    """Write a new private key of ``kind`` ('rsa-3k', 'rsa-2k', 'ecp256', 'ecp521') as PEM, mode 0600."""
    if kind not in _KEY_KINDS:
        raise ValueError('unknown key kind %r (one of %s)' % (kind, ', '.join(sorted(_KEY_KINDS))))
    subprocess.run(('openssl', 'genpkey') + _KEY_KINDS[kind] + ('-out', path),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.chmod(path, 0o600)
    return path


def pkc_key_hash(path):
    """The lab's PublicKeyHash of the private key at ``path``: '0x' + 128 lowercase hex digits."""
    der = subprocess.run(('openssl', 'pkey', '-in', path, '-pubout', '-outform', 'DER'),
                         check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout
    return '0x' + hashlib.sha512(der).hexdigest()


def make_sbk_key(path, value_hex=None):
    """Write a 32-byte SBK in NVIDIA's format (8 words ``0x........`` separated by spaces).

    ``value_hex``: 64 hex digits (an optional 0x prefix), random when None. Returns the 64
    lowercase hex digits written (no 0x), the value odmfuse.sh burns as SecureBootKey.
    """
    if value_hex is None:
        value_hex = os.urandom(32).hex()
    value_hex = value_hex.lower()
    if value_hex.startswith('0x'):
        value_hex = value_hex[2:]
    if len(value_hex) != 64 or any(char not in '0123456789abcdef' for char in value_hex):
        raise ValueError('an SBK is 64 hex digits, not %r' % value_hex)
    words = ['0x' + value_hex[index:index + 8] for index in range(0, 64, 8)]
    with open(path, 'w', encoding='ascii') as handle:
        handle.write(' '.join(words) + '\n')
    os.chmod(path, 0o600)
    return value_hex
