#!/usr/bin/env bash
# The long run of the property tests whose short run is part of `cargo test`: the wire
# decoder (wire/tests/fuzz.rs), the target parser (targeting/tests/fuzz_target.rs) and the
# roles/states front-end, YAML and Tera (the fuzz_ tests of render/tests/cases.rs).
#
#   scripts/fuzz.sh [wire] [target] [render]      # all three when none is named
#
# DROVER_FUZZ_CASES inputs per property (1000000 unless set), in an optimised build with
# debug assertions (cargo profile `fuzz`). A failure prints the input, shrunk, and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh

cases="${DROVER_FUZZ_CASES:-1000000}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(wire target render)
fi
# the same packages every time, so that one build (one set of features) serves every run
packages=(-p wire -p targeting -p render)
tests=()
for t in "${targets[@]}"; do
    case "$t" in
        wire) tests+=(--test fuzz) ;;
        target) tests+=(--test fuzz_target) ;;
        render) tests+=(--test cases) ;;
        *)
            echo "fuzz.sh: unknown target '$t'; expected wire, target or render" >&2
            exit 2
            ;;
    esac
done
cargo test --profile fuzz --locked --no-run "${packages[@]}" "${tests[@]}"
for test in $(printf '%s\n' "${tests[@]}" | grep -v -- --test); do
    echo "fuzz.sh: $test, $cases cases per property"
    start=$(date +%s)
    PROPTEST_CASES="$cases" cargo test --profile fuzz --locked "${packages[@]}" --test "$test" fuzz_
    echo "fuzz.sh: $test passed $cases cases per property in $(($(date +%s) - start)) s"
done
