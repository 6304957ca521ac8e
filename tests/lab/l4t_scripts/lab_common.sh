# shellcheck shell=bash
# lab_common.sh: shared code of the lab's fake NVIDIA L4T tools (see tests/lab/l4t_bundle.py).
#
# Why these fakes exist: the roles under test call NVIDIA's tools by their real names, with
# their real argument syntax, and must not know they run in a lab. So each fake finds its
# settings inside the bundle it was run from (.lab/config, written by the builder, read-only)
# and records what it did in the lab state directory OUTSIDE the bundle, where tests read it:
#
#   tool-calls.log      one JSON start record and one end record per invocation
#   flash-runs.log      the same for every device a flash tool actually worked on; the end
#                       record says which device was written ("device", null if none)
#   collisions.log      one JSON record per run that found another flash running in its tree
#   fuse-events.log     one JSON record per odmfuse/odmfuseread event
#   probes.log          one JSON record per board probe of flash.sh (fuse level, EEPROM)
#   storage/<port>/     what the device on that USB port holds in its APP partition (its flashed
#                       rootfs); absent when it holds an image the lab does not read (app=raw)
#   storage/<port>.b/   the same for its APP_b partition, the second slot of an A/B rootfs
#                       (ROOTFS_AB=1: a partition of its own on the device)
#   storage/<port>.meta key=value lines: board, tree, tool, rootdev, app (app_b, app_enc...) of its
#                       last flash (see lab_write_device)
#   fuses/<port>.xml    the fuse configuration burned into that device
#   fail/<port>         a planted flash failure: "<count> <kind>"
#   fail-fuse/<port>    a planted silent fuse failure: "<count> silent"
#   busy/<port>         the pid of the run RCM-booting that device right now
#   disrupted/<port>    the pid of a run whose RCM boot an EEPROM probe broke
#   recovery-product/<port>  the device's recovery-mode USB product id, kept when it leaves
#                       recovery mode for the flashing initrd (for the operator's power cycle)
#   hold-flash          while it exists, an initrd flash over NFS goes on past its LAB_FLASH_SECONDS
#                       (a test's way to keep a station flashing until it lets go)
#   boot-failures.log   one JSON record per flash whose images the device would not run, and why
#                       (images signed or encrypted for another device, BPMP firmware of another
#                       chip SKU: see "images and the chip" below)
#
# Station-wide state (NFS exports, udev rules, gadget network interfaces) lives in the lab
# station's host root (LAB_HOST_ROOT, see tests/lab/l4t_host.py), shared by every tree.
#
# Each tool sets LAB_TOOL (its NVIDIA name) and LAB_TREE (the Linux_for_Tegra directory it was
# run from, derived from its own location so per-port clones of the bundle act on themselves),
# sources this file, then calls lab_begin "$@".

# shellcheck disable=SC2154  # LAB_TOOL and LAB_TREE come from the sourcing tool, see above
# The fixed decimal point matters: EPOCHREALTIME follows the locale, and the logs are parsed.
export LC_ALL=C

LAB_RECOVERY_PRODUCTS=(7523 7623 7323 7423 7023 7223)
LAB_HANG_SECONDS=3600
LAB_PORT_PATTERN='^[0-9]+-[0-9]+(\.[0-9]+)*$'

if [[ ! -r "${LAB_TREE}/.lab/config" ]]; then
    printf 'lab: %s has no .lab/config, so it is not a lab bundle\n' "${LAB_TREE}" >&2
    exit 1
fi
# shellcheck source=/dev/null
source "${LAB_TREE}/.lab/config"
: "${LAB_STATE:?missing in .lab/config}" "${LAB_USB_SYSFS_ROOT:?missing in .lab/config}"
: "${LAB_FLASH_SECONDS:=0}" "${LAB_FUSE_SECONDS:=0}" "${LAB_BOOT_SECONDS:=0.2}" "${LAB_GENERATE_SECONDS:=0}"
: "${LAB_APPLY_SECONDS:=0}"
: "${LAB_HOST_ROOT:=}"

LAB_LOCK_DIR="${LAB_TREE}/bootloader/.lab-flash-lock"
LAB_LOCK_HELD=0
LAB_RUN_ID=''
LAB_RUN_SEQ=0
LAB_TOOL_LOG=''
LAB_CHILD_PIDS=()
LAB_RUN_DEVICE=''
LAB_RUN_INSTANCE=''
LAB_BUSY_PORT=''
LAB_USAGE="Usage: ${LAB_TOOL} [options]"

# --- records -----------------------------------------------------------------------------------

# Quote $1 as a JSON string into REPLY (no subshell: the tools log a lot of strings).
lab_json_string() {
    local text=$1 escaped='' char code index
    text=${text//\\/\\\\}
    text=${text//\"/\\\"}
    text=${text//$'\n'/\\n}
    text=${text//$'\r'/\\r}
    text=${text//$'\t'/\\t}
    if [[ ${text} == *[[:cntrl:]]* ]]; then
        for ((index = 0; index < ${#text}; index++)); do
            char=${text:index:1}
            if [[ ${char} == [[:cntrl:]] ]]; then
                printf -v code '\\u%04x' "'${char}"
                escaped+=${code}
            else
                escaped+=${char}
            fi
        done
        text=${escaped}
    fi
    REPLY="\"${text}\""
}

# A JSON array of the arguments, into REPLY.
lab_json_array() {
    local item joined=''
    for item in "$@"; do
        lab_json_string "${item}"
        joined+="${joined:+,}${REPLY}"
    done
    REPLY="[${joined}]"
}

# Build a JSON object into REPLY from key/value pairs; a key ending in ':raw' is already JSON.
lab_json_object() {
    local body='' key
    while (($# >= 2)); do
        key=$1
        if [[ ${key} == *:raw ]]; then
            body+="${body:+,}\"${key%:raw}\":$2"
        else
            lab_json_string "$2"
            body+="${body:+,}\"${key}\":${REPLY}"
        fi
        shift 2
    done
    REPLY="{${body}}"
}

# Append one line to a log in the lab state. A single printf with >> is one O_APPEND write,
# so concurrent tools never interleave within a line.
lab_record() {
    mkdir -p "${LAB_STATE}"
    printf '%s\n' "$2" >>"${LAB_STATE}/$1"
}

# What the tool prints: stdout, plus the per-device log of l4t_initrd_flash.sh when one is open.
lab_say() {
    printf '%s\n' "$*"
    if [[ -n ${LAB_TOOL_LOG} ]]; then
        printf '%s\n' "$*" >>"${LAB_TOOL_LOG}"
    fi
}

# NVIDIA's tools report device and image errors on stdout and exit 1; so do the fakes.
lab_fail() {
    lab_say "$*"
    exit 1
}

lab_usage() {
    printf '%s\n' "${LAB_USAGE}" >&2
    exit "${1:-1}"
}

lab_bad_usage() {
    printf '%s: %s\n' "${LAB_TOOL}" "$*" >&2
    lab_usage 1
}

# --- life cycle --------------------------------------------------------------------------------

lab_begin() {
    LAB_CALL_ID="${LAB_TOOL}:$$:${EPOCHREALTIME}"
    lab_json_array "$@"
    lab_json_object event start id "${LAB_CALL_ID}" tool "${LAB_TOOL}" pid:raw "$$" \
        time:raw "${EPOCHREALTIME}" tree "${LAB_TREE}" cwd "${PWD}" argv:raw "${REPLY}"
    lab_record tool-calls.log "${REPLY}"
    trap lab_on_exit EXIT
    # The real tools die on these signals too; trapping them lets the exit record be written
    # and the tree lock be released, like the real exit traps that clean up udev rules.
    trap 'exit 129' HUP
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

lab_on_exit() {
    local status=$?
    set +e
    # "Exit 0 on success, 1 on any error", as the real tools; signals keep their 128+n.
    if ((status != 0 && status < 128)); then
        status=1
    fi
    if ((${#LAB_CHILD_PIDS[@]})); then
        kill "${LAB_CHILD_PIDS[@]}" 2>/dev/null
    fi
    if [[ -n ${LAB_BUSY_PORT} ]]; then
        rm -f "${LAB_STATE}/busy/${LAB_BUSY_PORT}"
    fi
    lab_end_flash_run "${status}"
    # A tool's own exit trap (the outer l4t_initrd_flash.sh's cleanup), as the real ones have.
    if declare -F lab_exit_hook >/dev/null; then
        lab_exit_hook
    fi
    if ((LAB_LOCK_HELD)); then
        rm -rf "${LAB_LOCK_DIR}"
    fi
    lab_json_object event end id "${LAB_CALL_ID}" time:raw "${EPOCHREALTIME}" exit:raw "${status}"
    lab_record tool-calls.log "${REPLY}"
    exit "${status}"
}

# A sleep without a lasting child process: a tool killed with SIGKILL leaves no orphan holding
# the caller's pipes open. It waits in one-second slices because a signal that lands just
# before a read starts would not interrupt it: between slices bash runs the pending trap.
lab_sleep() {
    local whole=${1%%.*} fraction='' fd
    if [[ $1 == *.* ]]; then fraction=${1#*.}; fi
    whole=$((10#${whole:-0}))
    exec {fd}<> <(:)  # a pipe nobody writes to: read -t on it is a pure-bash sleep
    while ((whole > 0)); do
        read -rt 1 -u "${fd}" || true
        whole=$((whole - 1))
    done
    if [[ ${fraction} =~ [1-9] ]]; then
        read -rt "0.${fraction}" -u "${fd}" || true
    fi
    exec {fd}<&-
}

# --- paths and files ---------------------------------------------------------------------------

# Resolve a path argument into REPLY: absolute as is, else relative to the tree (the tools are
# documented as run from Linux_for_Tegra), else relative to the caller's directory.
lab_resolve() {
    if [[ $1 == /* ]]; then
        REPLY=$1
    elif [[ -e "${LAB_TREE}/$1" || ! -e "${PWD}/$1" ]]; then
        REPLY="${LAB_TREE}/$1"
    else
        REPLY="${PWD}/$1"
    fi
}

lab_require_file() {  # <what> <path argument>
    lab_resolve "$2"
    [[ -f ${REPLY} ]] || lab_fail "Error: $1 ${2} is not found."
}

# The first line of a file, trimmed, into REPLY (empty when unreadable); no subshell.
lab_read_line() {
    REPLY=''
    if [[ -r $1 ]]; then
        IFS= read -r REPLY <"$1" || true
    fi
    REPLY=${REPLY//[[:space:]]/}
}

# Rewrite a file IN PLACE from stdin: the shell's '>' truncates the existing inode, as the real
# tools do with bootloader/system.img. A hard-linked clone of a bundle therefore writes through
# to the original, which is exactly the hazard the roles must avoid.
lab_rewrite_in_place() {
    cat >"$1"
}

lab_check_board() {
    [[ $1 != */* && -f "${LAB_TREE}/$1.conf" ]] ||
        lab_fail "Error: Invalid target board - $1 (no $1.conf in ${LAB_TREE})"
    LAB_BOARD=$1
}

# --- the fake USB bus --------------------------------------------------------------------------

# Scan the fake sysfs for Jetsons in recovery mode: LAB_DEVICES (ports, sorted) and the maps
# LAB_DEVICE_DIR / LAB_DEVICE_PRODUCT. The port is <busnum>-<devpath>, as the real tools read it.
# LAB_NVIDIA_DIR maps the port of every NVIDIA device, in recovery mode or not, to its entry.
lab_scan_devices() {
    local dir vendor product port wanted busnum
    LAB_DEVICES=()
    declare -gA LAB_DEVICE_DIR=() LAB_DEVICE_PRODUCT=() LAB_NVIDIA_DIR=()
    for dir in "${LAB_USB_SYSFS_ROOT}"/*/; do
        dir=${dir%/}
        lab_read_line "${dir}/idVendor"
        vendor=${REPLY}
        lab_read_line "${dir}/idProduct"
        product=${REPLY}
        [[ ${vendor} == 0955 ]] || continue
        lab_read_line "${dir}/busnum"
        busnum=${REPLY}
        lab_read_line "${dir}/devpath"
        if [[ -n ${busnum} && -n ${REPLY} ]]; then
            port="${busnum}-${REPLY}"
        else
            port=${dir##*/}
        fi
        LAB_NVIDIA_DIR[${port}]=${dir}
        for wanted in "${LAB_RECOVERY_PRODUCTS[@]}"; do
            if [[ ${product} == "${wanted}" ]]; then
                LAB_DEVICES+=("${port}")
                LAB_DEVICE_DIR[${port}]=${dir}
                LAB_DEVICE_PRODUCT[${port}]=${product}
            fi
        done
    done
}

# Select the device to flash into LAB_PORT: the requested port, or the only one in recovery.
lab_pick_device() {
    lab_scan_devices
    if [[ -n $1 ]]; then
        if [[ ! $1 =~ ${LAB_PORT_PATTERN} || -z ${LAB_DEVICE_DIR[$1]:-} ]]; then
            lab_fail "Error: probing the target board failed: no Jetson in recovery mode at USB instance $1."
        fi
        LAB_PORT=$1
    elif ((${#LAB_DEVICES[@]} == 0)); then
        lab_fail "Error: probing the target board failed: no Jetson in recovery mode."
    elif ((${#LAB_DEVICES[@]} > 1)); then
        lab_fail "Error: more than one Jetson in recovery mode (${LAB_DEVICES[*]}): select one with --usb-instance."
    else
        LAB_PORT=${LAB_DEVICES[0]}
    fi
}

# The lab board configs list the modules they support (LAB_RCM_PRODUCTS=...); flashing a
# module with another module's config fails, as a board-id mismatch does on the real tool.
lab_check_board_product() {
    local line product=${LAB_DEVICE_PRODUCT[${LAB_PORT}]}
    line=$(grep -m1 '^LAB_RCM_PRODUCTS=' "${LAB_TREE}/${LAB_BOARD}.conf" || true)
    line=${line#*=}
    line=${line//\"/}
    if [[ -n ${line} && " ${line} " != *" ${product} "* ]]; then
        lab_fail "Error: ${LAB_BOARD}.conf does not support the module in recovery mode at ${LAB_PORT} (0955:${product})."
    fi
}

# The device leaves recovery mode and boots its OS: it disappears from the recovery bus.
lab_device_leaves_recovery() {
    rm -rf "${LAB_DEVICE_DIR[${LAB_PORT}]}"
}

# --- fuses -------------------------------------------------------------------------------------

# Parse the <fuse name=".." value=".."/> elements of a genericfuse XML into LAB_FUSE_NAMES and
# LAB_FUSE_VALUES.
lab_parse_fuses() {
    local content attributes name value
    local element_re='<fuse[[:space:]]([^>]*)>' name_re='name="([^"]*)"' value_re='value="([^"]*)"'
    LAB_FUSE_NAMES=()
    LAB_FUSE_VALUES=()
    content=$(<"$1")
    while [[ ${content} =~ ${element_re} ]]; do
        attributes=${BASH_REMATCH[1]}
        content=${content#*"${BASH_REMATCH[0]}"}
        name='' value=''
        if [[ ${attributes} =~ ${name_re} ]]; then name=${BASH_REMATCH[1]}; fi
        if [[ ${attributes} =~ ${value_re} ]]; then value=${BASH_REMATCH[1]}; fi
        [[ -n ${name} ]] || continue
        LAB_FUSE_NAMES+=("${name}")
        LAB_FUSE_VALUES+=("${value}")
    done
}

# The hex digits of a fuse value, lowercase, without 0x and spaces ("0x00000000 0x000000AB" is
# one value in two words, as odmfuse.sh's chkhash takes it), no leading zeros ("0" for zero).
lab_fuse_digits() {  # <value>
    local digits
    lab_fuse_written_digits "$1"
    digits=${REPLY}
    while [[ ${digits} == 0* ]]; do digits=${digits#0}; done
    REPLY=${digits:-0}
}

# Two fuse values as hex digits of one width (zeros in front), into LAB_FUSE_A and LAB_FUSE_B,
# to be compared digit by digit (the values are up to 64 bytes, too wide for shell arithmetic).
lab_fuse_pair() {  # <value a> <value b>
    local width
    lab_fuse_digits "$1"; LAB_FUSE_A=${REPLY}
    lab_fuse_digits "$2"; LAB_FUSE_B=${REPLY}
    width=$((${#LAB_FUSE_A} > ${#LAB_FUSE_B} ? ${#LAB_FUSE_A} : ${#LAB_FUSE_B}))
    while ((${#LAB_FUSE_A} < width)); do LAB_FUSE_A=0${LAB_FUSE_A}; done
    while ((${#LAB_FUSE_B} < width)); do LAB_FUSE_B=0${LAB_FUSE_B}; done
}

# Fuse bits only go from 0 to 1: burning <new> into a fuse that holds <old> leaves old OR new.
lab_fuse_or() {  # <old value> <new value>
    local old new result='' index
    lab_fuse_pair "$1" "$2"
    old=${LAB_FUSE_A} new=${LAB_FUSE_B}
    for ((index = 0; index < ${#old}; index++)); do
        printf -v REPLY '%x' "$((16#${old:index:1} | 16#${new:index:1}))"
        result+=${REPLY}
    done
    REPLY=0x${result}
}

# What the device on <port> holds: LAB_DEVICE_FUSES (name -> value as burned) and
# LAB_DEVICE_FUSE_ORDER (the names, in the order they were first burned).
lab_read_device_fuses() {  # <port>
    declare -gA LAB_DEVICE_FUSES=()
    LAB_DEVICE_FUSE_ORDER=()
    # Local, so that the fuse configuration the tool was given stays in the caller's LAB_FUSE_*.
    local burned="${LAB_STATE}/fuses/$1.xml" index LAB_FUSE_NAMES LAB_FUSE_VALUES
    [[ -f ${burned} ]] || return 0
    lab_parse_fuses "${burned}"
    for index in "${!LAB_FUSE_NAMES[@]}"; do
        LAB_DEVICE_FUSE_ORDER+=("${LAB_FUSE_NAMES[index]}")
        LAB_DEVICE_FUSES[${LAB_FUSE_NAMES[index]}]=${LAB_FUSE_VALUES[index]}
    done
}

lab_write_device_fuses() {  # <port>
    local burned="${LAB_STATE}/fuses/$1.xml" name
    mkdir -p "${LAB_STATE}/fuses"
    {
        printf '<genericfuse MagicId="0x45535546" version="1.0.0">\n'
        for name in "${LAB_DEVICE_FUSE_ORDER[@]}"; do
            printf '    <fuse name="%s" value="%s"/>\n' "${name}" "${LAB_DEVICE_FUSES[${name}]}"
        done
        printf '</genericfuse>\n'
    } >"${burned}.$$"
    mv -f "${burned}.$$" "${burned}"
}

# Whether the device on <port> has a non-zero <fuse name>.
lab_device_has_fuse() {  # <port> <fuse name>
    lab_read_device_fuses "$1"
    [[ -n ${LAB_DEVICE_FUSES[$2]+set} ]] || return 1
    lab_fuse_digits "${LAB_DEVICE_FUSES[$2]}"
    [[ ${REPLY} != 0 ]]
}

# A PKC- or SBK-fused device only talks to tools given its keys.
lab_check_keys() {  # <pkc argument> <sbk argument> <pkc option> <sbk option>
    if [[ -z $1 ]] && lab_device_has_fuse "${LAB_PORT}" PublicKeyHash; then
        lab_fail "Error: the target at ${LAB_PORT} is PKC fused: its key must be given with $3 <pkc.pem>."
    fi
    if [[ -z $2 ]] && lab_device_has_fuse "${LAB_PORT}" SecureBootKey; then
        lab_fail "Error: the target at ${LAB_PORT} is SBK fused: its key must be given with $4 <sbk.key>."
    fi
}

lab_fuse_event() {  # <event> [key value]...
    local devices
    lab_json_array "${LAB_DEVICES[@]}"
    devices=${REPLY}
    lab_json_object time:raw "${EPOCHREALTIME}" event "$1" tool "${LAB_TOOL}" pid:raw "$$" \
        tree "${LAB_TREE}" devices:raw "${devices}" "${@:2}"
    lab_record fuse-events.log "${REPLY}"
}

# Odmfuse and odmfuseread act on THE device in recovery; with several, the real tools pick one
# unpredictably. The fake records that and takes the first, so tests can see a role let it happen.
lab_pick_single_device() {
    lab_scan_devices
    ((${#LAB_DEVICES[@]} > 0)) || lab_fail "Error: probing the target board failed: no Jetson in recovery mode."
    if ((${#LAB_DEVICES[@]} > 1)); then
        lab_fuse_event multi-device usb_instance "${LAB_DEVICES[0]}"
        lab_say "Warning: more than one Jetson in recovery mode (${LAB_DEVICES[*]})."
    fi
    LAB_PORT=${LAB_DEVICES[0]}
}

# --- fuses: the device's side (NVIDIA's r36.2 odmfuse.sh, odmfuse.func, bootloader/
# tegraflash_impl_t234.py and flash.sh; public copy: github.com/johnnynunez/Linux_for_Tegra) ----
#
# Lab state of this part:
#   fuses/<port>.xml        the fuses the device holds (as above; set_device_fuses gives a fresh
#                           module its initial values, such as BootSecurityInfo 0x1e0)
#   uart/<port>.log         the device's serial console: what its fuse burner (FSKP) said, lines
#                           like NVIDIA's ("I> 1. Start PublicKeyHash burn", "E> FUSE: ...")
#   chip/<port>/lab_ecid, chip/<port>/lab_chip_sku   the device's chip identity, kept when it
#                           leaves recovery mode (a copy of the sysfs attributes of the same names)

# NVIDIA's fixed list of the Orin fuses odmfuseread.sh reads (odmfuse.func read_fuse_values:
# FUSES_KEYS_T234, FUSES_MANUFACTURING_T234, FUSES_ODM_RESERVED), in its order.
# shellcheck disable=SC2034  # read by odmfuseread.sh
LAB_READABLE_FUSES_T234=(PublicKeyHash BootSecurityInfo ArmJtagDisable SecurityMode SwReserved DebugAuthentication
    OdmId OdmLock ReservedOdm0 ReservedOdm1 ReservedOdm2 ReservedOdm3 ReservedOdm4 ReservedOdm5 ReservedOdm6 ReservedOdm7)
LAB_FUSE_MAGIC=0x45535546       # "FUSE": the MagicId of a genericfuse XML
LAB_FUSE_TEST_MAGIC=0x54534554  # "TEST": what generate_fskp_blob substitutes for --test
# The chip SKU of each recovery-mode product id (chip_info of the module).
declare -A LAB_PRODUCT_CHIP_SKUS=([7323]=D3 [7423]=D4 [7523]=D5 [7623]=D6 [7223]=D2 [7023]=D0)

# The size in bytes of a T234 fuse, into REPLY.
lab_fuse_size() {  # <fuse name>
    case $1 in
        PublicKeyHash) REPLY=64 ;;
        SecureBootKey | OemK1 | OemK2 | Kdk0) REPLY=32 ;;
        OdmId) REPLY=8 ;;
        *) REPLY=4 ;;
    esac
}

# The hex digits of a value AS WRITTEN, into REPLY: lowercase, each word's 0x and the spaces
# dropped, leading zeros kept ("0x00000000 0x000000AB" gives 16 digits).
lab_fuse_written_digits() {  # <value>
    local word digits=''
    local -a words
    read -ra words <<<"$1"
    for word in "${words[@]}"; do
        if [[ ${word} == 0[xX]* ]]; then word=${word:2}; fi
        digits+=${word}
    done
    REPLY=${digits,,}
}

# A fuse value zero-padded to <bytes> (hex digits, no 0x), as odmfuseread.sh prints it, into REPLY.
lab_fuse_padded() {  # <value> <bytes>
    lab_fuse_digits "$1"
    while ((${#REPLY} < 2 * $2)); do REPLY=0${REPLY}; done
}

# Whether burning <new> over <held> would clear a burned bit (held & ~new != 0).
lab_fuse_clears() {  # <held value> <new value>
    local held new index
    lab_fuse_pair "$1" "$2"
    held=${LAB_FUSE_A} new=${LAB_FUSE_B}
    for ((index = 0; index < ${#held}; index++)); do
        if (((16#${held:index:1} & ~16#${new:index:1}) & 15)); then return 0; fi
    done
    return 1
}

# Whether bit <n> of a fuse value is set.
lab_fuse_bit() {  # <value> <n>
    local digit
    lab_fuse_digits "$1"
    digit=$((${#REPLY} - 1 - $2 / 4))
    ((digit >= 0)) || return 1
    (((16#${REPLY:digit:1} >> ($2 % 4)) & 1))
}

# One line on the device's serial console (uart/<port>.log).
lab_uart() {  # <port> <line>
    mkdir -p "${LAB_STATE}/uart"
    printf '%s\n' "$2" >>"${LAB_STATE}/uart/$1.log"
}

# The fuse burner on the device (the FSKP image "tegraflash.py --cmd burnfuses" boots, which
# reports on the UART only: tegraflash_impl_t234.py tegraflash_burnfuses just prints "Please
# check the uart to get the result of fuse burning"). It reads the XML's MagicId NUMERICALLY:
# 0x54534554 ("TEST") is a dry run, 0x45535546 in any spelling a real burn, anything else is
# refused. It applies the fuses IN ORDER and stops at the first it cannot burn, keeping what it
# burned before: a value longer than the fuse, a value that would clear a burned bit ("trying to
# turn 1 into 0"), a ReservedOdm<n> (n < 4) whose OdmLock bit is set, any fuse once SecurityMode
# is burned. A value equal to the burned one is skipped; otherwise the fuse holds old OR new (a
# shorter PublicKeyHash is burned zero-extended). A dry run walks the same way and burns nothing.
# Sets LAB_BURN_VERDICT (burned, dry-run, stopped, bad-magic), LAB_BURN_DRY_RUN (0/1),
# LAB_BURN_STOPPED (the fuse it stopped at) and LAB_BURN_REASON.
# shellcheck disable=SC2034  # LAB_BURN_* are read by odmfuse.sh
lab_fuse_burner() {  # <port> <fuse XML as sent to the device>
    local port=$1 content magic='' digits index name value held size number=0 locked=0 lock
    local magic_re='<genericfuse[^>]*MagicId="([^"]*)"' LAB_FUSE_NAMES LAB_FUSE_VALUES
    LAB_BURN_VERDICT='' LAB_BURN_DRY_RUN=0 LAB_BURN_STOPPED='' LAB_BURN_REASON=''
    content=$(<"$2")
    if [[ ${content} =~ ${magic_re} ]]; then magic=${BASH_REMATCH[1]}; fi
    lab_uart "${port}" "I> FSKP: burnfuses, MagicId ${magic:-(none)}"
    lab_fuse_written_digits "${magic}"
    digits=${REPLY}
    if [[ ${magic} != 0[xX]* || ! ${digits} =~ ^[0-9a-f]{1,16}$ ]]; then
        digits=''
    elif ((16#${digits} == LAB_FUSE_TEST_MAGIC)); then
        LAB_BURN_DRY_RUN=1
    elif ((16#${digits} != LAB_FUSE_MAGIC)); then
        digits=''
    fi
    if [[ -z ${digits} ]]; then
        lab_uart "${port}" "E> FUSE: Invalid fuse magic id ${magic:-(none)}, nothing burned"
        LAB_BURN_VERDICT=bad-magic LAB_BURN_REASON="invalid magic id ${magic:-(none)}"
        return 0
    fi
    lab_parse_fuses "$2"
    lab_read_device_fuses "${port}"
    lab_fuse_digits "${LAB_DEVICE_FUSES[SecurityMode]:-0x0}"
    if [[ ${REPLY} != 0 ]]; then locked=1; fi
    for index in "${!LAB_FUSE_NAMES[@]}"; do
        name=${LAB_FUSE_NAMES[index]} value=${LAB_FUSE_VALUES[index]}
        number=$((number + 1))
        lab_uart "${port}" "I> ${number}. Start ${name} burn"
        held=${LAB_DEVICE_FUSES[${name}]:-0x0}
        lab_fuse_written_digits "${value}"
        digits=${REPLY}
        lab_fuse_size "${name}"
        size=${REPLY}
        if ((locked)); then
            LAB_BURN_REASON='SecurityMode is burned, the fuses are locked'
        elif [[ ! ${digits} =~ ^[0-9a-f]+$ ]]; then
            LAB_BURN_REASON="invalid value ${value}"
        elif (((${#digits} + 1) / 2 > size)); then
            LAB_BURN_REASON="value ${value} is longer than the fuse (${size} bytes)"
        else
            lab_fuse_digits "${held}"
            digits=${REPLY}
            lab_fuse_digits "${value}"
            if [[ ${REPLY} == "${digits}" ]]; then
                lab_uart "${port}" "I> Fuse is already burned with the same value"
                continue
            fi
            lock=${LAB_DEVICE_FUSES[OdmLock]:-0x0}
            if [[ ${name} =~ ^ReservedOdm([0-3])$ ]] && lab_fuse_bit "${lock}" "${BASH_REMATCH[1]}"; then
                LAB_BURN_REASON="${name} is locked by OdmLock ${lock}"
            elif lab_fuse_clears "${held}" "${value}"; then
                LAB_BURN_REASON="trying to turn 1 into 0 (burned ${held}, asked ${value})"
            fi
        fi
        if [[ -n ${LAB_BURN_REASON} ]]; then
            LAB_BURN_STOPPED=${name}
            lab_uart "${port}" "E> FUSE: Failed to burn fuse ${name}: ${LAB_BURN_REASON}"
            break
        fi
        if [[ -z ${LAB_DEVICE_FUSES[${name}]+set} ]]; then
            LAB_DEVICE_FUSE_ORDER+=("${name}")
            LAB_DEVICE_FUSES[${name}]=${value}
        else
            lab_fuse_or "${held}" "${value}"
            LAB_DEVICE_FUSES[${name}]=${REPLY}
        fi
        lab_uart "${port}" "I> ${name} burned"
        if [[ ${name} == SecurityMode && ${LAB_DEVICE_FUSES[${name}]} =~ [1-9a-fA-F] ]]; then locked=1; fi
    done
    if ((LAB_BURN_DRY_RUN)); then
        lab_uart "${port}" "I> Dry run detected, returning now."
    else
        lab_write_device_fuses "${port}"  # what was burned before a stop stays burned
    fi
    if [[ -n ${LAB_BURN_STOPPED} ]]; then
        LAB_BURN_VERDICT=stopped
    elif ((LAB_BURN_DRY_RUN)); then
        LAB_BURN_VERDICT=dry-run
    else
        LAB_BURN_VERDICT=burned
        lab_uart "${port}" "I> Fuse burning done"
    fi
}

# The device's authentication as get_fuse_level reads it from the chip, into REPLY: SBKPKC,
# PKC, SBK (SecureBootKey without PublicKeyHash) or NS.
lab_device_bootauth() {  # <port>
    local pkc=0 sbk=0
    if lab_device_has_fuse "$1" PublicKeyHash; then pkc=1; fi
    if lab_device_has_fuse "$1" SecureBootKey; then sbk=1; fi
    case ${pkc}${sbk} in
        11) REPLY=SBKPKC ;;
        10) REPLY=PKC ;;
        01) REPLY=SBK ;;
        *) REPLY=NS ;;
    esac
}

# check_sbk_pkc of odmfuse.func, with NVIDIA's messages: which keys the device's
# authentication needs. (The lab counts an unfused device as NS.)
lab_check_sbk_pkc() {  # <port> <pkc argument> <sbk argument>
    lab_device_bootauth "$1"
    case ${REPLY} in
        PKC)
            [[ -n $2 ]] || lab_fail "Error: PKC key file is not provided for PKC protected target board."
            [[ -z $3 ]] || lab_fail "Error: SBK key file is provided for PKC protected target board."
            ;;
        SBKPKC)
            [[ -n $2 && -n $3 ]] ||
                lab_fail "Error: Either PKC or SBK key is not provided for SBK+PKC protected target board."
            ;;
        SBK) lab_fail "Error: L4T does not support SBK individually, please use SBK+PKC instead." ;;
        NS)
            if [[ -n $3 && -z $2 ]]; then
                lab_fail "Error: L4T does not support SBK individually, please use SBK+PKC instead."
            fi
            ;;
    esac
}

# The lab's PublicKeyHash of a PKC key, as the tree's bootloader/tegrasign_v3.py prints it
# (generate_key_hash_v3 of odmfuse.sh), into REPLY ('' when it is no key).
lab_pkc_key_hash() {  # <key file>
    local dir line key
    lab_resolve "$1"
    key=${REPLY}
    dir=$(mktemp -d)
    line=$(cd "${dir}" || exit 1; "${LAB_TREE}/bootloader/tegrasign_v3.py" --pubkeyhash ppp hhh --key "${key}" 2>/dev/null |
        grep 'tegra-fuse') || line=""
    rm -rf "${dir}"
    REPLY=${line##* }
}

# The keys given must be THE device's: the RCM messages signed with another PKC key (its lab
# hash is not the burned PublicKeyHash) or encrypted with another SBK are rejected. Returns 1
# with a message in REPLY when the device rejects them.
lab_check_device_keys() {  # <port> <pkc argument> <sbk argument>
    local burned given
    lab_read_device_fuses "$1"
    if [[ -n $2 ]] && lab_device_has_fuse "$1" PublicKeyHash; then
        lab_fuse_digits "${LAB_DEVICE_FUSES[PublicKeyHash]}"; burned=${REPLY}
        lab_pkc_key_hash "$2"
        if [[ -z ${REPLY} ]]; then
            REPLY="Error: $2 is not a PKC key: the target at $1 rejected the RCM messages."
            return 1
        fi
        lab_fuse_digits "${REPLY}"
        if [[ ${REPLY} != "${burned}" ]]; then
            REPLY="Error: the target at $1 rejected the RCM messages signed with $2 (its PublicKeyHash is another key's)."
            return 1
        fi
    fi
    if [[ -n $3 ]] && lab_device_has_fuse "$1" SecureBootKey; then
        lab_fuse_digits "${LAB_DEVICE_FUSES[SecureBootKey]}"; burned=${REPLY}
        lab_resolve "$3"
        given=$(<"${REPLY}")
        lab_fuse_digits "${given}"
        if [[ ${REPLY} != "${burned}" ]]; then
            REPLY="Error: the target at $1 rejected the RCM messages encrypted with $3 (not its SecureBootKey)."
            return 1
        fi
    fi
    return 0
}

# A new chip identity (ECID) into REPLY: 32 hex digits laid out as BR_CID is (flash.sh
# get_fuse_level: digit 0 the fuse level, 1-2 the boot authentication, 3 the chip revision,
# 4-5 the chip id 23), then 26 digits unique to the chip.
lab_new_ecid() {
    local unique
    unique=$(od -An -N13 -tx1 /dev/urandom)
    unique=${unique//[[:space:]]/}
    REPLY="000123${unique^^}"
}

# The chip identity of the device on <port> into LAB_CHIP_ECID and LAB_CHIP_SKU: from its sysfs
# entry (lab_ecid, lab_chip_sku; usb_sysfs.add_device writes them) while it is on the bus, else
# from the copy kept in chip/<port>/ when the lab last saw it. A device plugged without them is
# given a new identity here. Needs lab_scan_devices.
lab_chip_identity() {  # <port>
    local dir=${LAB_NVIDIA_DIR[$1]:-} kept="${LAB_STATE}/chip/$1"
    LAB_CHIP_ECID='' LAB_CHIP_SKU=''
    if [[ -z ${dir} ]]; then
        lab_read_line "${kept}/lab_ecid"; LAB_CHIP_ECID=${REPLY}
        lab_read_line "${kept}/lab_chip_sku"; LAB_CHIP_SKU=${REPLY}
        return 0
    fi
    lab_read_line "${dir}/lab_ecid"; LAB_CHIP_ECID=${REPLY}
    lab_read_line "${dir}/lab_chip_sku"; LAB_CHIP_SKU=${REPLY}
    if [[ -z ${LAB_CHIP_ECID} ]]; then
        lab_new_ecid
        LAB_CHIP_ECID=${REPLY}
        printf '%s\n' "${LAB_CHIP_ECID}" >"${dir}/lab_ecid"
    fi
    if [[ -z ${LAB_CHIP_SKU} ]]; then
        lab_read_line "${dir}/idProduct"
        LAB_CHIP_SKU=${LAB_PRODUCT_CHIP_SKUS[${REPLY}]:-}
        if [[ -n ${LAB_CHIP_SKU} ]]; then printf '%s\n' "${LAB_CHIP_SKU}" >"${dir}/lab_chip_sku"; fi
    fi
    mkdir -p "${kept}"
    printf '%s\n' "${LAB_CHIP_ECID}" >"${kept}/lab_ecid.$$"
    mv -f "${kept}/lab_ecid.$$" "${kept}/lab_ecid"
    printf '%s\n' "${LAB_CHIP_SKU}" >"${kept}/lab_chip_sku.$$"
    mv -f "${kept}/lab_chip_sku.$$" "${kept}/lab_chip_sku"
}

# The BR_CID "tegrarcm_v2 --uid" prints for the device on <port>, into REPLY: its ECID with the
# fuse level and boot authentication digits the chip reports from its fuses, as flash.sh
# get_fuse_level decodes them (8xx production; x1x RSA 3K ... x9x SBK + RSA 3K): the low nibble
# of BootSecurityInfo (or RSA 3K when only PublicKeyHash is burned), 8 added with SecureBootKey;
# production once SecurityMode or an authentication is burned. Needs lab_scan_devices.
lab_br_cid() {  # <port>
    local auth=0 level=0 info
    lab_chip_identity "$1"
    lab_read_device_fuses "$1"
    lab_fuse_digits "${LAB_DEVICE_FUSES[BootSecurityInfo]:-0x0}"
    info=$((16#${REPLY: -1}))
    auth=$((info & 7))
    if ((auth == 0)) && lab_device_has_fuse "$1" PublicKeyHash; then auth=1; fi
    if ((info & 8)) || lab_device_has_fuse "$1" SecureBootKey; then auth=$((auth | 8)); fi
    if ((auth)) || lab_device_has_fuse "$1" SecurityMode; then level=8; fi
    printf -v REPLY '0x%X%X%s' "${level}" "${auth}" "${LAB_CHIP_ECID:2}"
}

# --- planted failures --------------------------------------------------------------------------

# Take one planted failure from <dir>/<port> ("<count> <kind>") into REPLY, or '' if none.
lab_take_planted() {  # <dir under the lab state> <port>
    local file="${LAB_STATE}/$1/$2" count kind
    REPLY=''
    [[ -f ${file} ]] || return 0
    read -r count kind <"${file}" || true
    if [[ ! ${count} =~ ^[0-9]+$ ]] || ((count == 0)); then
        rm -f "${file}"
        return 0
    fi
    if ((count > 1)); then
        printf '%d %s\n' "$((count - 1))" "${kind}" >"${file}.$$"
        mv -f "${file}.$$" "${file}"
    else
        rm -f "${file}"
    fi
    REPLY=${kind}
}

# Fail the way real floors do, with NVIDIA's messages, if a failure was planted for this port.
lab_planted_flash_failure() {
    lab_take_planted fail "${LAB_PORT}"
    case ${REPLY} in
        '') return 0 ;;
        usb-timeout) lab_fail "ERROR: might be timeout in USB write." ;;
        boot-timeout) lab_fail "Waiting for target to boot-up... Timeout" ;;
        hang)
            lab_say "Waiting for target to boot-up..."
            lab_sleep "${LAB_HANG_SECONDS}"
            lab_fail "Waiting for target to boot-up... Timeout"
            ;;
        *) lab_fail "lab: unknown planted failure kind '${REPLY}' for ${LAB_PORT}" ;;
    esac
}

# --- flashing ----------------------------------------------------------------------------------

# One tree, one flash at a time: the real tools share bootloader/system.img, bootloader/mnt,
# tools/kernel_flash/images and exit traps per tree. The fake detects a second run instead of
# silently corrupting, and records it so tests can prove the roles never let it happen.
lab_lock_tree() {  # <requested usb instance, may be empty>
    local attempt holder_pid holder_tool
    for attempt in 1 2; do
        if mkdir "${LAB_LOCK_DIR}" 2>/dev/null; then
            LAB_LOCK_HELD=1
            printf '%s %s\n' "$$" "${LAB_TOOL}" >"${LAB_LOCK_DIR}/owner"
            return 0
        fi
        holder_pid='' holder_tool=''
        if [[ -r "${LAB_LOCK_DIR}/owner" ]]; then
            read -r holder_pid holder_tool <"${LAB_LOCK_DIR}/owner" || true
        fi
        # A run killed with SIGKILL cannot remove its lock: a dead owner is no collision.
        if ((attempt == 1)) && [[ -n ${holder_pid} ]] && ! kill -0 "${holder_pid}" 2>/dev/null; then
            rm -rf "${LAB_LOCK_DIR}"
            continue
        fi
        break
    done
    lab_json_object time:raw "${EPOCHREALTIME}" tool "${LAB_TOOL}" pid:raw "$$" tree "${LAB_TREE}" \
        usb_instance "$1" holder_pid "${holder_pid}" holder_tool "${holder_tool}"
    lab_record collisions.log "${REPLY}"
    lab_fail "Error: another flash is running in this tree (${LAB_TREE}, pid ${holder_pid:-unknown})."
}

# The run's device instance (LAB_RUN_INSTANCE, the initrd flash's only) goes into the start
# record; the device really written (LAB_RUN_DEVICE, set by lab_write_meta) into the end record.
lab_begin_flash_run() {
    local instance=null
    LAB_RUN_SEQ=$((LAB_RUN_SEQ + 1))
    LAB_RUN_ID="${LAB_CALL_ID}:${LAB_RUN_SEQ}"
    LAB_RUN_DEVICE=''
    if [[ -n ${LAB_RUN_INSTANCE} ]]; then instance=${LAB_RUN_INSTANCE}; fi
    lab_json_object event start id "${LAB_RUN_ID}" tool "${LAB_TOOL}" usb_instance "${LAB_PORT}" \
        tree "${LAB_TREE}" time:raw "${EPOCHREALTIME}" instance:raw "${instance}"
    lab_record flash-runs.log "${REPLY}"
}

lab_end_flash_run() {  # <exit status>
    local device=null
    [[ -n ${LAB_RUN_ID} ]] || return 0
    if [[ -n ${LAB_RUN_DEVICE} ]]; then
        lab_json_string "${LAB_RUN_DEVICE}"
        device=${REPLY}
    fi
    lab_json_object event end id "${LAB_RUN_ID}" time:raw "${EPOCHREALTIME}" exit:raw "$1" device:raw "${device}"
    lab_record flash-runs.log "${REPLY}"
    LAB_RUN_ID=''
}

# --- the rootfs partitions' images: formats, and what a device does with them --------------------
#
# The formats follow NVIDIA's r36.2 flash.sh (build_fsimg), tools/disk_encryption/
# disk_encryption_helper.func (build_boot_fsimg, build_enc_root_fsimg),
# tools/kernel_flash/l4t_create_images_for_kernel_flash.sh (package_images) and
# tools/kernel_flash/l4t_flash_from_kernel.sh (do_write_APP, flash_partition, write_sparse_image)
# (public copy: github.com/johnnynunez/Linux_for_Tegra), and for r38 what docs/l4t-app-image.md
# says of NVIDIA's r38.4 l4t_create_images_for_kernel_flash.sh. The lab stands them in so:
#   - a partition's filesystem (the ext4 image system.img.raw): a tar of its files
#     (lab_build_image), the only filesystem the lab reads;
#   - its Android sparse form (mksparse: the sparse system.img): a real Android sparse image
#     (lab_sparse_encode) whose expansion (simg2img) is that tar;
#   - an encrypted rootfs (build_enc_root_fsimg: a LUKS2 container, made sparse): the LUKS2
#     magic, a lab header, then the tar encrypted (see package_enc_image in
#     l4t_initrd_flash_internal.sh); the lab never opens it.

LAB_SPARSE_MAGIC=3aff26ed  # l4t_flash_from_kernel.sh's SPARSE_FILE_MAGIC: 0xed26ff3a, little-endian
LAB_ZSTD_MAGIC=28b52ffd    # a zstd frame: 0xfd2fb528, little-endian
LAB_LUKS_MAGIC=4c554b53babe  # "LUKS\xba\xbe", the LUKS1/LUKS2 header magic (cryptsetup)
LAB_SPARSE_BLOCK=4096
LAB_SPARSE_FREE_BLOCKS=256  # the unused blocks of a lab partition: one DONT_CARE chunk

# Build the root filesystem image (a tar archive standing in for the ext4 image) in place.
lab_build_image() {  # <rootfs dir> <image file>
    [[ -d $1 ]] || lab_fail "Error: rootfs directory $1 does not exist."
    lab_say "Making system.img from $1..."
    tar --numeric-owner -C "$1" -cf - . | lab_rewrite_in_place "$2"
}

# The first <count> bytes of <file> from <offset>, as hex digits, into REPLY ('' if unreadable).
lab_magic() {  # <file> <offset> <count>
    REPLY=$(od -An -tx1 -j "$2" -N "$3" -- "$1" 2>/dev/null) || REPLY=''
    REPLY=${REPLY//[[:space:]]/}
}

# is_tar_archive of NVIDIA's r36.2 tools/kernel_flash/l4t_flash_from_kernel.sh (public copy:
# github.com/johnnynunez/Linux_for_Tegra): "file <image> | grep -q 'tar archive'". file(1) calls
# a file with the ustar magic at offset 257 ("ustar\0" POSIX, "ustar  " GNU) a tar archive.
lab_is_tar_archive() {  # <image file>
    local magic
    magic=$(od -An -c -j 257 -N 5 -- "$1" 2>/dev/null) || return 1
    [[ ${magic//[[:space:]]/} == ustar ]]
}

# is_sparse_image of r36.2 l4t_flash_from_kernel.sh: "xxd -p -s 0f -l 4 <image>" is 3aff26ed.
lab_is_sparse_image() {  # <image file>
    lab_magic "$1" 0 4
    [[ ${REPLY} == "${LAB_SPARSE_MAGIC}" ]]
}

lab_is_zstd() {  # <image file>
    lab_magic "$1" 0 4
    [[ ${REPLY} == "${LAB_ZSTD_MAGIC}" ]]
}

lab_is_luks() {  # <image file>
    lab_magic "$1" 0 6
    [[ ${REPLY} == "${LAB_LUKS_MAGIC}" ]]
}

# The tree's L4T release, from the first line of nv_tegra/nv_tegra_release ("# R36 (release),
# REVISION: 4.0, ..."; flash.sh prints it as the BSP information): its major number into REPLY,
# 36 when the line says none. What a release's tools do differently is modelled by this number.
lab_l4t_major() {
    local line=''
    if [[ -r "${LAB_TREE}/nv_tegra/nv_tegra_release" ]]; then
        IFS= read -r line <"${LAB_TREE}/nv_tegra/nv_tegra_release" || true
    fi
    if [[ ${line} =~ ^#[[:space:]]*R([0-9]+) ]]; then
        REPLY=$((10#${BASH_REMATCH[1]}))
    else
        REPLY=36
    fi
}

# The little-endian bytes of <value> in <count> bytes, as printf escapes (\xNN), into REPLY.
lab_le_escapes() {  # <count> <value>
    local index
    REPLY=''
    for ((index = 0; index < $1; index++)); do
        printf -v REPLY '%s\\x%02x' "${REPLY}" $((($2 >> (8 * index)) & 255))
    done
}

# Several little-endian fields (<count>:<value> words) as bytes on stdout.
lab_le_write() {  # <count:value>...
    local field escapes=''
    for field in "$@"; do
        lab_le_escapes "${field%%:*}" "$((${field#*:}))"
        escapes+=${REPLY}
    done
    # shellcheck disable=SC2059  # the format is made of \xNN escapes only
    printf "${escapes}"
}

# An unsigned little-endian integer of <count> bytes at <offset> of <file>, into REPLY.
lab_le_read() {  # <file> <offset> <count: 2 or 4>
    REPLY=$(od -An -t"u$3" --endian=little -j "$2" -N "$3" -- "$1" 2>/dev/null) || return 1
    REPLY=${REPLY//[[:space:]]/}
    [[ -n ${REPLY} ]]
}

# The Android sparse form of <raw image>, on stdout: what mksparse makes of system.img.raw in
# flash.sh's build_fsimg ("mksparse --fillpattern=0 system.img.raw system.img"). The sparse
# format v1.0 (AOSP's sparse_format.h, which simg2img reads): a 28-byte file header (magic
# 0xed26ff3a, version 1.0, header sizes 28 and 12, 4096-byte blocks, total blocks, total chunks,
# checksum 0), then chunks of a 12-byte header (type, reserved, size in blocks, total size in
# bytes) and data. The lab writes two: a RAW chunk (0xcac1) holding the raw image padded to whole
# blocks, and a DONT_CARE chunk (0xcac3) for the partition's unused blocks.
lab_sparse_encode() {  # <raw image>
    local size blocks
    size=$(stat -c %s -- "$1")
    blocks=$(((size + LAB_SPARSE_BLOCK - 1) / LAB_SPARSE_BLOCK))
    lab_le_write 4:0xed26ff3a 2:1 2:0 2:28 2:12 "4:${LAB_SPARSE_BLOCK}" \
        "4:$((blocks + LAB_SPARSE_FREE_BLOCKS))" 4:2 4:0 \
        2:0xcac1 2:0 "4:${blocks}" "4:$((12 + blocks * LAB_SPARSE_BLOCK))"
    cat -- "$1"
    head -c $((blocks * LAB_SPARSE_BLOCK - size)) /dev/zero
    lab_le_write 2:0xcac3 2:0 "4:${LAB_SPARSE_FREE_BLOCKS}" 4:12
}

# simg2img <sparse image> <raw output>, as write_sparse_image runs it (r36.2
# l4t_flash_from_kernel.sh) after blkdiscard zeroed the partition: RAW chunks are copied, FILL
# chunks (0xcac2) repeat their 4-byte pattern, DONT_CARE chunks stay zero, CRC32 chunks (0xcac4)
# are skipped. 1 for anything simg2img refuses: a bad header, a chunk that runs past the end of
# the file or disagrees with its size, blocks that do not add up to the header's total.
lab_sparse_decode() {  # <sparse image> <raw output>
    local image=$1 out=$2 file_size block total chunks index offset=28 type blocks bytes written=0
    file_size=$(stat -c %s -- "${image}")
    lab_le_read "${image}" 0 4 && ((REPLY == 0xed26ff3a)) || return 1
    lab_le_read "${image}" 4 2 && ((REPLY == 1)) || return 1
    lab_le_read "${image}" 8 2 && ((REPLY == 28)) || return 1
    lab_le_read "${image}" 10 2 && ((REPLY == 12)) || return 1
    lab_le_read "${image}" 12 4 && ((REPLY > 0 && REPLY % 4 == 0)) || return 1
    block=${REPLY}
    lab_le_read "${image}" 16 4 || return 1
    total=${REPLY}
    lab_le_read "${image}" 20 4 || return 1
    chunks=${REPLY}
    : >"${out}"
    for ((index = 0; index < chunks; index++)); do
        ((offset + 12 <= file_size)) || return 1
        lab_le_read "${image}" "${offset}" 2 || return 1
        type=${REPLY}
        lab_le_read "${image}" $((offset + 4)) 4 || return 1
        blocks=${REPLY}
        lab_le_read "${image}" $((offset + 8)) 4 || return 1
        bytes=${REPLY}
        ((offset + bytes <= file_size)) || return 1
        case ${type} in
            51905)  # RAW
                ((bytes == 12 + blocks * block)) || return 1
                dd if="${image}" bs=65536 iflag=skip_bytes,count_bytes skip=$((offset + 12)) \
                    count=$((blocks * block)) status=none >>"${out}" || return 1
                ;;
            51906)  # FILL
                ((bytes == 16)) || return 1
                # The 4-byte pattern, doubled until it fills the chunk's blocks.
                dd if="${image}" bs=4 iflag=skip_bytes skip=$((offset + 12)) count=1 status=none >"${out}.fill"
                while (($(stat -c %s -- "${out}.fill") < blocks * block)); do
                    cat -- "${out}.fill" "${out}.fill" >"${out}.fill2"
                    mv -f -- "${out}.fill2" "${out}.fill"
                done
                head -c $((blocks * block)) -- "${out}.fill" >>"${out}"
                rm -f -- "${out}.fill"
                ;;
            51907)  # DONT_CARE
                ((bytes == 12)) || return 1
                head -c $((blocks * block)) /dev/zero >>"${out}"
                ;;
            51908)  # CRC32
                ((bytes == 16)) || return 1
                blocks=0
                ;;
            *) return 1 ;;
        esac
        written=$((written + blocks))
        offset=$((offset + bytes))
    done
    ((written == total))
}

# What a partition holds once the flashing initrd wrote <image> to it, as r36.2
# l4t_flash_from_kernel.sh writes one, into <storage dir> (emptied first) when it is a filesystem
# the lab reads; LAB_APP_HOW says how it went (the meta's app= values):
#   sparse     write_sparse_image (blkdiscard, simg2img): the partition holds the expanded image,
#              a filesystem: the lab unpacks its tar (an expansion that is no tar: raw; a LUKS
#              container: encrypted);
#   tar        do_write_APP's tar branch (<tar> 1): "mkfs.ext4 -F", mount, "tar -xpf <image>
#              --numeric-owner ...", with GNU tar's rules: a later member replaces an earlier one
#              of the same name, reading stops at the first end-of-archive marker (no -i);
#   partial    a tar that breaks off: the flash fails, the storage keeps what tar unpacked (the
#              partition was formatted first);
#   failed     a sparse image simg2img refuses: the flash fails, the partition is blank;
#   encrypted  a LUKS container, written as it is: the lab does not open it;
#   raw        anything else, written with dd: nothing the lab reads.
# <zstd> 1: the tools detect zstd, as NVIDIA's r38.4 do_write_APP does (r38.4 is not in the
# public mirror: docs/l4t-app-image.md says so, not how it goes on): the lab decompresses a zstd
# image and writes what it holds as above (tar-zstd, sparse-zstd for system.img.zst; a cut stream
# fails: partial). r36.2 does not: a zstd image is neither sparse nor tar there, so dd writes it
# (raw). <tar> 0: the
# partition is written by flash_partition (APP_ENC), which has no tar branch. 1 when the write
# failed. What lands on the device is what is in the image file at this moment.
lab_unpack_app() {  # <image file> <storage dir> <zstd: 0|1> <tar: 0|1>
    local image=$1 storage=$2 work suffix='' cut=0 status=0 line
    rm -rf "${storage}"
    work=$(mktemp -d)
    LAB_APP_HOW=raw LAB_APP_LUKS_ECID=''
    if (($3)) && lab_is_zstd "${image}"; then
        # A cut stream gives what zstd decompressed before the cut, and an error.
        zstd -dcq -- "${image}" >"${work}/image" 2>/dev/null || cut=1
        image="${work}/image" suffix=-zstd
    fi
    if lab_is_sparse_image "${image}"; then
        if ((cut)) || ! lab_sparse_decode "${image}" "${work}/raw"; then
            LAB_APP_HOW=failed status=1
        else
            image="${work}/raw"
            LAB_APP_HOW=sparse${suffix}
            if lab_is_tar_archive "${image}"; then
                mkdir "${storage}"
                if ! tar -xpf "${image}" --numeric-owner -C "${storage}" 2>/dev/null; then
                    rm -rf "${storage}"  # no filesystem the lab can read
                    LAB_APP_HOW=raw
                fi
            elif lab_is_luks "${image}"; then
                LAB_APP_HOW=encrypted
            else
                LAB_APP_HOW=raw
            fi
        fi
    elif (($4)) && { [[ -n ${suffix} ]] || lab_is_tar_archive "${image}"; }; then
        mkdir "${storage}"
        if ((!cut)) && lab_is_tar_archive "${image}" && tar -xpf "${image}" --numeric-owner -C "${storage}"; then
            LAB_APP_HOW=tar${suffix}
        else
            LAB_APP_HOW=partial status=1
        fi
    elif lab_is_luks "${image}"; then
        LAB_APP_HOW=encrypted
    fi
    if [[ ${LAB_APP_HOW} == encrypted ]]; then
        # The lab header of the container (package_enc_image) names the chip it is bound to.
        line=$(head -c 4096 -- "${image}" | tr '\0' '\n' | grep -a -m1 '^ecid=' || true)
        LAB_APP_LUKS_ECID=${line#ecid=}
    fi
    rm -rf "${work}"
    return "${status}"
}

# tegraflash.py (flash.sh) writes bootloader/system.img to APP as it is, sparse or not, never
# through flash.cfg: see lab_unpack_app (no zstd, no tar branch of its own: the lab's tar is
# its stand-in for the ext4 image, which it writes raw). 1 when the write failed.
lab_write_storage() {  # <image file> <rootdev> <how the image came to be>
    local status=0
    mkdir -p "${LAB_STATE}/storage"
    lab_unpack_app "$1" "${LAB_STATE}/storage/${LAB_PORT}" 0 1 || status=1
    lab_write_meta "$2" "$3" "${LAB_APP_HOW}"
    return "${status}"
}

# --- what the device sees of the images (the NFS mount of the flashing initrd) -----------------
#
# The flashing initrd reads the images only over NFS (r36.2 tools/kernel_flash/initrd_flash/
# nv_flash_from_network.sh; public copy: github.com/johnnynunez/Linux_for_Tegra): it mounts the
# host's exported rootfs on /mnt, the host's tools/kernel_flash/images (NFS_IMAGES_DIR, inside
# the export of tools/kernel_flash) on /mnt/mnt, and runs "chroot /mnt /mnt/
# l4t_flash_from_kernel.sh", whose COMMON_IMAGES_DIR is then /mnt. The mount's own path is
# looked up by the server: images/ may be a symbolic link whose real path lies in the exported
# tools/kernel_flash, and no other. Below it an NFS client resolves each symbolic link itself, in
# its own namespace: a relative target from the link's directory (".." at the top of the mount
# leaves it for the chroot's /), an absolute one from the chroot's /, which is the tree's
# exported rootfs. So a link under images/ (internal/, external/, an image, its .sha1sum) to a
# path of the host resolves on the device only if that path, read so, is there: a link to
# another directory of the host is a missing file. Hard links are files of the export.

# The host file the device reads at <path under images/> (given as the host's path), into
# REPLY; 1 when it does not resolve on the device.
lab_device_sees() {  # <host path under ${LAB_TREE}/tools/kernel_flash/images>
    local images="${LAB_TREE}/tools/kernel_flash/images" export_dir images_real rootfs_real=''
    local current=/mnt candidate host target hops=0
    local -a rest parts
    export_dir=$(realpath -e -- "${LAB_TREE}/tools/kernel_flash" 2>/dev/null) || return 1
    images_real=$(realpath -e -- "${images}" 2>/dev/null) || return 1
    [[ ${images_real} == "${export_dir}"/* ]] || return 1  # the server refuses the mount
    rootfs_real=$(realpath -e -- "${LAB_TREE}/rootfs" 2>/dev/null) || rootfs_real=''
    [[ $1 == "${images}"/* ]] || return 1
    IFS=/ read -r -a rest <<<"${1#"${images}"/}"
    while ((${#rest[@]})); do
        candidate=${rest[0]}
        rest=("${rest[@]:1}")
        case ${candidate} in
            '' | .) continue ;;
            ..)
                current=${current%/*}
                current=${current:-/}
                continue
                ;;
        esac
        candidate=${current%/}/${candidate}
        # The device's path on the host: /mnt is the images mount, the rest the exported rootfs.
        if [[ ${candidate} == /mnt || ${candidate} == /mnt/* ]]; then
            host=${images_real}${candidate#/mnt}
        elif [[ -n ${rootfs_real} ]]; then
            host=${rootfs_real}${candidate}
        else
            return 1
        fi
        if [[ -L ${host} ]]; then
            hops=$((hops + 1))
            ((hops <= 40)) || return 1  # ELOOP
            target=$(readlink -- "${host}")
            IFS=/ read -r -a parts <<<"${target}"
            rest=("${parts[@]}" "${rest[@]}")
            if [[ ${target} == /* ]]; then current=/; fi
        elif [[ -e ${host} ]]; then
            current=${candidate}
        else
            return 1
        fi
    done
    if [[ ${current} == /mnt || ${current} == /mnt/* ]]; then
        REPLY=${images_real}${current#/mnt}
    else
        REPLY=${rootfs_real}${current}
    fi
}

# Whether the device reads a regular file at <host path under images/>; its host file in REPLY.
lab_device_file() {  # <host path under images/>
    lab_device_sees "$1" && [[ -f ${REPLY} ]]
}

# The flash configuration as l4t_flash_from_kernel.sh restores it: it sources
# images/internal/flash.cfg, then images/external/flash.cfg (a later assignment wins), each only
# "if [ -f ... ]", as the device sees them. Into the map LAB_FLASH_CFG; the lab reads the
# NAME=value lines instead of running them.
lab_read_flash_cfg() {  # <images dir>
    local location key value
    declare -gA LAB_FLASH_CFG=()
    for location in internal external; do
        lab_device_file "$1/${location}/flash.cfg" || continue
        while IFS='=' read -r key value || [[ -n ${key} ]]; do
            [[ ${key} =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
            if [[ ${value} == \"*\" ]]; then value=${value:1:${#value}-2}; fi
            LAB_FLASH_CFG[${key}]=${value}
        done <"${REPLY}"
    done
}

# The rows of images/<location>/flash.idx for the rootfs partitions (APP, APP_b, APP_ENC,
# APP_ENC_b), in their order, as write_to_storage walks them: NVIDIA's columns "<n>,
# <device type>:<instance>:<partition>, <start>, <size>, <file name>, <file size>, <attributes>,
# <sha1>". Into LAB_IDX_PARTS and LAB_IDX_FILES; other lines are not the rootfs's.
lab_read_flash_idx() {  # <images dir> <internal|external>
    local line row_re='^[0-9]+,[[:space:]]*[0-9]+:[0-9]+:(APP|APP_b|APP_ENC|APP_ENC_b),[^,]*,[^,]*,[[:space:]]*([^,[:space:]]*)'
    LAB_IDX_PARTS=() LAB_IDX_FILES=()
    lab_device_file "$1/$2/flash.idx" || return 0
    while IFS= read -r line || [[ -n ${line} ]]; do
        [[ ${line} =~ ${row_re} ]] || continue
        LAB_IDX_PARTS+=("${BASH_REMATCH[1]}")
        LAB_IDX_FILES+=("${BASH_REMATCH[2]}")
    done <"${REPLY}"
}

# Write the rootfs partitions of one storage device (internal or external) on the device on
# LAB_PORT, as NVIDIA's r36.2 tools/kernel_flash/l4t_flash_from_kernel.sh does (public copy:
# github.com/johnnynunez/Linux_for_Tegra), on the device, through its NFS view of the images
# (lab_device_sees). write_to_storage walks the rows of images/<location>/flash.idx (a lab
# images directory without such rows: APP alone):
#   - APP and APP_b (do_write_APP): the image is images/<location>/${<partition><_ext>}, the
#     variable flash.cfg sets (APP, APP_b; APP_ext, APP_b_ext for the external device), not the
#     row's file name; a missing image or a missing <image>.sha1sum fails the flash ("Failed to
#     write to <partition>"); the checksum itself is not compared (commented out in r36.2, and
#     in r38.4). Then lab_unpack_app, with zstd detected from r38 on;
#   - APP_ENC and APP_ENC_b (do_write_storage -> flash_partition): the file the row names, no
#     .sha1sum: a missing one fails ("Cannot find file"); sparse: write_sparse_image, else as is.
# Where the lab keeps what each partition holds: APP in storage/<port>/, APP_b in
# storage/<port>.b/ (a partition of its own); APP_ENC and APP_ENC_b hold LUKS containers the lab
# does not open, so nothing (storage/<port>.enc/ and .enc.b/ only for an image the lab reads). The
# meta says how each was written: app=, app_b=, app_enc=, app_enc_b= (the partitions of this
# layout), and enc_unlock=yes|no whether the device can open its encrypted rootfs at boot (the
# passphrase is bound to the chip the images were generated for, unless it is generic).
# Without -k, create_gpt writes the partition table first: APP_b's storage goes when the new
# layout has no APP_b. With -k <partition> only that one is written ("Skip writing" the others).
# A flash that fails after a partition was written still records that one.
lab_write_device() {  # <images dir> <internal|external> <rootdev> <how the image came to be> [<partition>]
    local images=$1 location=$2 ext='' zstd=0 index part image file storage slot app='' written=0 message=''
    local -a fields=()
    if [[ ${location} == external ]]; then ext=_ext; fi
    lab_l4t_major
    if ((REPLY >= 38)); then zstd=1; fi
    lab_read_flash_cfg "${images}"
    lab_read_flash_idx "${images}" "${location}"
    if ((${#LAB_IDX_PARTS[@]} == 0)); then
        LAB_IDX_PARTS=(APP) LAB_IDX_FILES=('')
    fi
    mkdir -p "${LAB_STATE}/storage"
    if [[ -z ${5:-} ]]; then
        for slot in APP_b:b APP_ENC:enc APP_ENC_b:enc.b; do
            if [[ " ${LAB_IDX_PARTS[*]} " != *" ${slot%%:*} "* ]]; then
                rm -rf "${LAB_STATE}/storage/${LAB_PORT}.${slot#*:}"
            fi
        done
    fi
    for index in "${!LAB_IDX_PARTS[@]}"; do
        part=${LAB_IDX_PARTS[index]}
        if [[ -n ${5:-} && $5 != "${part}" ]]; then
            lab_say "Skip writing ${part}"
            continue
        fi
        # Each partition its own storage: <port>, <port>.b, <port>.enc, <port>.enc.b.
        storage="${LAB_STATE}/storage/${LAB_PORT}"
        case ${part} in
            APP_b) storage+=.b ;;
            APP_ENC) storage+=.enc ;;
            APP_ENC_b) storage+=.enc.b ;;
        esac
        if [[ ${part} == APP || ${part} == APP_b ]]; then
            image="${images}/${location}/${LAB_FLASH_CFG[${part}${ext}]:-}"
            file=''
            if lab_device_file "${image}"; then file=${REPLY}; fi
            if [[ -z ${file} ]]; then
                message="[ 0]: l4t_flash_from_kernel: APP image ${image} is not found !!!"
            elif ! lab_device_file "${image}.sha1sum"; then
                message="[ 0]: l4t_flash_from_kernel: Sha1 checksum file ${image}.sha1sum is not found !!!"
            elif ! lab_unpack_app "${file}" "${storage}" "${zstd}" 1; then
                written=1
                if [[ ${LAB_APP_HOW} == failed ]]; then
                    message="[ 0]: l4t_flash_from_kernel: simg2img ${image} ${part} failed"
                else
                    message="[ 0]: l4t_flash_from_kernel: Failed to decompress APP image into the ${part} partition"
                fi
            fi
            if [[ -n ${message} ]]; then
                message+=$'\n'"Failed to write to ${part}"
            fi
        else
            image="${images}/${location}/${LAB_IDX_FILES[index]}"
            if ! lab_device_file "${image}"; then
                message="[ 0]: l4t_flash_from_kernel: Cannot find file ${image}"
            elif ! lab_unpack_app "${REPLY}" "${storage}" 0 0; then
                written=1
                message="[ 0]: l4t_flash_from_kernel: simg2img ${image} ${part} failed"
            fi
        fi
        if [[ ${part} == APP ]]; then
            app=${LAB_APP_HOW:-}
        fi
        if [[ -n ${message} ]]; then
            if ((written)); then
                lab_write_meta "$3" "$4" "${app}" "${fields[@]}"
            fi
            lab_say "${message}"
            lab_fail "Flash failure"
        fi
        written=1
        case ${part} in
            APP_b) fields+=("app_b=${LAB_APP_HOW}") ;;
            APP_ENC | APP_ENC_b)
                fields+=("${part,,}=${LAB_APP_HOW}")
                if [[ ${LAB_APP_HOW} == encrypted ]]; then
                    lab_enc_unlocks "${LAB_APP_LUKS_ECID}"
                    fields+=("enc_unlock${part#APP_ENC}=${REPLY}")
                fi
                ;;
        esac
        LAB_APP_HOW=''
    done
    if ((written)); then
        lab_write_meta "$3" "$4" "${app}" "${fields[@]}"
    else
        lab_write_meta "$3" not-written
    fi
}

# Whether the device on LAB_PORT can open, at boot, an encrypted rootfs bound to <ECID>
# ("generic": any chip): its passphrase is derived from the chip's ECID (gen_luks_passphrase.py
# -u -e <ECID>), so another chip's derives another one. "yes" or "no" into REPLY.
lab_enc_unlocks() {  # <ECID the container is bound to, or generic>
    local unlocks=no
    if [[ $1 == generic ]]; then
        unlocks=yes
    else
        lab_scan_devices
        lab_chip_identity "${LAB_PORT}"
        if [[ -n $1 && ${1^^} == "${LAB_CHIP_ECID^^}" ]]; then unlocks=yes; fi
    fi
    REPLY=${unlocks}
}

# The device's record of its last flash: which tree and tool wrote it, and for the initrd flash
# the device instance and the USB port the run asked for (LAB_RUN_USB_INSTANCE), which is not
# always the device it wrote; app: how its APP partition was written (see lab_unpack_app: tar,
# tar-zstd, sparse, sparse-zstd, encrypted, raw, partial, failed; empty when this flash did not
# write it); then <key>=<value> lines of the other partitions (lab_write_device).
lab_write_meta() {  # <rootdev> <image note> [app] [<key>=<value>]...
    local meta="${LAB_STATE}/storage/${LAB_PORT}.meta"
    mkdir -p "${LAB_STATE}/storage"
    {
        printf 'board=%s\ntree=%s\ntool=%s\nrootdev=%s\nimage=%s\ntime=%s\ninstance=%s\nusb_instance=%s\napp=%s\n' \
            "${LAB_BOARD}" "${LAB_TREE}" "${LAB_TOOL}" "$1" "$2" "${EPOCHREALTIME}" "${LAB_RUN_INSTANCE}" \
            "${LAB_RUN_USB_INSTANCE:-${LAB_PORT}}" "${3:-}"
        if (($# > 3)); then printf '%s\n' "${@:4}"; fi
    } >"${meta}.$$"
    mv -f "${meta}.$$" "${meta}"
    LAB_RUN_DEVICE=${LAB_PORT}
}

# shellcheck disable=SC2034  # the FLASH_* settings are read by flash.sh and l4t_initrd_flash.sh
# flash.sh's own options; l4t_initrd_flash.sh passes its -p "<options>" through the same
# parser, as the real one hands them to flash.sh. Positional arguments go to LAB_POSITIONALS.
lab_parse_flash_options() {
    FLASH_USB_INSTANCE='' FLASH_REUSE=0 FLASH_NO_FLASH=0 FLASH_NO_SYSTEMIMG=0 FLASH_ROOTFS=''
    FLASH_PARTITION='' FLASH_PKC='' FLASH_SBK='' FLASH_CFG='' FLASH_ROOTFS_SIZE=''
    FLASH_GENERIC_PASSPHRASE=0
    LAB_POSITIONALS=()
    while (($#)); do
        case $1 in
            --usb-instance | -R | -k | -u | -v | -c | -S)
                (($# >= 2)) || lab_bad_usage "option $1 requires an argument"
                case $1 in
                    --usb-instance) FLASH_USB_INSTANCE=$2 ;;
                    -R) FLASH_ROOTFS=$2 ;;
                    -k) FLASH_PARTITION=$2 ;;
                    -u) FLASH_PKC=$2 ;;
                    -v) FLASH_SBK=$2 ;;
                    -c) FLASH_CFG=$2 ;;
                    -S) FLASH_ROOTFS_SIZE=$2 ;;
                esac
                shift 2
                ;;
            -r) FLASH_REUSE=1; shift ;;
            --no-flash) FLASH_NO_FLASH=1; shift ;;
            --no-systemimg) FLASH_NO_SYSTEMIMG=1; shift ;;
            # r36.2 flash.sh: generic_passphrase=1, the encrypted rootfs's passphrase is derived
            # without the chip's ECID (build_enc_root_fsimg; see package_enc_image).
            --generic-passphrase) FLASH_GENERIC_PASSPHRASE=1; shift ;;
            -h | --help) lab_usage 0 ;;
            --) shift; LAB_POSITIONALS+=("$@"); break ;;
            -*) lab_bad_usage "unknown option $1" ;;
            *) LAB_POSITIONALS+=("$1"); shift ;;
        esac
    done
    if [[ -n ${FLASH_ROOTFS_SIZE} && ! ${FLASH_ROOTFS_SIZE} =~ ^[0-9]+([KMG]i?B?)?$ ]]; then
        lab_bad_usage "invalid rootfs size ${FLASH_ROOTFS_SIZE}"
    fi
    if [[ -n ${FLASH_CFG} ]]; then lab_require_file "config file" "${FLASH_CFG}"; fi
    if [[ -n ${FLASH_PKC} ]]; then lab_require_file "PKC key file" "${FLASH_PKC}"; fi
    if [[ -n ${FLASH_SBK} ]]; then lab_require_file "SBK key file" "${FLASH_SBK}"; fi
    if [[ -n ${FLASH_ROOTFS} ]]; then
        lab_resolve "${FLASH_ROOTFS}"
        [[ -d ${REPLY} ]] || lab_fail "Error: rootfs directory ${FLASH_ROOTFS} does not exist."
        FLASH_ROOTFS=${REPLY}
    else
        FLASH_ROOTFS="${LAB_TREE}/rootfs"
    fi
}

# --- the station: host root, board probes, RCM boot, the flashing initrd -----------------------
#
# What follows models the HOST-WIDE state NVIDIA's initrd flash shares between runs, from the
# r36.2 scripts (public copies: GitHub johnnynunez/Linux_for_Tegra, tools/kernel_flash/
# l4t_initrd_flash_internal.sh, l4t_initrd_flash.func, l4t_network_flash.func; flash.sh for the
# board probes). See docs/l4t-parallel-flash.md for the facts; this is the lab's own model.

LAB_INITRD_PRODUCT=7035
# How l4t_network_flash.func exports a tree to the flashing initrd (enable_nfs_for_folder).
# shellcheck disable=SC2034  # read by l4t_initrd_flash_internal.sh
LAB_FLASH_NETWORK=fc00:1:1::/48 LAB_NFS_PERMISSION=rw,nohide,insecure,no_subtree_check,async,no_root_squash
LAB_SLICE_SECONDS=0.1
# The module's BOARDSKU each recovery-mode product id needs (p3767.conf.common, p3701): the
# first is what the EEPROM of such a module says. 0955:7023 is three AGX Orin modules: the 64GB
# (p3701-0005), the 32GB (p3701-0000) and the Industrial (p3701-0008), whose chip SKU (90) tells
# it apart (lab_module_skus).
declare -A LAB_PRODUCT_SKUS=([7323]='0000' [7423]='0001' [7523]='0003 0005' [7623]='0004'
    [7023]='0005 0000 0004' [7223]='0004')
LAB_INDUSTRIAL_SKU=0008

lab_require_host_root() {
    [[ -n ${LAB_HOST_ROOT} && -d ${LAB_HOST_ROOT} ]] ||
        lab_fail "lab: ${LAB_TREE}/.lab/config names no lab station host root (LAB_HOST_ROOT)."
}

# "command -v <name>" as the lab station answers it, into REPLY: the directories of
# LAB_STATION_PATH (set by the tool: the internal script's tools/kernel_flash/bin first, then the
# host root's usr/sbin and usr/bin). The machine running the lab is never asked, so a lab station
# "without nfs-kernel-server" has no exportfs even where this machine has one.
lab_station_command() {  # <name>
    local dir
    for dir in "${LAB_STATION_PATH[@]}"; do
        if [[ -f ${dir}/$1 && -x ${dir}/$1 ]]; then
            REPLY=${dir}/$1
            return 0
        fi
    done
    REPLY=''
    return 1
}

# Run a station program by name (see lab_station_command); a missing one fails like bash does.
lab_station_run() {  # <name> [args]...
    lab_station_command "$1" || lab_fail "$1: command not found"
    "${REPLY}" "${@:2}"
}

# --- board probes (flash.sh: get_fuse_level, get_board_version) --------------------------------

# One probe round of flash.sh run WITHOUT --usb-instance, as the initrd flash's image generation
# runs it: tegrarcm and tegraflash then talk to the FIRST Jetson in recovery mode on the station,
# whichever port it is on.
#   - unless FUSELEVEL is set, it reads that device's fuse level (get_fuse_level);
#   - unless FAB is set, it reads that device's EEPROM and reboots it into recovery mode
#     ("dump eeprom ...; reboot recovery", get_board_version). A device that another run is
#     RCM-booting at that moment loses that boot: the other run fails.
# BOARDID, BOARDSKU and BOARDREV only override what the EEPROM says. With no device at all and
# FAB unset, the probe fails. (The real flash.sh skips the EEPROM read when FUSELEVEL was given
# and FAB was not, leaving the board identity empty; the lab probes then too, so that only FAB
# keeps a generation off the station's devices.)
# Sets LAB_PROBED_PORT (the device the EEPROM was read from) and LAB_PROBED_SKU.
# shellcheck disable=SC2034  # LAB_PROBED_* are read by the tools
lab_board_probe() {
    local port
    lab_scan_devices
    port=${LAB_DEVICES[0]:-}
    if [[ -z ${FUSELEVEL:-} && -n ${port} ]]; then
        lab_probe_record fuselevel "${port}" false
    fi
    [[ -z ${FAB:-} ]] || return 0
    if [[ -z ${port} ]]; then
        lab_say "Error: probing the target board failed."
        lab_say "       Make sure the target board is connected through "
        lab_say "       USB port and is in recovery mode."
        exit 1
    fi
    lab_eeprom_probe "${port}"
    LAB_PROBED_PORT=${port}
    lab_module_skus "${port}"
    LAB_PROBED_SKU=${REPLY%% *}
}

# The chip read of flash.sh (get_chip_info_details, "chkbdinfo -C chip_info.bin_bak"): only when
# get_fuse_level ran, that is without FUSELEVEL, and of the same device, the FIRST Jetson in
# recovery mode on the station. Sets LAB_PROBED_CHIP_SKU and LAB_PROBED_ECID, the ECID
# get_fuse_level read ("tegrarcm_v2 --uid", flash.sh's ECID, which build_enc_root_fsimg binds an
# encrypted rootfs to), both '' when nothing was read.
# shellcheck disable=SC2034  # LAB_PROBED_CHIP_SKU and LAB_PROBED_ECID are read by the tools
lab_chip_probe() {
    local port
    LAB_PROBED_CHIP_SKU='' LAB_PROBED_ECID=''
    [[ -z ${FUSELEVEL:-} ]] || return 0
    lab_scan_devices
    port=${LAB_DEVICES[0]:-}
    [[ -n ${port} ]] || return 0
    lab_device_chip_sku "${port}"
    LAB_PROBED_CHIP_SKU=${REPLY}
    LAB_PROBED_ECID=${LAB_CHIP_ECID}
}

# The BOARDSKUs the images of the module on <port> may be made for, into REPLY (the first is its
# EEPROM's): by its USB id, and for 0955:7023 by its chip (an Industrial's is 90).
lab_module_skus() {  # <port>
    local product=${LAB_DEVICE_PRODUCT[$1]:-}
    REPLY=${LAB_PRODUCT_SKUS[${product}]:-}
    if [[ ${product} == 7023 ]]; then
        lab_device_chip_sku "$1"
        if [[ ${REPLY} == *:90 ]]; then REPLY=${LAB_INDUSTRIAL_SKU}; else REPLY=${LAB_PRODUCT_SKUS[7023]}; fi
    fi
}

# --- images and the chip: what a device runs -----------------------------------------------------
#
# What the lab's images are made for, and what a device does with images made for another one
# (NVIDIA's r36.2 flash.sh, p3767.conf.common, p3701.conf.common, p3737-0000-p3701-0008.conf;
# public copy: github.com/johnnynunez/Linux_for_Tegra):
#   - the BPMP firmware: flash.sh calls the board config's process_chip_sku_version with CHIP_SKU
#     from the environment, else the chip SKU it read from the device (only without FUSELEVEL,
#     see lab_chip_probe), else the config's DEFAULT_CHIP_SKU ("00:00:00:D3" for p3767: the Orin
#     NX's firmware, TE980M). A module whose chip needs other firmware (an Orin Nano, D5/D6:
#     TE950M) starts the boot chain and hangs: its flashing initrd never comes up;
#   - the keys: images made with -u <pkc> are signed with that key, with -v <sbk> encrypted with
#     that SBK. A device with PublicKeyHash burned runs only images signed with THAT key (the lab
#     hash of tegrasign_v3.py --pubkeyhash); one with SecureBootKey burned only images encrypted
#     with ITS key, and one without it none that are encrypted. The boot ROM rejects the others
#     (a rejected Orin looks like a USB write timeout on the host).

# The chip SKU of the device on <port> as chkbdinfo -C prints it (00:00:00:D5), into REPLY ('' if
# unknown): its lab_chip_sku (lab_chip_identity). Needs lab_scan_devices.
lab_device_chip_sku() {  # <port>
    lab_chip_identity "$1"
    REPLY=${LAB_CHIP_SKU^^}
    REPLY=${REPLY#0X}
    if [[ -n ${REPLY} && ${REPLY} != *:* ]]; then REPLY=00:00:00:${REPLY}; fi
}

# The BPMP firmware the board config <board> picks for <chip SKU> (empty: not read, the config's
# DEFAULT_CHIP_SKU), as flash.sh does: the config sourced, process_chip_sku_version, then the
# config's update_flash_args. REPLY = the firmware (TE950M-A1...; '' when the chip SKU is in
# no table: NVIDIA's sed then leaves "bpmp_t234-_prod.bin"), LAB_IMAGE_CHIP_SKU = the chip SKU
# used, LAB_CHIP_SKU_LINE = the line process_chip_sku_version prints.
# shellcheck disable=SC2034  # LAB_IMAGE_CHIP_SKU and LAB_CHIP_SKU_LINE are read by the tools
lab_bpmp_firmware() {  # <board> <chip SKU> [fuselevel] [FAB]
    local lines
    lines=$(
        set +eu
        # shellcheck disable=SC2034  # LDK_DIR is read by the board config
        LDK_DIR=${LAB_TREE}
        # shellcheck source=/dev/null
        source "${LAB_TREE}/$1.conf" >/dev/null 2>&1
        chip_SKU=$2  # flash.sh: chip_SKU="${CHIP_SKU}"
        process_chip_sku_version "$2" '' '' '' "${3:-}" "${4:-}" 2>/dev/null
        if declare -F update_flash_args >/dev/null; then update_flash_args >/dev/null 2>&1; fi
        printf '%s\n%s\n' "${2:-${DEFAULT_CHIP_SKU}}" "${BPFFILE}"
    )
    LAB_CHIP_SKU_LINE=$(head -n -2 <<<"${lines}")
    LAB_IMAGE_CHIP_SKU=$(tail -n 2 <<<"${lines}" | head -n 1)
    REPLY=$(tail -n 1 <<<"${lines}")
    REPLY=${REPLY##*/bpmp_t234-}
    REPLY=${REPLY%_prod.bin}
    REPLY=${REPLY%_dev.bin}
}

# What the images are made for, into LAB_IMAGE_BPMP, LAB_IMAGE_CHIP_SKU, LAB_IMAGE_PKC_HASH (the
# lab PublicKeyHash of -u's key, '' unsigned) and LAB_IMAGE_SBK_DIGEST (SHA-256 of -v's SBK, ''
# unencrypted), for board config <board> with the chip SKU <chip SKU> (see lab_bpmp_firmware).
# A key that is no key fails, as signing with it does.
# shellcheck disable=SC2034  # LAB_IMAGE_* are read by the tools
lab_image_identity() {  # <board> <chip SKU> <pkc key or ''> <sbk file or ''> [fuselevel] [FAB]
    lab_bpmp_firmware "$1" "$2" "${5:-}" "${6:-}"
    LAB_IMAGE_BPMP=${REPLY}
    if [[ -n ${LAB_CHIP_SKU_LINE} ]]; then lab_say "${LAB_CHIP_SKU_LINE}"; fi
    [[ -n ${LAB_IMAGE_BPMP} ]] ||
        lab_fail "Error: bootloader/bpmp_t234-_prod.bin is not found: $1.conf has no BPMP firmware for chip SKU ${LAB_IMAGE_CHIP_SKU}."
    LAB_IMAGE_PKC_HASH='' LAB_IMAGE_SBK_DIGEST=''
    if [[ -n $3 ]]; then
        lab_pkc_key_hash "$3"
        [[ -n ${REPLY} ]] || lab_fail "Error: signing with $3 failed: tegrasign_v3.py: Invalid key format"
        lab_fuse_padded "${REPLY}" 64  # all 128 digits, as tegrasign_v3.py prints them
        LAB_IMAGE_PKC_HASH=${REPLY}
    fi
    if [[ -n $4 ]]; then
        lab_sbk_digest "$4"
        LAB_IMAGE_SBK_DIGEST=${REPLY}
    fi
}

# SHA-256 of an SBK's value (lab_fuse_digits of the file, or of a fuse value with -f), into REPLY.
lab_sbk_digest() {  # [-f] <sbk file | fuse value>
    local value
    if [[ $1 == -f ]]; then
        value=$2
    else
        lab_resolve "$1"
        value=$(<"${REPLY}")
    fi
    lab_fuse_digits "${value}"
    REPLY=$(printf '%s' "${REPLY}" | sha256sum)
    REPLY=${REPLY%% *}
}

lab_boot_failure() {  # <reason> <why> [key value]...
    lab_json_object time:raw "${EPOCHREALTIME}" tool "${LAB_TOOL}" pid:raw "$$" tree "${LAB_TREE}" \
        usb_instance "${LAB_PORT}" reason "$1" why "$2" "${@:3}"
    lab_record boot-failures.log "${REPLY}"
}

# Whether the device on LAB_PORT runs images made for <board> with the BPMP firmware <bpmp>,
# signed with the key of lab hash <pkc hash> and encrypted with the SBK of digest <sbk digest>
# (as lab_image_identity gives them; '' unsigned, unencrypted). A device that rejects them fails
# the run now, with the boot ROM's answer (it stays in recovery mode). A device whose chip needs
# other BPMP firmware sets LAB_BOOT_HANG (lab_rcm_boot then hangs it). Needs lab_scan_devices.
lab_check_boot() {  # <board> <bpmp> <pkc hash> <sbk digest>
    local burned why='' reason=''
    LAB_BOOT_HANG=''
    lab_read_device_fuses "${LAB_PORT}"
    if lab_device_has_fuse "${LAB_PORT}" PublicKeyHash; then
        lab_fuse_padded "${LAB_DEVICE_FUSES[PublicKeyHash]}" 64
        burned=${REPLY}
        if [[ -z $3 ]]; then
            reason=signature why="the device is PKC fused and the images are not signed"
        elif [[ $3 != "${burned}" ]]; then
            reason=signature why="the images are signed with another key than the device's PublicKeyHash"
        fi
    fi
    if [[ -z ${reason} ]]; then
        if lab_device_has_fuse "${LAB_PORT}" SecureBootKey; then
            lab_sbk_digest -f "${LAB_DEVICE_FUSES[SecureBootKey]}"
            if [[ -z $4 ]]; then
                reason=encryption why="the device has SecureBootKey burned and the images are not encrypted"
            elif [[ $4 != "${REPLY}" ]]; then
                reason=encryption why="the images are encrypted with another SBK than the device's SecureBootKey"
            fi
        elif [[ -n $4 ]]; then
            reason=encryption why="the images are encrypted with an SBK and the device has no SecureBootKey burned"
        fi
    fi
    if [[ -n ${reason} ]]; then
        lab_boot_failure "${reason}" "${why}"
        lab_say "[   0.6559 ] BR_CID: (redacted)"
        lab_say "[   0.7387 ] Sending bct_br"
        lab_say "[   0.8193 ] ERROR: might be timeout in USB write."
        lab_fail "Error: Return value 3"
    fi
    [[ -n $2 ]] || return 0
    local image_bpmp=$2 chip
    lab_device_chip_sku "${LAB_PORT}"
    chip=${REPLY}
    [[ -n ${chip} ]] || return 0
    lab_bpmp_firmware "$1" "${chip}"
    if [[ ${REPLY} != "${image_bpmp}" ]]; then
        LAB_BOOT_HANG="the module's chip SKU ${chip} needs BPMP firmware ${REPLY:-(none in $1.conf)}, the images carry ${image_bpmp}"
        LAB_BOOT_HANG_FIELDS=(chip_sku "${chip}" needs "${REPLY}" images "${image_bpmp}")
    fi
}

# The device runs the boot chain of images with the wrong BPMP firmware: it leaves recovery mode
# and hangs, no flashing initrd comes up, and the run times out waiting for it
# (wait_for_booting). Only a power cycle into recovery mode brings it back.
lab_boot_hangs() {
    lab_boot_failure bpmp-firmware "${LAB_BOOT_HANG}" "${LAB_BOOT_HANG_FIELDS[@]}"
    mkdir -p "${LAB_STATE}/recovery-product"
    printf '%s\n' "${LAB_DEVICE_PRODUCT[${LAB_PORT}]}" >"${LAB_STATE}/recovery-product/${LAB_PORT}"
    lab_device_leaves_recovery
    for _ in 1 2 3; do
        lab_say "Waiting for target to boot-up..."
        lab_sleep "${LAB_SLICE_SECONDS}"
    done
    lab_fail "Timeout"
}

lab_eeprom_probe() {  # <port>
    local busy_file="${LAB_STATE}/busy/$1" holder='' disrupted=false
    if [[ -r ${busy_file} ]]; then
        read -r holder <"${busy_file}" || true
    fi
    if [[ -n ${holder} && ${holder} != "$$" ]] && kill -0 "${holder}" 2>/dev/null; then
        mkdir -p "${LAB_STATE}/disrupted"
        printf '%s\n' "${holder}" >"${LAB_STATE}/disrupted/$1"
        disrupted=true
    fi
    lab_probe_record eeprom "$1" "${disrupted}"
}

lab_probe_record() {  # <kind> <port> <disrupted: true|false>
    lab_json_object time:raw "${EPOCHREALTIME}" tool "${LAB_TOOL}" pid:raw "$$" tree "${LAB_TREE}" \
        kind "$1" usb_instance "$2" disrupted:raw "$3"
    lab_record probes.log "${REPLY}"
}

# --- RCM boot and the flashing initrd (l4t_initrd_flash_internal.sh: boot_initrd) --------------

# Boot the flashing initrd over RCM on LAB_PORT. For LAB_BOOT_SECONDS the device is still in
# recovery mode and "busy"; an EEPROM probe of another run then breaks the boot (the device
# stays in recovery mode). Then it leaves recovery mode and runs the initrd: idProduct 7035.
lab_rcm_boot() {
    local busy="${LAB_STATE}/busy/${LAB_PORT}" disrupted="${LAB_STATE}/disrupted/${LAB_PORT}" holder=''
    local remaining=${LAB_BOOT_SECONDS}
    mkdir -p "${LAB_STATE}/busy"
    rm -f "${disrupted}"
    printf '%s\n' "$$" >"${busy}"
    LAB_BUSY_PORT=${LAB_PORT}
    while :; do
        if [[ -r ${disrupted} ]]; then
            read -r holder <"${disrupted}" || true
            if [[ ${holder} == "$$" ]]; then
                rm -f "${disrupted}" "${busy}"
                LAB_BUSY_PORT=''
                lab_fail "[ 0.1234 ] ERROR: Boot Rom communication failed (the device at ${LAB_PORT} was rebooted by another run's board probe)"
            fi
        fi
        lab_time_left "${remaining}" || break
        lab_sleep "${REPLY}"
        remaining=${LAB_TIME_LEFT}
    done
    rm -f "${busy}"
    LAB_BUSY_PORT=''
    if [[ -n ${LAB_BOOT_HANG:-} ]]; then
        lab_boot_hangs
    fi
    lab_enter_initrd
}

# Split a wait into slices: REPLY = the next slice (at most LAB_SLICE_SECONDS), LAB_TIME_LEFT =
# what remains after it; 1 when nothing remains. Decimal arithmetic on microseconds, no bc.
lab_time_left() {  # <seconds>
    local micros
    lab_micros "$1"
    micros=${REPLY}
    ((micros > 0)) || return 1
    lab_micros "${LAB_SLICE_SECONDS}"
    if ((micros <= REPLY)); then
        REPLY=$1
        LAB_TIME_LEFT=0
    else
        LAB_TIME_LEFT=$(((micros - REPLY) / 1000000)).$(printf '%06d' $(((micros - REPLY) % 1000000)))
        REPLY=${LAB_SLICE_SECONDS}
    fi
}

lab_micros() {  # <seconds, e.g. 1.5> -> REPLY microseconds
    local whole=${1%%.*} fraction=000000
    if [[ $1 == *.* ]]; then fraction=${1#*.}000000; fi
    REPLY=$((10#${whole:-0} * 1000000 + 10#${fraction:0:6}))
}

# The device leaves recovery mode for the flashing initrd: its sysfs entry shows 0955:7035 and
# a USB gadget network interface "RNDIS+L4T<instance>" appears on the station (the lowest free
# usbN), its "device" link naming the port. The recovery product is kept for a power cycle.
lab_enter_initrd() {
    local entry=${LAB_DEVICE_DIR[${LAB_PORT}]} net="${LAB_HOST_ROOT}/sys/class/net" number=0 interface
    local device="${LAB_HOST_ROOT}/sys/devices/lab/${LAB_PORT}/${LAB_PORT}:1.0"
    mkdir -p "${LAB_STATE}/recovery-product" "${net}" "${device}"
    printf '%s\n' "${LAB_DEVICE_PRODUCT[${LAB_PORT}]}" >"${LAB_STATE}/recovery-product/${LAB_PORT}"
    printf '%s\n' "${LAB_INITRD_PRODUCT}" >"${entry}/idProduct"
    printf 'Linux for Tegra\n' >"${entry}/product"
    # mkdir is atomic: two devices booting at once never get the same name.
    while ! mkdir "${net}/usb${number}" 2>/dev/null; do
        number=$((number + 1))
    done
    interface="${net}/usb${number}"
    ln -s "../../../devices/lab/${LAB_PORT}/${LAB_PORT}:1.0" "${interface}/device"
    printf 'lab-%s\n' "${LAB_PORT}" >"${interface}/serial"
    printf 'up\n' >"${interface}/operstate"
    : >"${interface}/lab_addresses"
    # Last, so that no run matches the interface before it is complete.
    printf 'RNDIS+L4T%s\n' "${LAB_RUN_INSTANCE}" >"${interface}/configuration"
    lab_say "Device ${LAB_PORT} runs the flashing initrd: gadget usb${number} (RNDIS+L4T${LAB_RUN_INSTANCE})"
}

# wait_for_booting: the device a run talks to is the FIRST interface, in "ls /sys/class/net"
# order, whose configuration matches RNDIS+L4T<instance> (an unanchored match, as the real
# "=~ RNDIS\+L4T${device_instance}.*" is) - whichever device that interface belongs to.
# Sets LAB_GADGET (the interface directory) and LAB_GADGET_PORT; 1 if there is none.
# shellcheck disable=SC2034  # LAB_GADGET* are read by the tools
lab_find_gadget() {  # <instance>
    local entry target pattern="RNDIS\\+L4T$1"
    LAB_GADGET='' LAB_GADGET_PORT=''
    for entry in "${LAB_HOST_ROOT}/sys/class/net"/*/; do
        entry=${entry%/}
        lab_read_line "${entry}/configuration"
        [[ ${REPLY} =~ ${pattern} ]] || continue
        target=$(readlink "${entry}/device" 2>/dev/null) || continue
        target=${target##*/}
        LAB_GADGET=${entry}
        LAB_GADGET_PORT=${target%:1.0}
        return 0
    done
    return 1
}

# ping_device: "ip a add fc00:1:1:<instance>::1/64 dev <interface>".
lab_add_address() {  # <interface dir> <address>
    grep -qxF -- "$2" "$1/lab_addresses" 2>/dev/null || printf '%s\n' "$2" >>"$1/lab_addresses"
}

# Without NVIDIA's host rule (99-l4t-host.rules: NM_UNMANAGED for 0955:7035), NetworkManager
# takes the gadget and the run never reaches the device's ssh. Any file in etc/udev/rules.d with
# the rule's content counts, whatever its name.
lab_host_rule_installed() {
    local rule="${LAB_TREE}/tools/kernel_flash/host_udev/99-l4t-host.rules" file
    for file in "${LAB_HOST_ROOT}/etc/udev/rules.d"/*; do
        [[ -f ${file} ]] || continue
        if cmp -s -- "${file}" "${rule}"; then
            return 0
        fi
    done
    return 1
}

# The device reboots into its new system: its gadget interfaces go away and it leaves the bus as
# a flashed device does (it comes back only by a power cycle into recovery mode).
lab_device_reboots() {  # <port>
    local entry target
    for entry in "${LAB_HOST_ROOT}/sys/class/net"/*/; do
        entry=${entry%/}
        target=$(readlink "${entry}/device" 2>/dev/null) || continue
        if [[ ${target##*/} == "$1:1.0" ]]; then
            rm -rf "${entry}"
        fi
    done
    lab_scan_devices
    if [[ -n ${LAB_NVIDIA_DIR[$1]:-} ]]; then
        rm -rf "${LAB_NVIDIA_DIR[$1]}"
    fi
}

# --- the NFS server (l4t_network_flash.func: network_prerequisite, enable_nfs_for_folder) ------

# Expand an IPv6 address into its 32 hex digits (REPLY); 1 if it is not one.
lab_ipv6_hex() {
    local address=${1,,} head tail group missing index hex=''
    local -a groups=() head_groups=() tail_groups=()
    [[ ${address} =~ ^[0-9a-f:]+$ ]] || return 1
    if [[ ${address} == *::* ]]; then
        head=${address%%::*} tail=${address#*::}
        [[ ${tail} != *::* ]] || return 1
        if [[ -n ${head} ]]; then IFS=: read -r -a head_groups <<<"${head}"; fi
        if [[ -n ${tail} ]]; then IFS=: read -r -a tail_groups <<<"${tail}"; fi
        missing=$((8 - ${#head_groups[@]} - ${#tail_groups[@]}))
        ((missing >= 1)) || return 1
        groups=("${head_groups[@]}")
        for ((index = 0; index < missing; index++)); do groups+=(0); done
        groups+=("${tail_groups[@]}")
    else
        IFS=: read -r -a groups <<<"${address}"
    fi
    ((${#groups[@]} == 8)) || return 1
    for group in "${groups[@]}"; do
        [[ ${group} =~ ^[0-9a-f]{1,4}$ ]] || return 1
        printf -v group '%04x' "$((16#${group}))"
        hex+=${group}
    done
    REPLY=${hex}
}

# Does an export's client (as the table writes it: "*", an address, or address/prefix length)
# let the device at <address> mount it? Host names and IPv4 never match the IPv6 flash network.
lab_client_covers() {  # <client> <address>
    local client=$1 length=128 prefix wanted digits bits mask
    [[ ${client} != '*' ]] || return 0
    if [[ ${client} == */* ]]; then
        length=${client#*/}
        client=${client%/*}
    fi
    [[ ${length} =~ ^[0-9]+$ ]] && ((length <= 128)) || return 1
    lab_ipv6_hex "${client}" || return 1
    prefix=${REPLY}
    lab_ipv6_hex "$2" || return 1
    wanted=${REPLY}
    digits=$((length / 4)) bits=$((length % 4))
    [[ ${prefix:0:digits} == "${wanted:0:digits}" ]] || return 1
    ((bits)) || return 0
    mask=$(((0xf << (4 - bits)) & 0xf))
    (((16#${prefix:digits:1} & mask) == (16#${wanted:digits:1} & mask)))
}

# Is <dir> (by its real path) in the station's runtime export table for a client covering the
# device's address?
lab_nfs_serves() {  # <dir> <device address>
    local dir line spec
    dir=$(realpath -e -- "$1" 2>/dev/null) || return 1
    [[ -r "${LAB_HOST_ROOT}/var/lib/nfs/etab" ]] || return 1
    while IFS= read -r line || [[ -n ${line} ]]; do
        [[ ${line%% *} == "${dir}" ]] || continue
        spec=${line#* }
        if lab_client_covers "${spec%%(*}" "$2"; then
            return 0
        fi
    done <"${LAB_HOST_ROOT}/var/lib/nfs/etab"
    return 1
}

# The flashing initrd mounts the run's rootfs and tools/kernel_flash over NFS for as long as the
# flash lasts. An export that vanishes (another run's "service nfs-kernel-server restart", the
# outer script's "exportfs -ra") fails the device; a client retries for a moment, as a hard mount
# does, so an export has to be missing at two checks in a row, one slice apart, to count.
lab_nfs_mounted() {  # <device address>
    lab_nfs_serves "${LAB_TREE}/rootfs" "$1" && lab_nfs_serves "${LAB_TREE}/tools/kernel_flash" "$1"
}

# The run talks to the device behind the gadget it found (LAB_GADGET): if that device reboots
# or is power-cycled meanwhile (the interface goes), the run loses it.
lab_flash_over_nfs() {  # <device address> <seconds>
    local remaining=$2 missed=0
    while :; do
        if [[ ! -d ${LAB_GADGET} ]]; then
            lab_say "ssh: connect to host $1 port 22: No route to host"
            lab_fail "Flash failure"
        fi
        if lab_nfs_mounted "$1"; then
            missed=0
        else
            missed=$((missed + 1))
            if ((missed >= 2)); then
                lab_say "Either the device cannot mount the NFS server on the host or a flash command has failed. Check the log on the device for details."
                lab_fail "Flash failure"
            fi
        fi
        if ! lab_time_left "${remaining}"; then
            # Nothing left to wait, but a miss still gets its second look, and a held flash goes on.
            ((missed)) || [[ -e ${LAB_STATE}/hold-flash ]] || break
            REPLY=${LAB_SLICE_SECONDS} LAB_TIME_LEFT=0
        fi
        lab_sleep "${REPLY}"
        remaining=${LAB_TIME_LEFT}
    done
}

# --- options of l4t_initrd_flash.sh and l4t_initrd_flash_internal.sh ---------------------------

# shellcheck disable=SC2034  # the INITRD_* settings are read by both initrd flash scripts
# parse_param (l4t_initrd_flash.func), as both scripts share it: getopts-style, so parsing STOPS
# at the first argument that is not an option, and nothing after it is ever read as an option;
# the board config and the root device are the LAST TWO arguments. So
# "--flash-only <saved params ending in board rootdev> --usb-instance X" never sees the
# --usb-instance. The words from the first non-option on go to INITRD_POSITIONALS.
lab_parse_initrd_options() {
    INITRD_EXTERNAL_DEVICE='' INITRD_CONFIG='' INITRD_OPTIONS='' INITRD_NETWORK=usb0
    INITRD_USB_INSTANCE='' INITRD_DEVICE_INSTANCE=0 INITRD_FLASH_ONLY=0 INITRD_NO_FLASH=0
    INITRD_MASSFLASH=0 INITRD_MAX_MASSFLASH='' INITRD_PARTITION='' INITRD_PKC='' INITRD_SBK=''
    INITRD_SIZE='' INITRD_MASSFLASH_BARE=0 INITRD_SPARSE=0 INITRD_ENC_KEY=''
    INITRD_POSITIONALS=()
    while (($#)); do
        case $1 in
            --external-device | --network | --usb-instance | --device-instance | -c | -p | -k | -u | -v | -S | -i)
                (($# >= 2)) || lab_bad_usage "option $1 requires an argument"
                case $1 in
                    --external-device) INITRD_EXTERNAL_DEVICE=$2 ;;
                    --network) INITRD_NETWORK=$2 ;;
                    --usb-instance) INITRD_USB_INSTANCE=$2 ;;
                    --device-instance) INITRD_DEVICE_INSTANCE=$2 ;;
                    -c) INITRD_CONFIG=$2 ;;
                    -p) INITRD_OPTIONS+=" $2" ;;  # -p accumulates, as OPTIONS+=" ${OPTARG}"
                    -k) INITRD_PARTITION=$2 ;;
                    -u) INITRD_PKC=$2 ;;
                    -v) INITRD_SBK=$2 ;;
                    -S) INITRD_SIZE=$2 ;;
                    # The disk encryption key (ROOTFS_ENC=1). Not checked here: both NVIDIA
                    # scripts pass it on only "if [ -n "${ENC_RFS_KEY}" ] && [ -f ... ]", so a
                    # key file that is not there is dropped without a word (package_enc_image).
                    -i) INITRD_ENC_KEY=$2 ;;
                esac
                shift 2
                ;;
            --massflash)
                # An optional count: taken only when the next word is a number.
                INITRD_MASSFLASH=1
                shift
                if [[ ${1:-} =~ ^[0-9]+$ ]]; then
                    INITRD_MAX_MASSFLASH=$1
                    shift
                else
                    INITRD_MASSFLASH_BARE=1
                fi
                ;;
            --flash-only) INITRD_FLASH_ONLY=1; shift ;;
            # The APP image is the sparse system.img, not a tar (package_app_image).
            --sparse) INITRD_SPARSE=1; shift ;;
            --no-flash) INITRD_NO_FLASH=1; shift ;;
            --showlogs | --keep | --reuse | --erase-all) shift ;;
            -h | --help) lab_usage 0 ;;
            --) shift; break ;;
            -?*) lab_bad_usage "unknown option $1" ;;
            *) break ;;
        esac
    done
    INITRD_POSITIONALS=("$@")
    lab_check_initrd_options
}

# shellcheck disable=SC2034  # INITRD_BOARD and INITRD_ROOTDEV are read by the tools
lab_check_initrd_options() {
    local count=${#INITRD_POSITIONALS[@]}
    ((INITRD_NO_FLASH && INITRD_FLASH_ONLY)) && lab_bad_usage "--no-flash and --flash-only exclude each other"
    if [[ -n ${INITRD_MAX_MASSFLASH} && ! ${INITRD_MAX_MASSFLASH} =~ ^[1-9][0-9]*$ ]]; then
        lab_bad_usage "--massflash needs a number of devices, 1 or more"
    fi
    if ((INITRD_MASSFLASH_BARE && count > 2)); then
        lab_bad_usage "--massflash needs a number of devices (or none before the board), not '${INITRD_POSITIONALS[0]}'"
    fi
    [[ ${INITRD_DEVICE_INSTANCE} =~ ^[0-9]+$ ]] || lab_bad_usage "--device-instance needs a number"
    if [[ ! ${INITRD_NETWORK} =~ ^(usb0|eth0:.+)$ ]]; then
        lab_bad_usage "--network must be usb0 or eth0:<target-ip/mask>:<host-ip>"
    fi
    if [[ -n ${INITRD_EXTERNAL_DEVICE} && -z ${INITRD_CONFIG} ]] && ((!INITRD_FLASH_ONLY)); then
        lab_bad_usage "--external-device needs the external partition layout with -c"
    fi
    if [[ -n ${INITRD_CONFIG} ]]; then lab_require_file "config file" "${INITRD_CONFIG}"; fi
    if [[ -n ${INITRD_PKC} ]]; then lab_require_file "PKC key file" "${INITRD_PKC}"; fi
    if [[ -n ${INITRD_SBK} ]]; then lab_require_file "SBK key file" "${INITRD_SBK}"; fi

    # The -p string is split into words and handed to flash.sh, as the real tool does.
    read -r -a LAB_PASSED_OPTIONS <<<"${INITRD_OPTIONS}"
    lab_parse_flash_options "${LAB_PASSED_OPTIONS[@]}"
    ((${#LAB_POSITIONALS[@]} == 0)) || lab_bad_usage "-p takes flash.sh options only, not '${LAB_POSITIONALS[*]}'"
    [[ -n ${INITRD_PKC} ]] || INITRD_PKC=${FLASH_PKC}
    [[ -n ${INITRD_SBK} ]] || INITRD_SBK=${FLASH_SBK}

    INITRD_BOARD='' INITRD_ROOTDEV=''
    if ((count == 0)) && ((INITRD_FLASH_ONLY)) && [[ ${LAB_TOOL} == l4t_initrd_flash.sh ]]; then
        return 0  # the outer script's --flash-only reads the board from initrdflashparam.txt
    fi
    ((count >= 2)) || lab_bad_usage "expected <target_board> <rootdev>, got ${count} argument(s)"
    INITRD_BOARD=${INITRD_POSITIONALS[count - 2]}
    INITRD_ROOTDEV=${INITRD_POSITIONALS[count - 1]}
    [[ ${INITRD_ROOTDEV} =~ ^[A-Za-z0-9_.:-]+$ ]] || lab_bad_usage "invalid rootdev ${INITRD_ROOTDEV}"
}

# get_max_flash: N from --massflash N, else MAX_MASSFLASH of the board config, else 10; 1
# without --massflash. Into REPLY.
lab_max_massflash() {  # <board>
    local line
    REPLY=1
    ((INITRD_MASSFLASH)) || return 0
    if [[ -n ${INITRD_MAX_MASSFLASH} ]]; then
        REPLY=${INITRD_MAX_MASSFLASH}
        return 0
    fi
    line=$(grep -m1 '^MAX_MASSFLASH=' "${LAB_TREE}/$1.conf" 2>/dev/null || true)
    line=${line#*=}
    line=${line//\"/}
    REPLY=${line:-10}
}
