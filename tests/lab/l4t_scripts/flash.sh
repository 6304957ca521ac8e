#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# flash.sh: the lab's stand-in for NVIDIA's Linux_for_Tegra/flash.sh (see lab_common.sh).
#
# Like the real one it builds bootloader/system.img from the rootfs IN PLACE, rewrites
# bootloader/flashcmd.txt in place, and writes what system.img holds to the device on the
# selected USB port; the device then leaves recovery mode. A second flash in the same tree is
# detected and recorded instead of silently corrupting the first.
#
# flash.sh alone shares no host state with other runs (its own tree, its own USB port), with one
# exception modelled here: run with --no-flash and without --usb-instance, it probes the board
# like the real one (flash.sh: get_fuse_level unless FUSELEVEL is set, get_board_version - "dump
# eeprom; reboot recovery" - unless FAB is set) on the FIRST Jetson in recovery mode on the
# station, whichever port that is (see lab_board_probe in lab_common.sh).
#
# A flash builds the images for the module's chip as the real one does: the BPMP firmware of
# CHIP_SKU, else of the chip it reads from the device on --usb-instance (only without FUSELEVEL),
# else of the board config's DEFAULT_CHIP_SKU; signed with -u, encrypted with -v. A device whose
# fuses reject them, or whose chip needs other firmware, is not flashed ("images and the chip" in
# lab_common.sh).
set -euo pipefail

LAB_TOOL=flash.sh
LAB_TREE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lab_common.sh
source "${LAB_TREE}/lab_common.sh"

LAB_USAGE='Usage: sudo ./flash.sh [options] <target_board> <rootdev>
  <target_board>  a board config of this tree without ".conf", e.g. jetson-orin-nano-devkit
  <rootdev>       internal, external, mmcblk0p1, nvme0n1p1, sda1...
  options:
    --usb-instance <path>  USB port path of the device (e.g. 1-3, 1-8.4)
    -r                     reuse the existing bootloader/system.img
    --no-flash             build the images only, do not flash
    --no-systemimg         do not build or flash the root filesystem image
    -R <rootfs_dir>        the root filesystem to use (default: rootfs/)
    -k <partition>         flash one partition only (e.g. APP)
    -c <cfgfile>           partition layout file
    -S <size>              root filesystem size (e.g. 14GiB)
    -u <pkc.pem>           PKC key of a fused device
    -v <sbk.key>           SBK key of a fused device'

lab_begin "$@"
lab_parse_flash_options "$@"
((${#LAB_POSITIONALS[@]} == 2)) || lab_bad_usage "expected <target_board> <rootdev>, got ${#LAB_POSITIONALS[@]} argument(s)"
lab_check_board "${LAB_POSITIONALS[0]}"
ROOTDEV=${LAB_POSITIONALS[1]}
[[ ${ROOTDEV} =~ ^[A-Za-z0-9_.:-]+$ ]] || lab_bad_usage "invalid rootdev ${ROOTDEV}"

SYSTEM_IMG="${LAB_TREE}/bootloader/system.img"
FLASHCMD="${LAB_TREE}/bootloader/flashcmd.txt"
[[ -d "${LAB_TREE}/bootloader" ]] || lab_fail "Error: ${LAB_TREE}/bootloader is missing."
lab_lock_tree "${FLASH_USB_INSTANCE}"

# Which partitions this run writes: all of them, or only the one named by -k.
WRITES_ROOTFS=1
if ((FLASH_NO_SYSTEMIMG)) || [[ -n ${FLASH_PARTITION} && ${FLASH_PARTITION} != APP ]]; then
    WRITES_ROOTFS=0
fi

build_images() {
    if ((WRITES_ROOTFS)); then
        if ((FLASH_REUSE)); then
            [[ -f ${SYSTEM_IMG} ]] || lab_fail "Error: ${SYSTEM_IMG} is not found: run without -r first."
            lab_say "Reusing existing system.img..."
        else
            lab_build_image "${FLASH_ROOTFS}" "${SYSTEM_IMG}"
        fi
    fi
    printf './tegraflash.py --chip 0x23 --bl uefi_jetson_with_dtb.bin --cfg flash.xml --board %s --rootdev %s --instance %s --cmd "flash; reboot"\n' \
        "${LAB_BOARD}" "${ROOTDEV}" "${LAB_PORT:-none}" | lab_rewrite_in_place "${FLASHCMD}"
}

if ((FLASH_NO_FLASH)); then
    if [[ -z ${FLASH_USB_INSTANCE} && -z ${FAB:-} ]]; then
        lab_board_probe
    fi
    LAB_PORT=''
    build_images
    lab_say "*** no-flash flag enabled. Exiting now... ***"
    exit 0
fi

lab_pick_device "${FLASH_USB_INSTANCE}"
lab_check_board_product
lab_check_keys "${FLASH_PKC}" "${FLASH_SBK}" -u -v
lab_begin_flash_run
build_images
lab_planted_flash_failure
CHIP=${CHIP_SKU:-}
if [[ -z ${CHIP} && -z ${FUSELEVEL:-} ]]; then
    lab_device_chip_sku "${LAB_PORT}"
    CHIP=${REPLY}
fi
lab_image_identity "${LAB_BOARD}" "${CHIP}" "${FLASH_PKC}" "${FLASH_SBK}" "${FUSELEVEL:-fuselevel_production}" "${FAB:-}"
lab_check_boot "${LAB_BOARD}" "${LAB_IMAGE_BPMP}" "${LAB_IMAGE_PKC_HASH}" "${LAB_IMAGE_SBK_DIGEST}"
if [[ -n ${LAB_BOOT_HANG} ]]; then
    lab_boot_hangs
fi
lab_say "*** Flashing target device started. ***"
lab_sleep "${LAB_FLASH_SECONDS}"
if ((WRITES_ROOTFS)); then
    image_note=built
    if ((FLASH_REUSE)); then image_note=reused; fi
    # tegraflash.py writes bootloader/system.img to APP as it is, not through flash.cfg and
    # do_write_APP (that is the initrd flash's way): the lab's tar stands in for the ext4 image.
    lab_write_storage "${SYSTEM_IMG}" "${ROOTDEV}" "${image_note}" ||
        lab_fail "ERROR: ${SYSTEM_IMG} is not a valid system image."
else
    lab_write_meta "${ROOTDEV}" not-written
fi
lab_device_leaves_recovery
lab_say "*** The target generic has been flashed successfully. ***"
lab_say "Reset the board to boot from internal eMMC."
