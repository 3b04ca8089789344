#!/usr/bin/env bash
# TFTP benchmark: a 64 MiB file from netdeploy, tftpd-hpa and dnsmasq in one
# run on a namespaced LAN, lock-step with blksize 1468 (curl) and windowed
# with windowsize 16 (atftp). Prints seconds (median of RUNS) and the
# ratio of each peer's time to netdeploy's (higher = netdeploy faster).
# Usage: sudo bench/tftp.sh [RUNS]
source "$(dirname "$0")/lib.sh"
runs=${1:-3}
make_lan 24
build_netdeploy
mkdir -p "$work/root" "$work/out" "$work/data"
head -c $((64 << 20)) /dev/urandom > "$work/root/big.bin"
want=$(sha256sum < "$work/root/big.bin")

start_server() {
  case $1 in
    netdeploy) in_srv "$work/netdeploy" serve --interface eth0 --dhcp-mode off --data-dir "$work/data" \
                 --tftp-root "$work/root" --http-port 8080 --log-level warn >/dev/null 2>"$work/nd.log" & ;;
    tftpd-hpa) in_srv in.tftpd -L -s "$work/root" -a 198.18.0.1:69 -R 64001:65000 2>"$work/hpa.log" & ;;
    dnsmasq)   in_srv dnsmasq --no-daemon --port=0 --enable-tftp --tftp-root="$work/root" \
                 --listen-address=198.18.0.1 --bind-interfaces --tftp-port-range=64001,65000 \
                 --pid-file= --conf-file=/dev/null 2>"$work/dnsmasq.log" & ;;
  esac
  pids+=($!)
  wait_port u 69
}

# one_run MODE -> seconds
one_run() {
  local out="$work/out/f" t0 t1
  rm -f "$out"
  t0=$(date +%s.%N)
  case $1 in
    lockstep) in_cli curl -sS --tftp-blksize 1468 -o "$out" tftp://198.18.0.1/big.bin ;;
    window16) in_cli atftp --option "blksize 1468" --option "windowsize 16" -g -r big.bin -l "$out" 198.18.0.1 >/dev/null 2>&1 ;;
  esac
  t1=$(date +%s.%N)
  [ "$(sha256sum < "$out")" = "$want" ] || { echo "corrupt download ($1)" >&2; exit 1; }
  awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A result
for server in netdeploy tftpd-hpa dnsmasq; do
  start_server $server
  for mode in lockstep window16; do
    result[$server,$mode]=$(for _ in $(seq $runs); do one_run $mode; done | median)
  done
  stop_all
done

printf '\n64 MiB over TFTP, median of %d runs (seconds; ratio = peer time / netdeploy time)\n' "$runs"
printf '%-22s %12s %12s %12s %16s %16s\n' mode netdeploy tftpd-hpa dnsmasq "vs tftpd-hpa" "vs dnsmasq"
for mode in lockstep window16; do
  nd=${result[netdeploy,$mode]} hpa=${result[tftpd-hpa,$mode]} dm=${result[dnsmasq,$mode]}
  label=$mode; [ $mode = lockstep ] && label="lock-step blksize 1468"; [ $mode = window16 ] && label="windowsize 16"
  printf '%-22s %12.3f %12.3f %12.3f %15.2fx %15.2fx\n' "$label" "$nd" "$hpa" "$dm" \
    "$(awk -v a="$hpa" -v b="$nd" 'BEGIN { print a / b }')" "$(awk -v a="$dm" -v b="$nd" 'BEGIN { print a / b }')"
done
