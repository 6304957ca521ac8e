#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# udevadm: the lab station's stand-in for systemd's udevadm(8) (see host_common.sh).
#
# The lab has no udev daemon: the rules that matter (NVIDIA's 99-l4t-host.rules keeps
# NetworkManager off the flashing gadget) are checked by the L4T doubles when a gadget appears,
# by looking into <host root>/etc/udev/rules.d. So "control --reload[-rules]", "trigger",
# "settle" and "info" are recorded (host-events.log) and succeed; anything else is refused.
set -euo pipefail

HOST_PROGRAM=udevadm
HOST_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
# shellcheck source=host_common.sh
source "${HOST_ROOT}/.lab/host_common.sh"
host_begin "$@"

case ${1:-} in
    control)
        case ${2:-} in
            --reload | --reload-rules | -R) exit 0 ;;
            *) printf 'udevadm control: the lab supports --reload and --reload-rules only\n' >&2; exit 1 ;;
        esac
        ;;
    trigger | settle | info) exit 0 ;;
    *)
        printf 'udevadm: unknown command %s (the lab supports control, trigger, settle, info)\n' "${1:-}" >&2
        exit 2
        ;;
esac
