#!/usr/bin/env bash
# The local demo: builds drover, starts a master and three minions under .demo/ (keys
# accepted the way an operator would), and prints what to try.
#   scripts/demo.sh          start (or restart) the demo
#   scripts/demo.sh stop     stop it
# Ports: DROVER_DEMO_PORT (default 4506; the key port is the one below) and DROVER_DEMO_API (4507).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
demo="$root/.demo"
port="${DROVER_DEMO_PORT:-4506}"
api="${DROVER_DEMO_API:-4507}"
bin="$root/target/release"

stop() {
  for pidfile in "$demo"/*.pid; do
    [[ -e $pidfile ]] || continue
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
}
if [[ ${1:-} == stop ]]; then stop; echo "demo stopped"; exit 0; fi

scripts/deps.sh
echo "building (release)..." >&2
cargo build --release --locked --bins -q
stop
mkdir -p "$demo/logs"

"$bin/drover-master" --dir "$demo/master" --listen "127.0.0.1:$port" --api "127.0.0.1:$api" \
  --heartbeat 2 >"$demo/logs/master.log" 2>&1 &
echo $! >"$demo/master.pid"
for _ in $(seq 100); do [[ -s $demo/master/api.json ]] && break; sleep 0.1; done
[[ -s $demo/master/api.json ]] || { echo "master did not start; see $demo/logs/master.log" >&2; exit 1; }

start_minion() { # id, grains...
  local id=$1; shift
  local grains=()
  for g in "$@"; do grains+=(--grain "$g"); done
  "$bin/drover-minion" --id "$id" --master "127.0.0.1:$port" --dir "$demo/$id" --heartbeat 2 \
    "${grains[@]}" >"$demo/logs/$id.log" 2>&1 &
  echo $! >"$demo/$id.pid"
}
start_minion web-1 tier=frontend
start_minion web-2 tier=frontend
start_minion db-1 tier=backend

drover() { "$bin/drover" --dir "$demo/master" "$@"; }
echo "waiting for the three minion keys..." >&2
for _ in $(seq 100); do
  [[ $(find "$demo/master/pki/pending" -type f | wc -l) -ge 3 ]] && break
  sleep 0.1
done
drover key list
drover key accept --all
for _ in $(seq 100); do
  drover -t 2 '*' test.ping >/dev/null 2>&1 && break
  sleep 0.2
done
drover '*' test.ping

cat <<TXT

The demo runs: a master and three minions (web-1, web-2, db-1) under $demo.
Try:
  export DROVER_DIR=$demo/master PATH=$bin:\$PATH
  drover '*' test.ping
  drover -G 'os:debian' cmd.run uptime
  drover -G 'tier:frontend' grains.get ipv4
  drover -C 'web-* and not web-2' test.echo hello
  drover -L web-1,db-1 cmd.run 'ls -la /' --out json
  drover roles diff                                      # what roles/ and states/ at HEAD would assign
  drover -b 1 '*' test.sleep 1
  drover key list
  drover jobs list
  drover completions bash > /tmp/drover.bash && source /tmp/drover.bash
Logs: $demo/logs/. Stop with: scripts/demo.sh stop
TXT
