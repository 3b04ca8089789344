#!/usr/bin/env bash
# Deployment benchmark: a 512 MiB raw image (incompressible), registered
# with "netdeploy image add", deployed by "netdeploy agent" (RPC logon,
# SMB read, write, SHA-256 read-back) from "netdeploy serve", against the
# floor a user could script by hand: smbclient getting the same file from
# Samba's smbd (a private configuration), with and without a sha256sum of
# the copy. Then four agents at once, one per client namespace, and for
# reference four smbclients from smbd at once. All in one run on a
# namespaced LAN (198.18.0.0/24).
#
# Fairness: both servers run side by side (smbd on port 4445) and the
# measurements interleave, so machine noise hits both alike; each kind of
# transfer runs once untimed first. Caches are not dropped: the image is
# read from the page cache by both servers (warm), and every copy is
# written to a private tmpfs (RAM; the agent's fsync is a no-op there),
# removed before each run, so neither side waits for a disk. RAM: the
# image in the page cache and at most 4 copies on the tmpfs, about 3 GiB.
# Both speak SMB 3.1.1; smbclient does not sign, nor does the agent sign
# its READs unless the server requires it (imaging/agent/unsigned.go).
#
# Prints every run, then the medians of RUNS (seconds) and ratios:
# smbd time / netdeploy time (> 1: netdeploy faster), and the four agents'
# aggregate throughput (4 x 512 MiB / wall time) over one agent's; then
# the CPU seconds of one transfer, client and server, steadier than wall
# time when other work shares the machine.
# Usage: sudo bench/deploy.sh [RUNS]    (RUNS defaults to 3)
#   NETDEPLOY=/path/to/netdeploy: that binary instead of one built from
#   this tree (to compare builds, e.g. before and after a change).
source "$(dirname "$0")/lib.sh"
runs=${1:-3}
command -v smbd >/dev/null || { echo "needs Samba's smbd (apt-get install samba)"; exit 2; }
command -v smbclient >/dev/null || { echo "needs smbclient (apt-get install smbclient)"; exit 2; }
size_mib=512
nagents=4
user=nddeploy pass=Bench-$$-pw
extra_ns=()

deploy_cleanup() {
  for ns in "${extra_ns[@]:-}"; do
    [ -n "$ns" ] || continue
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  for ns in $CLI $SRV; do # before the tmpfs goes: nothing may hold it
    for p in $(ip netns pids $ns 2>/dev/null); do kill -9 $p 2>/dev/null || true; done
  done
  mountpoint -q "$work/tgt" 2>/dev/null && { umount "$work/tgt" || umount -l "$work/tgt"; }
  cleanup
}
trap deploy_cleanup EXIT

# add_client N ADDR: one more client namespace on the bridge.
add_client() {
  local ns=$pfx-a$1
  ip netns add "$ns"
  extra_ns+=("$ns")
  ip -n $LAN link add va$1 type veth peer name eth0 netns "$ns"
  ip -n $LAN link set va$1 master br0
  ip -n $LAN link set va$1 up
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up
  ip -n "$ns" addr add "$2/24" dev eth0
}
in_client() { local n=$1; shift; ip netns exec $pfx-a$n "$@"; }

make_lan 24
for i in $(seq $nagents); do add_client $i 198.18.0.$((10 + i)); done
if [ -n "${NETDEPLOY:-}" ]; then
  cp "$NETDEPLOY" "$work/netdeploy"
else
  (cd "$top" && CGO_ENABLED=0 go build -o "$work/netdeploy" ./cmd/netdeploy)
fi
nd=$work/netdeploy
images=$work/data/images
mkdir -p "$images" "$work/tgt" "$work/samba"/{private,lock,state,cache,pid}
# The copies live in RAM: one agent + one smbclient copy, or four at once.
mount -t tmpfs -o size=$(((nagents + 2) * size_mib + 64))m,mode=755 ndbench "$work/tgt"
chmod 755 "$work" "$work/data" "$images" # smbd reads as the benchmark user

head -c $((size_mib << 20)) /dev/urandom > "$images/bench.img"
chmod 644 "$images/bench.img"
want=$(sha256sum < "$images/bench.img" | cut -d' ' -f1)
"$nd" image add "$images/bench.img" --name bench --data-dir "$work/data" >"$work/add.out" 2>&1 \
  || { cat "$work/add.out" >&2; exit 1; }
grep -qi "$want" "$work/add.out" || { echo "image add: unexpected sha256" >&2; cat "$work/add.out" >&2; exit 1; }

samba_setup 4445 "$images"

in_srv "$nd" serve --config "$work/netdeploy.yaml" --interface eth0 --dhcp-mode off \
  --data-dir "$work/data" --log-level warn >/dev/null 2>"$work/nd.log" &
pids+=($!)
wait_port t 445
wait_port t 135
in_srv setsid smbd --foreground --no-process-group --configfile="$work/smb.conf" >"$work/smbd.out" 2>&1 &
pids+=($!)
wait_port t 4445

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", b - a }'; }
fail() { echo "$1" >&2; shift; for f; do echo "--- $f" >&2; tail -n 20 "$f" >&2; done; exit 1; }

# agent_cmd N TARGET LOG: one agent in client namespace N (0: the main
# client namespace).
agent_cmd() {
  local run=(in_cli)
  [ "$1" = 0 ] || run=(in_client "$1")
  "${run[@]}" "$nd" agent --unicast --server 198.18.0.1 --account $user --password "$pass" \
    --image bench --target-file "$2" >"$3" 2>&1
}
smbclient_cmd() { # smbclient_cmd N TARGET LOG
  local run=(in_cli)
  [ "$1" = 0 ] || run=(in_client "$1")
  "${run[@]}" smbclient //198.18.0.1/images -p 4445 -U "$user%$pass" -m SMB3_11 \
    -c "get bench.img $2" >"$3" 2>&1
}
check_copy() { # check_copy FILE WHAT (untimed)
  [ "$(sha256sum < "$1" | cut -d' ' -f1)" = "$want" ] || fail "corrupt copy ($2)" "$work/nd.log"
}

# CPU time, a steadier measure than wall time on a busy machine.
hz=$(getconf CLK_TCK)
# srv_cpu: CPU seconds of the processes in the server namespace so far,
# their reaped children (smbd's per-connection processes) included.
srv_cpu() {
  local p t=0
  for p in $(ip netns pids $SRV 2>/dev/null); do
    t=$((t + $(sed 's/.*) //' /proc/$p/stat 2>/dev/null | awk '{print $12 + $13 + $14 + $15}' || echo 0)))
  done
  awk -v t=$t -v hz=$hz 'BEGIN { printf "%.3f\n", t / hz }'
}
# kids_cpu VAR: sets VAR to the CPU seconds of this shell's finished
# children so far (the builtin times must run in this shell, not in a
# subshell or pipeline).
kids_cpu() {
  local f=$work/times.$BASHPID
  times >"$f"
  printf -v "$1" %s "$(awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }; printf "%.3f\n", t }' "$f")"
}
delta() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", b - a }'; }

# one_agent -> "seconds client-cpu server-cpu"
one_agent() {
  local out=$work/tgt/agent.img t0 t1 k0 k1 s0 s1
  rm -f "$out"
  s0=$(srv_cpu)
  kids_cpu k0
  t0=$(now)
  agent_cmd 0 "$out" "$work/agent.log" || fail "agent failed" "$work/agent.log" "$work/nd.log"
  t1=$(now)
  kids_cpu k1
  sleep 0.2
  s1=$(srv_cpu)
  grep -q "sha256 $want" "$work/agent.log" || fail "agent: unexpected output" "$work/agent.log"
  check_copy "$out" agent
  rm -f "$out"
  echo "$(secs "$t0" "$t1") $(delta "$k0" "$k1") $(delta "$s0" "$s1")"
}

# one_smbclient -> "copy-seconds copy+sha256sum-seconds copy-client-cpu
# copy+sha256sum-client-cpu server-cpu"
one_smbclient() {
  local out=$work/tgt/smbclient.img t0 t1 t2 k0 k1 k2 s0 s1 sum
  rm -f "$out"
  s0=$(srv_cpu)
  kids_cpu k0
  t0=$(now)
  smbclient_cmd 0 "$out" "$work/smbclient.log" || fail "smbclient failed" "$work/smbclient.log"
  t1=$(now)
  kids_cpu k1
  in_cli sha256sum "$out" >"$work/sum"
  t2=$(now)
  kids_cpu k2
  sleep 0.2 # smbd reaps its connection's process
  s1=$(srv_cpu)
  sum=$(cut -d' ' -f1 "$work/sum")
  [ "$sum" = "$want" ] || fail "corrupt copy (smbclient)"
  rm -f "$out"
  echo "$(secs "$t0" "$t1") $(secs "$t0" "$t2") $(delta "$k0" "$k1") $(delta "$k0" "$k2") $(delta "$s0" "$s1")"
}

# many KIND -> wall seconds of $nagents transfers at once, one per client
# namespace (KIND agent or smbclient).
many() {
  local t0 t1 i ps=() bad=
  rm -f "$work"/tgt/many*.img
  t0=$(now)
  for i in $(seq $nagents); do
    ${1}_cmd $i "$work/tgt/many$i.img" "$work/many$i.log" &
    ps+=($!)
  done
  for i in "${!ps[@]}"; do wait "${ps[$i]}" || bad+=" $((i + 1))"; done
  t1=$(now)
  [ -z "$bad" ] || fail "$1 failed in client(s)$bad" "$work/many${bad##* }.log" "$work/nd.log"
  for i in $(seq $nagents); do check_copy "$work/tgt/many$i.img" "$1 $i"; done
  rm -f "$work"/tgt/many*.img
  secs "$t0" "$t1"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# One untimed transfer of each kind, so nothing is timed while it warms up.
one_agent >/dev/null; one_smbclient >/dev/null; many agent >/dev/null; many smbclient >/dev/null

declare -a t_agent t_copy t_copysum t_many t_manysmb u_agent u_agentsrv u_copy u_copysum u_smbd
for r in $(seq $runs); do
  res=$(one_agent)
  read -r x y z <<<"$res"
  t_agent+=("$x") u_agent+=("$y") u_agentsrv+=("$z")
  res=$(one_smbclient)
  read -r c cs x y z <<<"$res"
  t_copy+=("$c") t_copysum+=("$cs") u_copy+=("$x") u_copysum+=("$y") u_smbd+=("$z")
  t_many+=("$(many agent)")
  t_manysmb+=("$(many smbclient)")
  echo "run $r: agent ${t_agent[-1]}  smbclient copy $c  copy+sha256sum $cs  $nagents agents ${t_many[-1]}  $nagents smbclients ${t_manysmb[-1]}" >&2
done
med() { printf '%s\n' "$@" | median; }
a=$(med "${t_agent[@]}") c=$(med "${t_copy[@]}") cs=$(med "${t_copysum[@]}")
m=$(med "${t_many[@]}") ms=$(med "${t_manysmb[@]}")
ua=$(med "${u_agent[@]}") uas=$(med "${u_agentsrv[@]}")
uc=$(med "${u_copy[@]}") ucs=$(med "${u_copysum[@]}") us=$(med "${u_smbd[@]}")

awk -v a="$a" -v c="$c" -v cs="$cs" -v m="$m" -v ms="$ms" -v n=$nagents -v mib=$size_mib -v runs=$runs \
  -v ua="$ua" -v uas="$uas" -v uc="$uc" -v ucs="$ucs" -v us="$us" '
function row(what, t, k) { printf "%-44s %8.3f s %9.0f MiB/s\n", what, t, k * mib / t }
BEGIN {
  printf "\n%d MiB raw image over SMB 3.1.1, median of %d runs\n", mib, runs
  row("netdeploy agent (logon, read, write, verify)", a, 1)
  row("smbclient get from smbd", c, 1)
  row("smbclient get from smbd + sha256sum", cs, 1)
  row(n " netdeploy agents at once (wall)", m, n)
  row(n " smbclients from smbd at once (wall)", ms, n)
  printf "\nratios (> 1: netdeploy faster)\n"
  printf "%-44s %8.2fx  (target >= 0.90x)\n", "smbclient copy / agent", c / a
  printf "%-44s %8.2fx\n", "smbclient copy+sha256sum / agent", cs / a
  printf "%-44s %8.2fx  (target >= 2x)\n", n " agents aggregate / one agent throughput", n * a / m
  printf "%-44s %8.2fx  (reference)\n", n " smbclients aggregate / one smbclient", n * c / ms
  printf "%-44s %8.2fx  (reference)\n", n " smbclients wall / " n " agents wall", ms / m
  printf "\nCPU seconds of one transfer, median (client and server share this machine)\n"
  printf "%-44s %8s %8s %8s\n", "", "client", "server", "total"
  printf "%-44s %8.2f %8.2f %8.2f\n", "netdeploy agent + netdeploy serve", ua, uas, ua + uas
  printf "%-44s %8.2f %8.2f %8.2f\n", "smbclient get + smbd", uc, us, uc + us
  printf "%-44s %8.2f %8.2f %8.2f\n", "smbclient get + sha256sum + smbd", ucs, us, ucs + us
  printf "%-44s %8.2fx\n", "CPU ratio (smbclient get + smbd) / agent", (uc + us) / (ua + uas)
}'
