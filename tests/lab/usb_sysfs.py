"""A fake ``/sys/bus/usb/devices`` tree, so the recovery-mode scan runs on a station without USB.

The Ansible role finds the Jetsons waiting in recovery mode (RCM) by reading
``<dir>/{idVendor,idProduct,busnum,devpath}`` for every entry of ``/sys/bus/usb/devices``.
Tests point that scan at a directory built here instead, and plug devices in and out of it
between runs, the way a person on the factory floor does.

The tree is shaped like the real one where a scan can tell the difference:

- every entry of ``root`` is a symlink, as in sysfs, into the device hierarchy (kept in the
  hidden ``root/.devices``, where sysfs has ``/sys/devices``), so a scan that does not follow
  symlinks finds nothing here either;
- a device behind a hub (``1-8.4``) sits inside the hub's directory (``1-8``), which is created
  when missing, and unplugging the hub unplugs what hangs off it;
- root hubs (``usb1``, ``usb2``), a keyboard and the interfaces (``1-3:1.0``, no ``idVendor``)
  sit next to the Jetsons, so the scan has to tell them apart;
- the port comes from ``busnum`` and ``devpath``: NVIDIA's tools take ``--usb-instance`` in that
  form, and the directory name is only a convention of the kernel.

Standard library only.
"""

import os
import re
import shutil

NVIDIA_VENDOR = '0955'
# idProduct of an Orin in recovery mode -> what it is (see docs/l4t-board-identity.md).
RECOVERY_PRODUCTS = {
    '7523': 'Jetson Orin Nano 8GB',
    '7623': 'Jetson Orin Nano 4GB',
    '7323': 'Jetson Orin NX 16GB',
    '7423': 'Jetson Orin NX 8GB',
    '7023': 'Jetson AGX Orin 64GB',
    '7223': 'Jetson AGX Orin 32GB',
}
# What the device shows once NVIDIA's initrd flasher has booted on it: no longer in recovery.
INITRD_FLASH_PRODUCT = '7035'
# The chip SKU of each module (chip_info), as the lab's flash tools read it from lab_chip_sku.
CHIP_SKUS = {'7323': 'D3', '7423': 'D4', '7523': 'D5', '7623': 'D6', '7223': 'D2', '7023': 'D0'}
# Lab attributes of an NVIDIA device's entry: its chip identity, which real sysfs does not show
# (NVIDIA's tools ask the chip: "tegrarcm_v2 --uid" prints its BR_CID). The lab's tools read them
# and keep a copy in the lab state (chip/<port>/) for when the device leaves the bus.
ECID_ATTRIBUTE = 'lab_ecid'
CHIP_SKU_ATTRIBUTE = 'lab_chip_sku'
ECID_PATTERN = re.compile(r'[0-9A-F]{32}')

LINUX_FOUNDATION_VENDOR = '1d6b'
ROOT_HUB_PRODUCTS = {1: '0002', 2: '0003'}  # usb1 is the USB 2.0 bus, usb2 the SuperSpeed one
KEYBOARD = {'idVendor': '046d', 'idProduct': 'c31c', 'manufacturer': 'Logitech',
            'product': 'USB Keyboard'}
HUB = {'idVendor': '05e3', 'idProduct': '0610', 'manufacturer': 'GenesysLogic',
       'product': 'USB2.1 Hub'}

DEVICES_DIR = '.devices'
CONTROLLER_PATH = ('pci0000:00', '0000:00:14.0')
PORT_PATTERN = re.compile(r'([1-9][0-9]*)-([1-9][0-9]*(?:\.[1-9][0-9]*)*)')
PRODUCT_PATTERN = re.compile(r'[0-9a-f]{4}')


def make_usb_sysfs(root, devices=None):
    """Build the tree at ``root`` (the stand-in for /sys/bus/usb/devices) and return ``root``.

    ``devices`` maps a port such as ``1-3`` or ``1-8.4`` to the idProduct of an NVIDIA device
    on it (``7523``...; ``7035`` for one that left recovery). Root hubs ``usb1`` and ``usb2``
    and a keyboard on the first free port of bus 1 are always there.
    """
    root = os.fspath(root)
    os.makedirs(root, exist_ok=True)
    for busnum in sorted(ROOT_HUB_PRODUCTS):
        _ensure_root_hub(root, busnum)
    for port, product in sorted((devices or {}).items(), key=lambda item: _port_key(item[0])):
        add_device(root, port, product)
    keyboard_port = next(port for port in ('1-%d' % number for number in range(1, 1000))
                         if not os.path.lexists(os.path.join(root, port)))
    _plug(root, keyboard_port, KEYBOARD, interface_class='03')
    return root


def add_device(root, port, product='7523', vendor=NVIDIA_VENDOR, ecid=None, chip_sku=None):  # pylint: disable=too-many-arguments
    """Plug a device into ``port``; one already there is replaced, as on re-enumeration.

    ``vendor`` other than NVIDIA's gives a foreign device with the same product id, for tests
    that the scan checks both. An NVIDIA device gets a chip identity in the lab attributes
    ``lab_ecid`` and ``lab_chip_sku``: ``ecid`` (32 hex digits, see ``new_ecid``; default a new
    one, so a device added again is another chip, as a swapped module is) and ``chip_sku``
    (default: the module's, ``CHIP_SKUS``; none for a product not in it). Returns the ECID
    (None for a foreign device).
    """
    root = os.fspath(root)
    product = str(product).lower()
    vendor = str(vendor).lower()
    if not PRODUCT_PATTERN.fullmatch(product) or not PRODUCT_PATTERN.fullmatch(vendor):
        raise ValueError('vendor and product must be 4 hex digits, such as 0955 and 7523')
    _parse_port(port)
    if ecid is not None:
        ecid = str(ecid).upper()
        ecid = ecid[2:] if ecid.startswith('0X') else ecid
        if not ECID_PATTERN.fullmatch(ecid):
            raise ValueError('an ECID is 32 hex digits, not %r' % (ecid,))
    remove_device(root, port)
    if vendor == NVIDIA_VENDOR:
        # In recovery the boot ROM answers as "APX"; the initrd flasher's gadget names itself.
        name = 'APX' if product in RECOVERY_PRODUCTS else 'Linux for Tegra'
        attributes = {'idVendor': vendor, 'idProduct': product, 'manufacturer': 'NVIDIA Corp.',
                      'product': name, ECID_ATTRIBUTE: ecid or new_ecid()}
        chip_sku = chip_sku if chip_sku is not None else CHIP_SKUS.get(product)
        if chip_sku:
            attributes[CHIP_SKU_ATTRIBUTE] = str(chip_sku)
    else:
        attributes = {'idVendor': vendor, 'idProduct': product, 'product': 'USB Device'}
    _plug(root, port, attributes, interface_class='ff')
    return attributes.get(ECID_ATTRIBUTE)


def new_ecid():
    """A new chip identity: 32 uppercase hex digits laid out as the BR_CID flash.sh decodes
    (digit 0 the fuse level, 1-2 the boot authentication, 3 the chip revision, 4-5 the chip id
    23: an unfused Orin), then 26 digits unique to the chip."""
    return '000123' + os.urandom(13).hex().upper()


def chip_identity(root, port):
    """The ``(ecid, chip_sku)`` of the device on ``port`` as its entry shows them (the ECID as
    32 hex digits, without 0x), ``(None, None)`` when no entry or no identity is there."""
    entry = os.path.join(os.fspath(root), port)
    values = []
    for name in (ECID_ATTRIBUTE, CHIP_SKU_ATTRIBUTE):
        try:
            values.append(_read(entry, name) or None)
        except OSError:
            values.append(None)
    return tuple(values)


def remove_device(root, port):
    """Unplug the device on ``port`` and everything behind it; False if nothing was there."""
    root = os.fspath(root)
    _parse_port(port)
    link = os.path.join(root, port)
    # The device's interfaces (<port>:1.0) and what is behind a hub (<port>.N) go with it, even
    # when a flash tool already removed the device's own entry (it re-enumerates on reboot).
    entries = [name for name in os.listdir(root)
               if name == port or name.startswith(port + '.') or name.startswith(port + ':')]
    if not entries:
        return False
    device_dir = os.path.realpath(link) if os.path.lexists(link) else None
    for name in entries:
        os.unlink(os.path.join(root, name))
    if device_dir:
        shutil.rmtree(device_dir, ignore_errors=True)
    return True


def recovery_devices(root):
    """Port -> idProduct of every NVIDIA device in recovery mode under ``root``.

    The same scan the role does: every entry with idVendor 0955 and a recovery product id,
    its port read from ``busnum`` and ``devpath``. Entries without those files (interfaces,
    the hidden device hierarchy) and unreadable ones are skipped.
    """
    found = {}
    for name in sorted(os.listdir(os.fspath(root))):
        entry = os.path.join(os.fspath(root), name)
        try:
            vendor = _read(entry, 'idVendor').lower()
            product = _read(entry, 'idProduct').lower()
            if vendor != NVIDIA_VENDOR or product not in RECOVERY_PRODUCTS:
                continue
            port = '%d-%s' % (int(_read(entry, 'busnum')), _read(entry, 'devpath'))
        except (OSError, ValueError):
            continue
        found[port] = product
    return dict(sorted(found.items(), key=lambda item: _port_key(item[0])))


# -- building the tree ---------------------------------------------------------------------------

def _parse_port(port):
    match = PORT_PATTERN.fullmatch(str(port))
    if match is None:
        raise ValueError('port %r is not <busnum>-<devpath>, such as 1-3 or 1-8.4' % (port,))
    return int(match.group(1)), match.group(2)


def _port_key(port):
    busnum, devpath = _parse_port(port)
    return busnum, [int(part) for part in devpath.split('.')]


def _ensure_root_hub(root, busnum):
    name = 'usb%d' % busnum
    real = os.path.join(root, DEVICES_DIR, *CONTROLLER_PATH, name)
    if os.path.isdir(real):
        return real
    _write_attributes(real, {
        'idVendor': LINUX_FOUNDATION_VENDOR, 'idProduct': ROOT_HUB_PRODUCTS.get(busnum, '0002'),
        'busnum': str(busnum), 'devpath': '0', 'manufacturer': 'Linux xhci-hcd',
        'product': 'xHCI Host Controller', 'serial': '0000:00:14.0'})
    _link(root, name, real)
    return real


def _plug(root, port, attributes, interface_class):
    """Create the device directory for ``port`` (and a hub in front of it when missing)."""
    busnum, devpath = _parse_port(port)
    if '.' in devpath:
        parent_port = port.rsplit('.', 1)[0]
        parent_link = os.path.join(root, parent_port)
        if not os.path.lexists(parent_link):
            _plug(root, parent_port, HUB, interface_class='09')
        parent = os.path.realpath(parent_link)
    else:
        parent = _ensure_root_hub(root, busnum)
    real = os.path.join(parent, port)
    _write_attributes(real, dict(attributes, busnum=str(busnum), devpath=devpath))
    _link(root, port, real)
    interface = '%s:1.0' % port
    _write_attributes(os.path.join(real, interface), {
        'bInterfaceNumber': '00', 'bInterfaceClass': interface_class, 'bAlternateSetting': ' 0'})
    _link(root, interface, os.path.join(real, interface))


def _write_attributes(directory, attributes):
    os.makedirs(directory, exist_ok=True)
    for name, value in attributes.items():
        with open(os.path.join(directory, name), 'w') as attribute:
            attribute.write(value + '\n')  # sysfs attributes end with a newline


def _link(root, name, target):
    # Relative, so the tree still works when a test copies or moves it.
    os.symlink(os.path.relpath(target, root), os.path.join(root, name))


def _read(directory, name):
    with open(os.path.join(directory, name)) as attribute:
        return attribute.read().strip()
