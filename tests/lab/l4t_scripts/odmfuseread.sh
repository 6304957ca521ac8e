#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# odmfuseread.sh: the lab's stand-in for NVIDIA's Linux_for_Tegra/odmfuseread.sh.
#
# Reads back what is REALLY burned into the device in recovery mode (not what odmfuse.sh
# claimed) into bootloader/fuse_info.txt, so the fuse role can catch a burn that reported
# success and burned nothing, or stopped half-way. As NVIDIA's r36.2 odmfuseread.sh and
# odmfuse.func (public copy: github.com/johnnynunez/Linux_for_Tegra):
# - "-S without -k" fails first ("L4T doesn't support SBK by itself...");
# - read_fuse_values: get_fuse_level and check_sbk_pkc want the keys the device's authentication
#   needs (NVIDIA's messages: a PKC-only device given -S fails), and the keys must be THE
#   device's, or its signed RCM messages are rejected and the read fails;
# - it reads a FIXED list of fuses on Orin (FUSES_KEYS_T234, FUSES_MANUFACTURING_T234,
#   FUSES_ODM_RESERVED): any other fuse, the key fuses (SBK, OEM keys) among them, is never
#   read back, burned or not;
# - each line is "<Name>: <value>" as tegraflash_impl_t234.py tegraflash_readfuses writes it:
#   hex digits without 0x, zero-padded to the fuse's size (PublicKeyHash 128 digits, OdmId 16,
#   the 4-byte fuses 8), e.g. "BootSecurityInfo: 000001e0".
# With several devices in recovery it records a "multi-device" event and reads the first.
set -euo pipefail

LAB_TOOL=odmfuseread.sh
LAB_TREE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lab_common.sh
source "${LAB_TREE}/lab_common.sh"

LAB_USAGE='Usage: sudo ./odmfuseread.sh -i <TegraID> [-k <pkc.pem>] [-S <sbk file>] <TargetBoard>
  -i <TegraID> .. tegra ID: 0x23 for Orin
  -k <KeyFile> .. PKC key of a PKC-fused board (.pem)
  -S <SBK file> . SBK key of an SBK-fused board
  The fuses are written to bootloader/fuse_info.txt.'
lab_begin "$@"

CHIP_ID='' PKC='' SBK=''
POSITIONALS=()
while (($#)); do
    case $1 in
        -i | -k | -S)
            (($# >= 2)) || lab_bad_usage "option $1 requires an argument"
            case $1 in
                -i) CHIP_ID=$2 ;;
                -k) PKC=$2 ;;
                -S) SBK=$2 ;;
            esac
            shift 2
            ;;
        -h | --help) lab_usage 0 ;;
        --) shift; POSITIONALS+=("$@"); break ;;
        -*) lab_bad_usage "unknown option $1" ;;
        *) POSITIONALS+=("$1"); shift ;;
    esac
done

if [[ -n ${SBK} && -z ${PKC} ]]; then
    lab_fail "L4T doesn't support SBK by itself. Make sure your public key is set."
fi
((${#POSITIONALS[@]} == 1)) || lab_bad_usage "expected exactly one <TargetBoard>, got ${#POSITIONALS[@]}"
[[ -n ${CHIP_ID} ]] || lab_bad_usage "-i <TegraID> is required"
[[ ${CHIP_ID,,} == 0x23 ]] || lab_bad_usage "unsupported TegraID ${CHIP_ID}: this BSP reads Orin (0x23)"
if [[ -n ${PKC} ]]; then lab_require_file "PKC key file" "${PKC}"; fi
if [[ -n ${SBK} ]]; then lab_require_file "SBK key file" "${SBK}"; fi
lab_check_board "${POSITIONALS[0]}"

lab_pick_single_device
lab_check_sbk_pkc "${LAB_PORT}" "${PKC}" "${SBK}"
if ! lab_check_device_keys "${LAB_PORT}" "${PKC}" "${SBK}"; then
    lab_say "${REPLY}"
    lab_fail "Error: read fuse info failed."
fi

lab_read_device_fuses "${LAB_PORT}"
for name in "${LAB_READABLE_FUSES_T234[@]}"; do
    lab_fuse_size "${name}"
    lab_fuse_padded "${LAB_DEVICE_FUSES[${name}]:-0x0}" "${REPLY}"
    printf '%s: %s\n' "${name}" "${REPLY}"
done | lab_rewrite_in_place "${LAB_TREE}/bootloader/fuse_info.txt"
lab_fuse_event read usb_instance "${LAB_PORT}"
lab_say "Fuse reading is done. The fuse values have been saved in: ${LAB_TREE}/bootloader/fuse_info.txt"
cat "${LAB_TREE}/bootloader/fuse_info.txt"
