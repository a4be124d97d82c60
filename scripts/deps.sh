#!/usr/bin/env bash
# Installs the system packages drover builds and runs with, when they are missing:
# Debian's libzmq (built with libsodium, so CURVE works; see ../shared/DEPENDENCIES.md)
# and pkg-config. Uses sudo when not root. Safe to run again.
set -euo pipefail

need=()
dpkg -s libzmq3-dev >/dev/null 2>&1 || need+=(libzmq3-dev)
dpkg -s pkg-config >/dev/null 2>&1 || need+=(pkg-config)
for extra in "$@"; do dpkg -s "$extra" >/dev/null 2>&1 || need+=("$extra"); done
((${#need[@]})) || exit 0

sudo=()
[[ $(id -u) == 0 ]] || sudo=(sudo)
echo "drover: installing ${need[*]}" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
