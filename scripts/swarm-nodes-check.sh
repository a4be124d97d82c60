#!/usr/bin/env bash
# swarm-nodes-check.sh: proves scripts/swarm-nodes.sh end to end, timing each step:
#   1 up 3: a swarm of 3 Ready nodes, driven from this host through DOCKER_HOST
#   2 load: a test image (busybox-static from Debian, docker import) reaches every node
#   3 a 3-replica service spread over the nodes on an attachable overlay; every task reaches
#     every other over VXLAN, by address and by task name
#   4 a task on every node reaches a listener on this host at DROVER_NODES_HOST
#   5 registry: push from node 1 to 127.0.0.1:5000, pull by digest on node 3, and a service
#     of that image on all nodes
#   6 drain node 2: its tasks move and converge
#   7 down leaves no container, network, volume or cgroup of the nodes
# Needs root, debootstrap and apt-get (for busybox-static). Leaves only the images.
set -euo pipefail
here=$(dirname "$0")
nodes="$here/swarm-nodes.sh"
export DOCKER_HOST=unix:///var/run/docker.sock
unset DOCKER_CONTEXT
PORT=${DROVER_NODES_CHECK_PORT:-45999}
work=$(mktemp -d /var/tmp/drover-nodes-check-XXXXXX)
http_pid=
finish() {
    [[ -n $http_pid ]] && kill "$http_pid" 2>/dev/null
    "$nodes" down || true
    rm -rf "$work"
}
trap finish EXIT

step() { printf '\n=== %s\n' "$*"; }
pass() { printf 'PASS %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; exit 1; }
now() { date +%s.%N; }
took() { printf '%.1fs' "$(echo "$(now) - $1" | bc)"; }
on() { local n=$1; shift; timeout 120 docker exec "drover-nodes-$n" "$@"; }
swarm() { timeout 60 docker -H "$NODE1" "$@"; }
# task_container NODE SERVICE: the id of SERVICE's running container on NODE
task_container() { on "$1" docker ps -q --filter "label=com.docker.swarm.service.name=$2" | head -n1; }
# wait_running SERVICE N [SECONDS]: until N tasks of SERVICE run
wait_running() {
    local deadline=$((SECONDS + ${3:-90}))
    until [[ $(swarm service ps "$1" --filter desired-state=running --format '{{.CurrentState}}' | grep -c '^Running') == "$2" ]]; do
        ((SECONDS < deadline)) || { swarm service ps "$1" --no-trunc; fail "$1: $2 tasks not running after ${3:-90}s"; }
        sleep 0.5
    done
}

"$nodes" down

step "1 up 3"
t=$(now)
env_lines=$("$nodes" up 3)
echo "$env_lines"
echo "up took $(took "$t")"
NODE1=$(sed -n 's/^export DOCKER_HOST=//p' <<<"$env_lines")
GW=$(sed -n 's/^export DROVER_NODES_HOST=//p' <<<"$env_lines")
echo "\$ docker -H $NODE1 node ls"
swarm node ls
ready=$(swarm node ls --format '{{.Status}}' | grep -c '^Ready$' || true)
volumes=$(for n in 1 2 3; do docker inspect -f '{{range .Mounts}}{{.Name}} {{end}}' "drover-nodes-$n"; done)
echo "the nodes' anonymous volumes: $volumes"
[[ $ready == 3 ]] || fail "$ready Ready nodes"
pass "3 nodes Ready, seen from this host through $NODE1"

step "2 load a test image"
if ! docker image inspect drover-nodes-busybox:1 >/dev/null 2>&1; then
    (cd "$work" && timeout 120 apt-get download busybox-static >/dev/null 2>&1) || fail "apt-get download busybox-static"
    dpkg -x "$work"/busybox-static_*.deb "$work/deb"
    mkdir -p "$work/rootfs/bin" "$work/rootfs/tmp" "$work/rootfs/etc"
    cp "$work/deb/bin/busybox" "$work/rootfs/bin/"
    for a in $("$work/rootfs/bin/busybox" --list); do [[ $a == busybox ]] || ln -s busybox "$work/rootfs/bin/$a"; done
    tar -C "$work/rootfs" --numeric-owner --owner=0 --group=0 -cf - . |
        docker import -c 'LABEL drover.nodes=1' -c 'CMD ["/bin/sh"]' - drover-nodes-busybox:1 >/dev/null
fi
t=$(now)
"$nodes" load drover-nodes-busybox:1
echo "load took $(took "$t")"
want=$(docker image inspect -f '{{.Id}}' drover-nodes-busybox:1)
for n in 1 2 3; do
    [[ $(on $n docker image inspect -f '{{.Id}}' drover-nodes-busybox:1) == "$want" ]] || fail "node $n lacks the image"
done
pass "drover-nodes-busybox:1 (${want:7:12}) on nodes 1-3"

step "3 spread service on an attachable overlay, cross-node traffic"
swarm network create -d overlay --attachable drover-nodes-ov >/dev/null
swarm service create -q --detach --name drover-nodes-web --replicas 3 --placement-pref spread=node.id \
    --network drover-nodes-ov drover-nodes-busybox:1 \
    sh -c 'mkdir -p /www && hostname >/www/index.html && exec httpd -f -p 8080 -h /www' >/dev/null 2>&1
wait_running drover-nodes-web 3
swarm service ps drover-nodes-web --format '{{.Name}} {{.Node}} {{.CurrentState}}'
spread=$(swarm service ps drover-nodes-web --filter desired-state=running --format '{{.Node}}' | sort -u | wc -l)
[[ $spread == 3 ]] || fail "tasks on $spread nodes, not 3"
declare -A cid ip name
for n in 1 2 3; do
    cid[$n]=$(task_container $n drover-nodes-web)
    ip[$n]=$(on $n docker inspect -f '{{(index .NetworkSettings.Networks "drover-nodes-ov").IPAddress}}' "${cid[$n]}")
    name[$n]=$(on $n docker inspect -f '{{index .Config.Labels "com.docker.swarm.task.name"}}' "${cid[$n]}")
    echo "node $n: task ${name[$n]} container ${cid[$n]} overlay ${ip[$n]}"
done
for a in 1 2 3; do
    for b in 1 2 3; do
        ((a == b)) && continue
        got=$(on $a docker exec "${cid[$a]}" timeout 10 wget -qO- "http://${ip[$b]}:8080/" || true)
        [[ $got == "${cid[$b]}" ]] || fail "node $a -> ${ip[$b]} (node $b): '$got'"
        got=$(on $a docker exec "${cid[$a]}" timeout 10 wget -qO- "http://${name[$b]}:8080/" || true)
        [[ $got == "${cid[$b]}" ]] || fail "node $a -> ${name[$b]} (node $b): '$got'"
        echo "node $a -> node $b: by address and task name: $got"
    done
done
on 2 docker exec "${cid[2]}" sh -c 'dd if=/dev/urandom of=/www/big bs=1M count=8 2>/dev/null'
sum2=$(on 2 docker exec "${cid[2]}" md5sum /www/big | cut -d' ' -f1)
sum1=$(on 1 docker exec "${cid[1]}" sh -c "timeout 30 wget -qO- http://${ip[2]}:8080/big | md5sum" | cut -d' ' -f1)
[[ $sum1 == "$sum2" ]] || fail "8 MiB over the overlay: $sum1 != $sum2"
echo "8 MiB node 2 -> node 1 over the overlay: md5 $sum1 matches"
pass "one task per node; all 6 pairs talk over the overlay"

step "4 tasks reach a listener on this host at $GW:$PORT"
mkdir -p "$work/www" && echo "hello from the host" >"$work/www/index.html"
(cd "$work/www" && exec timeout 300 python3 -m http.server "$PORT" --bind 0.0.0.0) >"$work/http.log" 2>&1 &
http_pid=$!
sleep 1
for n in 1 2 3; do
    got=$(on $n docker exec "${cid[$n]}" timeout 10 wget -qO- "http://$GW:$PORT/" || true)
    [[ $got == "hello from the host" ]] || fail "task on node $n -> $GW:$PORT: '$got'"
    echo "task on node $n -> http://$GW:$PORT/: $got"
done
kill "$http_pid"; http_pid=
pass "the host is reachable at DROVER_NODES_HOST=$GW"

step "5 registry at 127.0.0.1:5000 on every node"
t=$(now)
"$nodes" registry
echo "registry took $(took "$t")"
reg=$(docker images --filter label=drover.nodes=1 --format '{{.Repository}}:{{.Tag}}' | grep '^drover-node:registry-' | head -n1)
on 1 docker tag "$reg" 127.0.0.1:5000/drover-nodes/x:1
t=$(now)
on 1 docker push 127.0.0.1:5000/drover-nodes/x:1 | grep -v -e Preparing -e Waiting | tee "$work/push"
echo "push (node 1) took $(took "$t")"
digest=$(grep -o 'sha256:[0-9a-f]\{64\}' "$work/push" | tail -n1)
on 3 docker image inspect "$reg" >/dev/null 2>&1 && fail "node 3 has $reg already"
t=$(now)
on 3 docker pull "127.0.0.1:5000/drover-nodes/x@$digest"
echo "pull by digest (node 3) took $(took "$t")"
[[ $(on 3 docker image inspect -f '{{.Id}}' "127.0.0.1:5000/drover-nodes/x@$digest") == \
    "$(on 1 docker image inspect -f '{{.Id}}' "$reg")" ]] || fail "node 3 pulled another image"
swarm service create -q --detach --name drover-nodes-fromreg --replicas 3 --placement-pref spread=node.id \
    127.0.0.1:5000/drover-nodes/x:1 sleep 3600 >/dev/null
wait_running drover-nodes-fromreg 3 120
swarm service inspect -f '{{.Spec.TaskTemplate.ContainerSpec.Image}}' drover-nodes-fromreg
swarm service ps drover-nodes-fromreg --format '{{.Name}} {{.Node}} {{.CurrentState}}'
pass "push on node 1 -> pull by digest on node 3; a service of it runs on all 3 nodes"

step "6 drain drover-nodes-2"
t=$(now)
swarm node update --availability drain drover-nodes-2 >/dev/null
deadline=$((SECONDS + 90))
while :; do
    running=$(swarm service ps drover-nodes-web drover-nodes-fromreg --filter desired-state=running --format '{{.Node}} {{.CurrentState}}')
    if ! grep -q '^drover-nodes-2 ' <<<"$running" && [[ $(grep -c ' Running' <<<"$running") == 6 ]] &&
        [[ -z $(on 2 docker ps -q) ]]; then
        break
    fi
    ((SECONDS < deadline)) || { echo "$running"; fail "not converged 90s after the drain"; }
    sleep 0.5
done
echo "converged in $(took "$t") (tasks stop within their 10s grace period: these ignore SIGTERM as pid 1)"
swarm service ps drover-nodes-web drover-nodes-fromreg --format '{{.Name}} {{.Node}} {{.DesiredState}} {{.CurrentState}}'
swarm node ls
pass "node 2 drained: no task on it, 6 running on nodes 1 and 3"

step "7 down"
t=$(now)
"$nodes" down
echo "down took $(took "$t")"
left=$(docker ps -aq --filter label=drover.nodes=1; docker ps -aq --filter name=drover-nodes;
    docker network ls -q --filter name=drover-nodes; docker network ls -q --filter label=drover.nodes=1;
    docker volume ls -q --filter label=drover.nodes=1;
    for v in $volumes; do docker volume inspect "$v" >/dev/null 2>&1 && echo "$v"; done; ls -d /sys/fs/cgroup/*/drover-nodes-* 2>/dev/null || true)
[[ -z $left ]] || fail "left: $left"
pass "no container, network, volume or cgroup left; images kept:"
docker images --filter label=drover.nodes=1
