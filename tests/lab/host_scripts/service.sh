#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# service: the lab station's stand-in for service(8) (see host_common.sh).
#
# Only the NFS server has a state here, because NVIDIA's l4t_network_flash.func
# (network_prerequisite) runs "service nfs-kernel-server restart" on every initrd flash run:
#   restart, force-reload  the runtime export table is cleared and reloaded from /etc/exports
#                          and /etc/exports.d/*.exports (nfs-kernel-server's init script runs
#                          "exportfs -au" then "exportfs -r"): every runtime export vanishes
#   reload                 as "exportfs -r": the table becomes what the files say
#   start                  a stopped server loads the files; a running one is left alone
#   stop                   the table is emptied
#   status                 "running" exits 0, "stopped" exits 3, as LSB says
# Any other service is accepted and does nothing (exit 0).
set -euo pipefail

HOST_PROGRAM=service
HOST_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
# shellcheck source=host_common.sh
source "${HOST_ROOT}/.lab/host_common.sh"
host_begin "$@"

if (($# < 1)); then
    printf 'Usage: service < option > | --status-all | [ service_name [ command | --full-restart ] ]\n' >&2
    exit 1
fi
case $1 in
    nfs-kernel-server | nfs-server) ;;
    *) exit 0 ;;
esac
ACTION=${2:-}

load_configured() {
    host_read_configured || true  # a missing directory is reported and skipped
    HOST_TABLE=("${HOST_CONFIGURED[@]}")
    host_write_etab
}

host_lock_nfs
host_nfs_state
case ${ACTION} in
    restart | force-reload)
        HOST_TABLE=()
        host_write_etab
        load_configured
        host_set_nfs_state running
        ;;
    reload)
        load_configured
        ;;
    start)
        if [[ ${REPLY} != running ]]; then
            load_configured
        fi
        host_set_nfs_state running
        ;;
    stop)
        HOST_TABLE=()
        host_write_etab
        host_set_nfs_state stopped
        ;;
    status)
        if [[ ${REPLY} == running ]]; then
            printf 'nfsd running\n'
            exit 0
        fi
        printf 'nfsd not running\n'
        exit 3
        ;;
    *)
        printf 'Usage: nfs-kernel-server {start|stop|status|reload|force-reload|restart}\n' >&2
        exit 1
        ;;
esac
