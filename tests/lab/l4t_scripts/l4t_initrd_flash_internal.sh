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
#   symlink) and package_images puts the image of each rootfs partition into
#   images/<internal|external>/ with its flash.idx row, and for APP and APP_b its .sha1sum and
#   flash.cfg line (package_images): an uncompressed tar; the sparse image with --sparse; a zstd
#   tar (--sparse: <name>.zst) when the tree's nv_tegra_release says R38; with ROOTFS_AB=1 a
#   second one, APP_b (system.img_b); with ROOTFS_ENC=1 (key: -i) the boot partition as APP
#   (system_boot.img) and the rootfs as APP_ENC, an encrypted sparse image bound to the probed
#   chip (package_enc_image). LAB_APP_TAR_TRUNCATED=1 leaves a tar cut short (cut_tar);
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
#   this tree over NFS and writes THIS run's images, as it sees them through the mount (a
#   symbolic link out of images/ does not resolve there): the ones flash.idx and flash.cfg name
#   in images/<internal|external>/ (write_to_storage and do_write_APP of
#   l4t_flash_from_kernel.sh: lab_write_device), never the tree's rootfs as it is now; then it
#   reboots. A device whose fuses reject the images' signature or encryption fails the RCM boot;
#   one whose chip needs other BPMP firmware hangs after it, and no initrd comes up ("images and
#   the chip" in lab_common.sh).
#
# Image generation rewrites the tree's files IN PLACE, like the real one, so a hard-linked clone
# writes through. No tree lock here: NVIDIA's massflash runs one of these per device in one tree.
set -euo pipefail

LAB_TOOL=l4t_initrd_flash_internal.sh
LAB_TREE=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
# shellcheck source=lab_common.sh
source "${LAB_TREE}/lab_common.sh"

LAB_USAGE='Usage: ./tools/kernel_flash/l4t_initrd_flash_internal.sh [options] <target_board> <rootdev>
  (run by l4t_initrd_flash.sh; options as l4t_initrd_flash.sh, --sparse and -i among them, plus:)
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
    lab_l4t_major
    LAB_MAJOR=${REPLY}
    enc_prepare
    lab_build_image "${FLASH_ROOTFS}" "${LAB_TREE}/bootloader/system.img"
    package_images "${FLASH_ROOTFS}" internal
    if [[ -n ${INITRD_EXTERNAL_DEVICE} ]]; then
        # r36.2: the -p options (a -R among them) reach the external image only with
        # --external-only; the NVMe image is made from the tree's own rootfs/.
        package_images "${LAB_TREE}/rootfs" external
    fi
    {
        printf 'board=%s\nrootdev=%s\nexternal_device=%s\n' "${LAB_BOARD}" "${INITRD_ROOTDEV}" "${INITRD_EXTERNAL_DEVICE}"
        printf 'sku=%s\nfuselevel=%s\nboardid=%s\nfab=%s\nboardrev=%s\n' "${sku}" "${fuselevel}" \
            "${BOARDID:-}" "${FAB:-}" "${BOARDREV:-}"
        printf 'pkc=%s\nsbk=%s\nprobed=%s\n' "${INITRD_PKC:+1}" "${INITRD_SBK:+1}" "${LAB_PROBED_PORT:-}"
        printf 'chip_sku=%s\nbpmp=%s\npkc_hash=%s\nsbk_digest=%s\n' "${LAB_IMAGE_CHIP_SKU}" "${LAB_IMAGE_BPMP}" \
            "${LAB_IMAGE_PKC_HASH}" "${LAB_IMAGE_SBK_DIGEST}"
        printf 'release=R%s\nsparse=%s\nrootfs_ab=%s\nrootfs_enc=%s\nenc_ecid=%s\n' "${LAB_MAJOR}" "${INITRD_SPARSE}" \
            "${ROOTFS_AB:-}" "${ROOTFS_ENC:-}" "${ENC_ECID}"
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

# --- package_images ------------------------------------------------------------------------------

# The rootfs partitions of one storage device and their images' names (each one's <filename> in
# the partition layout), into LAYOUT_PARTS and LAYOUT_FILES, as NVIDIA's r36.2 flash.sh, board
# configs and layouts have them (public copy: github.com/johnnynunez/Linux_for_Tegra):
#   internal: the layout the board config picks with ROOTFS_AB and ROOTFS_ENC
#     (p3737-0000-p3701-0000.conf.common: EMMC_CFG=flash_t234_qspi_sdmmc.xml, _rootfs_ab.xml,
#     _enc_rfs.xml or _enc_rootfs_ab.xml; p3767.conf.common sets rootfs_ab and disk_enc_enable):
#     APP (<filename> APPFILE, which flash.sh's APP_TAG "s/APPFILE/system.img/" makes system.img)
#     and with ROOTFS_AB=1 APP_b (APPFILE_b: system.img_b, the "${localsysfile}_b" create_fsimg
#     builds); with ROOTFS_ENC=1 APP is the boot partition (system_boot.img, APP_b
#     system_boot.img_b) and the rootfs is APP_ENC (system_root_encrypted.img, APP_ENC_b
#     system_root_encrypted.img_b);
#   external: the partitions of the -c layout named APP, APP_b (with ROOTFS_AB=1), APP_ENC and
#     APP_ENC_b (with ROOTFS_ENC=1), APPFILE read as system.img. NVIDIA's flash_l4t_t234_nvme.xml
#     has APP alone; flash_l4t_t234_nvme_rootfs_ab.xml, _rootfs_enc.xml and _rootfs_ab_enc.xml
#     the others. ROOTFS_ENC=1 with a layout without APP_ENC fails: flash.sh has no file name to
#     build the encrypted rootfs under.
app_layout() {  # <internal|external>
    local content chunk name file
    local part_re='<partition[[:space:]][^>]*name="(APP|APP_b|APP_ENC|APP_ENC_b)"'
    local file_re='<filename>[[:space:]]*([^[:space:]<]+)'
    LAYOUT_PARTS=() LAYOUT_FILES=()
    if [[ $1 == internal ]]; then
        if [[ ${ROOTFS_ENC:-} == 1 ]]; then
            LAYOUT_PARTS=(APP) LAYOUT_FILES=(system_boot.img)
            if [[ ${ROOTFS_AB:-} == 1 ]]; then LAYOUT_PARTS+=(APP_b) LAYOUT_FILES+=(system_boot.img_b); fi
            LAYOUT_PARTS+=(APP_ENC) LAYOUT_FILES+=(system_root_encrypted.img)
            if [[ ${ROOTFS_AB:-} == 1 ]]; then
                LAYOUT_PARTS+=(APP_ENC_b) LAYOUT_FILES+=(system_root_encrypted.img_b)
            fi
        else
            LAYOUT_PARTS=(APP) LAYOUT_FILES=(system.img)
            if [[ ${ROOTFS_AB:-} == 1 ]]; then LAYOUT_PARTS+=(APP_b) LAYOUT_FILES+=(system.img_b); fi
        fi
        return 0
    fi
    lab_resolve "${INITRD_CONFIG}"
    content=$(<"${REPLY}")
    while [[ ${content} == *'</partition>'* ]]; do
        chunk=${content%%'</partition>'*}
        content=${content#*'</partition>'}
        [[ ${chunk} =~ ${part_re} ]] || continue
        name=${BASH_REMATCH[1]}
        file=''
        if [[ ${chunk} =~ ${file_re} ]]; then file=${BASH_REMATCH[1]}; fi
        case ${name} in
            APP_b) [[ ${ROOTFS_AB:-} == 1 ]] || continue ;;
            APP_ENC) [[ ${ROOTFS_ENC:-} == 1 ]] || continue ;;
            APP_ENC_b) [[ ${ROOTFS_AB:-} == 1 && ${ROOTFS_ENC:-} == 1 ]] || continue ;;
        esac
        LAYOUT_PARTS+=("${name}")
        LAYOUT_FILES+=("${file/APPFILE/system.img}")
    done
    if [[ ${ROOTFS_ENC:-} == 1 && " ${LAYOUT_PARTS[*]} " != *' APP_ENC '* ]]; then
        lab_fail "Error: ROOTFS_ENC=1, but the partition layout ${INITRD_CONFIG} has no APP_ENC partition."
    fi
}

# The disk key and the chip binding of an encrypted rootfs (ROOTFS_ENC=1), into ENC_KEY_HEX and
# ENC_ECID (both '' without ROOTFS_ENC), as NVIDIA's r36.2 scripts have them:
#   - the key: "-i <enc rfs key file>" of l4t_initrd_flash.sh (parse_param), passed on by
#     l4t_initrd_flash_internal.sh (generate_flash_package) and
#     l4t_create_images_for_kernel_flash.sh (generate_signed_images) to flash.sh only
#     "if [ -n "${ENC_RFS_KEY}" ] && [ -f "${ENC_RFS_KEY}" ]": a key file that is not there is
#     dropped without a word, and tools/disk_encryption/gen_luks_passphrase.py then takes its
#     default key, 16 zero bytes. -i is optional. A key file must hold 16 bytes in hex (a 0x in
#     front allowed: load_file_check_size), else gen_luks_passphrase.py raises, cryptsetup gets
#     no passphrase, and build_enc_root_fsimg stops: "Add LUKS header on <image> failed.";
#   - the chip: build_enc_root_fsimg (disk_encryption_helper.func) derives the passphrase with
#     "-u -e <ECID>", the ECID flash.sh's get_fuse_level read from the FIRST Jetson in recovery
#     mode (lab_chip_probe), which it reads only without FUSELEVEL: with FUSELEVEL set,
#     "ERROR: build_enc_root_fsimg: ECID is null ." - unless flash.sh has --generic-passphrase
#     (-p "--generic-passphrase"): "-g", one passphrase for every chip. The rootfs opens only on
#     the chip it is bound to (lab_enc_unlocks, when a device is flashed with it).
enc_prepare() {
    local content key=''
    ENC_KEY_HEX='' ENC_ECID=''
    [[ ${ROOTFS_ENC:-} == 1 ]] || return 0
    if [[ -n ${INITRD_ENC_KEY} ]]; then
        lab_resolve "${INITRD_ENC_KEY}"
        if [[ -f ${REPLY} ]]; then key=${REPLY}; fi
    fi
    ENC_KEY_HEX=00000000000000000000000000000000
    if [[ -n ${key} ]]; then
        content=$(<"${key}")
        content=${content#"${content%%[![:space:]]*}"}
        content=${content%"${content##*[![:space:]]}"}
        content=${content#0[xX]}
        if [[ ! ${content} =~ ^[0-9a-fA-F]{32}$ ]]; then
            printf 'Exception: Wrong size\n' >&2
            lab_fail "Add LUKS header on system_root_encrypted.img failed."
        fi
        ENC_KEY_HEX=${content,,}
    fi
    if ((FLASH_GENERIC_PASSPHRASE)); then
        ENC_ECID=generic
    elif [[ -n ${LAB_PROBED_ECID} ]]; then
        ENC_ECID=${LAB_PROBED_ECID}
    else
        lab_fail "ERROR: build_enc_root_fsimg: ECID is null ."
    fi
}

# package_images of NVIDIA's r36.2 tools/kernel_flash/l4t_create_images_for_kernel_flash.sh
# (public copy: github.com/johnnynunez/Linux_for_Tegra), for the rootfs partitions of one storage
# device (app_layout), into images/<internal|external>/: each partition's image
# (package_app_image, package_enc_image); its row in flash.idx (the real one copies the whole
# index: the lab writes the rows of the rootfs partitions, in NVIDIA's columns, after the internal
# index's lab line, which no row parser reads); then flash.cfg: "<partition><_ext>=<image>" for
# APP and APP_b, then external_device= and CHIPID=. The real one starts from an emptied images/
# and appends; the lab rewrites each file IN PLACE (GNU tar -c truncates an existing archive,
# keeping its inode), so a hard-linked clone writes through.
package_images() {  # <rootfs dir> <internal|external>
    local rootfs=$1 location=$2 dest_dir="${IMAGES}/$2" ext='' device=1:3 index part file cfg='' idx='' chipid size sum
    if [[ ${location} == external ]]; then
        ext=_ext device=9:0
    else
        idx=$(printf 'board=%s rootdev=%s external=%s config=%s' "${LAB_BOARD}" "${INITRD_ROOTDEV}" \
            "${INITRD_EXTERNAL_DEVICE}" "${INITRD_CONFIG}")$'\n'
    fi
    app_layout "${location}"
    for index in "${!LAYOUT_PARTS[@]}"; do
        part=${LAYOUT_PARTS[index]} file=${LAYOUT_FILES[index]}
        if [[ ${part} == APP || ${part} == APP_b ]]; then
            package_app_image "${rootfs}" "${location}" "${file}" "${part}"
            cfg+="${part}${ext}=${APP_NAME}"$'\n'
        else
            package_enc_image "${rootfs}" "${location}" "${file}"
            APP_NAME=${file}
        fi
        size=$(stat -c %s -- "${dest_dir}/${APP_NAME}")
        sum=$(sha1sum "${dest_dir}/${APP_NAME}")
        # <n>, <device type>:<instance>:<partition>, <start>, <size>, <file>, <file size>,
        # <attributes: the entry id last>, <sha1>; SDMMC_USER_DEVICE 1, EXTERNAL_STORAGE_DEVICE 9.
        idx+=$(printf '%d, %s:%s, 0, %s, %s, %s, 0-0-%d, %s' "$((index + 1))" "${device}" "${part}" "${size}" \
            "${file}" "${size}" "$((index + 1))" "${sum%% *}")$'\n'
    done
    printf '%s' "${idx}" | lab_rewrite_in_place "${dest_dir}/flash.idx"
    chipid=$(grep -m1 '^CHIPID=' "${LAB_TREE}/${LAB_BOARD}.conf" || true)
    chipid=${chipid#CHIPID=}
    chipid=${chipid//[\";[:space:]]/}
    printf '%sexternal_device=%s\nCHIPID=%s\n' "${cfg}" "${INITRD_EXTERNAL_DEVICE}" "${chipid}" |
        lab_rewrite_in_place "${dest_dir}/flash.cfg"
}

# package_images' branch for APP and APP_b: the image of the partition's filesystem as
# images/<location>/<name>, then "sha1sum <image> | cut -f 1 -d ' ' > <image>.sha1sum". Its name
# into APP_NAME. The filesystem: the rootfs (create_fsimg builds system.img_b from the same
# rootfs as system.img), or with ROOTFS_ENC=1 the boot partition (build_boot_fsimg of
# tools/disk_encryption/disk_encryption_helper.func: the rootfs's boot/ under boot/; it stops
# when there is no boot/extlinux/extlinux.conf). The image:
#   - r36.2: "tar -cpf <name> COMMON_TAR_OPTIONS -C <the loop-mounted <name>.raw> .", an
#     uncompressed tar (the lab tars the directory the raw image is made from);
#   - r36.2 with --sparse: "cp bootloader/<name> <dest>/<name>", the sparse image build_fsimg made
#     with mksparse. The lab keeps bootloader/system.img a tar, its stand-in for the ext4 image,
#     and makes the sparse form here (lab_sparse_encode): its expansion is that tar;
#   - r38 (the tree's nv_tegra_release says R38 or later): the tar is compressed, "tar -c -I
#     'zstd -T0'", under the same name, and --sparse gives <name>.zst, the sparse image compressed
#     with zstd. r38.4 is not in the public mirror: this is what docs/l4t-app-image.md says of
#     NVIDIA's r38.4 l4t_create_images_for_kernel_flash.sh.
# LAB_APP_TAR_TRUNCATED=1 in the environment (a lab knob): the disk filled up while tar wrote the
# image. tar says so and exits 2, but package_images never looks at tar's status: generation
# goes on and succeeds, the image is a tar cut inside its last member, without an end-of-archive
# marker (a zstd tar: its compressed stream cut in the middle), and its .sha1sum is the sha1 of
# what was written. A sparse image is not cut.
package_app_image() {  # <rootfs dir> <internal|external> <name> <partition>
    local rootfs=$1 dest_dir="${IMAGES}/$2" name=$3 raw
    local -a members=(.)
    [[ -d ${rootfs} ]] || lab_fail "Error: rootfs directory ${rootfs} does not exist."
    if [[ ${ROOTFS_ENC:-} == 1 ]]; then
        [[ -f ${rootfs}/boot/extlinux/extlinux.conf ]] ||
            lab_fail "${rootfs}/boot/extlinux/extlinux.conf is not found, exiting..."
        members=(./boot)
    fi
    APP_NAME=${name}
    if ((INITRD_SPARSE && LAB_MAJOR >= 38)); then APP_NAME=${name}.zst; fi
    lab_say "Copying $4 image into ${dest_dir}/${APP_NAME}"
    if ((INITRD_SPARSE)); then
        raw=$(mktemp)
        tar -cpf "${raw}" --numeric-owner -C "${rootfs}" "${members[@]}" ||
            lab_fail "Error: failed to relocate images to ${IMAGES}"
        if ((LAB_MAJOR >= 38)); then
            lab_sparse_encode "${raw}" | zstd -T0 -q -c | lab_rewrite_in_place "${dest_dir}/${APP_NAME}"
        else
            lab_sparse_encode "${raw}" | lab_rewrite_in_place "${dest_dir}/${APP_NAME}"
        fi
        rm -f "${raw}"
    else
        if ((LAB_MAJOR >= 38)); then
            tar -cp --numeric-owner -I 'zstd -T0' -f "${dest_dir}/${APP_NAME}" -C "${rootfs}" "${members[@]}" ||
                lab_fail "Error: failed to relocate images to ${IMAGES}"
        else
            tar -cpf "${dest_dir}/${APP_NAME}" --numeric-owner -C "${rootfs}" "${members[@]}" ||
                lab_fail "Error: failed to relocate images to ${IMAGES}"
        fi
        if [[ ${LAB_APP_TAR_TRUNCATED:-} == 1 ]]; then
            cut_tar "${dest_dir}/${APP_NAME}"
        fi
    fi
    sha1sum "${dest_dir}/${APP_NAME}" | cut -f 1 -d ' ' | lab_rewrite_in_place "${dest_dir}/${APP_NAME}.sha1sum"
}

# LAB_APP_TAR_TRUNCATED: cut <tar> (in place) half-way through its last member, header and
# data, as "tar -tR" lists the members' blocks; a zstd one half-way through its stream.
cut_tar() {  # <tar image>
    local image=$1 line last='' end='' size cut block_re='^block ([0-9]+): (.*)$'
    size=$(stat -c %s -- "${image}")
    if lab_is_zstd "${image}"; then
        cut=$((size / 2))
    else
        while IFS= read -r line; do
            [[ ${line} =~ ${block_re} ]] || continue
            if [[ ${BASH_REMATCH[2]} == '** Block of NULs **' || ${BASH_REMATCH[2]} == '** End of File **' ]]; then
                end=${BASH_REMATCH[1]}
                break
            fi
            last=${BASH_REMATCH[1]}
        done < <(tar -tRf "${image}" 2>/dev/null)
        [[ -n ${last} ]] || return 0
        end=${end:-$((size / 512))}
        cut=$(((last + end) * 512 / 2))
    fi
    truncate -s "${cut}" -- "${image}"
    printf 'tar: %s: Cannot write: No space left on device\ntar: Error is not recoverable: exiting now\n' \
        "${image}" >&2
}

# The APP_ENC (APP_ENC_b) image. build_enc_root_fsimg of NVIDIA's r36.2
# tools/disk_encryption/disk_encryption_helper.func makes a LUKS2 container ("cryptsetup --type
# luks2 -c aes-xts-plain64 -s 256 --uuid <rootfs uuid> luksFormat", the passphrase from
# gen_luks_passphrase.py: see enc_prepare), puts an ext4 filesystem in it, fills that with the
# rootfs without any file named boot ("(cd <rootfs>; tar --exclude=boot -cf - *) | tar xf -": the
# top level's dot-files stay out too; its etc/fstab edits are not modelled) and makes it sparse
# (convert_to_sparse_image);
# package_images copies it as the flash.idx row names it: no .sha1sum, no flash.cfg line
# (whatever --sparse says). The lab's container stands in for LUKS2, it is not one: the LUKS
# magic and version 2, a lab header of key=value lines (uuid, cipher, ecid: the chip it is bound
# to or generic, key_sha256: a digest, never the key) padded with zeros to 4096 bytes, then the
# tar encrypted with AES-256-CTR under SHA-256 of the key, the ECID and the uuid (openssl enc),
# all in the lab's sparse form. Nothing can be added to that rootfs without the key.
package_enc_image() {  # <rootfs dir> <internal|external> <name>
    local rootfs=$1 dest_dir="${IMAGES}/$2" name=$3 raw uuid header aes key_sum
    [[ -d ${rootfs} ]] || lab_fail "Error: rootfs directory ${rootfs} does not exist."
    lab_say "Making ${name} ... "
    uuid=$(</proc/sys/kernel/random/uuid)
    aes=$(printf 'lab-luks2:%s:%s:%s' "${ENC_KEY_HEX}" "${ENC_ECID}" "${uuid}" | sha256sum)
    key_sum=$(printf '%s' "${ENC_KEY_HEX}" | sha256sum)
    header=$(printf 'lab-luks2\nuuid=%s\ncipher=aes-xts-plain64\necid=%s\nkey_sha256=%s' "${uuid}" "${ENC_ECID}" \
        "${key_sum%% *}")
    raw=$(mktemp)
    {
        lab_le_write 1:0x4c 1:0x55 1:0x4b 1:0x53 1:0xba 1:0xbe 2:0x0200
        printf '%s\n' "${header}"
        head -c $((4096 - 8 - ${#header} - 1)) /dev/zero
        (cd "${rootfs}" && tar --exclude=boot --numeric-owner -cpf - -- *) |
            openssl enc -aes-256-ctr -K "${aes%% *}" -iv 00000000000000000000000000000000
    } >"${raw}" || lab_fail "Add LUKS header on ${name} failed."
    lab_sparse_encode "${raw}" | lab_rewrite_in_place "${dest_dir}/${name}"
    rm -f "${raw}"
    lab_say "${name} built successfully. "
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
    if [[ -n ${INITRD_PARTITION} && ! ${INITRD_PARTITION} =~ ^APP(_b|_ENC|_ENC_b)?$ ]]; then
        lab_write_meta "${INITRD_ROOTDEV}" not-written
    else
        lab_write_device "${IMAGES}" "${location}" "${IDENT[external_device]:-${INITRD_ROOTDEV}}" initrd \
            "${INITRD_PARTITION}"
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
