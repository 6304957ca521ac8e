#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# l4t_create_default_user.sh: the lab's stand-in for NVIDIA's
# Linux_for_Tegra/tools/l4t_create_default_user.sh.
#
# Works on the FIXED path <tree>/rootfs, as the real one does (so a per-device rootfs must live
# in a per-device tree). Without --accept-license it would open an interactive licence dialog,
# which fails without a terminal. Like the real one it PRINTS THE PASSWORD, so a role calling it
# must keep that output out of its results and logs.
set -euo pipefail

LAB_TOOL=l4t_create_default_user.sh
LAB_TREE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
# shellcheck source=lab_common.sh
source "${LAB_TREE}/lab_common.sh"

LAB_USAGE='Usage: sudo ./tools/l4t_create_default_user.sh [-u <username>] [-p <password>] [-a] [-n <hostname>] [--accept-license] [-h]
  -u | --username ..... the default user (default: nvidia)
  -p | --password ..... its password (default: nvidia)
  -n | --hostname ..... the hostname (default: tegra-ubuntu)
  -a | --autologin .... log the user in automatically
  --accept-license .... accept the NVIDIA licence without the interactive dialog'
SUPPLEMENTARY_GROUPS=(adm sudo audio dip video plugdev i2c gpio render)

lab_begin "$@"

USER_NAME=nvidia PASSWORD=nvidia HOST_NAME=tegra-ubuntu ACCEPTED=0 AUTOLOGIN=false
while (($#)); do
    case $1 in
        -u | --username | -p | --password | -n | --hostname)
            (($# >= 2)) || lab_bad_usage "option $1 requires an argument"
            case $1 in
                -u | --username) USER_NAME=$2 ;;
                -p | --password) PASSWORD=$2 ;;
                -n | --hostname) HOST_NAME=$2 ;;
            esac
            shift 2
            ;;
        -a | --autologin) AUTOLOGIN=true; shift ;;
        --accept-license) ACCEPTED=1; shift ;;
        -h | --help) lab_usage 0 ;;
        *) lab_bad_usage "unknown argument $1" ;;
    esac
done

ROOTFS="${LAB_TREE}/rootfs"
((EUID == 0)) || lab_fail "ERROR: This script must be run as root (sudo)."
[[ ${USER_NAME} =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || lab_fail "ERROR: invalid username ${USER_NAME}."
[[ -n ${PASSWORD} ]] || lab_fail "ERROR: the password must not be empty."
[[ ${HOST_NAME} =~ ^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$ ]] ||
    lab_fail "ERROR: invalid hostname ${HOST_NAME}."
[[ -f "${ROOTFS}/etc/passwd" && -f "${ROOTFS}/etc/group" ]] ||
    lab_fail "ERROR: ${ROOTFS} is not populated: extract the sample root filesystem first."

if ((!ACCEPTED)); then
    if [[ -t 0 && -t 1 ]]; then
        read -r -p "Do you accept the NVIDIA Jetson software licence agreement? [y/N] " answer
        if [[ ${answer,,} == y* ]]; then ACCEPTED=1; fi
    fi
    ((ACCEPTED)) || lab_fail "ERROR: The license was not accepted (no terminal for the license dialog; pass --accept-license)."
fi

if grep -q "^${USER_NAME}:" "${ROOTFS}/etc/passwd"; then
    lab_fail "ERROR: user ${USER_NAME} already exists in ${ROOTFS}."
fi

# The next free uid from 1000, and a group of the same number.
uid=1000
while IFS=: read -r _ _ used _; do
    if [[ ${used} =~ ^[0-9]+$ ]] && ((used >= uid && used < 60000)); then
        uid=$((used + 1))
    fi
done < <(cat "${ROOTFS}/etc/passwd" "${ROOTFS}/etc/group")

if command -v openssl >/dev/null; then
    # Through stdin: a password on a command line is visible to every local user.
    hash=$(printf '%s\n' "${PASSWORD}" | openssl passwd -6 -stdin)
else
    hash="\$6\$lablab\$$(printf 'lablab%s' "${PASSWORD}" | sha512sum | cut -c1-86)"
fi
days=$(($(printf '%(%s)T' -1) / 86400))

printf '%s:x:%d:%d:%s,,,:/home/%s:/bin/bash\n' "${USER_NAME}" "${uid}" "${uid}" "${USER_NAME}" \
    "${USER_NAME}" >>"${ROOTFS}/etc/passwd"
printf '%s:%s:%d:0:99999:7:::\n' "${USER_NAME}" "${hash}" "${days}" >>"${ROOTFS}/etc/shadow"
shadow_gid=$(awk -F: '$1 == "shadow" { print $3 }' "${ROOTFS}/etc/group")
chown "0:${shadow_gid:-0}" "${ROOTFS}/etc/shadow"
chmod 0640 "${ROOTFS}/etc/shadow"

# The user's own group, and membership of the usual desktop groups that exist in this rootfs.
groups_tmp="${ROOTFS}/etc/group.lab-new"
while IFS= read -r line; do
    group=${line%%:*}
    for wanted in "${SUPPLEMENTARY_GROUPS[@]}"; do
        if [[ ${group} == "${wanted}" ]]; then
            if [[ ${line} == *: ]]; then line+=${USER_NAME}; else line+=",${USER_NAME}"; fi
        fi
    done
    printf '%s\n' "${line}"
done <"${ROOTFS}/etc/group" >"${groups_tmp}"
printf '%s:x:%d:\n' "${USER_NAME}" "${uid}" >>"${groups_tmp}"
chmod --reference="${ROOTFS}/etc/group" "${groups_tmp}"
mv -f "${groups_tmp}" "${ROOTFS}/etc/group"

mkdir -p "${ROOTFS}/home/${USER_NAME}"
chown "${uid}:${uid}" "${ROOTFS}/home/${USER_NAME}"
chmod 0750 "${ROOTFS}/home/${USER_NAME}"
printf '%s\n' "${HOST_NAME}" >"${ROOTFS}/etc/hostname"
if [[ -f "${ROOTFS}/etc/hosts" ]]; then
    sed -i '/^127\.0\.1\.1[[:space:]]/d' "${ROOTFS}/etc/hosts"
fi
printf '127.0.1.1\t%s\n' "${HOST_NAME}" >>"${ROOTFS}/etc/hosts"

lab_say "Creating: Username - ${USER_NAME}, Password - ${PASSWORD}, Autologin - ${AUTOLOGIN}"
lab_say "Success!"
