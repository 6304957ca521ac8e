#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# exportfs: the lab station's stand-in for nfs-utils' exportfs(8) (see host_common.sh).
#
# It keeps the runtime export table in <host root>/var/lib/nfs/etab, one export per line,
# "<dir> <client>(<options>)", the client without the brackets an IPv6 client needs on the
# command line. What matters to NVIDIA's initrd flash, as exportfs(8) documents it:
#   -o OPTS CLIENT:DIR  export DIR to CLIENT now (a runtime export, in no exports file);
#                       CLIENT may be "[fc00:1:1::/48]", as l4t_network_flash.func gives it
#   -u CLIENT:DIR       unexport it
#   -a                  export everything in /etc/exports and /etc/exports.d/*.exports
#   -r (-ra)            re-export: the table becomes exactly what the files say, so runtime
#                       exports vanish (NVIDIA's clean_up_network_flash runs "exportfs -ra")
#   -au (-ua)           unexport everything
#   no action, -v, -s   list the table
# Directories are exported by their real path; a missing one is reported and skipped (exit 1).
set -euo pipefail

HOST_PROGRAM=exportfs
HOST_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
# shellcheck source=host_common.sh
source "${HOST_ROOT}/.lab/host_common.sh"
host_begin "$@"

usage() {
    printf 'usage: exportfs [-adfhioruvs] [host:/path]\n' >&2
    exit 1
}

ALL=0 UNEXPORT=0 REEXPORT=0 VERBOSE=0 SHORT=0 OPTIONS='' TARGETS=()
while (($#)); do
    case $1 in
        -o)
            (($# >= 2)) || usage
            OPTIONS=$2
            shift 2
            ;;
        -o*) OPTIONS=${1#-o}; shift ;;
        -[arufivs]*)
            flags=${1#-}
            while [[ -n ${flags} ]]; do
                case ${flags:0:1} in
                    a) ALL=1 ;;
                    r) REEXPORT=1 ;;
                    u) UNEXPORT=1 ;;
                    v) VERBOSE=1 ;;
                    s) SHORT=1 ;;
                    f | i) ;;  # flush the kernel cache / ignore the exports files: nothing to model
                    *) usage ;;
                esac
                flags=${flags:1}
            done
            shift
            ;;
        -*) usage ;;
        *) TARGETS+=("$1"); shift ;;
    esac
done

# "CLIENT:DIR" into TARGET_CLIENT (table spelling) and TARGET_DIR (as given).
split_target() {
    local target_re='^\[([^]]*)\]:(/.*)$'
    if [[ $1 =~ ${target_re} ]]; then
        TARGET_CLIENT=${BASH_REMATCH[1]} TARGET_DIR=${BASH_REMATCH[2]}
    elif [[ $1 == *:/* ]]; then
        TARGET_CLIENT=${1%%:/*} TARGET_DIR=/${1#*:/}
    else
        printf 'exportfs: Invalid export syntax: %s\n' "$1" >&2
        return 1
    fi
}

list() {
    local entry dir spec
    for entry in "${HOST_TABLE[@]}"; do
        dir=${entry%% *} spec=${entry#* }
        if ((SHORT)); then
            printf '%s  %s\n' "${dir}" "${spec}"
        elif ((VERBOSE)); then
            printf '%-20s\t%s\n' "${dir}" "${spec}"
        else
            printf '%-20s\t%s\n' "${dir}" "${spec%%(*}"
        fi
    done
}

STATUS=0
host_lock_nfs
host_read_etab
if ((ALL || REEXPORT)) && ! host_read_configured; then
    STATUS=1
fi

if ((UNEXPORT)); then
    if ((ALL)); then
        HOST_TABLE=()
    fi
    for target in "${TARGETS[@]}"; do
        split_target "${target}" || { STATUS=1; continue; }
        dir=${TARGET_DIR}
        if host_export_dir "${TARGET_DIR}" 2>/dev/null; then dir=${REPLY}; fi
        host_table_drop "${dir}" "${TARGET_CLIENT}"
    done
    host_write_etab
    exit "${STATUS}"
fi

ACTED=0
if ((REEXPORT)); then
    HOST_TABLE=("${HOST_CONFIGURED[@]}")
    ACTED=1
elif ((ALL)); then
    for entry in "${HOST_CONFIGURED[@]}"; do
        spec=${entry#* }
        options=${spec#*(}
        host_table_put "${entry%% *}" "${spec%%(*}" "${options%)}"
    done
    ACTED=1
fi
for target in "${TARGETS[@]}"; do
    split_target "${target}" || { STATUS=1; continue; }
    if ! host_export_dir "${TARGET_DIR}"; then
        STATUS=1
        continue
    fi
    host_table_put "${REPLY}" "${TARGET_CLIENT}" "${OPTIONS:-ro,sync,wdelay,root_squash,no_subtree_check}"
    ACTED=1
done

if ((ACTED)); then
    host_write_etab
fi
if ((!ACTED || (VERBOSE && !${#TARGETS[@]} && !ALL && !REEXPORT))); then
    list
fi
exit "${STATUS}"
