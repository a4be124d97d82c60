#!/usr/bin/env bash
# The demo cloud: dockercoins (redis, rng, hasher, worker, webui behind haproxy) in
# containers on this machine's Docker engine, each with drover-minion as PID 1.
#   scripts/demo.sh [drover demo options]   build drover and both releases of the demo app,
#                                           then `drover demo` (a master, the images, the fleet)
#   scripts/demo.sh down                    remove everything the demo made
# The first run builds the base image from Debian packages (a few minutes); later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ${1:-} == down ]]; then
  exec target/release/drover demo down
fi

scripts/deps.sh
echo "building drover (release)..." >&2
cargo build --release --locked --bins -q
# the demo app's two releases: 1.0 has the seeding bug, 1.1 (feature fixed-seed) fixes it;
# their own target folder, so the workspace's release build is not rebuilt for them
for version in 1.0 1.1; do
  features=()
  [[ $version == 1.1 ]] && features=(--features fixed-seed)
  echo "building the demo app $version..." >&2
  COINS_VERSION=$version cargo build --release --locked -q -p coins "${features[@]}" \
    --target-dir target/coins --config profile.release.strip=true --config profile.release.debug=false
  mkdir -p "images/coins/bin/$version"
  cp target/coins/release/coins "images/coins/bin/$version/coins"
done
exec target/release/drover demo "$@"
