#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: station_trees
short_description: Make the working tree of each USB port of a station's devices, in one run
version_added: 1.1.0
description:
  - The last step of the rootfs phase of a station, for all its devices at once, at most
    O(parallel) at a time. The station's staging tree O(src) is made and staged before, by
    other tasks.
  - For each device, makes the working tree of its USB port (C(port_tree) of its device
    context) from O(src) exactly as M(azaion.jetson.l4t_workspace) does (O(src) is only read;
    files are hard-linked except under O(private_paths); a tree that is up to date is left
    alone; a rebuilt tree keeps the paths in O(preserve)). Each device is flashed from its own
    port's tree, so no two flashes share one.
  - A device without a USB port (C(jetson_usb_instance)) has no port tree and fails.
  - The phase C(rootfs) is recorded in each device's state file (outside check mode). A re-run
    over up-to-date trees changes nothing and writes nothing.
  - One device's failure does not fail the task; RV(devices) holds each device's result.
author: Azaion engineering (@azaion)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - azaion.jetson.devices
  - azaion.jetson.progress
options:
  src:
    description:
      - The station's staging tree, the C(Linux_for_Tegra) tree every port tree is made from; it
        must hold C(flash.sh). It is only read.
    type: path
    required: true
  private_paths:
    description:
      - Paths relative to the tree whose files are copied, not hard-linked, because the flash
        tools rewrite files there in place; see M(azaion.jetson.l4t_workspace).
    type: list
    elements: str
    default: [bootloader, tools/kernel_flash, rootfs/boot]
  preserve:
    description:
      - Paths relative to the tree carried over from a device's old port tree when it is rebuilt,
        by default where the device's device.conf lives.
    type: list
    elements: str
    default: [rootfs/etc/azaion]
  log_dir:
    description:
      - Where the run keeps its progress (C(progress-rootfs.json)) for O(progress_interval), each
        device's step being C(making its port tree). None is kept when not set.
    type: path
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
notes:
  - Run it on the station (delegate the task to the station of the devices), as root when the
    bundle is owned by root.
seealso:
  - module: azaion.jetson.l4t_workspace
'''

EXAMPLES = r'''
- name: Make the working tree of each device's USB port
  azaion.jetson.station_trees:
    devices: "{{ rootfs_devices }}"
    src: "{{ rootfs_devices[0].settings.staging_tree }}"
    private_paths: [bootloader, tools/kernel_flash, rootfs/boot]
    log_dir: "{{ rootfs_devices[0].settings.logs }}"
  delegate_to: "{{ rootfs_devices[0].station }}"
  register: rootfs_result
'''

RETURN = r'''
devices:
  description:
    - Each device's result, by device name, as M(azaion.jetson.l4t_workspace) returns it
      (C(dest), C(rebuilt), C(stats), C(msg)), with C(changed), C(failed) (and C(msg) naming the
      device) when it failed, and C(seconds) it took.
  returned: always
  type: dict
  sample:
    jetson-0042:
      changed: true
      dest: /var/lib/azaion-jetson/ports/1-3/Linux_for_Tegra
      rebuilt: false
      stats: {files_linked: 51234, files_copied: 812, bytes_copied: 1073741824, symlinks: 3100, skipped: 0,
              seconds: 4.2}
      msg: built /var/lib/azaion-jetson/ports/1-3/Linux_for_Tegra from /var/lib/azaion-jetson/staging/Linux_for_Tegra
      seconds: 4.3
failed_devices:
  description: The names of the devices whose port tree could not be made, sorted.
  returned: always
  type: list
  elements: str
  sample: []
msg:
  description: A summary, for a person.
  returned: always
  type: str
  sample: "rootfs: 4 device(s), 4 changed, 0 failed"
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.azaion.jetson.plugins.module_utils._progress import run_progress
from ansible_collections.azaion.jetson.plugins.module_utils._station_run import (
    StationRun,
    devices_by,
    run_device_core,
    shared_options,
    station_argument_spec,
)
from ansible_collections.azaion.jetson.plugins.module_utils._workspace import make_workspace, workspace_argument_spec

# The options given once for all devices; dest is each device's port tree.
SHARED_OPTIONS = ('src', 'private_paths', 'preserve')
# A device's step in the progress file, between queued and done (or failed).
MAKING = 'making its port tree'


def main():
    workspace_spec = workspace_argument_spec()
    spec = station_argument_spec(log_dir=dict(type='path'), progress_interval=dict(type='int', default=30),
                                 **shared_options(workspace_spec, SHARED_OPTIONS))
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    by_tree = devices_by(module.params['devices'], 'port_tree')
    progress = run_progress(module.params['log_dir'], 'rootfs', [device['name'] for device in module.params['devices']],
                            module.params['progress_interval'], module.check_mode)

    def work(proxy, device):
        name = device['name']
        progress.step(name, MAKING)
        if not device.get('port_tree'):
            proxy.fail_json('%s: it has no USB port, so no port tree to be flashed from; set jetson_usb_instance'
                            ' (the USB port of its cable)' % name)
        sharing = by_tree[device['port_tree']]
        if len(sharing) > 1:
            # Two clones of one tree at once would build in the same temporary tree.
            proxy.fail_json('%s: devices %s have the same port tree %s; give each device the jetson_usb_instance'
                            ' of its own cable' % (name, ', '.join(sharing), device['port_tree']))
        run_device_core(proxy, workspace_spec, SHARED_OPTIONS, dict(dest=device['port_tree']), make_workspace)

    run = StationRun(module, work, phase='rootfs', progress=progress)
    run.exit(run.run(), 'rootfs')


if __name__ == '__main__':
    main()
