#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# odmfuseread.sh: the lab's stand-in for NVIDIA's Linux_for_Tegra/odmfuseread.sh.
#
# Reads back what is REALLY burned into the one device in recovery mode (not what odmfuse.sh
# claimed) into bootloader/fuse_info.txt, so the fuse role can catch a burn that reported
# success and burned nothing. Unburned fuses read 0x0. As NVIDIA's (odmfuseread.sh and
# read_fuse_values in odmfuse.func of the r36 BSP, public copy in
# github.com/Seeed-Studio/Linux_for_Tegra), it reads a FIXED list of fuses on Orin
# (FUSES_KEYS_T234, FUSES_MANUFACTURING_T234, FUSES_ODM_RESERVED): any other fuse, the key fuses
# (SBK, OEM keys) among them, is never read back, burned or not. A PKC/SBK-fused device answers
# only when given its keys (get_fuse_level and check_sbk_pkc there).
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
READABLE_FUSES=(PublicKeyHash BootSecurityInfo ArmJtagDisable SecurityMode SwReserved DebugAuthentication OdmId
    OdmLock ReservedOdm0 ReservedOdm1 ReservedOdm2 ReservedOdm3 ReservedOdm4 ReservedOdm5 ReservedOdm6 ReservedOdm7)

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

((${#POSITIONALS[@]} == 1)) || lab_bad_usage "expected exactly one <TargetBoard>, got ${#POSITIONALS[@]}"
[[ -n ${CHIP_ID} ]] || lab_bad_usage "-i <TegraID> is required"
[[ ${CHIP_ID,,} == 0x23 ]] || lab_bad_usage "unsupported TegraID ${CHIP_ID}: this BSP reads Orin (0x23)"
if [[ -n ${PKC} ]]; then lab_require_file "PKC key file" "${PKC}"; fi
if [[ -n ${SBK} ]]; then lab_require_file "SBK key file" "${SBK}"; fi
lab_check_board "${POSITIONALS[0]}"

lab_pick_single_device
lab_check_keys "${PKC}" "${SBK}" -k -S

lab_read_device_fuses "${LAB_PORT}"
for name in "${READABLE_FUSES[@]}"; do
    printf '%s: %s\n' "${name}" "${LAB_DEVICE_FUSES[${name}]:-0x0}"
done | lab_rewrite_in_place "${LAB_TREE}/bootloader/fuse_info.txt"
lab_fuse_event read usb_instance "${LAB_PORT}"
cat "${LAB_TREE}/bootloader/fuse_info.txt"
lab_say "*** The fuse information is saved in bootloader/fuse_info.txt ***"
