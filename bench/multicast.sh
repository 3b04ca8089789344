#!/usr/bin/env bash
# Multicast benchmark: one 512 MiB raw image (random bytes, registered
# with "netdeploy image add") to four receivers at once, by netdeploy's
# multicast (netdeploy serve with --multicast-start clients:4, four
# "netdeploy agent"s: RPC logon, join, receive, read-back SHA-256) and by
# udpcast (udp-sender --min-receivers 4, four udp-receivers). udp-receiver
# does not verify what it wrote, the agent does: so udpcast is also timed
# with a sha256sum of each copy right after its receiver exits. All in one
# run on a namespaced LAN: server 198.18.0.1, receivers 198.18.0.11-14 on
# one bridge; groups in 239.255.0.0/16; nothing leaves the namespaces.
#
# Fairness: both run one after the other in every round, so machine noise
# hits both alike, and each runs once untimed first. The image is read
# from the page cache by both senders; every copy goes to a private tmpfs
# (RAM), removed before each run. Both use their default packet size for
# a 1500-byte MTU; udpcast runs without a bit-rate cap and full-duplex
# (a bridge of veths is full duplex), its receivers with an 8 MiB socket
# buffer as the agent asks (the kernel caps udp-receiver's at
# net.core.rmem_max; the agent, as root, may exceed it) and an exit wait
# of 50 ms instead of 500 (the pause after the final acknowledgement,
# against its loss; nothing is lost on this bridge). Wall time runs from
# launching the clients (and udp-sender) to the exit of the last
# receiver; netdeploy serve runs before (its session starts with the first
# join, inside the timing). The copies' SHA-256 are checked untimed.
#
# Prints every run, then medians of RUNS: seconds, MiB/s (image size /
# wall time, per receiver), the ratio netdeploy time / udpcast time (< 1:
# netdeploy faster; target <= 1.1), also as the median of each round's
# ratio (steadier when the machine is shared), the CPU seconds of server
# and clients and of the whole machine (one 2-core machine runs all five
# processes; time in softirq is charged to no process), and
# the bytes netdeploy's session sent (its "multicast session over" line,
# UDP payload) per image byte.
# Usage: sudo bench/multicast.sh [RUNS]    (RUNS defaults to 3)
#   NETDEPLOY=/path/to/netdeploy: that binary instead of one built here.
#   MAX_RATE=MBITS: multicast.max_rate for netdeploy (default: none).
source "$(dirname "$0")/lib.sh"
runs=${1:-3}
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [RUNS]" >&2; exit 2; }
max_rate=${MAX_RATE:-0}
[[ $max_rate =~ ^[0-9]+$ ]] || { echo "MAX_RATE: Mbit/s, a number" >&2; exit 2; }
if ! command -v udp-sender >/dev/null || ! command -v udp-receiver >/dev/null; then
  echo "installing udpcast" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends udpcast >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends udpcast >/dev/null; }
fi
size_mib=512
size=$((size_mib << 20))
nrecv=4
user=ndbench pass=Bench-$$-pw
# udpcast's ports (the sender's and receivers' portbase and portbase+1)
# and groups: rendez-vous and data.
uc_port=9200 uc_rdv=239.255.200.1 uc_data=239.255.200.2
limit=300 # seconds any one transfer may take before the run fails

mc_cleanup() {
  del_hosts
  if [ -n "${serve:-}" ]; then # reaped here: no "Killed" from the shell
    kill -9 "$serve" 2>/dev/null || true
    wait "$serve" 2>/dev/null || true
  fi
  for p in $(ip netns pids "$SRV" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  mountpoint -q "$work/tgt" 2>/dev/null && { umount "$work/tgt" || umount -l "$work/tgt"; }
  cleanup
}
trap mc_cleanup EXIT
trap 'exit 130' INT TERM

make_lan 24
for i in $(seq $nrecv); do add_host "$i" "198.18.0.$((10 + i))"; done
if [ -n "${NETDEPLOY:-}" ]; then
  cp "$NETDEPLOY" "$work/netdeploy"
else
  (cd "$top" && CGO_ENABLED=0 go build -o "$work/netdeploy" ./cmd/netdeploy)
fi
nd=$work/netdeploy
images=$work/data/images
tgt=$work/tgt
mkdir -p "$images" "$tgt"
mount -t tmpfs -o size=$((nrecv * size_mib + 64))m,mode=755 ndmcbench "$tgt"

head -c "$size" /dev/urandom >"$images/bench.img"
want=$(sha256sum <"$images/bench.img" | cut -d' ' -f1)
"$nd" image add "$images/bench.img" --name bench --data-dir "$work/data" >"$work/add.out" 2>&1 \
  || { cat "$work/add.out" >&2; exit 1; }
grep -qi "$want" "$work/add.out" || { echo "image add: unexpected sha256" >&2; cat "$work/add.out" >&2; exit 1; }
cat >"$work/netdeploy.yaml" <<CONF
accounts:
  - name: $user
    password: $pass
multicast:
  max_rate: $max_rate
CONF

# Started without a function in between: $! is netdeploy itself (ip
# netns exec execs it), whose CPU time pid_cpu reads.
ip netns exec "$SRV" "$nd" serve --config "$work/netdeploy.yaml" --interface eth0 --dhcp-mode off \
  --multicast-start clients:$nrecv --data-dir "$work/data" --log-level info >/dev/null 2>"$work/nd.log" &
serve=$!
pids+=("$serve")
wait_port t 445
wait_port t 135

fail() { echo "$1" >&2; shift; for f; do echo "--- $f" >&2; tail -n 20 "$f" >&2; done; exit 1; }
check_copy() { # check_copy FILE WHAT (untimed)
  [ "$(sha256sum <"$1" | cut -d' ' -f1)" = "$want" ] || fail "corrupt copy ($2)" "$work/nd.log"
}
sum_files() { awk '{ t += $1 } END { printf "%.3f\n", t }' "$@"; }

# The "multicast session over" lines so far; sessions_over N waits (the
# session lingers 10 s for late joiners) until there are N of them, so
# that the next agents start a new session rather than join the old one.
over_lines() { grep 'msg="multicast session over"' "$work/nd.log" || true; }
sessions_over() {
  for _ in $(seq 300); do
    [ "$(over_lines | wc -l)" -ge "$1" ] && return 0
    kill -0 "$serve" 2>/dev/null || fail "netdeploy serve exited" "$work/nd.log"
    sleep 0.1
  done
  fail "multicast session $1 did not end" "$work/nd.log"
}
sessions=0

# netdeploy_run: sets res to "seconds server-cpu clients-cpu machine-cpu"
netdeploy_run() {
  local i t0 t1 s0 s1 m0 m1 ps=() bad=
  sessions_over $sessions
  rm -f "$tgt"/*
  s0=$(pid_cpu "$serve")
  m0=$(machine_cpu)
  t0=$(bench_clock)
  for i in $(seq $nrecv); do
    timed_cpu "$work/cpu.nd$i" in_host "$i" timeout $limit "$nd" agent --server 198.18.0.1 \
      --account $user --password "$pass" --image bench --target-file "$tgt/nd$i.img" \
      >"$work/nd$i.out" 2>"$work/nd$i.log" &
    ps+=($!)
  done
  for i in "${!ps[@]}"; do wait "${ps[$i]}" || bad+=" $((i + 1))"; done
  t1=$(bench_clock)
  m1=$(machine_cpu)
  s1=$(pid_cpu "$serve")
  sessions=$((sessions + 1))
  [ -z "$bad" ] || fail "agent failed in client(s)$bad" "$work/nd${bad##* }.log" "$work/nd.log"
  for i in $(seq $nrecv); do
    grep -q "joined the multicast session" "$work/nd$i.log" \
      || fail "agent $i did not join the multicast session (SMB fallback): run invalid" "$work/nd$i.log" "$work/nd.log"
    if grep -q "by SMB" "$work/nd$i.log"; then
      fail "agent $i fell back to SMB: run invalid" "$work/nd$i.log" "$work/nd.log"
    fi
    grep -q "sha256 $want" "$work/nd$i.out" || fail "agent $i: unexpected output" "$work/nd$i.out" "$work/nd$i.log"
    check_copy "$tgt/nd$i.img" "agent $i"
  done
  rm -f "$tgt"/*
  res="$(elapsed "$t0" "$t1") $(elapsed "$s0" "$s1") $(sum_files "$work"/cpu.nd[0-9]*) $(elapsed "$m0" "$m1")"
}

uc_recv() { # uc_recv N: one udp-receiver in client namespace N
  in_host "$1" timeout $limit udp-receiver --file "$tgt/uc$1.img" --interface eth0 --portbase $uc_port \
    --mcast-rdv-address $uc_rdv --nokbd --no-progress --rcvbuf $((8 << 20)) --exit-wait 50 --start-timeout 30 \
    >"$work/uc$1.log" 2>&1
}
uc_recv_sum() { # uc_recv_sum N: the same, then sha256sum of the copy
  uc_recv "$1" && in_host "$1" sha256sum "$tgt/uc$1.img" >"$work/uc$1.sum"
}

# udpcast_run SUM: sets res to "seconds server-cpu clients-cpu
# machine-cpu" (SUM 1: each receiver's copy hashed by sha256sum when it
# exits, inside the timing)
udpcast_run() {
  local i t0 t1 m0 m1 sender ps=() bad= kind=uc_recv
  [ "$1" = 1 ] && kind=uc_recv_sum
  rm -f "$tgt"/* "$work"/uc*.sum
  m0=$(machine_cpu)
  t0=$(bench_clock)
  timed_cpu "$work/cpu.ucs" in_srv timeout $limit udp-sender --file "$images/bench.img" --interface eth0 \
    --portbase $uc_port --mcast-rdv-address $uc_rdv --mcast-data-address $uc_data --full-duplex \
    --min-receivers $nrecv --nokbd --no-progress --start-timeout 30 >"$work/ucs.log" 2>&1 &
  sender=$!
  for i in $(seq $nrecv); do
    timed_cpu "$work/cpu.uc$i" $kind "$i" &
    ps+=($!)
  done
  for i in "${!ps[@]}"; do wait "${ps[$i]}" || bad+=" $((i + 1))"; done
  t1=$(bench_clock)
  m1=$(machine_cpu)
  wait $sender || fail "udp-sender failed" "$work/ucs.log"
  [ -z "$bad" ] || fail "udp-receiver failed in client(s)$bad" "$work/uc${bad##* }.log" "$work/ucs.log"
  for i in $(seq $nrecv); do
    if [ "$1" = 1 ]; then
      [ "$(cut -d' ' -f1 "$work/uc$i.sum")" = "$want" ] || fail "corrupt copy (udpcast $i)" "$work/uc$i.log"
    else
      check_copy "$tgt/uc$i.img" "udpcast $i"
    fi
  done
  rm -f "$tgt"/*
  res="$(elapsed "$t0" "$t1") $(cat "$work/cpu.ucs") $(sum_files "$work"/cpu.uc[0-9]*) $(elapsed "$m0" "$m1")"
}

# One untimed run of each, so nothing is timed while it warms up.
res=
netdeploy_run
udpcast_run 0
udpcast_run 1

# Per kind (nd: netdeploy, uc: udpcast, us: udpcast + sha256sum) the
# wall seconds (t_), CPU seconds of the server (s_), of the clients (c_)
# and of the whole machine (m_), and per run the ratios netdeploy/udpcast.
declare -a t_nd s_nd c_nd m_nd t_uc s_uc c_uc m_uc t_us s_us c_us m_us r_uc r_us
for r in $(seq "$runs"); do
  netdeploy_run
  read -r t s c m <<<"$res"
  t_nd+=("$t") s_nd+=("$s") c_nd+=("$c") m_nd+=("$m")
  udpcast_run 0
  read -r t s c m <<<"$res"
  t_uc+=("$t") s_uc+=("$s") c_uc+=("$c") m_uc+=("$m")
  udpcast_run 1
  read -r t s c m <<<"$res"
  t_us+=("$t") s_us+=("$s") c_us+=("$c") m_us+=("$m")
  r_uc+=("$(awk -v a="${t_nd[-1]}" -v b="${t_uc[-1]}" 'BEGIN { printf "%.4f\n", a / b }')")
  r_us+=("$(awk -v a="${t_nd[-1]}" -v b="${t_us[-1]}" 'BEGIN { printf "%.4f\n", a / b }')")
  echo "run $r: netdeploy ${t_nd[-1]} s  udpcast ${t_uc[-1]} s  udpcast+sha256sum ${t_us[-1]} s  ratio ${r_uc[-1]}" \
    "(cpu server/clients/machine: ${s_nd[-1]}/${c_nd[-1]}/${m_nd[-1]}  ${s_uc[-1]}/${c_uc[-1]}/${m_uc[-1]}" \
    " ${s_us[-1]}/${c_us[-1]}/${m_us[-1]})" >&2
done
sessions_over $sessions
# bytes_sent of each timed session (the first was the warm-up).
mapfile -t sent < <(over_lines | sed -n 's/.* bytes_sent=\([0-9]*\).*/\1/p' | tail -n "$runs")
[ ${#sent[@]} = "$runs" ] || fail "no bytes_sent in the session lines" "$work/nd.log"
echo "netdeploy bytes sent per session: ${sent[*]}" >&2

med() { # med KIND: "wall server clients machine" medians of a kind
  local -n t=t_$1 s=s_$1 c=c_$1 m=m_$1
  echo "$(median_of "${t[@]}") $(median_of "${s[@]}") $(median_of "${c[@]}") $(median_of "${m[@]}")"
}
awk -v nd="$(med nd)" -v uc="$(med uc)" -v us="$(med us)" \
  -v ruc="$(median_of "${r_uc[@]}")" -v rus="$(median_of "${r_us[@]}")" \
  -v sent="$(median_of "${sent[@]}")" -v size=$size -v mib=$size_mib -v n=$nrecv -v runs="$runs" \
  -v cap="$max_rate" '
function row(what, v,  a) { split(v, a, " "); printf "%-52s %8.3f s %7.0f MiB/s\n", what, a[1], mib / a[1] }
function cpu(what, v,  a) {
  split(v, a, " "); printf "%-52s %8.2f %8.2f %8.2f %8.2f\n", what, a[2], a[3], a[2] + a[3], a[4]
}
function wall(v,  a) { split(v, a, " "); return a[1] }
BEGIN {
  printf "\n%d MiB raw image to %d receivers by multicast, median of %d runs%s\n", mib, n, runs,
    (cap > 0 ? sprintf(" (netdeploy multicast.max_rate %d Mbit/s)", cap) : "")
  row("netdeploy serve + " n " agents (join, receive, verify)", nd)
  row("udp-sender + " n " udp-receivers", uc)
  row("udp-sender + " n " udp-receivers, then sha256sum", us)
  printf "\nratios of the medians (< 1: netdeploy faster); in brackets the median of the runs'"'"' ratios\n"
  printf "%-52s %8.2fx  [%.2fx]  (target <= 1.10x)\n", "netdeploy / udpcast", wall(nd) / wall(uc), ruc
  printf "%-52s %8.2fx  [%.2fx]\n", "netdeploy / udpcast+sha256sum", wall(nd) / wall(us), rus
  printf "\nCPU seconds of one transfer, median: processes (server, clients) and the\n"
  printf "whole machine (every core; includes softirq)\n"
  printf "%-52s %8s %8s %8s %8s\n", "", "server", "clients", "total", "machine"
  cpu("netdeploy serve + " n " agents", nd)
  cpu("udp-sender + " n " udp-receivers", uc)
  cpu("udp-sender + " n " udp-receivers + sha256sum", us)
  printf "\n%-52s %8.0f bytes %6.3fx the image\n", "netdeploy session sent (UDP payload, median)", sent, sent / size
}'
