#!/usr/bin/env bash
# The test suite, as CI runs it: formatting, lints, then every test (unit tests and the
# end-to-end tests that start real masters and minions on 127.0.0.1).
# Set DROVER_REQUIRE_DOCKER=1 to make Docker tests fail instead of skip without an engine.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# every target in one build, so the binaries the end-to-end tests start are built with the
# same features as the tests (dev-dependencies add tokio's test-util): one copy of each
# dependency in target/, not two
cargo build --workspace --all-targets --locked
cargo test --workspace --locked
