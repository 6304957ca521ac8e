#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: l4t_station_check
short_description: Check that a station is ready for a batch (bundle, initrd flasher, admin API) before anything is written
version_added: 1.1.0
description:
  - Reads, and changes nothing but the workdir O(workdir), and that only once the station
    passes. Fails with every problem found, each with its fix, when the
    bundle O(l4t_dir) lacks one of O(tools); with O(initrd), when the station lacks what
    flashing O(concurrency) devices at once with NVIDIA's initrd flasher needs; with
    O(api_url), when the admin API does not answer from the station (the stations call it,
    not the controller). No credentials are sent, so an answer of 401 or 403 means reachable.
  - The workdir O(workdir), which holds every device's password (each C(device.conf) is owned
    by the image's user, uid 1000, a real person's account on most stations), is the run's
    user's alone, mode C(0700). A workdir that is a symbolic link, is not a directory, or is
    owned by another user is refused; so is one whose own entries (its top-level entries,
    C(ports/<port>), C(ports/<port>/Linux_for_Tegra), C(staging/Linux_for_Tegra),
    C(devices/<serial>) and its files, C(images/<group>), the files of C(logs), C(flash-slots)
    and C(reports)) include a symbolic link or another user's entry - the run follows no link
    it did not make, and the message names each such entry. A workdir open to group or others
    (mode bits in C(0077)) with none of these is closed to C(0700), with a warning. A workdir
    that does not exist is made, mode C(0700). In check mode, nothing is made or closed, and
    the result says it would be.
  - The NFS server (C(<station_root>/usr/sbin/exportfs), package C(nfs-kernel-server)), from
    which the device mounts its tree while it is flashed.
  - C(<station_root>/usr/sbin/service), C(<station_root>/usr/bin/udevadm) and
    C(<station_root>/usr/sbin/ip).
  - IPv6 on (C(<station_root>/proc/sys/net/ipv6/conf/all/disable_ipv6) is C(0)), since the
    station reaches the flashing initrd at C(fc00:1:1:<instance>::2).
  - Free disk under O(workdir) for the station's images. With O(image_mode=auto) or
    O(image_mode=shared), one image set and O(concurrency) copies of its C(system.img) per image
    group (one per board among the devices to flash), taken from the largest group the station has
    generated once there is one, else O(image_space_mb) per image set and a third of it per
    C(system.img); what the station's groups hold already counts. With O(image_mode=per_device),
    the images of two devices per flash slot (one generating while another flashes),
    O(image_space_mb) each.
  - With O(image_mode=shared), every device to flash whose images cannot be shared is refused,
    naming the device, why and the fix - its own staging rootfs (C(jetson_rootfs_dir)), a sparse
    APP image (C(--sparse) in O(extra_args)), an encrypted rootfs (C(ROOTFS_ENC=1) on the
    station), or a bundle whose APP image is compressed (L4T R38 and later).
  - NVIDIA's host udev rules in the bundle O(l4t_dir) (C(tools/kernel_flash/host_udev)), and
    its internal initrd flash script.
  - With O(devices), what only the station can tell of its devices, before any of them is
    written - a staging rootfs (C(jetson_rootfs_dir)) that is the station's root, inside the
    bundle, or the same directory as another device's once symbolic links are resolved; a
    O(workdir) inside the bundle; key files (C(jetson_pkc_key), C(jetson_sbk_key)) that are
    not readable files; a fuse configuration that is not a valid NVIDIA fuse XML, names fuses
    NVIDIA does not document or gives them other sizes, or does not fit the device's keys (the
    PublicKeyHash of C(jetson_pkc_key) as the bundle's C(tegrasign_v3.py) derives it, the key
    type in C(BootSecurityInfo), C(SecureBootKey) equal to C(jetson_sbk_key), an EKB in
    C(jetson_ekb_file) for C(OemK1)/C(OemK2); see M(azaion.jetson.l4t_fuse)); and, for devices whose pending phases need it (flash, or fuse
    for a device to be fused), no Jetson in recovery mode on the device's USB port, or one of
    another board than C(jetson_board) says.
author: Azaion engineering (@azaion)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - azaion.jetson.devices
  - azaion.jetson.admin_api.tls_content
options:
  pending_phases:
    description:
      - Device name -> the phases still to do for it (as RV(azaion.jetson.station_state#module:pending_phases)
        returns them). A device not named here has every phase to do.
    type: dict
    default: {}
  usb_sysfs_root:
    description:
      - Where the station's USB devices are in sysfs (C(jetson_usb_sysfs_root)); tests point it
        at a fake tree.
    type: path
    default: /sys/bus/usb/devices
  station_root:
    description:
      - The station's file system root; tests point it at a fake host root.
    type: path
    default: /
  workdir:
    description:
      - The station's working directory (C(jetson_workdir)), where the images are generated. It
        need not exist yet - it is made, mode C(0700), once the station passes (see
        O(make_workdir)).
    type: path
    required: true
  make_workdir:
    description:
      - Make the workdir, or close an open one that is safe to close, once the station passes.
        V(false) changes nothing - for a run over several stations, which makes every station's
        workdir only once all of them passed (the C(azaion.jetson.provision) playbook does), so a
        refused batch writes nothing anywhere.
    type: bool
    default: true
  l4t_dir:
    description:
      - The bundle's C(Linux_for_Tegra) directory on the station. Required with O(tools) or O(initrd).
    type: path
  concurrency:
    description:
      - How many devices the station flashes at once (C(jetson_flash_concurrency)).
    type: int
    default: 4
  image_space_mb:
    description:
      - Disk space one image set takes (a generation's images - the rootfs as a raw ext4 image,
        its sparse form and the APP tar, and the boot images), in MiB, until the station has
        generated one and its real size is known.
    type: int
    default: 40000
  image_mode:
    description:
      - The flash's O(azaion.jetson.station_flash#module:image_mode) (C(flash_image_mode)).
    type: str
    choices: [auto, shared, per_device]
    default: auto
  extra_args:
    description:
      - The flash's more options for NVIDIA's tool (C(flash_extra_args)), which tell whether its
        images can be shared.
    type: list
    elements: str
    default: []
  tools:
    description:
      - The bundle's tools the run needs, relative to O(l4t_dir), for example V(flash.sh) or
        V(tools/kernel_flash/l4t_initrd_flash.sh).
    type: list
    elements: str
    default: []
  initrd:
    description:
      - Check what NVIDIA's initrd flasher needs (NFS server, IPv6, udev, disk, its internal
        script and udev rules). V(false) checks O(tools) only.
    type: bool
    default: true
  api_url:
    description:
      - The admin API's base URL. When given, the station must get an answer from
        C(GET <api_url>/users) (any of 200, 401 or 403).
    type: str
  validate_certs:
    description: Verify the admin API's TLS certificate.
    type: bool
    default: true
  ca_path:
    description: The CA bundle that signed the admin API's certificate.
    type: path
  client_cert:
    description: The client certificate, for an admin API that requires mTLS.
    type: path
  client_key:
    description: The key of O(client_cert).
    type: path
notes:
  - The action plugin fills O(client_cert_content), O(client_key_content) and O(ca_content) from
    the controller, as for M(azaion.jetson.station_identity).
attributes:
  check_mode:
    support: full
    details:
      - Checks the same, and does not make or close the workdir; RV(ignore:changed) says whether it would.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
seealso:
  - module: azaion.jetson.l4t_flash
'''

EXAMPLES = r'''
- name: Check the station before the batch writes anything
  azaion.jetson.l4t_station_check:
    station_root: "{{ jetson_station_root | default('/') }}"
    workdir: "{{ jetson_workdir }}"
    l4t_dir: "{{ jetson_l4t_dir }}"
    concurrency: "{{ jetson_flash_concurrency | default(4) }}"
    tools: [flash.sh, tools/kernel_flash/l4t_initrd_flash.sh]
  delegate_to: "{{ jetson_station }}"
'''

RETURN = r'''
devices:
  description:
    - The problems of each device of O(devices), by name (an empty list for a device without
      any). Any problem fails the task - the batch must not start.
  returned: always
  type: dict
  sample: {jetson-0042: ['jetson-0042: no Jetson is in recovery mode on USB port 1-3 (jetson_usb_instance); put the device in recovery mode']}
problems:
  description: What the station lacks, each with its fix (empty when it is ready).
  returned: always
  type: list
  elements: str
  sample: ['IPv6 is off on the station (/proc/sys/net/ipv6/conf/all/disable_ipv6 is 1 or missing): ...']
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.azaion.jetson.plugins.module_utils._admin_api import AdminAPIClient, AdminAPIError, tls_content_argument_spec
from ansible_collections.azaion.jetson.plugins.module_utils._device_checks import file_problems, path_problems, usb_problems
from ansible_collections.azaion.jetson.plugins.module_utils._device_state import PHASES
from ansible_collections.azaion.jetson.plugins.module_utils._station_run import station_argument_spec
from ansible_collections.azaion.jetson.plugins.module_utils._station_host import (
    INTERNAL_SCRIPT,
    UDEV_RULES,
    UDEV_RULES_DIR,
    StationHost,
)
from ansible_collections.azaion.jetson.plugins.module_utils._workdir import (
    IMAGES,
    close_workdir,
    ensure_workdir,
    workdir_problems,
)
from ansible_collections.azaion.jetson.plugins.module_utils._image_group import (
    APP_SHARE_OF_IMAGE_SET,
    generated_sizes,
    tree_bytes,
    unshareable_format,
)
from ansible_collections.azaion.jetson.plugins.module_utils._usb import RECOVERY_PRODUCTS, board_of_product, recovery_devices

MEBIBYTE = 1024 * 1024


def admin_api_problems(params):
    """Why the admin API does not answer from here, if it does not (no credentials are sent)."""
    try:
        client = AdminAPIClient(params['api_url'], client_cert=params['client_cert'], client_key=params['client_key'],
                                ca_path=params['ca_path'], client_cert_content=params['client_cert_content'],
                                client_key_content=params['client_key_content'], ca_content=params['ca_content'],
                                validate_certs=params['validate_certs'], timeout=15,
                                retries=1, retry_backoff=0.5)
        client.request('GET', '/users', query={'searchEmail': 'azaion-batch-check'}, expected=(200, 401, 403))
    except AdminAPIError as exc:
        return ['the admin API does not answer from this station: %s' % exc]
    return []


def image_groups(devices, usb_sysfs_root):
    """The image groups the devices to flash are expected to make: one per board (the one
    given, else the one their USB product id tells; a device whose board is not known yet counts
    as a group of its own kind)."""
    in_recovery = recovery_devices(usb_sysfs_root, shared=True) if os.path.isdir(usb_sysfs_root) else {}
    boards = set()
    for device in devices:
        product = in_recovery.get(device.get('usb_instance'))
        known = board_of_product(product, device.get('board_identity') or {}) if product in RECOVERY_PRODUCTS else None
        boards.add(device.get('board') or known or 'unknown')
    return len(boards)


def image_space(params, devices, pending):
    """The disk the station's images need more, and what they are (for the message); with it,
    the problems of flash_image_mode shared (devices whose images cannot be shared)."""
    flashing = [device for device in devices if 'flash' in pending[device['name']]]
    image_set = params['image_space_mb'] * MEBIBYTE
    if params['image_mode'] == 'per_device':
        # Two trees per slot hold images at once: one generating, one flashing.
        return 2 * params['concurrency'] * image_set, 'the images of %d devices at once' % (2 * params['concurrency']), []
    problems, own = [], []
    shared_reason = unshareable_format(params['extra_args'], os.environ, params['l4t_dir'] or '')
    for device in flashing:
        reason = ('it has a staging rootfs of its own (jetson_rootfs_dir), which holds its device.conf'
                  if device.get('own_rootfs') else shared_reason)
        if reason:
            own.append(device)
            if params['image_mode'] == 'shared':
                problems.append('%s: flash_image_mode is shared, but its images cannot be shared: %s; fix that, or set'
                                ' flash_image_mode to auto (images of its own where they cannot be shared) or per_device'
                                % (device['name'], reason))
    groups = image_groups([device for device in flashing if device not in own], params['usb_sysfs_root'])
    sizes = generated_sizes(os.path.join(params['workdir'], IMAGES))
    # Before the station has generated a group, its system.img is taken as a share of an image set.
    group_set, app = sizes or (image_set, image_set // APP_SHARE_OF_IMAGE_SET)
    wanted = groups * (group_set + params['concurrency'] * app)
    # What the station's groups hold already counts: they are reused, or removed for the new ones.
    held = tree_bytes(os.path.join(params['workdir'], IMAGES))
    needed = max(wanted - held, 0) + min(len(own), params['concurrency']) * 2 * image_set
    what = ('the images of %d image group(s) (one image set and %d copies of system.img each%s)'
            % (groups, params['concurrency'], ', as generated' if sizes else ''))
    if own:
        what += ' and of %d device(s) with images of their own' % len(own)
    return needed, what, problems


def settle_workdir(module, workdir, closable):
    """Make the workdir when it is missing, or close it when ``closable`` (see workdir_problems);
    return whether it changed (would, in check mode). Only for a station that passed: a refused
    station is left as it was."""
    if closable:
        mode = os.lstat(workdir).st_mode & 0o777
        if not module.check_mode:
            close_workdir(workdir)
        module.warn("jetson_workdir %s was open to others (mode %04o) though it holds every device's password;"
                    " none of the run's own entries in it is a symbolic link or another user's, so it %s to mode 0700"
                    % (workdir, mode, 'would be closed' if module.check_mode else 'was closed'))
        return True
    if os.path.lexists(workdir):
        return False
    if not module.check_mode:
        try:
            ensure_workdir(workdir)
        except OSError as exc:
            module.fail_json(msg='cannot make jetson_workdir %s: %s; make its parent directory, or set jetson_workdir'
                                 ' to a directory the run can make' % (workdir, exc.strerror or exc), problems=[])
    return True


def main():
    module = AnsibleModule(
        argument_spec=station_argument_spec(
            pending_phases=dict(type='dict', default={}),
            usb_sysfs_root=dict(type='path', default='/sys/bus/usb/devices'),
            station_root=dict(type='path', default='/'),
            workdir=dict(type='path', required=True),
            make_workdir=dict(type='bool', default=True),
            l4t_dir=dict(type='path'),
            concurrency=dict(type='int', default=4),
            image_space_mb=dict(type='int', default=40000),
            image_mode=dict(type='str', choices=['auto', 'shared', 'per_device'], default='auto'),
            extra_args=dict(type='list', elements='str', default=[]),
            tools=dict(type='list', elements='str', default=[]),
            initrd=dict(type='bool', default=True),
            api_url=dict(type='str'),
            validate_certs=dict(type='bool', default=True),
            ca_path=dict(type='path'),
            client_cert=dict(type='path'),
            client_key=dict(type='path', no_log=False),
            **tls_content_argument_spec()
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params['concurrency'] < 1 or params['image_space_mb'] < 0:
        module.fail_json(msg='concurrency must be 1 or more and image_space_mb 0 or more', problems=[])
    if (params['tools'] or params['initrd']) and not params['l4t_dir']:
        module.fail_json(msg='l4t_dir is required to check tools or the initrd flasher', problems=[])
    devices = params['devices']
    pending = dict((device['name'], params['pending_phases'].get(device['name'], PHASES)) for device in devices)
    try:
        workdir_issues, closable = workdir_problems(params['workdir'])
    except OSError as exc:
        workdir_issues, closable = ['cannot read jetson_workdir %s: %s; make it readable by the run\'s user'
                                    % (params['workdir'], exc.strerror or exc)], False
    # An open workdir that is safe to close is not a problem: the check closes it.
    problems = (([] if closable else workdir_issues)
                + path_problems(devices, pending, params['l4t_dir'], params['workdir'])
                + file_problems(devices, pending, params['l4t_dir'])
                + usb_problems(devices, pending, params['usb_sysfs_root']))
    if params['api_url']:
        problems.extend(admin_api_problems(params))
    missing = [os.path.join(params['l4t_dir'], relpath) for relpath in params['tools']
               if not os.path.isfile(os.path.join(params['l4t_dir'], relpath))]
    if missing:
        problems.append('the L4T bundle %s is missing or incomplete (%s not found): set jetson_l4t_dir to its'
                        ' Linux_for_Tegra directory' % (params['l4t_dir'], ', '.join(missing)))
    elif params['l4t_dir'] and params['initrd']:
        host = StationHost(params['station_root'])
        needed, images, shared_problems = image_space(params, devices, pending)
        problems.extend(shared_problems)
        problems.extend(host.preflight_problems(params['workdir'], needed, images))
        for relpath in [INTERNAL_SCRIPT] + ['%s/%s' % (UDEV_RULES_DIR, name) for name in UDEV_RULES]:
            if not os.path.isfile(os.path.join(params['l4t_dir'], relpath)):
                problems.append('the bundle %s has no %s: give jetson_l4t_dir an L4T r35/r36 Linux_for_Tegra'
                                % (params['l4t_dir'], relpath))
    by_device = dict((device['name'], [problem for problem in problems
                                       if device['name'] in problem.split(': ', 1)[0].split(', ')])
                     for device in devices)
    if problems:
        module.fail_json(msg='the station is not ready: %s' % '; '.join(problems), problems=problems, devices=by_device)
    changed = False
    if params['make_workdir']:
        changed = settle_workdir(module, params['workdir'], closable)
    elif closable:
        module.warn("jetson_workdir %s is open to others (mode %04o) though it holds every device's password; none of"
                    " the run's own entries in it is a symbolic link or another user's, so the run closes it to mode"
                    " 0700 once every station passed" % (params['workdir'], os.lstat(params['workdir']).st_mode & 0o777))
    module.exit_json(changed=changed, problems=[], devices=by_device)


if __name__ == '__main__':
    main()
