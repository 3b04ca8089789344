#!/usr/bin/env bash
# SMB benchmark: smbclient gets a 256 MiB file from netdeploy and from
# Samba's smbd (a private configuration) on a namespaced LAN, in one run,
# unsigned and signed (SMB 3.1.1), after one untimed transfer each. Prints
# every run and the seconds (median of RUNS) and the
# throughput ratio netdeploy / smbd (higher = netdeploy faster).
# Usage: sudo bench/smb.sh [RUNS]
source "$(dirname "$0")/lib.sh"
runs=${1:-3}
command -v smbd >/dev/null || { echo "needs Samba's smbd (apt-get install samba)"; exit 2; }
command -v smbclient >/dev/null || { echo "needs smbclient (apt-get install smbclient)"; exit 2; }
make_lan 24
build_netdeploy
mkdir -p "$work/root" "$work/data" "$work/samba"/{private,lock,state,cache,pid}
chmod 755 "$work" "$work/root" # smbd reads as the benchmark user
head -c $((256 << 20)) /dev/urandom > "$work/root/big.bin"
want=$(sha256sum < "$work/root/big.bin")
user=ndbench pass=bench-$$

samba_setup 445 "$work/root"

start_server() {
  case $1 in
    netdeploy) in_srv "$work/netdeploy" serve --config "$work/netdeploy.yaml" --interface eth0 --dhcp-mode off \
                 --data-dir "$work/data" --images-dir "$work/root" --log-level warn >/dev/null 2>"$work/nd.log" & ;;
    smbd)      in_srv setsid smbd --foreground --no-process-group --configfile="$work/smb.conf" >"$work/smbd.out" 2>&1 & ;;
  esac
  pids+=($!)
  wait_port t 445
}

# one_run MODE -> seconds
one_run() {
  local out="$work/out.bin" t0 t1 opt=()
  [ "$1" = signed ] && opt=(--option='client signing=required')
  rm -f "$out"
  t0=$(date +%s.%N)
  in_cli smbclient //198.18.0.1/images -U "$user%$pass" -m SMB3_11 "${opt[@]}" -c "get big.bin $out" >"$work/smbclient.out" 2>&1 \
    || { echo "smbclient failed ($1):" >&2; cat "$work/smbclient.out" "$work/nd.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  [ "$(sha256sum < "$out")" = "$want" ] || { echo "corrupt download ($1)" >&2; exit 1; }
  awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A result
for server in netdeploy smbd; do
  start_server $server
  # One untimed transfer each, so neither server is timed while it warms up.
  for mode in unsigned signed; do one_run $mode >/dev/null; done
  for mode in unsigned signed; do
    times=$(for _ in $(seq $runs); do one_run $mode; done)
    echo "$server $mode:" $times >&2
    result[$server,$mode]=$(echo "$times" | median)
  done
  stop_all
done

printf '\n256 MiB over SMB 3.1.1 with smbclient, median of %d runs (seconds; ratio = smbd time / netdeploy time)\n' "$runs"
printf '%-10s %12s %12s %12s\n' mode netdeploy smbd ratio
for mode in unsigned signed; do
  nd=${result[netdeploy,$mode]} sd=${result[smbd,$mode]}
  printf '%-10s %12.3f %12.3f %11.2fx\n' $mode "$nd" "$sd" "$(awk -v a="$sd" -v b="$nd" 'BEGIN { print a / b }')"
done
