#!/usr/bin/env bash
# Checks that the workspace builds with the oldest Rust it claims, clippy.toml's `msrv`
# (Cargo.toml names no `rust-version`: CI does not run this, see clippy.toml): installs that
# toolchain with rustup when missing, then `cargo check`s
# every crate and target with it, in a target folder of its own. Takes ~5 minutes on 2 cores
# from cold, so it is not part of scripts/test.sh; run it when a change may use newer Rust.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^msrv = "\(.*\)"/\1/p' clippy.toml)
[[ -n "$version" ]] || { echo "msrv: no msrv in clippy.toml" >&2; exit 2; }
rustup toolchain list | grep -q "^$version" || rustup toolchain install "$version" --profile minimal
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/msrv}" cargo "+$version" check --workspace --all-targets --locked
echo "msrv: the workspace builds with Rust $version"
