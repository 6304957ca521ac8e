#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# apply_binaries.sh: the lab's stand-in for NVIDIA's Linux_for_Tegra/apply_binaries.sh.
#
# Installs "NVIDIA's packages" into the rootfs, with the real tool's refusals: it needs root,
# and a rootfs whose etc/passwd is owned by root (a sample rootfs extracted without tar's -p or
# as a normal user is not). What it installs is small but checkable: etc/nv_tegra_release and
# usr/lib/aarch64-linux-gnu/nvidia/.lab-installed.
set -euo pipefail

LAB_TOOL=apply_binaries.sh
LAB_TREE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lab_common.sh
source "${LAB_TREE}/lab_common.sh"

LAB_USAGE='Usage: sudo ./apply_binaries.sh [-r|--root <rootfs_dir>] [-t|--target-overlay] [-h|--help]
  -r | --root <dir> ..... the rootfs to install into (default: rootfs/)
  -t | --target-overlay . install the target overlay only'

lab_begin "$@"

ROOTFS="${LAB_TREE}/rootfs"
while (($#)); do
    case $1 in
        -r | --root)
            (($# >= 2)) || lab_bad_usage "option $1 requires an argument"
            lab_resolve "$2"
            ROOTFS=${REPLY}
            shift 2
            ;;
        -t | --target-overlay) shift ;;
        -h | --help) lab_usage 0 ;;
        *) lab_bad_usage "unknown argument $1" ;;
    esac
done

((EUID == 0)) || lab_fail "ERROR: This script must be run as root (sudo)."
[[ -d ${ROOTFS} ]] || lab_fail "ERROR: rootfs directory ${ROOTFS} does not exist."
[[ -f "${ROOTFS}/etc/passwd" ]] ||
    lab_fail "ERROR: ${ROOTFS} is not populated: extract the sample root filesystem into it first."
owner=$(stat -c %u "${ROOTFS}/etc/passwd")
((owner == 0)) ||
    lab_fail "ERROR: ${ROOTFS}/etc/passwd is owned by uid ${owner}, not root: extract the rootfs as root with 'tar xpf'."

lab_say "Using rootfs directory of: ${ROOTFS}"
lab_say "Installing extlinux.conf into /boot/extlinux in target rootfs"
# The real one installs the bundle's extlinux.conf (UEFI boots from it; flash.sh signs it).
mkdir -p "${ROOTFS}/boot/extlinux"
printf 'TIMEOUT 30\nDEFAULT primary\nMENU TITLE L4T boot options\nLABEL primary\n      LINUX /boot/Image\n' \
    >"${ROOTFS}/boot/extlinux/extlinux.conf"
lab_say "Installing BSP Debian packages in ${ROOTFS}"
# The real one unpacks NVIDIA's .deb packages into the rootfs: minutes on a station.
lab_sleep "${LAB_APPLY_SECONDS}"
install -D -m 0644 -o 0 -g 0 "${LAB_TREE}/nv_tegra/nv_tegra_release" "${ROOTFS}/etc/nv_tegra_release"
mkdir -p "${ROOTFS}/usr/lib/aarch64-linux-gnu/nvidia"
printf 'installed by apply_binaries.sh of %s\n' "${LAB_TREE}" \
    >"${ROOTFS}/usr/lib/aarch64-linux-gnu/nvidia/.lab-installed"
lab_say "Success!"
