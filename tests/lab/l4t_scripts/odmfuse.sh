#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# odmfuse.sh: the lab's stand-in for NVIDIA's Linux_for_Tegra/odmfuse.sh (see lab_common.sh).
#
# Burning fuses is irreversible, so this fake models the traps the fuse role must avoid: no
# option selects a USB port (with several devices in recovery it records a "multi-device" event
# and takes the first, as the real tool takes an unpredictable one), a burn over fuses that are
# already burned is NOT refused, and a planted silent failure reports success while burning
# nothing (the forum-reported case).
#
# What the real tool does with -X over a device that holds fuses (NVIDIA's r36 odmfuse.sh and
# odmfuse.func, public copy in github.com/Seeed-Studio/Linux_for_Tegra): it reads the fuses first
# (read_fuse_values, which needs the device's keys once it is PKC/SBK fused), but check_fuse_values
# only checks the command-line fuse options (-p, -l, -r, --KEK*, --odm_id...), never the XML,
# and then hands the XML to "tegraflash.py --cmd burnfuses" (tegraflash_internal.py
# tegraflash_burnfuses), which burns it as it is. Fuse bits only go from 0 to 1, so the device ends
# up with the OR of the old and the new values: a second burn of other values leaves neither. Once
# SecurityMode (production mode) is burned the fuses are locked: odmfuse.sh refuses manufacturing
# fuses then ("SecurityMode is burned, you can't burn any manufacturing fuses now.") and NVIDIA's
# Secure Boot guide allows partial burns only "if SecurityMode is not burned", so the fake refuses
# a burn on such a device and burns nothing.
set -euo pipefail

LAB_TOOL=odmfuse.sh
LAB_TREE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lab_common.sh
source "${LAB_TREE}/lab_common.sh"

LAB_USAGE='Usage: sudo ./odmfuse.sh -i <TegraID> -X <fuse_config.xml> [options] <TargetBoard>
  -i <TegraID> ......... tegra ID: 0x23 for Orin
  -X <fuse_config.xml> . the fuses to burn (genericfuse XML)
  -k <KeyFile> ......... PKC key of an already PKC-fused board (.pem)
  -S <SBK file> ........ SBK key of an already SBK-fused board
  --test ............... pre-burn processing and verification only: burn nothing
  --noburn ............. build bootloader/fuseblob.tbz2 offline (needs FAB BOARDID BOARDSKU
                         BOARDREV CHIPREV CHIP_SKU in the environment)
  --auth ............... the authentication of an offline fuse blob
  --force .............. do not ask for confirmation'

lab_begin "$@"

FUSE_XML='' CHIP_ID='' PKC='' SBK='' TEST=0 NOBURN=0 CONFLICTS=()
POSITIONALS=()
while (($#)); do
    case $1 in
        -X | -i | -k | -S)
            (($# >= 2)) || lab_bad_usage "option $1 requires an argument"
            case $1 in
                -X) FUSE_XML=$2 ;;
                -i) CHIP_ID=$2 ;;
                -k) PKC=$2 ;;
                -S) SBK=$2 ;;
            esac
            shift 2
            ;;
        -c | -d | -l | -r)
            (($# >= 2)) || lab_bad_usage "option $1 requires an argument"
            CONFLICTS+=("$1")
            shift 2
            ;;
        -p | -j) CONFLICTS+=("$1"); shift ;;
        --KEK0 | --KEK1 | --KEK2 | --KEK256)
            lab_bad_usage "$1 is supported on Xavier (0x19) only"
            ;;
        --test) TEST=1; shift ;;
        --noburn) NOBURN=1; shift ;;
        --auth | --force) shift ;;
        -h | --help) lab_usage 0 ;;
        --) shift; POSITIONALS+=("$@"); break ;;
        -*) lab_bad_usage "unknown option $1" ;;
        *) POSITIONALS+=("$1"); shift ;;
    esac
done

((${#POSITIONALS[@]} == 1)) || lab_bad_usage "expected exactly one <TargetBoard>, got ${#POSITIONALS[@]}"
[[ -n ${CHIP_ID} ]] || lab_bad_usage "-i <TegraID> is required"
[[ ${CHIP_ID,,} == 0x23 ]] || lab_bad_usage "unsupported TegraID ${CHIP_ID}: this BSP fuses Orin (0x23)"
[[ -n ${FUSE_XML} ]] || lab_bad_usage "-X <fuse_config.xml> is required (the lab models XML fusing only)"
lab_require_file "fuse config file" "${FUSE_XML}"
FUSE_XML=${REPLY}
if ! grep -q '<genericfuse' "${FUSE_XML}" || ! grep -q 'MagicId="0x45535546"' "${FUSE_XML}"; then
    lab_fail "Error: ${FUSE_XML} is not a fuse configuration file (no <genericfuse MagicId=\"0x45535546\">)."
fi
lab_parse_fuses "${FUSE_XML}"
((${#LAB_FUSE_NAMES[@]} > 0)) || lab_fail "Error: ${FUSE_XML} names no fuse."
if [[ -n ${PKC} ]]; then lab_require_file "PKC key file" "${PKC}"; fi
if [[ -n ${SBK} ]]; then lab_require_file "SBK key file" "${SBK}"; fi
lab_check_board "${POSITIONALS[0]}"
if ((${#CONFLICTS[@]})); then
    # The real tool prints its usage for these next to -X, and burns anyway.
    printf '%s: %s ignored: -X gives all fuses\n' "${LAB_TOOL}" "${CONFLICTS[*]}" >&2
    printf '%s\n' "${LAB_USAGE}" >&2
fi

if ((NOBURN)); then
    for variable in FAB BOARDID BOARDSKU BOARDREV CHIPREV CHIP_SKU; do
        [[ -n ${!variable:-} ]] || lab_fail "Error: --noburn needs ${variable} in the environment."
    done
    LAB_DEVICES=()
    tar -C "$(dirname "${FUSE_XML}")" -cjf "${LAB_TREE}/bootloader/fuseblob.tbz2" "$(basename "${FUSE_XML}")"
    lab_fuse_event noburn config "${FUSE_XML}"
    lab_say "*** The fuse blob is saved in bootloader/fuseblob.tbz2 ***"
    exit 0
fi

lab_pick_single_device
lab_check_keys "${PKC}" "${SBK}" -k -S
lab_sleep "${LAB_FUSE_SECONDS}"

if ((TEST)); then
    for index in "${!LAB_FUSE_NAMES[@]}"; do
        lab_say "fuse ${LAB_FUSE_NAMES[index]} would be burned with ${LAB_FUSE_VALUES[index]}"
    done
    lab_fuse_event test usb_instance "${LAB_PORT}" config "${FUSE_XML}"
    lab_say "*** The fuse configuration is verified (--test): nothing was burned. ***"
    exit 0
fi

if lab_device_has_fuse "${LAB_PORT}" SecurityMode; then
    lab_fuse_event refused usb_instance "${LAB_PORT}" config "${FUSE_XML}"
    lab_say "SecurityMode is burned, you can't burn any manufacturing fuses now."
    lab_fail "Fuse failed."
fi
lab_take_planted fail-fuse "${LAB_PORT}"
if [[ -n ${REPLY} ]]; then
    lab_fuse_event silent usb_instance "${LAB_PORT}" config "${FUSE_XML}"
else
    lab_read_device_fuses "${LAB_PORT}"
    for index in "${!LAB_FUSE_NAMES[@]}"; do
        name=${LAB_FUSE_NAMES[index]} value=${LAB_FUSE_VALUES[index]}
        if [[ -n ${LAB_DEVICE_FUSES[${name}]+set} ]]; then
            lab_fuse_digits "${LAB_DEVICE_FUSES[${name}]}"; old=${REPLY}
            lab_fuse_digits "${value}"
            if [[ ${REPLY} != "${old}" ]]; then  # the same value burned again changes nothing
                lab_fuse_or "${LAB_DEVICE_FUSES[${name}]}" "${value}"
                LAB_DEVICE_FUSES[${name}]=${REPLY}
            fi
        else
            LAB_DEVICE_FUSE_ORDER+=("${name}")
            LAB_DEVICE_FUSES[${name}]=${value}
        fi
    done
    lab_write_device_fuses "${LAB_PORT}"
    lab_fuse_event burn usb_instance "${LAB_PORT}" config "${FUSE_XML}"
fi
for index in "${!LAB_FUSE_NAMES[@]}"; do
    lab_say "burning fuse ${LAB_FUSE_NAMES[index]}"
done
lab_say "*** The fuse configuration has been burned successfully. ***"
