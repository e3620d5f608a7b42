#!/usr/bin/env bash
# Build a Debian systemd image for molecule locally with debootstrap, because no container
# registry is reachable from CI. Builds only when the image is missing (or FORCE=1).
#
#   molecule/_harness/build-image.sh bookworm     -> localhost/k3sllm-systemd:bookworm
set -euo pipefail

suite=${1:?usage: build-image.sh <debian suite, e.g. bookworm or trixie>}
if [[ ! "$suite" =~ ^[a-z]+$ ]]; then
  echo "build-image.sh: '$suite' is not a Debian suite name (bookworm, trixie, ...)" >&2
  exit 2
fi
image="localhost/k3sllm-systemd:${suite}"
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
mirror=${K3SLLM_DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [[ "${FORCE:-0}" != 1 ]] && podman image exists "$image"; then
  echo "image $image present"
  exit 0
fi

root=$(mktemp -d "${TMPDIR:-/var/tmp}/k3sllm-rootfs-${suite}.XXXXXX")
trap 'rm -rf "$root" "$root.log"' EXIT

echo "building $image with debootstrap (about 2 minutes)"
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,ca-certificates,gnupg,iproute2,procps \
  "$suite" "$root" "$mirror" >"$root.log" 2>&1 || { tail -n 30 "$root.log"; exit 1; }
rm -f "$root.log"

# A fresh machine-id per container; no stale apt state baked into the image.
: >"$root/etc/machine-id"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/*
mkdir -p "$root/var/lib/apt/lists/partial"
# Back-date the lists folder so roles using cache_valid_time still run their first apt update.
touch -d '2000-01-01' "$root/var/lib/apt/lists"

tar -C "$root" -c . | podman import \
  --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL=SIGRTMIN+3' - "$image" >/dev/null
echo "built $image"
