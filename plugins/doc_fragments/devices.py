# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The options of every station module (one run for all of a station's devices). The device
    # context is made on the controller by the azaion.jetson.device_contexts filter; keep this in
    # step with DEVICE_OPTIONS in plugins/module_utils/_station_run.py.
    DOCUMENTATION = r'''
options:
  devices:
    description:
      - The station's devices, one device context each, as the P(azaion.jetson.device_contexts#filter)
        filter makes them from the inventory. Each module uses the keys it needs.
      - Each device's result is in RV(devices), under its name.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The device's inventory host name; the key of its result in RV(devices).
        type: str
        required: true
      serial:
        description: The device's serial (C(jetson_serial)).
        type: str
        required: true
      email:
        description: The device's e-mail on the admin API.
        type: str
        required: true
      station:
        description: The station the device is on (C(jetson_station)).
        type: str
      usb_instance:
        description: The USB port of the device's cable (C(jetson_usb_instance)).
        type: str
      board:
        description:
          - The board (C(jetson_board)); empty to detect it from the USB product id, which
            C(0955:7023) (an AGX Orin 32GB, 64GB or Industrial) cannot tell.
        type: str
      board_identity:
        description:
          - Overrides of the board identity for image generation (C(flash_board_identity)), with
            the keys C(BOARDID), C(FAB), C(BOARDSKU), C(BOARDREV), C(CHIP_SKU) and C(FUSELEVEL).
        type: dict
      own_rootfs:
        description: The device's own staging rootfs (C(jetson_rootfs_dir)), when it has one.
        type: path
      rootfs:
        description: The staging rootfs device.conf goes into.
        type: path
      device_conf:
        description: That rootfs's C(etc/azaion/device.conf).
        type: path
      port_tree:
        description: The working tree of the device's USB port.
        type: path
      state_file:
        description: The device's state file on the station.
        type: path
        required: true
      sync_record:
        description: The record of the device's last account sync.
        type: path
      loader_url:
        description: The device's Loader after first boot (C(jetson_loader_url)).
        type: str
      api_url:
        description:
          - The admin API URL (C(azaion_admin_api_url), else the controller's E(AZAION_ADMIN_API_URL)).
          - Not used by the modules, which take it as their own option.
        type: str
      fuse_enabled:
        description: Whether the device is to be fused (C(jetson_fuse_enabled)).
        type: bool
      fuse_config:
        description: The fuse XML on the station (C(jetson_fuse_config)).
        type: path
      pkc_key:
        description: The PKC key on the station (C(jetson_pkc_key)).
        type: path
      sbk_key:
        description: The SBK key on the station (C(jetson_sbk_key)).
        type: path
      ekb_file:
        description:
          - The EKB image on the station (C(jetson_ekb_file)), encrypted with the OEM key (C(OemK1)) the
            device's fuse configuration burns. Required when it burns C(OemK1) or C(OemK2).
        type: path
      batch:
        description: The name of the device's batch (C(jetson_batch_name), default V(batch)). Not used by the modules.
        type: str
      report_dir:
        description:
          - Where the controller keeps the batch report (C(jetson_report_dir), by default the
            playbook directory's C(reports)). Not used by the modules.
        type: path
      settings:
        description:
          - The station's settings (C(l4t_dir), C(workdir), C(usb_sysfs_root), C(flash_concurrency),
            C(station_root)) and the station paths derived from them. Not used by the modules,
            which take them as their own options.
        type: dict
      problems:
        description: What the batch check found wrong with the device. Not used by the modules.
        type: list
        elements: str
  parallel:
    description: How many devices' work runs at once.
    type: int
    default: 8
'''
