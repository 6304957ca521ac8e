# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This plugin_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""Where things live on a station, in one place for every role."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import posixpath

from ansible_collections.azaion.jetson.plugins.module_utils._workdir import (
    DEVICES,
    FLASH_SLOTS,
    IMAGES,
    LOGS,
    PORTS,
    REPORTS,
    STAGING,
)


def station_paths(workdir, serial, usb_instance=None, rootfs_dir=None):
    """Return the station paths of one device, under the station's ``workdir``.

    - ``staging_tree``: the station's own copy of the bundle where the rootfs is staged once;
    - ``port_tree``: the working tree of the USB port the device is on; flashes never share
      one, and it is what the device is flashed from (None without a port);
    - ``rootfs``: the device's staging rootfs (``rootfs_dir`` when given, else the port tree's);
    - ``device_conf``: that rootfs's ``etc/azaion/device.conf``;
    - ``device_dir``, ``state_file``, ``sync_record``: the device's own records;
    - ``logs``, ``flash_slots``, ``reports``: shared by the station's devices;
    - ``images``: the station's image groups, each generated once for its devices.
    """
    if not workdir or not posixpath.isabs(workdir):
        raise ValueError('jetson_workdir %r must be an absolute path on the station' % (workdir,))
    if not serial or '/' in serial or serial in ('.', '..'):
        raise ValueError('serial %r cannot name a directory' % (serial,))
    port_tree = None
    if usb_instance:
        if '/' in str(usb_instance):
            raise ValueError('jetson_usb_instance %r is not a USB port path such as 1-3' % (usb_instance,))
        port_tree = posixpath.join(workdir, PORTS, str(usb_instance), 'Linux_for_Tegra')
    rootfs = rootfs_dir or (posixpath.join(port_tree, 'rootfs') if port_tree else None)
    device_dir = posixpath.join(workdir, DEVICES, serial)
    return dict(
        staging_tree=posixpath.join(workdir, STAGING, 'Linux_for_Tegra'),
        port_tree=port_tree,
        rootfs=rootfs,
        device_conf=posixpath.join(rootfs, 'etc', 'azaion', 'device.conf') if rootfs else None,
        device_dir=device_dir,
        state_file=posixpath.join(device_dir, 'state.json'),
        sync_record=posixpath.join(device_dir, 'identity-sync.json'),
        logs=posixpath.join(workdir, LOGS),
        flash_slots=posixpath.join(workdir, FLASH_SLOTS),
        reports=posixpath.join(workdir, REPORTS),
        images=posixpath.join(workdir, IMAGES),
    )
