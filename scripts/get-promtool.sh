#!/usr/bin/env bash
# Make promtool available at .build/promtool/usr/bin/promtool without installing or starting the
# Prometheus service: download Debian's `prometheus` package (bookworm: 2.42) and unpack it with
# `dpkg-deb -x`. Idempotent: returns at once when promtool is already there. Prints promtool's path.
# Needs apt-get (Debian/Ubuntu); `apt-get update` runs only when the download fails for want of lists.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$repo/.build/promtool"
promtool="$dest/usr/bin/promtool"

if [[ -x "$promtool" ]] && "$promtool" --version >/dev/null 2>&1; then
  echo "$promtool"
  exit 0
fi

sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# apt-get download writes into the current folder; as root it needs the _apt user to reach it.
chmod 0777 "$work"

download() {
  (cd "$work" && apt-get download -q prometheus >"$work/download.log" 2>&1)
}

if ! download; then
  if grep -qiE "unable to locate|no candidate|has no installation candidate|can't select" "$work/download.log"; then
    echo "apt lists lack prometheus; running apt-get update" >&2
    $sudo apt-get update -qq
    download || {
      cat "$work/download.log" >&2
      exit 1
    }
  else
    cat "$work/download.log" >&2
    exit 1
  fi
fi

deb=("$work"/prometheus_*.deb)
[[ -f "${deb[0]}" ]] || {
  echo "apt-get download produced no prometheus .deb" >&2
  exit 1
}
rm -rf "$dest.tmp"
mkdir -p "$dest.tmp"
dpkg-deb -x "${deb[0]}" "$dest.tmp"
[[ -x "$dest.tmp/usr/bin/promtool" ]] || {
  echo "no usr/bin/promtool in ${deb[0]}" >&2
  exit 1
}
rm -rf "$dest"
mv "$dest.tmp" "$dest"
"$promtool" --version >/dev/null
echo "$promtool"
