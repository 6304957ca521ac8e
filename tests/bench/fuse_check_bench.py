"""``make bench`` (third part): the batch check's fuse part, per batch or per device.

The batch check checks every device's fuse XML against its keys with the bundle's own tools
(``tegrasign_v3.py --pubkeyhash``, ``ssh-keygen -l``), as azaion.jetson.l4t_station_check does
before anything is written. A batch's devices mostly share one XML and one key: the figures
are the check of 1 device and of N devices sharing them, made in the same run, and their ratio
(1.0: the batch pays once what is the same for the batch). A second line checks N devices with a
key each, for what per-device keys cost.

It asserts nothing about speed: the figures are for reading.
"""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lab import keys, l4t_bundle, labkit  # noqa: E402  pylint: disable=wrong-import-position
from lab.usb_sysfs import make_usb_sysfs  # noqa: E402  pylint: disable=wrong-import-position

labkit.link_collection()
sys.path.insert(0, labkit.COLLECTIONS_ROOT)
from ansible_collections.azaion.jetson.plugins.module_utils._device_checks import (  # noqa: E402  pylint: disable=wrong-import-position,import-error
    file_problems,
)

DEVICES = int(os.environ.get('BENCH_FUSE_CHECK_DEVICES', '100'))
OWN_KEYS = int(os.environ.get('BENCH_FUSE_CHECK_OWN_KEYS', '10'))


def fusing(root, name):
    """A device to be fused with an XML that fits its key ``name`` (made once)."""
    pkc = os.path.join(root, name + '.pem')
    xml = os.path.join(root, name + '.xml')
    if not os.path.exists(pkc):
        keys.make_pkc_key(pkc, 'ecp256')
        l4t_bundle.write_fuse_config(xml, {'PublicKeyHash': keys.pkc_key_hash(pkc), 'BootSecurityInfo': '0x202',
                                           'SecurityMode': '0x1'})
    return dict(fuse_enabled=True, fuse_config=xml, pkc_key=pkc)


def check(tree, devices):
    started = time.monotonic()
    problems = file_problems(devices, dict((device['name'], ('fuse',)) for device in devices), tree)
    assert problems == [], problems  # a bench over devices that are right
    return time.monotonic() - started


def main():
    root = tempfile.mkdtemp(prefix='azaion-fuse-check-bench-')
    tree = l4t_bundle.make_bundle(os.path.join(root, 'bundle'), os.path.join(root, 'state'),
                                  make_usb_sysfs(os.path.join(root, 'sysfs'), {}))
    shared = [dict(fusing(root, 'batch'), name='AZJN-%04d' % number) for number in range(DEVICES)]
    own = [dict(fusing(root, 'key-%d' % number), name='AZJN-%04d' % number) for number in range(OWN_KEYS)]
    one = check(tree, shared[:1])
    many = check(tree, shared)
    each = check(tree, own)
    print('fuse part of the batch check, %d devices sharing one XML and key: %.2f s; 1 device: %.2f s; ratio %.2f'
          % (DEVICES, many, one, many / one))
    print('%d devices with a key each: %.2f s (%.2f s a device)' % (OWN_KEYS, each, each / OWN_KEYS))


if __name__ == '__main__':
    main()
