# shellcheck shell=bash
# lab_common.sh: shared code of the lab's fake NVIDIA L4T tools (see tests/lab/l4t_bundle.py).
#
# Why these fakes exist: the roles under test call NVIDIA's tools by their real names, with
# their real argument syntax, and must not know they run in a lab. So each fake finds its
# settings inside the bundle it was run from (.lab/config, written by the builder, read-only)
# and records what it did in the lab state directory OUTSIDE the bundle, where tests read it:
#
#   tool-calls.log      one JSON start record and one end record per invocation
#   flash-runs.log      the same for every device a flash tool actually worked on
#   collisions.log      one JSON record per run that found another flash running in its tree
#   fuse-events.log     one JSON record per odmfuse/odmfuseread event
#   storage/<port>/     what the device on that USB port holds (its flashed rootfs)
#   storage/<port>.meta key=value lines: board, tree, tool, rootdev... of its last flash
#   fuses/<port>.xml    the fuse configuration burned into that device
#   fail/<port>         a planted flash failure: "<count> <kind>"
#   fail-fuse/<port>    a planted silent fuse failure: "<count> silent"
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
: "${LAB_FLASH_SECONDS:=0}" "${LAB_FUSE_SECONDS:=0}"

LAB_LOCK_DIR="${LAB_TREE}/bootloader/.lab-flash-lock"
LAB_LOCK_HELD=0
LAB_RUN_ID=''
LAB_RUN_SEQ=0
LAB_TOOL_LOG=''
LAB_CHILD_PID=''
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
    if [[ -n ${LAB_CHILD_PID} ]]; then
        kill "${LAB_CHILD_PID}" 2>/dev/null
    fi
    lab_end_flash_run "${status}"
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
lab_scan_devices() {
    local dir vendor product port wanted busnum
    LAB_DEVICES=()
    declare -gA LAB_DEVICE_DIR=() LAB_DEVICE_PRODUCT=()
    for dir in "${LAB_USB_SYSFS_ROOT}"/*/; do
        dir=${dir%/}
        lab_read_line "${dir}/idVendor"
        vendor=${REPLY}
        lab_read_line "${dir}/idProduct"
        product=${REPLY}
        [[ ${vendor} == 0955 ]] || continue
        for wanted in "${LAB_RECOVERY_PRODUCTS[@]}"; do
            if [[ ${product} == "${wanted}" ]]; then
                lab_read_line "${dir}/busnum"
                busnum=${REPLY}
                lab_read_line "${dir}/devpath"
                if [[ -n ${busnum} && -n ${REPLY} ]]; then
                    port="${busnum}-${REPLY}"
                else
                    port=${dir##*/}
                fi
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

lab_device_has_fuse() {  # <port> <fuse name>
    local burned="${LAB_STATE}/fuses/$1.xml"
    [[ -f ${burned} ]] && grep -q "name=\"$2\"" "${burned}"
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

lab_begin_flash_run() {
    LAB_RUN_SEQ=$((LAB_RUN_SEQ + 1))
    LAB_RUN_ID="${LAB_CALL_ID}:${LAB_RUN_SEQ}"
    lab_json_object event start id "${LAB_RUN_ID}" tool "${LAB_TOOL}" usb_instance "${LAB_PORT}" \
        tree "${LAB_TREE}" time:raw "${EPOCHREALTIME}"
    lab_record flash-runs.log "${REPLY}"
}

lab_end_flash_run() {  # <exit status>
    [[ -n ${LAB_RUN_ID} ]] || return 0
    lab_json_object event end id "${LAB_RUN_ID}" time:raw "${EPOCHREALTIME}" exit:raw "$1"
    lab_record flash-runs.log "${REPLY}"
    LAB_RUN_ID=''
}

# Build the root filesystem image (a tar archive standing in for the ext4 image) in place.
lab_build_image() {  # <rootfs dir> <image file>
    [[ -d $1 ]] || lab_fail "Error: rootfs directory $1 does not exist."
    lab_say "Making system.img from $1..."
    tar --numeric-owner -C "$1" -cf - . | lab_rewrite_in_place "$2"
}

# Write the image to the device on LAB_PORT: its storage becomes exactly the image's content,
# with modes and owners. What lands on the device is what is in the image file at this moment.
lab_write_device() {  # <image file> <rootdev> <how the image came to be>
    local storage="${LAB_STATE}/storage/${LAB_PORT}"
    local incoming="${LAB_STATE}/storage/.${LAB_PORT}.incoming.$$"
    [[ -f $1 ]] || lab_fail "Error: $1 is not found."
    rm -rf "${incoming}"
    mkdir -p "${incoming}"
    tar --numeric-owner -xpf "$1" -C "${incoming}" ||
        lab_fail "ERROR: $1 is not a valid system image."
    rm -rf "${storage}"
    mv "${incoming}" "${storage}"
    lab_write_meta "${2}" "${3}"
}

lab_write_meta() {  # <rootdev> <image note>
    local meta="${LAB_STATE}/storage/${LAB_PORT}.meta"
    mkdir -p "${LAB_STATE}/storage"
    printf 'board=%s\ntree=%s\ntool=%s\nrootdev=%s\nimage=%s\ntime=%s\n' "${LAB_BOARD}" \
        "${LAB_TREE}" "${LAB_TOOL}" "$1" "$2" "${EPOCHREALTIME}" >"${meta}.$$"
    mv -f "${meta}.$$" "${meta}"
}

# shellcheck disable=SC2034  # the FLASH_* settings are read by flash.sh and l4t_initrd_flash.sh
# flash.sh's own options; l4t_initrd_flash.sh passes its -p "<options>" through the same
# parser, as the real one hands them to flash.sh. Positional arguments go to LAB_POSITIONALS.
lab_parse_flash_options() {
    FLASH_USB_INSTANCE='' FLASH_REUSE=0 FLASH_NO_FLASH=0 FLASH_NO_SYSTEMIMG=0 FLASH_ROOTFS=''
    FLASH_PARTITION='' FLASH_PKC='' FLASH_SBK='' FLASH_CFG='' FLASH_ROOTFS_SIZE=''
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
