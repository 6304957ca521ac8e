# shellcheck shell=bash
# host_common.sh: shared code of the lab station's fake host programs (tests/lab/l4t_host.py).
#
# Why they exist: NVIDIA's initrd flash shares state with every other flash on the station
# through the host's NFS server (/etc/exports, /etc/exports.d and the runtime export table) and
# its udev rules. The lab station's "host root" is a directory standing for the station's /, and
# these programs (usr/sbin/exportfs, usr/sbin/service, usr/bin/udevadm in it) act on it the way
# nfs-utils, sysvinit-utils and systemd act on the real one, so that the lab's L4T doubles can
# collide with each other exactly where the real scripts do.
#
# Each program sets HOST_PROGRAM and HOST_ROOT (found from its own location), sources this file
# and calls host_begin "$@". Every call is recorded as one JSON line in the lab state's
# host-events.log: time, program, pid, argv.

# shellcheck disable=SC2154  # HOST_PROGRAM and HOST_ROOT come from the sourcing program
# The fixed decimal point matters: EPOCHREALTIME follows the locale, and the logs are parsed.
export LC_ALL=C

if [[ ! -r "${HOST_ROOT}/.lab/config" ]]; then
    printf '%s: %s has no .lab/config, so it is not a lab host root\n' "${HOST_PROGRAM}" "${HOST_ROOT}" >&2
    exit 1
fi
# shellcheck source=/dev/null
source "${HOST_ROOT}/.lab/config"
: "${LAB_STATE:?missing in the host root .lab/config}"

HOST_ETAB="${HOST_ROOT}/var/lib/nfs/etab"
HOST_EXPORTS="${HOST_ROOT}/etc/exports"
HOST_EXPORTS_D="${HOST_ROOT}/etc/exports.d"
HOST_NFS_LOCK="${HOST_ROOT}/.lab/nfs.lock"
HOST_NFS_STATE="${HOST_ROOT}/.lab/nfs-server"  # "running" or "stopped"

# Quote $1 as a JSON string into REPLY (control characters other than \n \r \t become '?').
host_json_string() {
    local text=$1
    text=${text//\\/\\\\}
    text=${text//\"/\\\"}
    text=${text//$'\n'/\\n}
    text=${text//$'\r'/\\r}
    text=${text//$'\t'/\\t}
    text=${text//[[:cntrl:]]/?}
    REPLY="\"${text}\""
}

host_begin() {
    local argv='' item
    for item in "$@"; do
        host_json_string "${item}"
        argv+="${argv:+,}${REPLY}"
    done
    host_json_string "${HOST_PROGRAM}"
    mkdir -p "${LAB_STATE}"
    # One printf with >> is one O_APPEND write: concurrent callers never interleave in a line.
    printf '{"time":%s,"program":%s,"pid":%s,"argv":[%s]}\n' "${EPOCHREALTIME}" "${REPLY}" "$$" \
        "${argv}" >>"${LAB_STATE}/host-events.log"
}

# The NFS server's tables are shared by every flash on the station: one writer at a time, as
# the real exportfs serialises on /var/lib/nfs/etab.lock. The lock goes with the process.
host_lock_nfs() {
    local fd
    exec {fd}>>"${HOST_NFS_LOCK}"
    flock "${fd}"
}

# The runtime export table into HOST_TABLE: one "<dir> <client>(<options>)" string per entry.
host_read_etab() {
    local line
    HOST_TABLE=()
    [[ -f ${HOST_ETAB} ]] || return 0
    while IFS= read -r line || [[ -n ${line} ]]; do
        [[ -n ${line} ]] && HOST_TABLE+=("${line}")
    done <"${HOST_ETAB}"
}

# Replace the table as a whole (write aside, then rename), so a reader never sees half of it.
host_write_etab() {
    mkdir -p "${HOST_ETAB%/*}"
    if ((${#HOST_TABLE[@]})); then
        printf '%s\n' "${HOST_TABLE[@]}" >"${HOST_ETAB}.$$"
    else
        : >"${HOST_ETAB}.$$"
    fi
    mv -f "${HOST_ETAB}.$$" "${HOST_ETAB}"
}

# Add an entry to HOST_TABLE, replacing one for the same directory and client.
host_table_put() {  # <dir> <client> <options>
    host_table_drop "$1" "$2"
    HOST_TABLE+=("$1 $2($3)")
}

host_table_drop() {  # <dir> <client>
    local entry kept=()
    for entry in "${HOST_TABLE[@]}"; do
        [[ ${entry} == "$1 $2("* ]] || kept+=("${entry}")
    done
    HOST_TABLE=("${kept[@]}")
}

# The directory as the kernel exports it (symlinks resolved) into REPLY, or 1 when it does not
# exist; exportfs says so and goes on with the other entries, as the real one does.
host_export_dir() {
    if [[ $1 != /* ]] || ! REPLY=$(realpath -e -- "$1" 2>/dev/null) || [[ ! -d ${REPLY} ]]; then
        printf 'exportfs: Failed to stat %s: No such file or directory\n' "$1" >&2
        return 1
    fi
}

# A client as the export table writes it: an IPv6 client loses the brackets the command line
# needs around it ("[fc00:1:1::/48]" -> "fc00:1:1::/48").
host_client() {
    REPLY=$1
    if [[ ${REPLY} == \[*\] ]]; then
        REPLY=${REPLY#[}
        REPLY=${REPLY%]}
    fi
}

# Every entry of /etc/exports and /etc/exports.d/*.exports (exports(5): "<dir> <client>(<opts>)
# [<client>(<opts>)]...", # comments, blank lines) into HOST_CONFIGURED, as table lines.
# Returns 1 if an entry named a directory that does not exist.
host_read_configured() {
    local file status=0
    HOST_CONFIGURED=()
    for file in "${HOST_EXPORTS}" "${HOST_EXPORTS_D}"/*.exports; do
        [[ -f ${file} ]] || continue
        host_parse_exports_file "${file}" || status=1
    done
    return "${status}"
}

host_parse_exports_file() {
    local line words word dir client options status=0
    local spec_re='^([^()]*)\((.*)\)$'
    while IFS= read -r line || [[ -n ${line} ]]; do
        line=${line%%#*}
        read -r -a words <<<"${line}"
        ((${#words[@]})) || continue
        dir=${words[0]//\"/}
        host_export_dir "${dir}" || { status=1; continue; }
        dir=${REPLY}
        if ((${#words[@]} == 1)); then
            words+=('*')  # a bare directory is exported to the world, read-only
        fi
        for word in "${words[@]:1}"; do
            if [[ ${word} =~ ${spec_re} ]]; then
                client=${BASH_REMATCH[1]:-*} options=${BASH_REMATCH[2]}
            else
                client=${word} options=ro
            fi
            host_client "${client}"
            HOST_CONFIGURED+=("${dir} ${REPLY}(${options})")
        done
    done <"${file}"
    return "${status}"
}

host_nfs_state() {
    REPLY=running
    if [[ -r ${HOST_NFS_STATE} ]]; then
        IFS= read -r REPLY <"${HOST_NFS_STATE}" || true
    fi
}

host_set_nfs_state() {
    printf '%s\n' "$1" >"${HOST_NFS_STATE}"
}
