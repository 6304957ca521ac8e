"""tegrasign_v3.py (lab double): the ``--pubkeyhash`` use of NVIDIA's signing tool.

Modelled on NVIDIA's r36.2 bootloader/tegrasign_v3.py and bootloader/tegrasign_v3_util.py
(public copy: github.com/johnnynunez/Linux_for_Tegra), as odmfuse.sh's generate_key_hash_v3
calls it::

    tegrasign_v3.py --pubkeyhash ppp hhh --key <private key>

It writes the public key file and the hash file (in the current directory when given relative
names, as the real one) and prints, like save_public_key / save_public_key_hash and
tegrasign_v3_util.print_pcp::

    Valid RSA key                       (or: Valid ECC key)
    Saving pkc public key in ppp        (or: Saving public key in ppp for ECC)
    tegra-fuse format (big-endian): 0x<128 lowercase hex digits>

The hash is 64 bytes (SHA-512). The real tool hashes NVIDIA's public-key blob padded to
PCP_SIZE; the lab hashes the key's public key in DER (``openssl pkey -pubout -outform DER``),
which keeps what matters: the same key gives the same hash, another key another hash. The lab
helper ``tests/lab/keys.py`` (pkc_key_hash) computes the same value; this file is copied into
the lab bundles, so it imports nothing from the tests and runs openssl itself.
A file that is not a private key: "Invalid key format", exit 1. It has no shebang here:
make_bundle gives the copy in bundles one (ansible-test refuses python3 shebangs in the repo).
"""

import hashlib
import subprocess
import sys

USAGE = 'usage: tegrasign_v3.py --pubkeyhash <public key file> <hash file> --key <private key>'


def fail(message):
    print(message)
    sys.exit(1)


def parse(argv):
    pubkeyhash, key, index = None, None, 0
    while index < len(argv):
        arg = argv[index]
        if arg == '--pubkeyhash':
            values = []
            index += 1
            while index < len(argv) and not argv[index].startswith('--'):
                values.append(argv[index])
                index += 1
            pubkeyhash = values
            continue
        if arg == '--key':
            if index + 1 >= len(argv):
                fail(USAGE)
            key = argv[index + 1]
            index += 2
            continue
        fail('lab: tegrasign_v3.py double: unsupported argument %s\n%s' % (arg, USAGE))
    if not pubkeyhash or key is None:
        fail(USAGE)
    if len(pubkeyhash) > 2:
        # As the real one: the key type is only for a public key given without --key.
        print('%s flag is not needed since --key is used' % pubkeyhash[2])
        fail(USAGE)
    return pubkeyhash, key


def openssl(*args):
    return subprocess.run(('openssl',) + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          check=False)


def main(argv):
    pubkeyhash, key = parse(argv)
    pem = openssl('pkey', '-in', key, '-pubout')
    der = openssl('pkey', '-in', key, '-pubout', '-outform', 'DER')
    text = openssl('pkey', '-in', key, '-noout', '-text')
    if pem.returncode or der.returncode or text.returncode or not der.stdout:
        fail('Invalid key format')
    description = text.stdout.decode('utf-8', 'replace')
    if 'RSA' in description.split('\n', 1)[0] or 'modulus:' in description:
        kind = 'RSA'
    elif 'ASN1 OID' in description or 'NIST CURVE' in description:
        kind = 'ECC'
    else:
        fail('Invalid key format')
    print('Valid %s key' % kind)
    with open(pubkeyhash[0], 'wb') as handle:
        handle.write(pem.stdout)
    if kind == 'RSA':
        print('Saving pkc public key in ' + pubkeyhash[0])
    else:
        print('Saving public key in ' + pubkeyhash[0] + ' for ECC')
    digest = hashlib.sha512(der.stdout).digest()
    if len(pubkeyhash) > 1:
        with open(pubkeyhash[1], 'wb') as handle:
            handle.write(digest)
        print('tegra-fuse format (big-endian): 0x%s' % digest.hex())
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
