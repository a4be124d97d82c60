#!/usr/bin/env bash
# swarm-demo.sh: issue 11's multi-node test, end to end. Three Docker engines as containers
# (scripts/swarm-nodes.sh), one Swarm; the dockercoins fleet spread over them by a drover
# master on this host, its images through the registry the fleet runs itself; then node 3 is
# drained and the slots that ran there move to nodes 1 and 2; then worker is upgraded to 1.1
# across the nodes; then everything is torn down. Each step prints its time, and a table of
# them at the end.
#
#   scripts/swarm-demo.sh            the whole run (15-25 min on 2 cores); needs root, debootstrap
#
# Inputs (environment):
#   DROVER_BIN        folder of drover, drover-master, drover-minion (default: target/debug of
#                     this clone). They are not built here; they must come from a commit with
#                     Swarm registry support (3088553 or later), which DROVER_SRC (default: this
#                     clone) is checked for.
#   COINS_BIN         folder with 1.0/coins and 1.1/coins (default: $WORK/coins-bin); a missing
#                     one is built as scripts/demo.sh does (nice, target/coins).
#   DROVER_NODES_DEMO_WORK  work folder (default /var/tmp/drover-nodes-demo): config repo,
#                     master dir and log, image folders.
#   KEEP=1            on failure, leave the nodes, the fleet and the master up to look at
#                     (`scripts/swarm-nodes.sh down` and `kill $(cat $WORK/master.pid)` after).
#
# What is made: the nodes (label drover.nodes=1, names drover-nodes-*), and inside them the fleet
# `nodes` (drover.fleet=nodes). The host engine gets the node image only (a cache).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

WORK=${DROVER_NODES_DEMO_WORK:-/var/tmp/drover-nodes-demo}
BIN=${DROVER_BIN:-$ROOT/target/debug}
SRC=${DROVER_SRC:-$ROOT}
COINS_BIN=${COINS_BIN:-$WORK/coins-bin}
FLEET=nodes
NODES=3
DRAINED=drover-nodes-3
UP_TIMEOUT=900
DRAIN_TIMEOUT=600
UPGRADE_TIMEOUT=900
BUILD_TIMEOUT=1800
# what the binaries must include: the fleet's own registry on Swarm
NEEDED_COMMIT=3088553

export DROVER_DIR=$WORK/master
unset DOCKER_CONTEXT

say() { printf '\n=== %s  %s\n' "$(date -u +%T)" "$*"; }
die() { printf 'swarm-demo: error: %s\n' "$*" >&2; exit 1; }

# timings: "name|seconds" lines, printed as a table at the end
TIMES=()
STEP_NAME='' STEP_START=0
step() {
    end_step
    STEP_NAME=$1 STEP_START=$SECONDS
    say "$1"
}
end_step() {
    if [[ -n $STEP_NAME ]]; then
        local d=$((SECONDS - STEP_START))
        TIMES+=("$STEP_NAME|$d")
        printf -- '--- %s: %ss\n' "$STEP_NAME" "$d"
        STEP_NAME=''
    fi
}
table() {
    printf '\n| step | seconds |\n|---|---:|\n'
    local t
    for t in "${TIMES[@]}"; do printf '| %s | %s |\n' "${t%%|*}" "${t##*|}"; done
}

drover() { "$BIN/drover" --dir "$WORK/master" "$@"; }
# the swarm's manager, node 1 (set once the nodes are up)
d1() { docker -H "$DOCKER1" "$@"; }

# bounded wait: wait_until SECONDS WHAT COMMAND... (every 5 s); COMMAND may be a function of
# this script (`timeout` cannot run those: they bound their own commands)
wait_until() {
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    local run=(timeout 60)
    [[ $(type -t "$1") == function ]] && run=()
    until "${run[@]}" "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { echo "timed out after ${limit}s waiting for $what"; return 1; }
        sleep 5
    done
}

ps_json() { timeout 60 "$BIN/drover" --dir "$WORK/master" ps --out json 2>/dev/null || true; }
# Every slot ready, by stricter rules than `drover ps`'s exit status: its container running,
# the image's health check healthy, the minion connected and converged, and nothing noted. (On
# Swarm, `drover ps` exits 0 for a slot whose new task is only `created` while its old task's
# minion, of the same generation, is still connected: see bench/RESULTS.md.) With NODE, also
# no slot on NODE.
strictly_ready() {
    local j
    j=$(ps_json)
    [[ -n $j ]] || return 1
    jq -e --arg n "${1:-}" 'length > 0 and all(.[]; .state == "running" and .health == "healthy"
        and .connected and (.converged != null) and (.problem == null) and (.node != $n))' <<<"$j" >/dev/null
}
# strictly_ready twice, 3 s apart, and `drover ps` exits 0
settled() {
    strictly_ready "$@" && sleep 3 && strictly_ready "$@" && "$BIN/drover" --dir "$WORK/master" ps >/dev/null
}
# slot node lines of the fleet's slots
slot_nodes() { ps_json | jq -r '.[] | "\(.slot) \(.node // "-")"' | sort -V; }

diagnose() {
    echo "----- diagnosis -----"
    timeout 60 "$BIN/drover" --dir "$WORK/master" ps || true
    if [[ -n ${DOCKER1:-} ]]; then
        timeout 30 docker -H "$DOCKER1" node ls || true
        local s
        for s in $(timeout 30 docker -H "$DOCKER1" service ls -q --filter "label=drover.fleet=$FLEET" 2>/dev/null); do
            timeout 30 docker -H "$DOCKER1" service ps --no-trunc \
                --format '{{.Name}} {{.Node}} {{.DesiredState}} {{.CurrentState}} {{.Error}}' "$s" | head -n 4 || true
        done
    fi
    echo "----- master log (tail) -----"
    tail -n 60 "$WORK/master.log" 2>/dev/null || true
}

MASTER_PID=''
stop_master() {
    if [[ -n $MASTER_PID ]] && kill -0 "$MASTER_PID" 2>/dev/null; then
        kill "$MASTER_PID" 2>/dev/null || true
        for _ in $(seq 20); do kill -0 "$MASTER_PID" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$MASTER_PID" 2>/dev/null || true
    fi
    MASTER_PID=''
}

teardown() {
    if [[ -n ${DOCKER1:-} && -f $WORK/master/api.json ]] && [[ -n $MASTER_PID ]]; then
        timeout 300 "$BIN/drover" --dir "$WORK/master" down --volumes || echo "drover down failed"
    fi
    stop_master
    timeout 300 scripts/swarm-nodes.sh down || echo "swarm-nodes.sh down failed"
}

on_exit() {
    local rc=$?
    if ((rc != 0)); then
        end_step
        local last_step=none
        ((${#TIMES[@]} == 0)) || last_step=${TIMES[-1]%%|*}
        echo "swarm-demo: FAILED (exit $rc) in step '$last_step'" >&2
        diagnose
        if [[ ${KEEP:-} == 1 ]]; then
            echo "KEEP=1: left up; master pid $MASTER_PID, DOCKER_HOST=$DOCKER1"
        else
            teardown
        fi
        table
    fi
}
trap on_exit EXIT
trap 'exit 143' TERM INT

[[ $(id -u) == 0 ]] || die "needs root (debootstrap for the node and base images)"
for b in drover drover-master drover-minion; do [[ -x $BIN/$b ]] || die "$BIN/$b is missing"; done
timeout 10 "$BIN/drover" --help >/dev/null || die "$BIN/drover --help fails"
git -C "$SRC" merge-base --is-ancestor "$NEEDED_COMMIT" HEAD ||
    die "$SRC is older than $NEEDED_COMMIT (Swarm registry support): build drover from a newer commit"
echo "drover: $BIN ($(git -C "$SRC" log -1 --format='%h %cI' HEAD), binaries of $(date -u -r "$BIN/drover-master" +%FT%TZ))"
echo "machine: $(nproc) CPUs, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(uname -r), host engine $(docker version -f '{{.Server.Version}}')"
[[ -z $(docker ps -aq --filter label=drover.nodes=1) ]] || die "nodes are up already: scripts/swarm-nodes.sh down"
mkdir -p "$WORK"
rm -rf "$WORK/master" "$WORK/config" "$WORK/images" "$WORK/master.log"

# ---------------------------------------------------------------------------------------------
step "node image + up $NODES"
timeout 1500 scripts/swarm-nodes.sh up "$NODES" >"$WORK/env.sh"
# shellcheck disable=SC1091
. "$WORK/env.sh"
DOCKER1=$DOCKER_HOST
unset DOCKER_HOST
IP1=${DOCKER1#tcp://}
IP1=${IP1%:*}
echo "manager: $DOCKER1; host on the nodes' bridge: $DROVER_NODES_HOST"
scripts/swarm-nodes.sh nat 5000
d1 node ls

# ---------------------------------------------------------------------------------------------
step "coins binaries (1.0, 1.1)"
for version in 1.0 1.1; do
    if [[ -x $COINS_BIN/$version/coins ]]; then
        echo "coins $version: $COINS_BIN/$version/coins ($("$COINS_BIN/$version/coins" --version))"
        continue
    fi
    features=()
    [[ $version == 1.1 ]] && features=(--features fixed-seed)
    COINS_VERSION=$version timeout "$BUILD_TIMEOUT" nice -n 19 cargo build --release --locked -q -p coins "${features[@]}" \
        --target-dir "$ROOT/target/coins" --config profile.release.strip=true --config profile.release.debug=false
    mkdir -p "$COINS_BIN/$version"
    cp "$ROOT/target/coins/release/coins" "$COINS_BIN/$version/coins"
done

# ---------------------------------------------------------------------------------------------
step "config repo"
mkdir -p "$WORK/config/images/base"
cp -r "$ROOT/roles" "$ROOT/states" "$WORK/config/"
cp "$ROOT/images/base/base.yaml" "$WORK/config/images/base/"
cat >"$WORK/config/fleet.yaml" <<EOF
# written by scripts/swarm-demo.sh from the clone's fleet.yaml: the demo on three Swarm nodes
fleet: $FLEET
image: coins
version: "1.0"
engine: swarm
# the fleet's own registry (roles/registry.yaml), pinned by drover to the master's engine's
# node (node 1); 127.0.0.1:5000 on nodes 2 and 3 is NAT to node 1 (swarm-nodes.sh nat)
registry: {address: "127.0.0.1:5000", role: registry}
roles:
  registry:  {replicas: 1, ports: ["5000:5000"], volumes: [/var/lib/docker-registry]}
  # its volume is on node 1: pinned there
  datastore: {replicas: 1, volumes: [/var/lib/coins/redis], placement: {constraints: ["node.hostname==drover-nodes-1"]}}
  rng:       {replicas: 2, update: {batch: 1, order: start-first}}
  hasher:    {replicas: 2, update: {batch: 1, order: start-first}}
  worker:    {replicas: 3, update: {batch: 1, order: start-first}}
  webui:     {replicas: 1, update: {order: start-first}}
  # host-mode port (no routing mesh without IPVS): pinned to node 1, so http://<node 1>:8000
  lb:        {replicas: 1, ports: ["8000:80"], placement: {constraints: ["node.hostname==drover-nodes-1"]}}
EOF
git -C "$WORK/config" init -q
git -C "$WORK/config" add -A
git -C "$WORK/config" -c user.name=swarm-demo -c user.email=swarm-demo@localhost commit -qm "the demo fleet on three Swarm nodes"
for version in 1.0 1.1; do
    dir=$WORK/images/coins-$version
    mkdir -p "$dir/bin"
    find "$ROOT/images/coins" -maxdepth 1 -type f -exec cp {} "$dir/" \;
    cp "$COINS_BIN/$version/coins" "$dir/bin/coins"
done

# ---------------------------------------------------------------------------------------------
step "master"
DOCKER_HOST=$DOCKER1 "$BIN/drover-master" --dir "$WORK/master" --repo "$WORK/config" \
    --listen 0.0.0.0:0 --api 127.0.0.1:0 --advertise "$DROVER_NODES_HOST" \
    </dev/null >"$WORK/master.log" 2>&1 &
MASTER_PID=$!
echo "$MASTER_PID" >"$WORK/master.pid"
wait_until 30 "the master's api.json" test -s "$WORK/master/api.json" || die "the master did not start"
wait_until 30 "the master's API" "$BIN/drover" --dir "$WORK/master" key list || die "the master does not answer"
echo "master pid $MASTER_PID, log $WORK/master.log"

# ---------------------------------------------------------------------------------------------
step "image build coins:1.0 (base by debootstrap, import into node 1)"
timeout "$BUILD_TIMEOUT" "$BIN/drover" --dir "$WORK/master" image build "$WORK/images/coins-1.0" --tag coins:1.0
step "image build coins:1.1"
timeout "$BUILD_TIMEOUT" "$BIN/drover" --dir "$WORK/master" image build "$WORK/images/coins-1.1" --tag coins:1.1
drover image list || true

# ---------------------------------------------------------------------------------------------
step "drover up (registry, pushes, 11 slots on 3 nodes)"
timeout $((UP_TIMEOUT + 120)) "$BIN/drover" --dir "$WORK/master" up --timeout "$UP_TIMEOUT"
end_step
step "after up: every slot running and healthy"
wait_until 300 "every slot running and healthy" settled || die "not every slot is running and healthy"
end_step
drover ps || true
drover nodes || true
used=$(slot_nodes | awk '{print $2}' | sort -u | grep -vc '^-$' || true)
echo "slots on $used distinct nodes"
((used == NODES)) || die "the slots are on $used nodes, not $NODES"
drover ps >/dev/null || die "not every slot is ready after up"
slot_nodes >"$WORK/before.txt"

step "webui through lb on node 1, coins mined"
timeout 10 curl -fsS -o /dev/null -w 'GET %{url_effective} -> %{http_code} %{size_download} bytes\n' "http://$IP1:8000/" ||
    die "the webui does not answer at http://$IP1:8000/"
coins_now() { timeout 10 curl -fsS "http://$IP1:8000/json" | jq -r '.hashes'; }
h1=$(coins_now) || die "no /json"
timeout 10 curl -fsS "http://$IP1:8000/json"
echo
sleep 15
h2=$(coins_now) || die "no /json"
echo "hashes: $h1 -> $h2 in 15 s"
((h2 > h1)) || die "the workers mine nothing (hashes $h1 -> $h2)"

# ---------------------------------------------------------------------------------------------
moved=$(awk -v n="$DRAINED" '$2 == n {print $1}' "$WORK/before.txt")
echo "on $DRAINED before the drain: $(tr "\n" " " <<<"$moved")"
step "drain $DRAINED -> every slot ready elsewhere"
d1 node update --availability drain "$DRAINED" >/dev/null
first_ok=''
last=''
deadline=$((SECONDS + DRAIN_TIMEOUT))
until settled "$DRAINED"; do
    if [[ -z $first_ok ]] && "$BIN/drover" --dir "$WORK/master" ps >/dev/null 2>&1 &&
        [[ -z $(slot_nodes | awk -v n="$DRAINED" '$2 == n') ]]; then
        first_ok=$((SECONDS - STEP_START))
        echo "${first_ok}s: drover ps exits 0 and no slot is on $DRAINED (not every new task is running and healthy yet):"
        drover ps || true
    fi
    if ((SECONDS >= deadline)); then die "the slots did not leave $DRAINED and converge within ${DRAIN_TIMEOUT}s"; fi
    now=$(slot_nodes | awk -v n="$DRAINED" '$2 == n {print $1}' | tr '\n' ' ')
    [[ $now == "$last" ]] || echo "$((SECONDS - STEP_START))s: still on $DRAINED: ${now:-none (waiting for ready)}"
    last=$now
    sleep 2
done
end_step
echo "drover ps said ready first after ${first_ok:-?}s"
drover ps || true
slot_nodes >"$WORK/after.txt"
echo "moved:"
for s in $moved; do echo "  $s: $DRAINED -> $(awk -v s="$s" '$1 == s {print $2}' "$WORK/after.txt")"; done
# lb learns the webui's new address when its peers change (a reload): a bounded wait
mining() {
    local a b
    a=$(coins_now) && [[ $a =~ ^[0-9]+$ ]] && sleep 5 && b=$(coins_now) && ((b > a)) &&
        echo "hashes: $a -> $b in 5 s"
}
step "after the drain: webui answers through lb, hashes grow"
wait_until 180 "the webui through lb and growing hashes" mining || die "no mining seen through lb after the drain"
mining || true
end_step

# ---------------------------------------------------------------------------------------------
step "upgrade worker to 1.1 (by digest from the registry)"
timeout $((UPGRADE_TIMEOUT + 60)) "$BIN/drover" --dir "$WORK/master" upgrade worker --to 1.1
end_step
step "after the upgrade: every slot running and healthy"
wait_until 300 "every slot running and healthy" settled "$DRAINED" || die "not every slot is running and healthy after the upgrade"
end_step
drover ps || true
ps_json | jq -r '.[] | select(.role == "worker") | "\(.slot) \(.node) \(.version) \(.image)"'
sleep 12
timeout 10 curl -fsS "http://$IP1:8000/json" | jq -c '{hashes, coins, versions}' || true

# ---------------------------------------------------------------------------------------------
step "down (drover down --volumes, master, nodes)"
timeout 300 "$BIN/drover" --dir "$WORK/master" down --volumes
left=$(d1 service ls -q --filter "label=drover.fleet=$FLEET" | wc -l)
echo "services left in the swarm: $left"
stop_master
timeout 300 scripts/swarm-nodes.sh down
end_step
rest=$( { docker ps -aq --filter label=drover.nodes=1; docker ps -aq --filter "label=drover.fleet=$FLEET";
          docker ps -aq --filter name=drover-nodes-; docker network ls -q --filter label=drover.nodes=1;
          docker volume ls -q --filter label=drover.nodes=1; } | sort -u)
[[ -z $rest ]] || die "left on the host engine: $rest"
echo "nothing left on the host engine (label drover.nodes=1, drover.fleet=$FLEET, names drover-nodes-*)"
trap - EXIT
table
echo "swarm-demo: OK"
