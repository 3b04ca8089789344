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
made_user= # a Unix account samba_setup made, removed by cleanup

cleanup() {
  [ -n "$made_user" ] && userdel "$made_user" 2>/dev/null || true
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

# More hosts on the bridge of make_lan, for benchmarks with several
# clients: add_host N ADDR [PREFIXLEN] makes namespace $pfx-hN (eth0 with
# ADDR), in_host N CMD... runs a command in it, del_hosts kills what runs
# in them and removes them (call it from the script's EXIT trap, before
# cleanup).
add_host() {
  local ns=$pfx-h$1 plen=${3:-24}
  ip netns add "$ns"
  bench_hosts+=("$ns")
  ip -n "$LAN" link add "vh$1" type veth peer name eth0 netns "$ns"
  ip -n "$LAN" link set "vh$1" master br0
  ip -n "$LAN" link set "vh$1" up
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up
  ip -n "$ns" addr add "$2/$plen" dev eth0
}
in_host() { local n=$1; shift; ip netns exec "$pfx-h$n" "$@"; }
del_hosts() {
  local ns p
  for ns in "${bench_hosts[@]:-}"; do
    [ -n "$ns" ] || continue
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  bench_hosts=()
}

# bench_clock: wall-clock seconds (for elapsed).
bench_clock() { date +%s.%N; }
# elapsed A B: B - A, three decimals.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", b - a }'; }
# median_of X...: the median (the lower middle one of an even count).
median_of() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# pid_cpu PID: CPU seconds (user + system, its threads and reaped
# children included) a running process used so far; 0 once it is gone.
pid_cpu() {
  local f
  f=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || f=
  awk -v f="$f" -v hz="$(getconf CLK_TCK)" 'BEGIN {
    n = split(f, a, " "); t = n >= 15 ? a[12] + a[13] + a[14] + a[15] : 0; printf "%.3f\n", t / hz }'
}
# timed_cpu FILE CMD...: runs CMD (its output goes where the caller's
# goes) and writes the CPU seconds it and its children used, user +
# system, to FILE; returns CMD's exit status.
timed_cpu() {
  local out=$1 TIMEFORMAT='%3U %3S' rc=0
  shift
  { time "$@" 2>&3 3>&-; } 3>&2 2>"$out.t" || rc=$?
  awk '{ printf "%.3f\n", $1 + $2 }' "$out.t" >"$out"
  rm -f "$out.t"
  return "$rc"
}
# machine_cpu: CPU seconds the whole machine spent busy so far, every CPU:
# user, system, hard and soft interrupts (time in softirq, where the
# kernel delivers packets, is charged to no process).
machine_cpu() {
  awk -v hz="$(getconf CLK_TCK)" '$1 == "cpu" { printf "%.3f\n", ($2 + $3 + $4 + $7 + $8) / hz; exit }' /proc/stat
}

# samba_setup PORT SHARE: the peer for the SMB benchmarks. Samba maps its
# users to Unix accounts, so $user gets a throw-away one (removed by
# cleanup when made here). Writes $work/smb.conf for smbd on
# 198.18.0.1:PORT sharing SHARE read-only as [images], gives $user the
# Samba password $pass, and writes $work/netdeploy.yaml with the same
# account for netdeploy.
samba_setup() {
  local port=$1 share=$2
  if ! id "$user" >/dev/null 2>&1; then
    useradd -M -s /usr/sbin/nologin "$user"
    made_user=$user
  fi
  cat > "$work/smb.conf" <<CONF
[global]
  workgroup = WORKGROUP
  netbios name = SAMBABENCH
  interfaces = 198.18.0.1/24
  bind interfaces only = yes
  smb ports = $port
  disable netbios = yes
  server min protocol = SMB2_02
  server signing = auto
  private dir = $work/samba/private
  lock directory = $work/samba/lock
  state directory = $work/samba/state
  cache directory = $work/samba/cache
  pid directory = $work/samba/pid
  log file = $work/samba/log.%m
  passdb backend = tdbsam:$work/samba/private/passdb.tdb
  load printers = no
  printing = bsd
  printcap name = /dev/null
[images]
  path = $share
  read only = yes
CONF
  printf '%s\n%s\n' "$pass" "$pass" | smbpasswd -c "$work/smb.conf" -a -s "$user" >/dev/null
  cat > "$work/netdeploy.yaml" <<CONF
accounts:
  - name: $user
    password: $pass
CONF
}
