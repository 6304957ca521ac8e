#!/usr/bin/env bash
# The customer's scripts/provision_device.sh as the runbook describes it (the benchmark's
# peer): POST /users, on 409 PATCH /users/password, then device.conf (mode 600) in the rootfs.
# The bearer token comes from the environment, as the runbook's "extend the script" asks.
set -euo pipefail
serial='' api_url='' rootfs_dir=''
while [ $# -gt 0 ]; do
  case "$1" in
    --serial) serial="$2"; shift 2 ;;
    --api-url) api_url="${2%/}"; shift 2 ;;
    --rootfs-dir) rootfs_dir="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
suffix="${serial##*-}"
email="azaion-jetson-${suffix,,}@azaion.com"
password="$(openssl rand -hex 16)"
auth=(-H "Authorization: Bearer ${AZAION_ADMIN_API_TOKEN:?}")
body="{\"email\":\"$email\",\"password\":\"$password\",\"role\":\"CompanionPC\"}"
status="$(curl -s -o /dev/null -w '%{http_code}' -X POST "${auth[@]}" -H 'Content-Type: application/json' \
  --data @- "$api_url/users" <<<"$body")"
if [ "$status" = 409 ]; then
  status="$(curl -s -o /dev/null -w '%{http_code}' -X PATCH "${auth[@]}" -H 'Content-Type: application/json' \
    --data @- "$api_url/users/password" <<<"{\"email\":\"$email\",\"password\":\"$password\"}")"
fi
case "$status" in 200|201|204) ;; *) echo "$serial: HTTP $status" >&2; exit 1 ;; esac
mkdir -p "$rootfs_dir/etc/azaion"
umask 077
printf 'AZAION_DEVICE_EMAIL=%s\nAZAION_DEVICE_PASSWORD=%s\n' "$email" "$password" > "$rootfs_dir/etc/azaion/device.conf"
echo "$serial: $email provisioned"
