#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# l4t_initrd_flash.sh: the lab's stand-in for NVIDIA's tools/kernel_flash/l4t_initrd_flash.sh.
#
# Like the real one it builds the images into tools/kernel_flash/images (and
# bootloader/system.img) IN PLACE unless --flash-only, stops there with --no-flash, else boots
# the flashing initrd on the device (a planted "boot-timeout" fails here, with NVIDIA's message),
# writes the images to it and logs to initrdlog/flash_<usb path>_<n>_<timestamp>.log. It shares
# flash.sh's tree lock: any two flashes in one tree collide, as they do for real.
set -euo pipefail

LAB_TOOL=l4t_initrd_flash.sh
LAB_TREE=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
# shellcheck source=lab_common.sh
source "${LAB_TREE}/lab_common.sh"

LAB_USAGE='Usage: sudo ./tools/kernel_flash/l4t_initrd_flash.sh [options] <target_board> <rootdev>
       sudo ./tools/kernel_flash/l4t_initrd_flash.sh --flash-only [options] [<target_board> <rootdev>]
  options:
    --external-device <dev>   external storage to flash, e.g. nvme0n1p1 (needs -c)
    -c <config.xml>           partition layout of the external device
    -p "<options>"            options passed to flash.sh, e.g. "-c bootloader/generic/cfg/flash_t234_qspi.xml"
    --showlogs                print the device-side logs
    --network <usb0|eth0>     how the host reaches the flashing initrd
    --usb-instance <path>     USB port path of the device (e.g. 1-3, 1-8.4)
    --no-flash                build the images into tools/kernel_flash/images only
    --flash-only              flash the images built before
    --massflash <N>           flash up to N devices at once
    --keep | --reuse          keep / reuse the working directory
    --erase-all               erase all storage before flashing
    -k <partition>            flash one partition only
    -u <pkc.pem> -v <sbk.key> keys of a fused device'

lab_begin "$@"

EXTERNAL_DEVICE='' CONFIG_XML='' FLASH_OPTIONS='' NETWORK='' USB_INSTANCE='' NO_FLASH=0
FLASH_ONLY=0 MASSFLASH='' PARTITION='' PKC='' SBK=''
POSITIONALS=()
while (($#)); do
    case $1 in
        --external-device | -c | -p | --network | --usb-instance | --massflash | -k | -u | -v)
            (($# >= 2)) || lab_bad_usage "option $1 requires an argument"
            case $1 in
                --external-device) EXTERNAL_DEVICE=$2 ;;
                -c) CONFIG_XML=$2 ;;
                -p) FLASH_OPTIONS=$2 ;;
                --network) NETWORK=$2 ;;
                --usb-instance) USB_INSTANCE=$2 ;;
                --massflash) MASSFLASH=$2 ;;
                -k) PARTITION=$2 ;;
                -u) PKC=$2 ;;
                -v) SBK=$2 ;;
            esac
            shift 2
            ;;
        --showlogs | --keep | --reuse | --erase-all) shift ;;
        --no-flash) NO_FLASH=1; shift ;;
        --flash-only) FLASH_ONLY=1; shift ;;
        -h | --help) lab_usage 0 ;;
        --) shift; POSITIONALS+=("$@"); break ;;
        -*) lab_bad_usage "unknown option $1" ;;
        *) POSITIONALS+=("$1"); shift ;;
    esac
done

((NO_FLASH && FLASH_ONLY)) && lab_bad_usage "--no-flash and --flash-only exclude each other"
if [[ -n ${MASSFLASH} ]]; then
    [[ ${MASSFLASH} =~ ^[1-9][0-9]*$ ]] || lab_bad_usage "--massflash needs a number of devices"
    [[ -z ${USB_INSTANCE} ]] || lab_bad_usage "--usb-instance and --massflash exclude each other"
fi
if [[ -n ${NETWORK} && ! ${NETWORK} =~ ^(usb0|eth0(:.*)?)$ ]]; then
    lab_bad_usage "--network must be usb0 or eth0:<target-ip/mask>:<host-ip>"
fi
if [[ -n ${EXTERNAL_DEVICE} && -z ${CONFIG_XML} ]]; then
    lab_bad_usage "--external-device needs the external partition layout with -c"
fi
if [[ -n ${CONFIG_XML} ]]; then lab_require_file "config file" "${CONFIG_XML}"; fi
if [[ -n ${PKC} ]]; then lab_require_file "PKC key file" "${PKC}"; fi
if [[ -n ${SBK} ]]; then lab_require_file "SBK key file" "${SBK}"; fi

# The -p string is split into words and handed to flash.sh, as the real tool does.
read -r -a PASSED_OPTIONS <<<"${FLASH_OPTIONS}"
lab_parse_flash_options "${PASSED_OPTIONS[@]}"
((${#LAB_POSITIONALS[@]} == 0)) || lab_bad_usage "-p takes flash.sh options only, not '${LAB_POSITIONALS[*]}'"
[[ -n ${PKC} ]] || PKC=${FLASH_PKC}
[[ -n ${SBK} ]] || SBK=${FLASH_SBK}

IMAGES="${LAB_TREE}/tools/kernel_flash/images"
SAVED_ARGS="${IMAGES}/lab_saved_args"
if ((${#POSITIONALS[@]} == 0 && FLASH_ONLY)) && [[ -f ${SAVED_ARGS} ]]; then
    # --flash-only may omit the board: the real tool reads what --no-flash saved.
    read -r saved_board saved_rootdev <"${SAVED_ARGS}" || true
    POSITIONALS=("${saved_board:-}" "${saved_rootdev:-}")
fi
((${#POSITIONALS[@]} == 2)) || lab_bad_usage "expected <target_board> <rootdev>, got ${#POSITIONALS[@]} argument(s)"
lab_check_board "${POSITIONALS[0]}"
ROOTDEV=${POSITIONALS[1]}
[[ ${ROOTDEV} =~ ^[A-Za-z0-9_.:-]+$ ]] || lab_bad_usage "invalid rootdev ${ROOTDEV}"

[[ -d "${LAB_TREE}/bootloader" ]] || lab_fail "Error: ${LAB_TREE}/bootloader is missing."
lab_lock_tree "${USB_INSTANCE}"

if [[ -n ${EXTERNAL_DEVICE} ]]; then
    DEVICE_IMAGE="${IMAGES}/external/system.img"
else
    DEVICE_IMAGE="${IMAGES}/internal/system.img"
fi

if ((FLASH_ONLY)); then
    [[ -f ${DEVICE_IMAGE} ]] || lab_fail "Error: ${DEVICE_IMAGE} is not found: build the images with --no-flash first."
else
    lab_say "Create flash environment"
    mkdir -p "${IMAGES}/internal" "${IMAGES}/external"
    lab_build_image "${FLASH_ROOTFS}" "${LAB_TREE}/bootloader/system.img"
    lab_rewrite_in_place "${DEVICE_IMAGE}" <"${LAB_TREE}/bootloader/system.img"
    printf 'board=%s rootdev=%s external=%s config=%s\n' "${LAB_BOARD}" "${ROOTDEV}" \
        "${EXTERNAL_DEVICE}" "${CONFIG_XML}" | lab_rewrite_in_place "${IMAGES}/internal/flash.idx"
    printf '%s %s\n' "${LAB_BOARD}" "${ROOTDEV}" | lab_rewrite_in_place "${SAVED_ARGS}"
    lab_say "Success"
fi
if ((NO_FLASH)); then
    lab_say "Cleaning up..."
    exit 0
fi

# Which devices: the one given, the only one in recovery, or up to N with --massflash.
if [[ -n ${MASSFLASH} ]]; then
    lab_scan_devices
    ((${#LAB_DEVICES[@]} > 0)) || lab_fail "Error: probing the target board failed: no Jetson in recovery mode."
    TARGETS=("${LAB_DEVICES[@]:0:MASSFLASH}")
else
    lab_pick_device "${USB_INSTANCE}"
    TARGETS=("${LAB_PORT}")
fi

mkdir -p "${LAB_TREE}/initrdlog"
printf -v STAMP '%(%Y%m%d-%H%M%S)T' -1
FAILED=0
flash_one() {  # <index>
    LAB_TOOL_LOG="${LAB_TREE}/initrdlog/flash_${LAB_PORT}_$1_${STAMP}.log"
    lab_check_board_product
    lab_check_keys "${PKC}" "${SBK}" -u -v
    lab_say "Start flashing device: ${LAB_PORT}, rcm instance: $1"
    lab_planted_flash_failure
    lab_say "Waiting for target to boot-up..."
    lab_sleep "${LAB_FLASH_SECONDS}"
    lab_say "Waiting for device to expose ssh ......Run command: flash on fc00:1:1:$1::2"
    if [[ -n ${PARTITION} && ${PARTITION} != APP ]]; then
        lab_write_meta "${ROOTDEV}" not-written
    else
        lab_write_device "${DEVICE_IMAGE}" "${EXTERNAL_DEVICE:-${ROOTDEV}}" initrd
    fi
    lab_device_leaves_recovery
    lab_say "Flash is successful"
    lab_say "Reboot device"
    lab_say "Log is saved to Linux_for_Tegra/initrdlog/${LAB_TOOL_LOG##*/}"
}

for index in "${!TARGETS[@]}"; do
    LAB_PORT=${TARGETS[index]}
    lab_begin_flash_run
    if [[ -z ${MASSFLASH} ]]; then
        flash_one "${index}"  # a failure exits 1 and the exit trap ends the run record
        lab_end_flash_run 0
        continue
    fi
    # With --massflash each device runs in its own subshell, so that one failing device does
    # not stop the others. In the background, not as an if-condition, so that set -e holds.
    flash_one "${index}" &
    LAB_CHILD_PID=$!
    if wait "${LAB_CHILD_PID}"; then
        lab_end_flash_run 0
    else
        lab_end_flash_run 1
        FAILED=1
    fi
    LAB_CHILD_PID=''
done
LAB_TOOL_LOG=''
lab_say "Cleaning up..."
((FAILED == 0)) || lab_fail "Flash failed: see initrdlog/."
