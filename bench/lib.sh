# Shared helpers for the benchmarks: a throw-away LAN of network
# namespaces (bridge in its own namespace, server 198.18.0.1, client
# 198.18.0.2), removed on exit. Traffic never leaves these namespaces.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "benchmarks need root (network namespaces)"; exit 2; }
export PATH=/usr/local/go/bin:/usr/sbin:/sbin:$PATH
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pfx="ndb$$"
LAN=$pfx-lan SRV=$pfx-srv CLI=$pfx-cli
work=$(mktemp -d /tmp/netdeploy-bench.XXXXXX)
pids=()

cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for ns in $CLI $SRV $LAN; do
    for p in $(ip netns pids $ns 2>/dev/null); do kill -9 $p 2>/dev/null || true; done
    ip netns del $ns 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

make_lan() { # make_lan PREFIXLEN
  local plen=${1:-24}
  ip netns add $LAN; ip netns add $SRV; ip netns add $CLI
  ip -n $LAN link add br0 type bridge stp_state 0 forward_delay 0
  ip -n $LAN link set br0 up
  for h in srv cli; do
    local ns=$pfx-$h
    ip -n $LAN link add v$h type veth peer name eth0 netns $ns
    ip -n $LAN link set v$h master br0
    ip -n $LAN link set v$h up
    ip -n $ns link set lo up
    ip -n $ns link set eth0 up
  done
  ip -n $SRV addr add 198.18.0.1/$plen dev eth0
  ip -n $CLI addr add 198.18.0.2/$plen dev eth0
}

in_srv() { ip netns exec $SRV "$@"; }
in_cli() { ip netns exec $CLI "$@"; }

build_netdeploy() {
  (cd "$top" && go build -o "$work/netdeploy" ./cmd/netdeploy)
}

# wait_port PROTO PORT: until something listens on it in the server namespace.
wait_port() {
  for _ in $(seq 100); do
    in_srv ss -ln$1 "sport = :$2" | grep -q ":$2" && return 0
    sleep 0.1
  done
  echo "nothing listens on $1 port $2"; return 1
}

stop_all() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  pids=()
  for p in $(ip netns pids $SRV 2>/dev/null); do kill $p 2>/dev/null || true; done
  sleep 0.3
}
