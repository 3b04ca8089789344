#!/usr/bin/env bash
# DHCP benchmark: 4-way exchanges (DISCOVER-OFFER-REQUEST-ACK) per second
# with perfdhcp against netdeploy, Kea (memfile, persist) and dnsmasq in one
# run on a namespaced LAN. For each server the rate steps up; the figure is
# the highest rate at which every exchange completed (no drops), and the
# ratio is netdeploy's figure over each peer's (higher = netdeploy faster).
# Usage: sudo bench/dhcp.sh [SECONDS_PER_STEP]
source "$(dirname "$0")/lib.sh"
period=${1:-5}
# perfdhcp simulates thousands of clients on one socket; with the default
# socket buffer its own receive queue overflows at a few thousand replies
# per second and those count as the server's drops. Give every socket a
# larger default buffer for the run (the same for every server measured);
# cleanup restores the machine's values.
saved_rmem=$(sysctl -n net.core.rmem_default)
saved_rmem_max=$(sysctl -n net.core.rmem_max)
restore_rmem() { sysctl -qw net.core.rmem_default="$saved_rmem" net.core.rmem_max="$saved_rmem_max"; cleanup; }
trap restore_rmem EXIT
sysctl -qw net.core.rmem_max=16777216 net.core.rmem_default=8388608
rates=(250 500 1000 2000 4000 6000 8000 10000 12000 14000 16000 17000 18000 19000 20000 22000 24000 28000 32000)
make_lan 16
build_netdeploy
mkdir -p "$work/data"
cat > "$work/kea.json" <<JSON
{"Dhcp4": {
  "interfaces-config": {"interfaces": ["eth0"], "dhcp-socket-type": "udp"},
  "lease-database": {"type": "memfile", "persist": true, "name": "$work/kea-leases.csv", "lfc-interval": 0},
  "valid-lifetime": 3600,
  "subnet4": [{"id": 1, "subnet": "198.18.0.0/16", "pools": [{"pool": "198.18.1.0 - 198.18.255.254"}]}],
  "loggers": [{"name": "kea-dhcp4", "severity": "ERROR", "output_options": [{"output": "stderr"}]}]
}}
JSON

start_server() {
  case $1 in
    netdeploy) in_srv "$work/netdeploy" serve --interface eth0 --dhcp-pool 198.18.1.0-198.18.255.254 \
                 --data-dir "$work/data-$RANDOM" --http-port 8080 --log-level error >/dev/null 2>"$work/nd.log" & ;;
    kea)       rm -f "$work"/kea-leases.csv*
               KEA_PIDFILE_DIR=$work KEA_LOCKFILE_DIR=$work in_srv kea-dhcp4 -c "$work/kea.json" 2>"$work/kea.log" & ;;
    dnsmasq)   rm -f "$work/dnsmasq.leases"
               in_srv dnsmasq --no-daemon --port=0 --dhcp-range=198.18.1.0,198.18.255.254,255.255.0.0,1h \
                 --dhcp-lease-max=70000 --dhcp-leasefile="$work/dnsmasq.leases" --interface=eth0 --bind-interfaces --no-ping \
                 --pid-file= --conf-file=/dev/null 2>"$work/dnsmasq.log" & ;;
  esac
  pids+=($!)
  wait_port u 67
}

# step RATE -> "completed drops" for one perfdhcp run
step() {
  local out
  out=$(in_cli perfdhcp -4 -l eth0 -r "$1" -R 60000 -p "$period" -W 1000000 198.18.0.1 2>&1) || true
  echo "$out" > "$work/perfdhcp-last.txt"
  # perfdhcp prints, per exchange (DO then RA): sent, received, drops.
  local acks drops
  acks=$(echo "$out" | awk '/^\*\*\*Statistics for: REQUEST-ACK/ {f=1} f && /received packets:/ {print $3; exit}')
  drops=$(echo "$out" | awk '/drops:/ {s += $2} END {print s + 0}')
  echo "${acks:-0} ${drops:-0}"
}

declare -A best
for server in netdeploy kea dnsmasq; do
  start_server $server
  best[$server]=0
  for r in "${rates[@]}"; do
    read -r acks drops < <(step "$r")
    printf '%-10s rate %6d/s: %7d ACKs, %6d drops\n' "$server" "$r" "$acks" "$drops"
    if [ "$drops" = 0 ] && [ "$acks" -gt 0 ]; then
      best[$server]=$(awk -v a="$acks" -v p="$period" 'BEGIN { printf "%d", a / p }')
    else
      break
    fi
  done
  stop_all
done

printf '\nDHCP 4-way exchanges per second with no drops (steps of %ss; ratio = netdeploy / peer)\n' "$period"
printf '%12s %12s %12s %12s %12s\n' netdeploy kea dnsmasq "vs kea" "vs dnsmasq"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }
printf '%12s %12s %12s %12s %12s\n' "${best[netdeploy]}" "${best[kea]}" "${best[dnsmasq]}" \
  "$(ratio "${best[netdeploy]}" "${best[kea]}")" "$(ratio "${best[netdeploy]}" "${best[dnsmasq]}")"
