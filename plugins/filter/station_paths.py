# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.azaion.jetson.plugins.plugin_utils._station import station_paths


def station_paths_filter(workdir, serial, usb_instance=None, rootfs_dir=None):
    try:
        return station_paths(workdir, serial, usb_instance or None, rootfs_dir or None)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule(object):
    """azaion.jetson.station_paths"""

    def filters(self):
        return {'station_paths': station_paths_filter}
