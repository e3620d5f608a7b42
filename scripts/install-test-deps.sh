#!/usr/bin/env bash
# Install the system packages the test suite needs, only those missing (CI machines start bare).
# Debian/Ubuntu hosts; needs root or sudo.
set -euo pipefail

packages=(
  # molecule harness: rootful podman with runc, local image builds with debootstrap
  podman runc debootstrap fuse-overlayfs uidmap slirp4netns netavark aardvark-dns iptables
  # throwaway PostgreSQL clusters for gateway tests
  postgresql
  # the Prisma query-engine stand-in (tests/standins/prisma_engine) and the Prisma CLI
  nodejs
)

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# npm: a command, not a package, to look for. Node.js builds from outside Debian (NodeSource's, as on
# our test machines) ship npm inside their nodejs package and conflict with Debian's npm package.
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]} == 0)); then
  echo "system test dependencies present"
  exit 0
fi

sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
