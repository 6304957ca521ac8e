#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# ip: the lab station's stand-in for iproute2's ip(8), for the addresses of the USB gadget
# interfaces (see host_common.sh).
#
# NVIDIA's l4t_initrd_flash_internal.sh (ping_device) adds fc00:1:1:<instance>::1/64 to the
# gadget interface of the device it flashes and never removes it; the lab's L4T doubles keep
# those addresses one per line in <host root>/sys/class/net/<interface>/lab_addresses. This
# fake supports what a caller needs to clean them up: "ip -6 addr show dev IF" and
# "ip -6 addr del ADDRESS dev IF". Deleting an address the interface does not have fails as
# the real one does ("RTNETLINK answers: Cannot assign requested address", exit 2).
set -euo pipefail

HOST_PROGRAM=ip
HOST_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
# shellcheck source=host_common.sh
source "${HOST_ROOT}/.lab/host_common.sh"
host_begin "$@"

if [[ ${1:-} == -6 ]]; then shift; fi
[[ ${1:-} == addr || ${1:-} == address || ${1:-} == a ]] ||
    { printf 'ip: the lab supports "ip -6 addr show|del" only\n' >&2; exit 255; }
action=${2:-show}
if [[ ${action} == show ]]; then
    [[ ${3:-} == dev && -n ${4:-} ]] || { printf 'ip: the lab needs "addr show dev IF"\n' >&2; exit 255; }
    interface=$4 address=''
elif [[ ${action} == del ]]; then
    [[ -n ${3:-} && ${4:-} == dev && -n ${5:-} ]] ||
        { printf 'ip: the lab needs "addr del ADDRESS dev IF"\n' >&2; exit 255; }
    address=$3 interface=$5
else
    printf 'ip: unknown addr command %s\n' "${action}" >&2
    exit 255
fi
addresses="${HOST_ROOT}/sys/class/net/${interface}/lab_addresses"
if [[ ${interface} == */* || ! -d "${HOST_ROOT}/sys/class/net/${interface}" ]]; then
    printf 'Cannot find device "%s"\n' "${interface}" >&2
    exit 1
fi
if [[ ${action} == show ]]; then
    printf '%s: %s\n' "${interface}" "$(<"${HOST_ROOT}/sys/class/net/${interface}/operstate")"
    while IFS= read -r line; do
        [[ -n ${line} ]] && printf '    inet6 %s scope global\n' "${line}"
    done <"${addresses}"
    exit 0
fi
if ! grep -qxF -- "${address}" "${addresses}"; then
    printf 'RTNETLINK answers: Cannot assign requested address\n' >&2
    exit 2
fi
grep -vxF -- "${address}" "${addresses}" >"${addresses}.$$" || true
mv -f "${addresses}.$$" "${addresses}"
