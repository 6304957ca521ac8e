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
version_added: 1.0.0
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

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.azaion.jetson.plugins.module_utils._workspace import (
    WORKSPACE_MARKER,
    clone_tree,
    normalize_relpaths,
    read_workspace_marker,
    remove_tree,
    source_stamp,
    stale_temporary_trees,
)

EMPTY_STATS = dict(files_linked=0, files_copied=0, bytes_copied=0, symlinks=0, skipped=0, seconds=0.0)


def _argument_spec():
    return dict(
        src=dict(type='path', required=True),
        dest=dict(type='path', required=True),
        private_paths=dict(type='list', elements='str', default=['bootloader', 'tools/kernel_flash', 'rootfs/boot']),
        preserve=dict(type='list', elements='str', default=['rootfs/etc/azaion']),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        force=dict(type='bool', default=False),
    )


def _keep_result(kwargs):
    return kwargs


def _inside(path, directory):
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _why_outdated(marker, src, stamp, private):
    """Why the working tree described by ``marker`` is not a current clone of ``src`` (None: it is)."""
    if marker is None:
        return 'it was not made by this module (no %s)' % WORKSPACE_MARKER
    if marker.get('source') != src:
        return 'it was made from %s' % marker.get('source')
    if marker.get('private_paths') != private:
        return 'its private paths were %s' % (', '.join(marker.get('private_paths') or []) or 'none')
    if marker.get('source_stamp') != stamp:
        return 'the source changed since it was made'
    return None


def _absent(module, dest):
    leftovers = stale_temporary_trees(dest)
    exists = os.path.lexists(dest)
    if exists and os.path.isdir(dest) and not os.path.islink(dest) and read_workspace_marker(dest) is None \
            and os.listdir(dest) and not module.params['force']:
        module.fail_json(msg='%s is not a working tree made by azaion.jetson.l4t_workspace (no %s), so it is'
                             ' not removed; remove it yourself or set force=true' % (dest, WORKSPACE_MARKER))
    changed = exists or bool(leftovers)
    if changed and not module.check_mode:
        for path in ([dest] if exists else []) + leftovers:
            remove_tree(path)
    if not changed:
        msg = '%s does not exist' % dest
    else:
        msg = '%s %s' % ('would remove' if module.check_mode else 'removed', dest if exists else 'the leftovers of '
                         'interrupted runs next to %s' % dest)
    module.exit_json(changed=changed, dest=dest, rebuilt=False, stats=dict(EMPTY_STATS), msg=msg)


def main():
    module = AnsibleModule(argument_spec=_argument_spec(), supports_check_mode=True)
    # exit_json would add a stat of RV(dest) (owner, mode, size...) as if it were one file.
    module.add_path_info = _keep_result
    params = module.params
    src = os.path.abspath(params['src'])
    dest = os.path.abspath(params['dest'])
    try:
        private = normalize_relpaths(params['private_paths'], 'private_paths entry')
        preserve = normalize_relpaths(params['preserve'], 'preserve entry')
    except ValueError as exc:
        module.fail_json(msg=str(exc))

    real_src = os.path.realpath(src)
    real_dest = os.path.realpath(dest)
    if _inside(real_dest, real_src) or _inside(real_src, real_dest):
        module.fail_json(msg='dest %s and src %s must not contain each other: a working tree inside the bundle (or'
                             ' around it) would clone itself; put the working trees next to the bundle, under'
                             ' the station\'s work directory' % (dest, src))
    if params['state'] == 'absent':
        _absent(module, dest)

    if not os.path.isdir(src) and module.check_mode and os.path.isabs(src):
        # In a check run, the task that makes src (the station's staging tree) did not run either.
        module.exit_json(changed=True, dest=dest, rebuilt=os.path.exists(dest), stats={},
                         msg='would make %s once %s exists' % (dest, src))
    if not os.path.isdir(src):
        module.fail_json(msg='src %s does not exist or is not a directory; give the Linux_for_Tegra directory'
                             ' of the bundle (or the staging tree)' % src)
    if not os.path.isfile(os.path.join(src, 'flash.sh')):
        module.fail_json(msg='src %s is not a Linux_for_Tegra tree (it has no flash.sh); give the directory'
                             ' that holds flash.sh' % src)

    try:
        stamp = source_stamp(src)
    except (IOError, OSError) as exc:
        module.fail_json(msg='cannot read the identity of %s: %s' % (src, exc.strerror or exc))
    exists = os.path.lexists(dest)
    marker = read_workspace_marker(dest) if exists else None
    if exists:
        if not os.path.isdir(dest) or os.path.islink(dest):
            if not params['force']:
                module.fail_json(msg='dest %s exists and is not a directory; remove it or set force=true' % dest)
        elif marker is None and os.listdir(dest) and not params['force']:
            module.fail_json(msg='dest %s exists and is not a working tree made by azaion.jetson.l4t_workspace (no'
                                 ' %s); remove it, choose another dest, or set force=true to replace it'
                                 % (dest, WORKSPACE_MARKER))
        reason = 'rebuild requested (force=true)' if params['force'] else _why_outdated(marker, src, stamp, private)
    else:
        reason = 'it does not exist'

    if reason is None:
        module.exit_json(changed=False, dest=dest, rebuilt=False, stats=dict(EMPTY_STATS),
                         msg='%s is up to date with %s' % (dest, src))

    rebuilt = exists
    if module.check_mode:
        module.exit_json(changed=True, dest=dest, rebuilt=rebuilt, stats=dict(EMPTY_STATS),
                         msg='would %s %s from %s: %s' % ('rebuild' if rebuilt else 'build', dest, src, reason))
    try:
        stats = clone_tree(src, dest, private, preserve=preserve)
    except (IOError, OSError) as exc:
        module.fail_json(msg='cannot make the working tree %s from %s: %s%s'
                             % (dest, src, exc.strerror or exc,
                                ' (%s)' % exc.filename if getattr(exc, 'filename', None) else ''))
    module.exit_json(
        changed=True, dest=dest, rebuilt=rebuilt, stats=stats,
        msg='%s %s from %s (%s; %d files linked, %d copied, %d bytes copied, %.1f s)'
            % ('rebuilt' if rebuilt else 'built', dest, src, reason, stats['files_linked'], stats['files_copied'],
               stats['bytes_copied'], stats['seconds']))


if __name__ == '__main__':
    main()
