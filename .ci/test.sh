#!/usr/bin/env bash
# README's test command: installs what the tests need (Debian packages,
# Go modules), checks formatting and vet, then runs every test, the fuzz
# seed corpora included. As root the namespace, real-client and QEMU
# tests run; otherwise they skip and say why.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

packages=(
  iproute2 nftables curl tftp-hpa atftp busybox-static udhcpc isc-dhcp-client
  dnsmasq-base tshark tftpd-hpa kea-dhcp4-server kea-admin tmux python3-impacket wimtools smbclient samba-common-bin udpcast
  ipxe ipxe-qemu ovmf qemu-system-x86 linux-image-amd64
  fdisk dosfstools mtools syslinux syslinux-common syslinux-efi
)
if [ "$(id -u)" = 0 ]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    # Packages such as tftpd-hpa and kea would start their daemons on
    # install; keep them stopped (policy-rc.d), the tests start their own.
    had_policy=0; [ -e /usr/sbin/policy-rc.d ] && had_policy=1
    [ $had_policy = 1 ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ $had_policy = 1 ] || rm -f /usr/sbin/policy-rc.d
  fi
else
  echo "not root: skipping package installation; namespace and VM tests will skip"
fi

go mod download
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt needed: $unformatted"; exit 1
fi
go vet ./...
go build -o /dev/null ./cmd/netdeploy
go test -count=1 -timeout 80m ./... 2>&1 | tee /tmp/netdeploy-test.log
exit "${PIPESTATUS[0]}"
