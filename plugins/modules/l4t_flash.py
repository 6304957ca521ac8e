#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: l4t_flash
short_description: Flash a Jetson in recovery mode from its own Linux_for_Tegra working tree, many per station at once
version_added: 1.1.0
description:
  - Flashes the root file system of the working tree O(l4t_dir) (made by
    M(azaion.jetson.l4t_workspace), holding this device's C(etc/azaion/device.conf)) to the
    Jetson in recovery mode on the station's USB port O(usb_instance), with NVIDIA's initrd
    flasher (the default) or C(flash.sh), run from O(l4t_dir).
  - "With O(tool=initrd) it works the way NVIDIA's massflash does, one device per tree, because
    NVIDIA's scripts share host-wide state between all their runs on a station (device
    instances, NFS exports, udev rules, board probes). It generates the images in the tree with
    C(tools/kernel_flash/l4t_initrd_flash_internal.sh --no-flash --massflash <concurrency>) and
    the board identity in the environment (C(BOARDID), C(FAB), C(BOARDSKU), C(BOARDREV),
    C(CHIP_SKU), C(FUSELEVEL)), so that no board probe reaches another device and the images
    carry the module's own BPMP firmware, at most O(concurrency)
    generations at once and outside the flash slots. It then flashes in slot I(k) as device
    instance I(k) with C(l4t_initrd_flash_internal.sh --usb-instance <port> --device-instance <k>
    --flash-only <saved parameters>), so no two flashes in flight share an instance. The
    tree's exports are kept in C(<station_root>/etc/exports.d) while it flashes, a C(service)
    shim in the tree stops NVIDIA's NFS restart, and NVIDIA's host udev rules are installed once
    under the collection's names. NVIDIA's outer script C(l4t_initrd_flash.sh) is never run."
  - Every flash checks its outcome. When the tool reports success while this port's device is
    still in the flashing initrd or in recovery mode, the flash went to another device and
    this one fails. A failure names the cause found in the log (a lost NFS export, a device
    reset by a board probe, no USB network) and the fix.
  - The station is left clean after success, failure or timeout (no export of this flash, no
    host address of its device instance on a USB network interface, no held slot); what a
    killed run left is removed by the next flash on the station, and a tool whose module is
    killed gets SIGTERM.
  - Re-running is cheap. The image's identity (a SHA-256 fingerprint of the working tree's
    source identity, a digest of its device.conf, the board, its identity, the board config,
    the tool, the command and O(fingerprint_extra)) is kept in the device's state file
    O(state_file). When the last flash of this device succeeded with the same fingerprint,
    nothing is done and the USB bus is not even looked at (a flashed device has left recovery
    mode). Any change, such as a new device.conf, flashes again. Images already generated for
    this fingerprint (a failed flash) are not generated again; after a successful flash they are
    removed from the tree (tens of gigabytes, each with a copy of the device.conf).
  - The tool runs in its own process group with a time limit (O(timeout)); on timeout the whole
    group is stopped (SIGTERM, then SIGKILL). Its output goes to
    C(<log_dir>/<serial>-flash-<UTC time>.log). The outcome, timings, board, slot, log and any
    error are recorded in O(state_file) (never a secret). On failure the task fails with the
    device, the port, the cause, the log path and the log's last lines.
  - Cross-talk guard. With O(expected_email), the rootfs's device.conf must belong to this
    device, else nothing is flashed. The password in that file is never read into the result,
    the state or a message.
author: Azaion engineering (@azaion)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  l4t_dir:
    description:
      - The device's working tree (a C(Linux_for_Tegra) tree), on the station. The tool runs with
        this directory as its working directory and flashes its C(rootfs).
    type: path
    required: true
  usb_instance:
    description:
      - The USB port path of the device, C(<busnum>-<devpath>), such as V(1-3) or V(1-8.4)
        behind a hub; passed to the tool as C(--usb-instance).
    type: str
    required: true
  board:
    description:
      - The Jetson module. When omitted, it is detected from the USB product id of the device in
        recovery mode on O(usb_instance) (or taken from the last flash recorded in
        O(state_file)).
      - The USB product id C(0955:7023) is an AGX Orin 32GB, 64GB or Industrial, so a device on it
        is not flashed without O(board), unless O(board_identity) names its C(BOARDSKU). The table of
        boards, USB ids and board identities, with where each value comes from in NVIDIA's files,
        is C(docs/l4t-board-identity.md) in the collection's source.
      - When given, the device on the port must be this module, else nothing is flashed (a wrong
        device on the port, or a wrong inventory).
    type: str
    choices: [orin-nano-8gb, orin-nano-4gb, orin-nx-16gb, orin-nx-8gb, agx-orin-32gb, agx-orin-64gb,
              agx-orin-industrial]
  board_identity:
    description:
      - Overrides of the board identity given to image generation in the environment, keys
        C(BOARDID), C(FAB), C(BOARDSKU), C(BOARDREV), C(CHIP_SKU) and C(FUSELEVEL). The defaults
        come from the board, as in NVIDIA's table of C(tools/kernel_flash/README_initrd_flash.txt)
        (for example C(BOARDID=3767 FAB=300 BOARDSKU=0003 CHIP_SKU=00:00:00:D5
        FUSELEVEL=fuselevel_production) for an Orin Nano 8GB, without C(BOARDREV)); set them per
        device when the module label or C(chkbdinfo -C) says otherwise.
      - C(CHIP_SKU) picks the BPMP firmware of the images (C(FUSELEVEL) keeps NVIDIA's C(flash.sh)
        from reading it off the chip), written as C(chkbdinfo -C) prints it, such as
        V(00:00:00:D5).
      - Not used with O(tool=flash.sh), which talks to its own port only.
    type: dict
    default: {}
  board_config:
    description:
      - The board config of the tree to flash with, a C(.conf) name without the suffix.
      - Default, from the board, V(jetson-orin-nano-devkit) for the Orin Nano and Orin NX
        modules (as in L4T r36), V(jetson-agx-orin-devkit) for the AGX Orin 32GB and 64GB and
        V(jetson-agx-orin-devkit-industrial) for the AGX Orin Industrial.
    type: str
  tool:
    description:
      - V(initrd) uses NVIDIA's initrd flasher (C(tools/kernel_flash/l4t_initrd_flash_internal.sh))
        with NVIDIA's external-device (NVMe) options, the way to flash Orin Nano and NX modules.
      - V(flash.sh) runs C(./flash.sh --usb-instance <port> <board_config> <rootdev>); it uses
        only its own tree and port, so these flashes share no host state.
    type: str
    choices: [initrd, flash.sh]
    default: initrd
  l4t_release:
    description:
      - The L4T release family of the tree, which chooses the partition layouts of the initrd
        flash. V(r36) passes C(-c tools/kernel_flash/flash_l4t_t234_nvme.xml
        -p "-c bootloader/generic/cfg/flash_t234_qspi.xml"), V(r35) passes
        C(-c tools/kernel_flash/flash_l4t_external.xml
        -p "-c bootloader/t186ref/cfg/flash_t234_qspi.xml").
      - Not used with O(tool=flash.sh).
    type: str
    choices: [r36, r35]
    default: r36
  external_device:
    description:
      - The external storage the initrd flash writes the root file system to
        (C(--external-device)). Not used with O(tool=flash.sh).
    type: str
    default: nvme0n1p1
  rootdev:
    description:
      - The last argument of the tool, the root device.
      - Default V(internal) with O(tool=initrd) (as in NVIDIA's standard NVMe command) and
        V(nvme0n1p1) with O(tool=flash.sh).
    type: str
  rootfs_dir:
    description:
      - The device's own staging rootfs, when it is not C(<l4t_dir>/rootfs) (the inventory's
        C(jetson_rootfs_dir)). The cross-talk guard and the image fingerprint then read its
        device.conf.
      - With O(tool=initrd), C(<l4t_dir>/rootfs) is made a link to it before the images are
        generated, because NVIDIA's image script builds the NVMe image from the tree's own
        C(rootfs) whatever C(-R) says (r36.2). With O(tool=flash.sh) it is passed as C(-R).
    type: path
  extra_args:
    description:
      - More options for the tool, inserted before the board config (for example
        V(-u), V(/path/to/pkc.pem) for a PKC-fused device). Each item is one argument. With
        O(tool=initrd) they go to both the generation and the flash.
      - They are part of the image fingerprint; they must not hold a secret (key files are
        passed by path).
    type: list
    elements: str
    default: []
  timeout:
    description:
      - Seconds each tool run (image generation, flash) may take before it is stopped and the
        flash counted as failed.
    type: int
    default: 3600
  settle_timeout:
    description:
      - Seconds to wait, after the tool reported success, for this port's device to leave
        NVIDIA's flashing initrd (its USB network interface disappears when it reboots).
    type: int
    default: 60
  usb_sysfs_root:
    description:
      - Where the station's USB devices are listed (the recovery-mode scan reads
        C(idVendor), C(idProduct), C(busnum) and C(devpath) of each entry). Tests point it at a
        fake tree.
    type: path
    default: /sys/bus/usb/devices
  station_root:
    description:
      - The station's file system root for the host-wide state the initrd flash touches
        (C(etc/exports.d), C(etc/udev/rules.d), C(sys/class/net)) and the host programs run
        for it (C(usr/sbin/exportfs), C(usr/sbin/service), C(usr/bin/udevadm), C(usr/sbin/ip)).
        Tests point it at a fake host root.
    type: path
    default: /
  log_dir:
    description:
      - Directory of the flash logs on the station, created when missing.
    type: path
    required: true
  state_file:
    description:
      - The device's state file on the station (JSON); its C(flash) phase is read and written.
    type: path
    required: true
  serial:
    description:
      - The device's serial, for the log's name and the state file.
    type: str
    required: true
  expected_email:
    description:
      - The device's account email. When given, the rootfs's C(etc/azaion/device.conf) must
        hold it as C(AZAION_DEVICE_EMAIL), else the task fails without flashing (the tree holds
        another device's identity, or none).
    type: str
  fingerprint_extra:
    description:
      - More inputs of the image identity (for example the version of an application baked
        into the rootfs); a change flashes the device again.
    type: dict
  ekb_file:
    description:
      - The device's EKB image (C(jetson_ekb_file)), made with the OEM key (C(OemK1)) its fuses
        hold. It replaces the tree's C(bootloader/eks_t234.img), where NVIDIA's Orin board
        configurations take the EKB the flash writes to the EKS partition (in the tree only, a new
        file, never written through to the bundle). Its content is part of the image identity, so
        a new EKB flashes the device again.
    type: path
  force:
    description:
      - Flash even when the device's last flash succeeded with the same image.
    type: bool
    default: false
  concurrency:
    description:
      - How many devices this station flashes at once (the flash slots), across all Ansible
        processes that use the same O(slots_dir). With O(tool=initrd) it is also the number of
        device instances every tree is generated for (C(--massflash)) and the number of image
        generations at once, so at most NVIDIA's massflash limit, 10.
    type: int
    default: 4
  slots_dir:
    description:
      - Directory of the station's flash slot lock files (C(slot-<n>.lock), and
        C(generate-<n>.lock) for image generation), created when missing. Every flash of the
        station must use the same one.
    type: path
    required: true
  image_mode:
    description:
      - How the device's images are made (C(docs/l4t-app-image.md) of the collection's source).
      - V(auto) takes them from its image group when it can, and generates them for it alone
        otherwise, saying why in a warning and in RV(image_mode_reason). An image group is every
        device of the station with the same board identity, layout, keys, EKB, bundle and
        staging; NVIDIA's tool generates their images once, in C(<images_dir>/<group>), from a
        tree without a device.conf (C(--no-flash --massflash <concurrency>)). Each flash slot has
        its own copy of the group's APP image, and before each flash the copy gets the device's
        C(./etc/azaion/) and C(./etc/azaion/device.conf) after its last member (mode and numeric
        owner as in the device's rootfs), a new end-of-archive marker and its C(.sha1sum). After
        the flash the copy is the group's image again, so no device's password stays in it.
      - V(shared) refuses a device whose images cannot be shared (its own staging rootfs, an APP
        image that is sparse, compressed, encrypted, raw or a tar without a clean end).
      - V(per_device) generates every device's images in its own tree, as before; they are
        removed when its flash ends, failed or not.
      - Only with O(tool=initrd); C(flash.sh) makes its images as it flashes.
    type: str
    choices: [auto, shared, per_device]
    default: auto
  images_dir:
    description:
      - Directory of the station's image groups (C(<jetson_workdir>/images)), created mode 0700.
        Without it, every device's images are its own.
    type: path
attributes:
  check_mode:
    support: full
    details:
      - Never runs the tool and changes nothing on the station. A device missing from the USB
        bus is reported as a warning.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
notes:
  - Run it on the station that has the USB cable to the device (the device host itself is not
    reachable while in recovery mode), as root, as NVIDIA's tools need.
  - After a failed flash the device usually has to re-enter recovery mode (power-cycle with
    the REC button held) before a retry.
  - Nothing else may run NVIDIA's C(l4t_initrd_flash.sh) on the station while this module
    flashes, because its NFS restart and exit trap would take the exports of flashes in flight.
seealso:
  - module: azaion.jetson.l4t_workspace
  - module: azaion.jetson.device_conf
  - module: azaion.jetson.l4t_station_check
'''

EXAMPLES = r'''
- name: Flash the device from its port's working tree
  azaion.jetson.l4t_flash:
    l4t_dir: "{{ jetson_workdir }}/ports/{{ jetson_usb_instance }}/Linux_for_Tegra"
    usb_instance: "{{ jetson_usb_instance }}"
    serial: "{{ jetson_serial }}"
    expected_email: "{{ jetson_serial | azaion.jetson.device_email }}"
    log_dir: "{{ jetson_workdir }}/logs"
    state_file: "{{ jetson_workdir }}/devices/{{ jetson_serial }}/state.json"
    slots_dir: "{{ jetson_workdir }}/flash-slots"
    concurrency: "{{ jetson_flash_concurrency }}"
    station_root: "{{ jetson_station_root | default('/') }}"
  delegate_to: "{{ jetson_station }}"

- name: Flash an Orin NX 16GB whose module label says FAB 301
  azaion.jetson.l4t_flash:
    l4t_dir: /var/lib/azaion-jetson/ports/1-4/Linux_for_Tegra
    usb_instance: 1-4
    board: orin-nx-16gb
    board_identity:
      FAB: "301"
    serial: AZJN-0043
    log_dir: /var/lib/azaion-jetson/logs
    state_file: /var/lib/azaion-jetson/devices/AZJN-0043/state.json
    slots_dir: /var/lib/azaion-jetson/flash-slots

- name: Flash an Orin NX with flash.sh on an r35 tree, signed with the PKC key
  azaion.jetson.l4t_flash:
    l4t_dir: /var/lib/azaion-jetson/ports/1-8.4/Linux_for_Tegra
    usb_instance: 1-8.4
    board: orin-nx-16gb
    tool: flash.sh
    l4t_release: r35
    extra_args: [-u, /srv/azaion/keys/pkc.pem]
    serial: AZJN-0042
    log_dir: /var/lib/azaion-jetson/logs
    state_file: /var/lib/azaion-jetson/devices/AZJN-0042/state.json
    slots_dir: /var/lib/azaion-jetson/flash-slots
    timeout: 1800
'''

RETURN = r'''
board:
  description: The Jetson module flashed (given, detected from the USB product id, or recorded).
  returned: always
  type: str
  sample: orin-nano-8gb
board_config:
  description: The board config the tool was given.
  returned: always
  type: str
  sample: jetson-orin-nano-devkit
command:
  description:
    - The flash command, run in O(l4t_dir). It holds no secret. With O(tool=initrd), the
      device instance is the slot's (shown here as 0) and the saved parameters follow
      C(--flash-only).
  returned: always
  type: list
  elements: str
  sample:
    - tools/kernel_flash/l4t_initrd_flash_internal.sh
    - --usb-instance
    - 1-3
    - --device-instance
    - '0'
    - --flash-only
    - --external-device
    - nvme0n1p1
    - -c
    - tools/kernel_flash/flash_l4t_t234_nvme.xml
    - --network
    - usb0
    - jetson-orin-nano-devkit
    - internal
generate_command:
  description: With O(tool=initrd), the image generation command, run in O(l4t_dir) (null otherwise).
  returned: always
  type: list
  elements: str
  sample:
    - tools/kernel_flash/l4t_initrd_flash_internal.sh
    - --no-flash
    - --massflash
    - '4'
    - --external-device
    - nvme0n1p1
    - -c
    - tools/kernel_flash/flash_l4t_t234_nvme.xml
    - -p
    - -c bootloader/generic/cfg/flash_t234_qspi.xml
    - --network
    - usb0
    - jetson-orin-nano-devkit
    - internal
board_identity:
  description: With O(tool=initrd), the board identity given to image generation (null otherwise).
  returned: always
  type: dict
  sample: {BOARDID: '3767', FAB: '300', BOARDSKU: '0003', CHIP_SKU: '00:00:00:D5', FUSELEVEL: fuselevel_production}
generated:
  description: Whether images were generated in this run (false when the tree already held them).
  returned: always
  type: bool
  sample: true
log_path:
  description:
    - The log of this run's flash; when nothing was flashed, the log of the flash that put this
      image on the device (null in check mode).
  returned: always
  type: str
  sample: /var/lib/azaion-jetson/logs/AZJN-0042-flash-20250301T101500Z.log
seconds:
  description: How long the tool ran (0 when nothing was flashed).
  returned: always
  type: float
  sample: 312.4
slot_wait_seconds:
  description: How long the flash waited for a free slot (0 when nothing was flashed).
  returned: always
  type: float
  sample: 0.0
slot:
  description: The flash slot used, which is also the device instance of an initrd flash (null when nothing was flashed).
  returned: always
  type: int
  sample: 0
image_mode:
  description:
    - How this flash's images were made, V(shared) (its image group's, with its own APP image)
      or V(per_device); null when nothing was flashed.
  returned: always
  type: str
  sample: shared
image_mode_reason:
  description: Why O(image_mode=auto) gave the device images of its own (null otherwise).
  returned: always
  type: str
  sample: null
image_group:
  description: The image group whose images the device was flashed from (null when its own).
  returned: always
  type: str
  sample: 5be1c0a2e4d7f309
generate_seconds:
  description: How long this run's image generation took (null when it generated nothing).
  returned: always
  type: float
  sample: 301.7
prepare_seconds:
  description: How long making the device's own APP image from the group's took (its members and checksum).
  returned: always
  type: float
  sample: 0.02
flash_seconds:
  description: How long the flash itself took, after the wait for a slot.
  returned: always
  type: float
  sample: 298.2
app_copy:
  description: How the flash slot's copy of the group's APP image was made, V(reflink) or V(copy).
  returned: always
  type: str
  sample: reflink
fingerprint:
  description: The SHA-256 identity of the image (see the description).
  returned: always
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
skipped_reason:
  description: Why nothing was flashed, or null when the device was flashed (or would be).
  returned: always
  type: str
  sample: already flashed with this image
msg:
  description: What happened, for a person.
  returned: always
  type: str
  sample: flashed AZJN-0042 on USB port 1-3 (orin-nano-8gb, jetson-orin-nano-devkit) in 312.4 s
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.azaion.jetson.plugins.module_utils._flash import Flasher, flash_argument_spec


def main():
    module = AnsibleModule(argument_spec=flash_argument_spec(), supports_check_mode=True)
    Flasher(module).main()


if __name__ == '__main__':
    main()
