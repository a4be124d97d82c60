#!/usr/bin/env bash
# swarm-nodes.sh: several Docker engines ("nodes") as containers on this machine, joined
# into one Swarm, for trying drover's Swarm fleet on more than one node (issue 11).
#
#   scripts/swarm-nodes.sh up [N]        N nodes (default 3): drover-nodes-1..N on the bridge
#                                        network drover-nodes; node 1 is the Swarm manager and
#                                        listens on tcp://<its ip>:2375 (no TLS: the bridge is
#                                        reachable from this host only). Prints, on stdout,
#                                          export DOCKER_HOST=tcp://<node 1>:2375
#                                          export DROVER_NODES_HOST=<this host on the bridge>
#                                        so `eval "$(scripts/swarm-nodes.sh up)"` drives node 1.
#                                        Containers in the nodes reach a process listening on
#                                        this host's 0.0.0.0 at DROVER_NODES_HOST.
#   scripts/swarm-nodes.sh load IMAGE..  copies host images into every node (docker save | load).
#   scripts/swarm-nodes.sh registry      a registry (Debian's docker-registry 2.8) as the swarm
#                                        service drover-nodes-registry on node 1, reachable as
#                                        127.0.0.1:5000 on EVERY node (see "routing mesh" below);
#                                        127.0.0.0/8 is an insecure registry by default.
#   scripts/swarm-nodes.sh nat [PORT]    only the NAT part of `registry`: 127.0.0.1:PORT (5000) on
#                                        nodes 2..N reaches node 1:PORT, for a registry published
#                                        on node 1 (drover's own `registry: {role: ...}`).
#   scripts/swarm-nodes.sh env           prints the two export lines again.
#   scripts/swarm-nodes.sh build [registry]  only builds the node (or registry) image.
#   scripts/swarm-nodes.sh down          removes the nodes (and their volumes) and the network.
#
# Everything made carries the label drover.nodes=1. Images (kept as a cache, keyed by a hash of
# their recipe): drover-node:<hash> (debootstrap minbase bookworm + docker.io, iptables,
# ca-certificates, procps; the mirror is the host's apt source, as fleet/src/image/base.rs
# does) and drover-node:registry-<hash> (+ docker-registry). Building needs root and
# debootstrap. Work files go to $DROVER_NODES_WORK (default /var/tmp/drover-nodes). The script
# drives this host's engine (unix:///var/run/docker.sock, or $DROVER_NODES_ENGINE), never
# $DOCKER_HOST. If `up` fails half-way, `down` removes what it made.
#
# What a node container needs (measured on a Debian 12 host engine 20.10, kernel 6.18, cgroup
# v1; `--privileged` fails there with "unable to apply caps"):
#   --cap-add SYS_ADMIN   mounts (vfs layers, /run/docker/netns, proc of inner containers)
#   --cap-add NET_ADMIN   veth/bridge/vxlan links, iptables, netns set-up
#   --security-opt seccomp=unconfined   unshare/setns/mount/keyctl… by runc and dockerd
#   --security-opt systempaths=unconfined   a writable /proc/sys: dockerd and the overlay
#                         driver set net.ipv4.ip_forward, bridge-nf-call-iptables, … sysctls
#   -v /sys/fs/cgroup:/sys/fs/cgroup:rw   cgroups for inner containers (cgroupfs driver; they
#                         go under /<node name>/ in each hierarchy; `down` removes those dirs)
#   --tmpfs /run          dockerd's and containerd's runtime state
#   -v /var/lib/docker    an anonymous volume: `--storage-driver=vfs` (no overlay on overlay)
#   --init                a real pid 1 that reaps orphans
#   --sysctl net.ipv4.conf.all.route_localnet=1   for the registry's 127.0.0.1:5000 NAT (below)
# Not needed: --privileged (which fails here because the host's capability bounding set lacks
# CAP_SYS_RESOURCE), other caps. Measured without each: no NET_ADMIN: dockerd does not start;
# no seccomp=unconfined or no /sys/fs/cgroup: tasks do not start; no systempaths=unconfined:
# works here (ip_forward is inherited from the host) but dockerd logs read-only /proc/sys
# errors. Harmless error in the logs: "enabling default vlan on bridge br0 failed" (/sys is
# read-only; VLAN filtering is off anyway). iptables-nft (Debian's default) works in the nodes.
#
# Limits of this kernel (no CONFIG_IP_VS): Swarm's routing mesh (ingress published ports) and
# VIP service addresses do not work. A service's name and its network aliases resolve to its
# VIP, which does not answer; with `--endpoint-mode dnsrr` both resolve to the task addresses
# and work (measured), as do `tasks.<service>` and task names. dnsrr needs ports published
# `mode=host` (Swarm refuses ingress ports with dnsrr).
# The registry's 127.0.0.1:5000 on nodes 2..N is therefore made by a NAT rule in each node
# (route_localnet + DNAT 127.0.0.1:5000 -> node 1:5000) rather than by the routing mesh.
set -euo pipefail

# The engine the nodes run on: this host's, whatever DOCKER_HOST says (after
# `eval "$(scripts/swarm-nodes.sh up)"` it names node 1).
export DOCKER_HOST=${DROVER_NODES_ENGINE:-unix:///var/run/docker.sock}
unset DOCKER_CONTEXT

PREFIX=drover-nodes
NET=drover-nodes
LABEL=drover.nodes=1
SUITE=bookworm
NODE_PACKAGES=docker.io,iptables,ca-certificates,procps
REGISTRY_PACKAGES=docker-registry,ca-certificates
WORK=${DROVER_NODES_WORK:-/var/tmp/drover-nodes}
# Bounds on every wait, in seconds.
BUILD_TIMEOUT=${DROVER_NODES_BUILD_TIMEOUT:-1200}
ENGINE_TIMEOUT=${DROVER_NODES_ENGINE_TIMEOUT:-90}
SWARM_TIMEOUT=${DROVER_NODES_SWARM_TIMEOUT:-90}
LOAD_TIMEOUT=${DROVER_NODES_LOAD_TIMEOUT:-600}

say() { printf 'swarm-nodes: %s\n' "$*" >&2; }
die() { printf 'swarm-nodes: error: %s\n' "$*" >&2; exit 1; }

# wait_for SECONDS WHAT COMMAND...: runs COMMAND every second until it succeeds; dies after
# SECONDS with WHAT and the command's last output.
wait_for() {
    local limit=$1 what=$2 out
    shift 2
    local deadline=$((SECONDS + limit))
    while true; do
        if out=$(timeout 20 "$@" 2>&1); then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            die "timed out after ${limit}s waiting for $what; last output: ${out:-(none)}"
        fi
        sleep 1
    done
}

# The Debian mirror of the host's apt sources for $SUITE (deb822 first, then sources.list),
# else deb.debian.org: the rule of fleet/src/image/base.rs (host_mirror).
host_mirror() {
    local m
    m=$(awk -v suite="$SUITE" '
        BEGIN { RS = ""; FS = "\n" }
        {
            types = ""; uris = ""; suites = ""; enabled = "yes"
            for (i = 1; i <= NF; i++) {
                line = $i
                if (line ~ /^[ \t]*#/ || line ~ /^[ \t]/) continue
                k = tolower(substr(line, 1, index(line, ":") - 1)); v = substr(line, index(line, ":") + 1)
                gsub(/^[ \t]+|[ \t]+$/, "", v)
                if (k == "types") types = v; else if (k == "uris") uris = v
                else if (k == "suites") suites = v; else if (k == "enabled") enabled = tolower(v)
            }
            if (enabled == "no" || (" " types " ") !~ / deb /) next
            n = split(uris, u, /[ \t]+/)
            for (j = 1; j <= n; j++) {
                if (u[j] !~ /^(https?:\/\/|file:\/)/) continue
                if ((" " suites " ") ~ (" " suite " ")) { print u[j]; exit }
                if (any == "" && u[j] !~ /security/ && suites !~ /-security/) any = u[j]
            }
        }
        END { if (any != "") print any }' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
    if [[ -z $m && -r /etc/apt/sources.list ]]; then
        m=$(awk -v suite="$SUITE" '$1 == "deb" {
                i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite && $i ~ /^(https?:\/\/|file:\/)/) { print $i; exit } }' /etc/apt/sources.list)
    fi
    m=${m:-http://deb.debian.org/debian}
    printf '%s\n' "${m%/}"
}

# The recipe of an image (what its hash covers) for the packages $1.
recipe() {
    printf 'suite=%s\nvariant=minbase\ninclude=%s\nmirror=%s\ntrim=apt-cache,apt-lists,dev\nrecipe=3\n' \
        "$SUITE" "$1" "$(host_mirror)"
}

# build_image TAG-PREFIX PACKAGES: prints the tag of the image made from the recipe of
# PACKAGES, building it (debootstrap | docker import) unless the engine has it already.
build_image() {
    local name=$1 packages=$2 hash tag root
    hash=$(recipe "$packages" | sha256sum | cut -c1-12)
    tag="drover-node:${name:+$name-}$hash"
    if docker image inspect "$tag" >/dev/null 2>&1; then
        say "$tag is built already"
        printf '%s\n' "$tag"
        return 0
    fi
    [[ $(id -u) == 0 ]] || die "building $tag needs root (debootstrap)"
    command -v debootstrap >/dev/null || die "debootstrap is not installed: apt-get install debootstrap"
    mkdir -p "$WORK"
    root=$(mktemp -d "$WORK/root-XXXXXX")
    # shellcheck disable=SC2064
    trap "cleanup_root '$root'" EXIT
    local started=$SECONDS mirror
    mirror=$(host_mirror)
    say "building $tag: debootstrap --variant=minbase --include=$packages $SUITE from $mirror"
    if ! timeout "$BUILD_TIMEOUT" debootstrap --variant=minbase --include="$packages" \
        "$SUITE" "$root" "$mirror" >"$root.log" 2>&1; then
        tail -n 15 "$root.log" >&2
        [[ -f $root/debootstrap/debootstrap.log ]] && tail -n 15 "$root/debootstrap/debootstrap.log" >&2
        die "debootstrap of $tag failed or took over ${BUILD_TIMEOUT}s (log: $root.log)"
    fi
    find "$root/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -type f -delete
    find "$root/var/lib/apt/lists" -mindepth 1 -maxdepth 1 ! -name partial -exec rm -rf {} +
    find "$root/dev" -mindepth 1 -delete
    timeout "$BUILD_TIMEOUT" tar -C "$root" --numeric-owner -cf - . |
        timeout "$BUILD_TIMEOUT" docker import \
            -c "LABEL $LABEL" -c "LABEL drover.nodes.recipe=$hash" -c 'CMD ["/bin/bash"]' - "$tag" >/dev/null ||
        die "docker import of $tag failed"
    cleanup_root "$root"
    trap - EXIT
    say "built $tag in $((SECONDS - started))s ($(docker image inspect -f '{{.Size}}' "$tag" | numfmt --to=iec))"
    printf '%s\n' "$tag"
}

cleanup_root() {
    local root=$1
    [[ -d $root ]] || return 0
    # debootstrap may leave proc/sys mounted in the chroot when it fails
    { findmnt -rn -o TARGET | grep -F "$root/" || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
    if findmnt -rn -o TARGET | grep -qF "$root/"; then
        say "left $root: something is still mounted in it"
        return 0
    fi
    rm -rf "$root" "$root.log"
}

nodes() { docker ps -a --filter "label=$LABEL" --filter "name=^${PREFIX}-[0-9]+$" --format '{{.Names}}' | sort -V; }
running_nodes() { docker ps --filter "label=$LABEL" --filter "name=^${PREFIX}-[0-9]+$" --format '{{.Names}}' | sort -V; }
node_ip() { docker inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$1"; }
gateway() { docker network inspect -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}' "$NET"; }
subnet() { docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}' "$NET"; }

print_env() {
    local first ip gw
    first=$(running_nodes | head -n1)
    [[ -n $first ]] || die "no node is running (scripts/swarm-nodes.sh up)"
    ip=$(node_ip "$first")
    gw=$(gateway)
    printf 'export DOCKER_HOST=tcp://%s:2375\n' "$ip"
    printf 'export DROVER_NODES_HOST=%s\n' "$gw"
}

cmd_up() {
    local n=${1:-3}
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "up: N must be a positive number, not '$n'"
    [[ -z $(nodes) ]] || die "nodes exist already ($(nodes | tr '\n' ' ')): scripts/swarm-nodes.sh down first"
    local t0=$SECONDS image
    image=$(build_image "" "$NODE_PACKAGES")
    local t1=$SECONDS
    if ! docker network inspect "$NET" >/dev/null 2>&1; then
        docker network create --driver bridge --label "$LABEL" "$NET" >/dev/null
    fi
    local i name
    for ((i = 1; i <= n; i++)); do
        name="$PREFIX-$i"
        # node 1 also listens on tcp on its bridge address, for the host
        local listen='-H unix:///var/run/docker.sock'
        ((i == 1)) && listen="$listen -H tcp://\$(hostname -i | cut -d' ' -f1):2375"
        docker run -d --init --name "$name" --hostname "$name" --label "$LABEL" \
            --network "$NET" \
            --cap-add SYS_ADMIN --cap-add NET_ADMIN \
            --security-opt seccomp=unconfined --security-opt systempaths=unconfined \
            --sysctl net.ipv4.conf.all.route_localnet=1 \
            -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /tmp -v /var/lib/docker \
            "$image" sh -c "exec dockerd --storage-driver=vfs --cgroup-parent=/$name $listen \
                >/var/log/dockerd.log 2>&1" >/dev/null
    done
    for ((i = 1; i <= n; i++)); do
        wait_for "$ENGINE_TIMEOUT" "the engine in $PREFIX-$i (docker exec $PREFIX-$i cat /var/log/dockerd.log)" \
            docker exec "$PREFIX-$i" docker version
    done
    local ip1 token
    ip1=$(node_ip "$PREFIX-1")
    wait_for "$ENGINE_TIMEOUT" "tcp://$ip1:2375 from this host" \
        env DOCKER_HOST="tcp://$ip1:2375" docker version
    timeout "$SWARM_TIMEOUT" docker exec "$PREFIX-1" \
        docker swarm init --advertise-addr "$ip1" --listen-addr "$ip1:2377" >/dev/null ||
        die "docker swarm init in $PREFIX-1 failed"
    token=$(timeout "$SWARM_TIMEOUT" docker exec "$PREFIX-1" docker swarm join-token -q worker)
    for ((i = 2; i <= n; i++)); do
        timeout "$SWARM_TIMEOUT" docker exec "$PREFIX-$i" \
            docker swarm join --token "$token" --advertise-addr "$(node_ip "$PREFIX-$i")" "$ip1:2377" >/dev/null ||
            die "$PREFIX-$i could not join the swarm at $ip1:2377"
    done
    wait_for "$SWARM_TIMEOUT" "$n Ready nodes in the swarm" \
        sh -c "[ \"\$(docker exec $PREFIX-1 docker node ls --format '{{.Status}}' | grep -c '^Ready$')\" = $n ]"
    say "$n nodes up in $((SECONDS - t1))s (image: $((t1 - t0))s); manager: $PREFIX-1 at $ip1"
    print_env
}

cmd_load() {
    (($# > 0)) || die "load: which images? scripts/swarm-nodes.sh load IMAGE..."
    local list node tar
    list=$(running_nodes)
    [[ -n $list ]] || die "no node is running (scripts/swarm-nodes.sh up)"
    mkdir -p "$WORK"
    tar=$(mktemp "$WORK/load-XXXXXX.tar")
    # shellcheck disable=SC2064
    trap "rm -f '$tar'" EXIT
    timeout "$LOAD_TIMEOUT" docker save -o "$tar" "$@" || die "docker save $* failed"
    for node in $list; do
        say "loading $* into $node"
        timeout "$LOAD_TIMEOUT" docker exec -i "$node" docker load -q <"$tar" >&2 ||
            die "loading into $node failed or took over ${LOAD_TIMEOUT}s"
    done
    rm -f "$tar"
    trap - EXIT
}

# Debian's /etc/docker/registry/config.yml turns on htpasswd auth (with a folder as its file):
# the service writes and serves this one instead.
REGISTRY_CONFIG='version: 0.1
storage:
  filesystem: {rootdirectory: /var/lib/docker-registry}
  delete: {enabled: true}
http:
  addr: ":5000"'

# cmd_nat [PORT]: 127.0.0.1:PORT (default 5000) on nodes 2..N reaches node 1:PORT: a DNAT in
# each node's nat OUTPUT chain (route_localnet is set on every node) and a MASQUERADE of the
# 127.0.0.1 source. For a registry published on node 1 only (host mode: no routing mesh here)
# that every node's engine must reach at the address 127.0.0.1:PORT, which it trusts without TLS.
cmd_nat() {
    local port=${1:-5000} first ip1 node
    [[ $port =~ ^[1-9][0-9]*$ ]] || die "nat: PORT must be a number, not '$port'"
    first=$(running_nodes | head -n1)
    [[ -n $first ]] || die "no node is running (scripts/swarm-nodes.sh up)"
    ip1=$(node_ip "$first")
    for node in $(running_nodes | tail -n +2); do
        docker exec "$node" sh -c "
            iptables -t nat -C OUTPUT -d 127.0.0.1/32 -p tcp --dport $port -j DNAT --to-destination $ip1:$port 2>/dev/null ||
            iptables -t nat -I OUTPUT -d 127.0.0.1/32 -p tcp --dport $port -j DNAT --to-destination $ip1:$port
            iptables -t nat -C POSTROUTING -s 127.0.0.1/32 -d $ip1/32 -p tcp --dport $port -j MASQUERADE 2>/dev/null ||
            iptables -t nat -I POSTROUTING -s 127.0.0.1/32 -d $ip1/32 -p tcp --dport $port -j MASQUERADE" ||
            die "NAT of 127.0.0.1:$port in $node failed"
    done
    say "127.0.0.1:$port on every node reaches $first ($ip1:$port)"
}

cmd_registry() {
    local first ip1 image node service=$PREFIX-registry
    first=$(running_nodes | head -n1)
    [[ -n $first ]] || die "no node is running (scripts/swarm-nodes.sh up)"
    ip1=$(node_ip "$first")
    image=$(build_image registry "$REGISTRY_PACKAGES")
    if ! docker exec "$first" docker image inspect "$image" >/dev/null 2>&1; then
        timeout "$LOAD_TIMEOUT" sh -c "docker save '$image' | docker exec -i '$first' docker load -q" >&2 ||
            die "loading $image into $first failed"
    fi
    if ! docker exec "$first" docker service inspect "$service" >/dev/null 2>&1; then
        # mode=host: the routing mesh needs IPVS, which this kernel lacks
        local out
        out=$(docker exec "$first" docker service create -q --name "$service" --label "$LABEL" \
            --constraint node.role==manager --publish mode=host,published=5000,target=5000 \
            --mount type=volume,source="$service",target=/var/lib/docker-registry \
            "$image" sh -c "printf '%s\n' \"\$0\" >/etc/docker/registry/drover.yml &&
                exec /usr/bin/docker-registry serve /etc/docker/registry/drover.yml" "$REGISTRY_CONFIG" 2>&1) ||
            die "docker service create $service failed: $out"
    fi
    cmd_nat 5000
    for node in $(running_nodes); do
        wait_for "$SWARM_TIMEOUT" "the registry at 127.0.0.1:5000 in $node" \
            docker exec "$node" bash -c 'exec 3<>/dev/tcp/127.0.0.1/5000 && printf "GET /v2/ HTTP/1.0\r\n\r\n" >&3 && grep -q "200 OK" <&3'
    done
    say "registry $service up on $first; 127.0.0.1:5000 on every node"
}

cmd_down() {
    local list node c
    list=$(nodes)
    if [[ -n $list ]]; then
        # shellcheck disable=SC2086
        timeout 120 docker rm -f -v $list >/dev/null || die "docker rm -f -v $list failed"
        say "removed $(tr '\n' ' ' <<<"$list")"
    fi
    if docker network inspect "$NET" >/dev/null 2>&1; then
        timeout 60 docker network rm "$NET" >/dev/null || die "docker network rm $NET failed"
        say "removed network $NET"
    fi
    # the cgroups the inner engines made (--cgroup-parent=/<node>), empty once the nodes are gone
    for c in /sys/fs/cgroup/*/"$PREFIX"-[0-9]*; do
        [[ -d $c ]] || continue
        find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    return 0
}

case ${1:-} in
up) shift; cmd_up "$@" ;;
load) shift; cmd_load "$@" ;;
registry) shift; cmd_registry "$@" ;;
nat) shift; cmd_nat "$@" ;;
env) print_env ;;
down) cmd_down ;;
build) if [[ ${2:-} == registry ]]; then build_image registry "$REGISTRY_PACKAGES"; else build_image "" "$NODE_PACKAGES"; fi ;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2 ;;
esac
