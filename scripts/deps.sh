#!/usr/bin/env bash
# Installs the system packages drover builds and runs with, when they are missing:
# libsodium's static library and headers, a C++ compiler and pkg-config, which
# wire/build.rs needs to build libzmq with CURVE; debootstrap, with which the master makes
# the base image from Debian packages (images/base/base.yaml, docs/images.md); chromium
# (headless) and a font for it, with which tests/tests/dashboard.rs drives the dashboard;
# docker-compose (Compose v1), which tests/tests/compose.rs and drover-bench compare with.
# Uses sudo when not root. Safe to run again.
set -euo pipefail

need=()
for pkg in libsodium-dev g++ pkg-config debootstrap chromium fonts-dejavu-core docker-compose; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
for extra in "$@"; do dpkg -s "$extra" >/dev/null 2>&1 || need+=("$extra"); done
((${#need[@]})) || exit 0

sudo=()
[[ $(id -u) == 0 ]] || sudo=(sudo)
echo "drover: installing ${need[*]}" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
