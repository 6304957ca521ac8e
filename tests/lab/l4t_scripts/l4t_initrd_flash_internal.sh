#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# l4t_initrd_flash_internal.sh: the lab's stand-in for NVIDIA's
# tools/kernel_flash/l4t_initrd_flash_internal.sh (r36.2; public copy: GitHub
# johnnynunez/Linux_for_Tegra, with l4t_initrd_flash.func and l4t_network_flash.func beside it).
# Our own model of what it shares with every other run on the station, not NVIDIA's code:
#
# * Options: parse_param (l4t_initrd_flash.func) is getopts-style: it stops at the first
#   non-option, and the board and root device are the last two arguments.
# * check_prerequisite -> network_prerequisite (l4t_network_flash.func), on EVERY run, image
#   generation included (--network defaults to usb0): no exportfs on the station fails; then
#   "service nfs-kernel-server restart" (every runtime export on the station vanishes); then
#   enable_nfs_for_folder exports this tree's rootfs and tools/kernel_flash at runtime to
#   [fc00:1:1::/48]. The script puts its own tools/kernel_flash/bin first on PATH, so a
#   "service" program there is the one it runs (a caller can stop the restart that way).
# * Generation (without --flash-only): flash.sh runs up to three times without --usb-instance,
#   each time probing the FIRST Jetson in recovery mode on the station unless FUSELEVEL and FAB
#   are set (see lab_board_probe); generate_flash_package builds the images (in r36.2 a -R in -p
#   does not reach the external image: it is always made from the tree's rootfs/, following a
#   symlink) and package_images puts each APP image, an uncompressed tar, with its .sha1sum
#   and its flash.cfg line into images/<internal|external>/ (package_app_image);
#   generate_rcm_bootcmd saves the flash parameters to initrdflashparam.txt (the -c value in
#   literal double quotes). The images carry the BPMP firmware flash.sh picks from the
#   chip SKU (CHIP_SKU, else the chip of the first device in recovery when FUSELEVEL is unset,
#   else the board config's DEFAULT_CHIP_SKU) and are signed / encrypted with -u / -v: the
#   images record (images/lab_identity) says what they were made for; generate_flash_initrd writes bootloader/boot<i>.img and
#   initrdflashimgmap.txt for i in 0..N-1 (N = get_max_flash: 1 without --massflash); package()
#   copies rootfs and tools/kernel_flash into mfi_<board>/ and tars it with --massflash.
# * Flash (--flash-only, or without --no-flash): boot_initrd RCM-boots the device on
#   --usb-instance with bootloader/boot<K>.img, K = --device-instance (default 0). The device then
#   runs the flashing initrd and brings up the gadget RNDIS+L4T<K>; wait_for_booting takes the
#   FIRST interface in /sys/class/net matching RNDIS+L4T<K>, which is another port's device when
#   two runs use the same instance; ping_device adds fc00:1:1:K::1/64 to it; the device mounts
#   this tree over NFS and writes THIS run's image, the APP image flash.cfg names in
#   images/<internal|external>/ (do_write_APP of l4t_flash_from_kernel.sh: lab_write_device),
#   never the tree's rootfs as it is now; then it reboots. A device whose fuses reject
#   the images' signature or encryption fails the RCM boot; one whose chip needs other BPMP
#   firmware hangs after it, and no initrd comes up ("images and the chip" in lab_common.sh).
#
# Image generation rewrites the tree's files IN PLACE, like the real one, so a hard-linked clone
# writes through. No tree lock here: NVIDIA's massflash runs one of these per device in one tree.
set -euo pipefail

LAB_TOOL=l4t_initrd_flash_internal.sh
LAB_TREE=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
# shellcheck source=lab_common.sh
source "${LAB_TREE}/lab_common.sh"

LAB_USAGE='Usage: ./tools/kernel_flash/l4t_initrd_flash_internal.sh [options] <target_board> <rootdev>
  (run by l4t_initrd_flash.sh; options as l4t_initrd_flash.sh, plus:)
    --device-instance <K>     the flashing initrd to boot: bootloader/boot<K>.img (default 0)
  Parsing stops at the first argument that is not an option; the last two are the board and
  the root device.'

lab_begin "$@"
lab_parse_initrd_options "$@"
lab_require_host_root

KERNEL_FLASH="${LAB_TREE}/tools/kernel_flash"
IMAGES="${KERNEL_FLASH}/images"
PARAM_FILE="${KERNEL_FLASH}/initrdflashparam.txt"
IMG_MAP="${KERNEL_FLASH}/initrdflashimgmap.txt"
IDENTITY="${IMAGES}/lab_identity"
LAB_STATION_PATH=("${KERNEL_FLASH}/bin" "${LAB_HOST_ROOT}/usr/sbin" "${LAB_HOST_ROOT}/usr/bin")
export PATH="${KERNEL_FLASH}/bin:${LAB_HOST_ROOT}/usr/sbin:${LAB_HOST_ROOT}/usr/bin:${PATH}"
LAB_RUN_INSTANCE=${INITRD_DEVICE_INSTANCE}
LAB_RUN_USB_INSTANCE=${INITRD_USB_INSTANCE}

if ((INITRD_FLASH_ONLY)); then
    # The flash uses the images generated before; the board only named their config then.
    LAB_BOARD=${INITRD_BOARD}
else
    lab_check_board "${INITRD_BOARD}"
fi

# --- check_prerequisite / network_prerequisite -------------------------------------------------

network_prerequisite() {
    local client=[${LAB_FLASH_NETWORK}]
    if ! lab_station_command exportfs; then
        lab_fail 'ERROR nfs-kernel-server not found! To install - please run:  "sudo apt-get install nfs-kernel-server"'
    fi
    lab_station_run service nfs-kernel-server restart
    if [[ ${INITRD_NETWORK} == eth0:* ]]; then
        IFS=: read -r _ client _ <<<"${INITRD_NETWORK}"
    fi
    lab_station_run exportfs -o "${LAB_NFS_PERMISSION}" "${client}:${LAB_TREE}/rootfs"
    lab_station_run exportfs -o "${LAB_NFS_PERMISSION}" "${client}:${KERNEL_FLASH}"
}

# --- generation ----------------------------------------------------------------------------------

generate() {
    local round rounds=2 sku fuselevel index max line
    lab_say "Step 1: Generate flash packages"
    lab_sleep "${LAB_GENERATE_SECONDS}"

    # flash.sh for the internal images, for the external ones, and for the RCM boot command.
    [[ -z ${INITRD_EXTERNAL_DEVICE} ]] || rounds=3
    LAB_PROBED_SKU=''
    for ((round = 1; round <= rounds; round++)); do
        lab_board_probe
    done
    lab_chip_probe
    sku=${BOARDSKU:-${LAB_PROBED_SKU}}
    fuselevel=${FUSELEVEL:-fuselevel_production}
    # flash.sh's process_chip_sku_version, and the signing and encryption of the images.
    lab_image_identity "${LAB_BOARD}" "${CHIP_SKU:-${LAB_PROBED_CHIP_SKU}}" "${INITRD_PKC}" "${INITRD_SBK}" \
        "${fuselevel}" "${FAB:-}"

    mkdir -p "${IMAGES}/internal" "${IMAGES}/external"
    lab_build_image "${FLASH_ROOTFS}" "${LAB_TREE}/bootloader/system.img"
    printf 'board=%s rootdev=%s external=%s config=%s\n' "${LAB_BOARD}" "${INITRD_ROOTDEV}" \
        "${INITRD_EXTERNAL_DEVICE}" "${INITRD_CONFIG}" | lab_rewrite_in_place "${IMAGES}/internal/flash.idx"
    package_app_image "${FLASH_ROOTFS}" internal
    if [[ -n ${INITRD_EXTERNAL_DEVICE} ]]; then
        # r36.2: the -p options (a -R among them) reach the external image only with
        # --external-only; the NVMe image is made from the tree's own rootfs/.
        package_app_image "${LAB_TREE}/rootfs" external
    fi
    {
        printf 'board=%s\nrootdev=%s\nexternal_device=%s\n' "${LAB_BOARD}" "${INITRD_ROOTDEV}" "${INITRD_EXTERNAL_DEVICE}"
        printf 'sku=%s\nfuselevel=%s\nboardid=%s\nfab=%s\nboardrev=%s\n' "${sku}" "${fuselevel}" \
            "${BOARDID:-}" "${FAB:-}" "${BOARDREV:-}"
        printf 'pkc=%s\nsbk=%s\nprobed=%s\n' "${INITRD_PKC:+1}" "${INITRD_SBK:+1}" "${LAB_PROBED_PORT:-}"
        printf 'chip_sku=%s\nbpmp=%s\npkc_hash=%s\nsbk_digest=%s\n' "${LAB_IMAGE_CHIP_SKU}" "${LAB_IMAGE_BPMP}" \
            "${LAB_IMAGE_PKC_HASH}" "${LAB_IMAGE_SBK_DIGEST}"
    } | lab_rewrite_in_place "${IDENTITY}"

    # generate_rcm_bootcmd: the saved parameters, -c in literal double quotes.
    line=''
    if [[ -n ${INITRD_EXTERNAL_DEVICE} ]]; then
        line+="--external-device ${INITRD_EXTERNAL_DEVICE} -c \"${INITRD_CONFIG}\" "
        [[ -z ${INITRD_SIZE} ]] || line+="-S ${INITRD_SIZE} "
    fi
    [[ -z ${INITRD_PARTITION} ]] || line+="-k ${INITRD_PARTITION} "
    line+="--network ${INITRD_NETWORK} ${LAB_BOARD} ${INITRD_ROOTDEV}"
    printf '%s\n' "${line}" | lab_rewrite_in_place "${PARAM_FILE}"
    lab_say "Save initrd flashing command parameters to ${PARAM_FILE}"

    # generate_flash_initrd for every device instance this tree can flash.
    lab_max_massflash "${LAB_BOARD}"
    max=${REPLY}
    rm -f "${IMG_MAP}"
    for ((index = 0; index < max; index++)); do
        printf 'lab flashing initrd\ninstance=%s\nboard=%s\nsku=%s\nbpmp=%s\n' "${index}" "${LAB_BOARD}" "${sku}" \
            "${LAB_IMAGE_BPMP}" |
            lab_rewrite_in_place "${LAB_TREE}/bootloader/boot${index}.img"
        printf 'flashimg%s=boot%s.img\n' "${index}" "${index}" >>"${IMG_MAP}"
    done
    if ((INITRD_MASSFLASH)); then
        package
    fi
}

# package_images of NVIDIA's r36.2 tools/kernel_flash/l4t_create_images_for_kernel_flash.sh
# (public copy: github.com/johnnynunez/Linux_for_Tegra), for the APP partition: its image in
# images/<internal|external>/ is an uncompressed tar of the rootfs ("tar -cpf system.img
# --numeric-owner ... -C <the mounted system.img.raw> ."; the lab tars the rootfs directory
# the raw image would be made from), then "sha1sum system.img | cut -f 1 -d ' ' >
# system.img.sha1sum", then APP=system.img (APP_ext=system.img for the external device) and,
# after the partition loop, external_device= and CHIPID= in that directory's flash.cfg. The real
# one starts from an emptied images/ and appends; the lab rewrites each file IN PLACE (GNU tar
# -c truncates an existing archive, keeping its inode), so a hard-linked clone writes through.
package_app_image() {  # <rootfs dir> <internal|external>
    local dest_dir="${IMAGES}/$2" var=APP chipid
    if [[ $2 == external ]]; then var=APP_ext; fi
    [[ -d $1 ]] || lab_fail "Error: rootfs directory $1 does not exist."
    lab_say "Copying APP image into ${dest_dir}/system.img"
    tar -cpf "${dest_dir}/system.img" --numeric-owner -C "$1" . ||
        lab_fail "Error: failed to relocate images to ${IMAGES}"
    sha1sum "${dest_dir}/system.img" | cut -f 1 -d ' ' | lab_rewrite_in_place "${dest_dir}/system.img.sha1sum"
    chipid=$(grep -m1 '^CHIPID=' "${LAB_TREE}/${LAB_BOARD}.conf" || true)
    chipid=${chipid#CHIPID=}
    chipid=${chipid//[\";[:space:]]/}
    printf '%s=system.img\nexternal_device=%s\nCHIPID=%s\n' "${var}" "${INITRD_EXTERNAL_DEVICE}" "${chipid}" |
        lab_rewrite_in_place "${dest_dir}/flash.cfg"
}

# package(): real copies, so every device.conf of the rootfs lies here again, and in the tarball.
package() {
    local work="${LAB_TREE}/mfi_${LAB_BOARD}"
    rm -rf "${work}"
    mkdir -p "${work}/tools/kernel_flash" "${work}/bootloader"
    cp -a "${KERNEL_FLASH}"/* "${work}/tools/kernel_flash/"
    cp "${LAB_TREE}/${LAB_BOARD}.conf" "${work}/"
    cp "${LAB_TREE}"/bootloader/boot*.img "${LAB_TREE}/bootloader/flashcmd.txt" "${work}/bootloader/"
    cp -a "${LAB_TREE}/rootfs" "${work}/"
    tar -zcf "${LAB_TREE}/mfi_${LAB_BOARD}.tar.gz" -C "${LAB_TREE}" "./mfi_${LAB_BOARD}"
    lab_say "Massflash package is generated at ${LAB_TREE}/mfi_${LAB_BOARD}.tar.gz"
}

# --- flash ---------------------------------------------------------------------------------------

declare -A IDENT=()
read_identity() {
    local key value
    [[ -f ${IDENTITY} && -f ${IMG_MAP} ]] ||
        lab_fail "Error: ${IMG_MAP} is not found: generate the flash images first (--no-flash)."
    while IFS='=' read -r key value; do
        [[ -n ${key} ]] && IDENT[${key}]=${value}
    done <"${IDENTITY}"
    LAB_BOARD=${IDENT[board]}
}

# The boot image and the SDRAM configuration in it were made for one module (BOARDSKU): booting
# it on a module that needs another one fails.
check_module() {
    local product=${LAB_DEVICE_PRODUCT[${LAB_PORT}]} wanted
    lab_module_skus "${LAB_PORT}"
    wanted=${REPLY}
    if [[ -z ${IDENT[sku]} ]]; then
        lab_fail "Error: board mismatch: the flash images were generated without a BOARDSKU (FAB was given, the EEPROM not read), so they fit no module for sure; the device at ${LAB_PORT} is 0955:${product}."
    fi
    if [[ -n ${wanted} && " ${wanted} " != *" ${IDENT[sku]} "* ]]; then
        lab_fail "Error: board mismatch: the flash images were generated for BOARDSKU ${IDENT[sku]}, the module at ${LAB_PORT} (0955:${product}) needs ${wanted// / or }."
    fi
}

flash() {
    local instance=${INITRD_DEVICE_INSTANCE} location=internal address device
    read_identity
    if ! grep -q "^flashimg${instance}=" "${IMG_MAP}" || [[ ! -f "${LAB_TREE}/bootloader/boot${instance}.img" ]]; then
        lab_fail "Error: bootloader/boot${instance}.img is not found: this tree's flash images were generated for $(grep -c '^flashimg' "${IMG_MAP}") device instance(s); generate them with --massflash <N>, N > ${instance}, to flash device instance ${instance}."
    fi
    # The APP image is looked for on the device, by do_write_APP (lab_write_device), after the
    # boot: a missing one fails the flash there.
    if [[ -n ${IDENT[external_device]} ]]; then
        location=external
    fi
    mkdir -p "${LAB_TREE}/temp_initrdflash/bootloader${instance}"

    lab_say "Step 3: Boot the device with flash initrd image"
    if [[ -n ${INITRD_USB_INSTANCE} ]]; then
        lab_pick_device "${INITRD_USB_INSTANCE}"
        lab_check_board_product
        check_module
        lab_begin_flash_run
        lab_planted_flash_failure
        # The images were signed and encrypted (or not) when they were generated: the flash asks
        # for no key, and a fused device takes or rejects them as they are.
        lab_check_boot "${LAB_BOARD}" "${IDENT[bpmp]:-}" "${IDENT[pkc_hash]:-}" "${IDENT[sbk_digest]:-}"
        lab_say "Waiting for target to boot-up..."
        lab_rcm_boot
    else
        # boot_initrd boots nothing without --usb-instance: the run waits for whatever device
        # brings up its instance's gadget.
        lab_say "Waiting for target to boot-up..."
    fi

    lab_say "Step 4: Start the flashing process"
    if ! lab_find_gadget "${instance}"; then
        lab_fail "Timeout"
    fi
    device=${LAB_GADGET_PORT}
    if [[ -z ${LAB_RUN_ID} ]]; then
        LAB_PORT=''
        lab_begin_flash_run
    fi
    lab_add_address "${LAB_GADGET}" "fc00:1:1:${instance}::1/64"
    address="fc00:1:1:${instance}::2"
    if ! lab_host_rule_installed || [[ $(<"${LAB_HOST_ROOT}/proc/sys/net/ipv6/conf/all/disable_ipv6") != 0 ]]; then
        lab_fail "Waiting for device to expose ssh ......Timeout"
    fi
    lab_say "Waiting for device to expose ssh ...Run command: flash on ${address}"
    lab_flash_over_nfs "${address}" "${LAB_FLASH_SECONDS}"

    LAB_PORT=${device}
    if [[ -n ${INITRD_PARTITION} && ${INITRD_PARTITION} != APP ]]; then
        lab_write_meta "${INITRD_ROOTDEV}" not-written
    else
        lab_write_device "${IMAGES}" "${location}" "${IDENT[external_device]:-${INITRD_ROOTDEV}}" initrd
    fi
    lab_say "Flash is successful"
    lab_say "Reboot target"
    lab_device_reboots "${device}"
}

network_prerequisite
if ((!INITRD_FLASH_ONLY)); then
    generate
fi
if ((!INITRD_NO_FLASH)); then
    flash
fi
lab_say "Success"
lab_say "Cleaning up..."
