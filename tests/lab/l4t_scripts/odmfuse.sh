#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# odmfuse.sh: the lab's stand-in for NVIDIA's Linux_for_Tegra/odmfuse.sh (see lab_common.sh).
#
# Burning fuses is irreversible, so this double is as unkind as NVIDIA's r36.2 odmfuse.sh,
# odmfuse.func and bootloader/tegraflash_impl_t234.py (public copy:
# github.com/johnnynunez/Linux_for_Tegra), whose -X path it models:
# - no option selects a USB port: with several devices in recovery it records a "multi-device"
#   event and takes the first, as the real tool takes an unpredictable one;
# - read_fuse_values first: get_fuse_level and check_sbk_pkc (odmfuse.func) want the keys the
#   device's authentication needs, with NVIDIA's messages (a PKC-only device given -S fails),
#   and the keys must be THE device's (lab_check_device_keys): otherwise the signed RCM messages
#   are rejected and the fuse read fails;
# - check_fuse_values only checks the command-line fuse options, never the XML; once
#   SecurityMode is burned the lab refuses any -X burn ("SecurityMode is burned, you can't burn
#   any manufacturing fuses now.", exit 1);
# - the XML goes to the device as it is ("tegraflash.py --cmd burnfuses"), where the FSKP burner
#   (lab_fuse_burner) decides; tegraflash_burnfuses only says "check the uart", so odmfuse.sh
#   exits 0 WHATEVER the device did: a burn stopped half-way (a value that would clear a burned
#   bit, an OdmLock-locked ReservedOdm, any fuse after SecurityMode, a value longer than its
#   fuse) leaves the fuses before it burned and reports success. The device's verdict is only on
#   its serial console (uart/<port>.log in the lab state);
# - --test: generate_fskp_blob rewrites the copy's MagicId with sed "s/0x45535546/0x54534554/",
#   exact and case-sensitive; the device reads the magic numerically, so a file spelling it
#   0X45535546 is burned for real, under --test too;
# - a planted silent failure reports success while burning nothing (the forum-reported case).
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

SENT='' FUSE_XML='' CHIP_ID='' PKC='' SBK='' TEST=0 NOBURN=0 CONFLICTS=()
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
if ! grep -q '<genericfuse' "${FUSE_XML}"; then  # tegraparser_v2 --fuse_info fails on it
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
# read_fuse_values: get_fuse_level and check_sbk_pkc, then the fuse read with the device's keys.
lab_check_sbk_pkc "${LAB_PORT}" "${PKC}" "${SBK}"
if ! lab_check_device_keys "${LAB_PORT}" "${PKC}" "${SBK}"; then
    lab_say "${REPLY}"
    lab_say "Error: read fuse info failed."
    lab_fail "Error: read fuse from board failed."
fi
lab_sleep "${LAB_FUSE_SECONDS}"

if lab_device_has_fuse "${LAB_PORT}" SecurityMode; then
    lab_fuse_event refused usb_instance "${LAB_PORT}" config "${FUSE_XML}"
    lab_say "SecurityMode is burned, you can't burn any manufacturing fuses now."
    lab_fail "Fuse failed."
fi

# The copy handed to the device (odmfuse.sh: fuse_XXXXXX.xml in bootloader/), with its magic
# rewritten for --test exactly as generate_fskp_blob does.
lab_exit_hook() {  # odmfuse.sh removes its copy whatever happened
    rm -f "${SENT}"
}
SENT=$(mktemp "${LAB_TREE}/bootloader/fuse_XXXXXX.xml")
cp -f "${FUSE_XML}" "${SENT}"
if ((TEST)); then
    lab_say 'For test mode, set magic ID to 0x54534554 ("TEST").'
    sed -i "s/0x45535546/0x54534554/" "${SENT}"
    for index in "${!LAB_FUSE_NAMES[@]}"; do
        lab_say "fuse ${LAB_FUSE_NAMES[index]} would be burned with ${LAB_FUSE_VALUES[index]}"
    done
fi
lab_say "*** Start fusing from fuse configuration ... "
lab_say "Burning fuses. Please check the uart to get the result of fuse burning."
REPLY=''
if ((!TEST)); then lab_take_planted fail-fuse "${LAB_PORT}"; fi
if [[ -n ${REPLY} ]]; then
    lab_fuse_event silent usb_instance "${LAB_PORT}" config "${FUSE_XML}"
    for index in "${!LAB_FUSE_NAMES[@]}"; do
        lab_say "burning fuse ${LAB_FUSE_NAMES[index]}"
    done
    lab_say "*** The fuse configuration has been burned successfully. ***"
    exit 0
fi
lab_fuse_burner "${LAB_PORT}" "${SENT}"
if [[ -n ${LAB_BURN_STOPPED} ]]; then
    dry_run=false
    if ((LAB_BURN_DRY_RUN)); then dry_run=true; fi
    lab_fuse_event stopped usb_instance "${LAB_PORT}" fuse "${LAB_BURN_STOPPED}" reason "${LAB_BURN_REASON}" \
        dry_run:raw "${dry_run}"
fi
if ((TEST)); then
    lab_fuse_event test usb_instance "${LAB_PORT}" config "${FUSE_XML}" verdict "${LAB_BURN_VERDICT}"
    lab_say "*** --test: the device decides whether it was a dry run (check the uart). ***"
    exit 0
fi
lab_fuse_event burn usb_instance "${LAB_PORT}" config "${FUSE_XML}" verdict "${LAB_BURN_VERDICT}"
for index in "${!LAB_FUSE_NAMES[@]}"; do
    lab_say "burning fuse ${LAB_FUSE_NAMES[index]}"
done
lab_say "*** The fuse configuration has been burned successfully. ***"
