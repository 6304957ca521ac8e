#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: l4t_workspace
short_description: Make a per-port working tree of the NVIDIA Linux_for_Tegra bundle, sharing its gigabytes
version_added: 1.1.0
description:
  - Makes O(dest) a working tree of the C(Linux_for_Tegra) tree O(src) (the bundle, or the
    station's staging tree) in which one device can be flashed while other devices are flashed
    from their own trees at the same time. Two flashes in one tree collide (shared
    C(bootloader/system.img), C(bootloader/mnt), C(tools/kernel_flash/images), exit traps), and
    each device's own C(etc/azaion/device.conf) must reach that device's image only.
  - The bundle's many gigabytes are not copied. Every regular file is hard-linked, except those
    under O(private_paths), which are copied because NVIDIA's tools rewrite files there in
    place (C(cp) over an existing file truncates and rewrites the same inode, which through a
    hard link would rewrite the bundle itself). Directories are created fresh with the source's
    mode and owner, symbolic links are recreated as links and never followed, device nodes,
    FIFOs and sockets are skipped. A hard link that fails (another file system, a file the user
    may not link) becomes a copy.
  - The tree is built next to O(dest) under a temporary name and renamed into place, so an
    interrupted run never leaves a tree that looks complete; leftovers of interrupted runs are
    removed. The finished tree holds C(.azaion-workspace.json) naming its source and the
    source's identity (the content of C(<src>/.azaion-staging.json), written by the
    C(azaion.jetson.rootfs) role after staging, or else the modification time of O(src)
    and its C(nv_tegra/nv_tegra_release)).
  - Idempotent. Nothing is done when O(dest) was made from O(src) with the same source identity
    and the same O(private_paths). Otherwise it is rebuilt, and the paths in O(preserve) (by
    default C(rootfs/etc/azaion), where the device's device.conf lives) are carried over from
    the old tree into the new one.
author: Azaion engineering (@azaion)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  src:
    description:
      - The C(Linux_for_Tegra) tree to work from, on the station; it must hold C(flash.sh).
      - It is only read, never written.
    type: path
    required: true
  dest:
    description:
      - The working tree to make, for example C(<workdir>/ports/1-3/Linux_for_Tegra). Missing
        parent directories are created.
      - It must be on the same file system as O(src) for the hard links; elsewhere every file is
        copied.
      - It must not be inside O(src), nor O(src) inside it.
      - An existing directory that this module did not make (it has no
        C(.azaion-workspace.json)) is only replaced with O(force=true).
    type: path
    required: true
  private_paths:
    description:
      - Paths relative to the tree whose files are copied, not hard-linked, because the flash
        tools rewrite files there in place.
      - Add any other path your release's tools rewrite in place; a path missing here lets a
        flash write through to the bundle.
    type: list
    elements: str
    default: [bootloader, tools/kernel_flash, rootfs/boot]
  preserve:
    description:
      - Paths relative to the tree carried over from the old working tree when it is rebuilt
        (hard links, so nothing is copied and a crash loses nothing).
    type: list
    elements: str
    default: [rootfs/etc/azaion]
  state:
    description:
      - V(present) makes or refreshes the working tree, V(absent) removes it (with the leftovers
        of interrupted runs).
    type: str
    choices: [present, absent]
    default: present
  force:
    description:
      - With O(state=present), rebuild the tree even when it is up to date.
      - Also allows replacing or removing an existing O(dest) that this module did not make.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
notes:
  - Run it on the station that holds the bundle, as root when the bundle is owned by root (the
    copies keep their owners only then).
seealso:
  - module: azaion.jetson.l4t_flash
'''

EXAMPLES = r'''
- name: Make the working tree of the device's USB port
  azaion.jetson.l4t_workspace:
    src: "{{ jetson_l4t_dir }}"
    dest: "{{ jetson_workdir }}/ports/{{ jetson_usb_instance }}/Linux_for_Tegra"
  register: workspace

- name: Also copy the kernel directory, which this release's tools rewrite in place
  azaion.jetson.l4t_workspace:
    src: /srv/l4t/r36.4/Linux_for_Tegra
    dest: /var/lib/azaion-jetson/ports/1-3/Linux_for_Tegra
    private_paths: [bootloader, tools/kernel_flash, rootfs/boot, kernel]

- name: Remove the working tree when the batch is done
  azaion.jetson.l4t_workspace:
    src: "{{ jetson_l4t_dir }}"
    dest: "{{ jetson_workdir }}/ports/{{ jetson_usb_instance }}/Linux_for_Tegra"
    state: absent
'''

RETURN = r'''
dest:
  description: The working tree, as an absolute path.
  returned: always
  type: str
  sample: /var/lib/azaion-jetson/ports/1-3/Linux_for_Tegra
rebuilt:
  description:
    - V(true) when an existing working tree was replaced (its source changed, it was not made
      by this module, or O(force=true)); V(false) when it was made for the first time, was up to
      date, or was removed. In check mode, what would happen.
  returned: always
  type: bool
  sample: false
stats:
  description: What the clone did (all zero when nothing was cloned).
  returned: always
  type: dict
  contains:
    files_linked:
      description: Regular files hard-linked to the source.
      type: int
      sample: 51234
    files_copied:
      description: Regular files copied (those under O(private_paths), and failed links).
      type: int
      sample: 812
    bytes_copied:
      description: Bytes copied.
      type: int
      sample: 1073741824
    symlinks:
      description: Symbolic links recreated.
      type: int
      sample: 3100
    skipped:
      description: Device nodes, FIFOs and sockets not cloned.
      type: int
      sample: 0
    seconds:
      description: How long the clone took.
      type: float
      sample: 4.2
msg:
  description: What happened, for a person.
  returned: always
  type: str
  sample: built /var/lib/azaion-jetson/ports/1-3/Linux_for_Tegra from /srv/l4t/r36.4/Linux_for_Tegra (51234 files linked, 812 copied)
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.azaion.jetson.plugins.module_utils._workspace import make_workspace, workspace_argument_spec


def _keep_result(kwargs):
    return kwargs


def main():
    module = AnsibleModule(argument_spec=workspace_argument_spec(), supports_check_mode=True)
    # exit_json would add a stat of RV(dest) (owner, mode, size...) as if it were one file.
    module.add_path_info = _keep_result
    make_workspace(module)


if __name__ == '__main__':
    main()
