package demo

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func TestTFTPPackets(t *testing.T) {
	want := "\x00\x01undionly.kpxe\x00octet\x00blksize\x001468\x00tsize\x000\x00"
	if got := string(tftpRequest("undionly.kpxe", 1468)); got != want {
		t.Errorf("RRQ %q, want %q", got, want)
	}
	if got := tftpACK(0xfffe); !bytes.Equal(got, []byte{0, 4, 0xff, 0xfe}) {
		t.Errorf("ACK % x", got)
	}
	if got := string(tftpError(5, "unknown transfer ID")); got != "\x00\x05\x00\x05unknown transfer ID\x00" {
		t.Errorf("ERROR %q", got)
	}
	m, err := parseOACK([]byte("BLKSIZE\x001200\x00tsize\x0099\x00"))
	if err != nil || m["blksize"] != "1200" || m["tsize"] != "99" {
		t.Errorf("OACK %v %v", m, err)
	}
	for _, bad := range []string{"blksize\x00", "blksize\x001200"} {
		if _, err := parseOACK([]byte(bad)); err == nil {
			t.Errorf("OACK %q accepted", bad)
		}
	}
}

// fakeTFTP is a deliberately awkward server: it ignores the first RRQ,
// sends DATA 1 twice, sends a stray packet from a second port, and checks
// every ACK. It serves size bytes with blksize bytes per block.
func fakeTFTP(t *testing.T, size, blksize int, oack string) (*net.UDPAddr, chan error) {
	t.Helper()
	ln, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	stray, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		defer ln.Close()
		defer stray.Close()
		done <- func() error {
			buf := make([]byte, 2048)
			ln.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, _, err := ln.ReadFromUDP(buf); err != nil { // ignored RRQ
				return err
			}
			n, peer, err := ln.ReadFromUDP(buf) // the retransmission
			if err != nil {
				return err
			}
			if !bytes.HasPrefix(buf[:n], []byte{0, 1}) {
				return fmt.Errorf("second packet % x is not an RRQ", buf[:n])
			}
			sess, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				return err
			}
			defer sess.Close()
			sess.SetReadDeadline(time.Now().Add(10 * time.Second))
			readACK := func(want uint16) error {
				for {
					n, from, err := sess.ReadFromUDP(buf)
					if err != nil {
						return err
					}
					if from.Port != peer.Port {
						return fmt.Errorf("packet from %v", from)
					}
					if n != 4 || binary.BigEndian.Uint16(buf) != opACK {
						return fmt.Errorf("want ACK %d, got % x", want, buf[:n])
					}
					if got := binary.BigEndian.Uint16(buf[2:]); got == want {
						return nil
					} else if got != want-1 {
						return fmt.Errorf("ACK %d, want %d", got, want)
					}
				}
			}
			if oack != "" {
				sess.WriteToUDP(append([]byte{0, opOACK}, oack...), peer)
				if err := readACK(0); err != nil {
					return err
				}
			}
			data := bytes.Repeat([]byte{0xab}, size)
			for blk := 1; ; blk++ {
				chunk := data[min((blk-1)*blksize, len(data)):min(blk*blksize, len(data))]
				pkt := append(binary.BigEndian.AppendUint16([]byte{0, opDATA}, uint16(blk)), chunk...)
				sess.WriteToUDP(pkt, peer)
				if blk == 1 {
					sess.WriteToUDP(pkt, peer)  // duplicate: must not count twice
					stray.WriteToUDP(pkt, peer) // wrong TID: must get ERROR 5
					stray.SetReadDeadline(time.Now().Add(5 * time.Second))
					n, _, err := stray.ReadFromUDP(buf)
					if err != nil || n < 4 || binary.BigEndian.Uint16(buf) != opERROR || binary.BigEndian.Uint16(buf[2:]) != 5 {
						return fmt.Errorf("stray packet answered with % x, %v", buf[:max(n, 0)], err)
					}
				}
				if err := readACK(uint16(blk)); err != nil {
					return err
				}
				if len(chunk) < blksize {
					return nil
				}
			}
		}()
	}()
	return ln.LocalAddr().(*net.UDPAddr), done
}

func TestTFTPClientAgainstAwkwardServer(t *testing.T) {
	for _, c := range []struct {
		name          string
		size, blksize int
		oack          string
	}{
		{"options", 5000, 1000, "blksize\x001000\x00tsize\x005000\x00"}, // ends with an empty block
		{"no options", 1300, 512, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr, done := fakeTFTP(t, c.size, c.blksize, c.oack)
			var progress int64
			res, err := tftpGet(context.Background(), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)}, addr, "f", 1468, nil, func(n int64) { progress = n })
			if err != nil {
				t.Fatal(err)
			}
			if serr := <-done; serr != nil {
				t.Fatalf("server side: %v", serr)
			}
			if res.Bytes != int64(c.size) || progress != res.Bytes || res.BlkSize != c.blksize || res.Requests != 2 {
				t.Errorf("result %+v (progress %d), want %d bytes, blksize %d, 2 requests", res, progress, c.size, c.blksize)
			}
			if c.oack != "" && res.TSize != int64(c.size) {
				t.Errorf("tsize %d", res.TSize)
			}
		})
	}
}

func TestTFTPClientGivesUp(t *testing.T) {
	// Nobody answers: ctx ends the wait at once.
	silent, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = tftpGet(ctx, nil, silent.LocalAddr().(*net.UDPAddr), "f", 1468, nil, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "demo: tftp f") || !strings.Contains(err.Error(), "deadline") {
		t.Errorf("error %v", err)
	}
	if el := time.Since(start); el > 900*time.Millisecond {
		t.Errorf("gave up after %v, want about 300ms", el)
	}
}

func TestPXEOptions(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0xde, 0, 0, 0, 1}
	for _, c := range []struct {
		arch uint16
		ipxe bool
	}{{0, false}, {7, false}, {0, true}} {
		m, err := dhcpv4.NewDiscovery(mac, pxeModifiers(c.arch, mac, c.ipxe)...)
		if err != nil {
			t.Fatal(err)
		}
		// Round-trip through the wire format, as the server sees it.
		m, err = dhcpv4.FromBytes(m.ToBytes())
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("PXEClient:Arch:%05d:UNDI:002001", c.arch); m.ClassIdentifier() != want {
			t.Errorf("option 60 %q, want %q", m.ClassIdentifier(), want)
		}
		if a, ok := archUint(m); !ok || a != c.arch {
			t.Errorf("option 93 %d %v, want %d", a, ok, c.arch)
		}
		if v := m.Options.Get(dhcpv4.OptionClientNetworkInterfaceIdentifier); !bytes.Equal(v, []byte{1, 2, 1}) {
			t.Errorf("option 94 % x", v)
		}
		guid := m.Options.Get(dhcpv4.OptionClientMachineIdentifier)
		if len(guid) != 17 || guid[0] != 0 || guid[7]>>4 != 8 || !bytes.Equal(guid, clientGUID(mac)) {
			t.Errorf("option 97 % x", guid)
		}
		uc := m.Options.Get(dhcpv4.OptionUserClassInformation)
		if c.ipxe != (string(uc) == "iPXE") {
			t.Errorf("ipxe %v: option 77 %q", c.ipxe, uc)
		}
		if c.ipxe != (m.Options.Get(dhcpv4.GenericOptionCode(optionIPXE)) != nil) {
			t.Errorf("ipxe %v: option 175 presence wrong", c.ipxe)
		}
		if !m.IsBroadcast() || !m.IsOptionRequested(dhcpv4.OptionBootfileName) || !m.IsOptionRequested(dhcpv4.OptionTFTPServerName) {
			t.Errorf("broadcast flag or requested options missing: %s", m.Summary())
		}
	}
	if bytes.Equal(clientGUID(net.HardwareAddr{2, 0xde, 0, 0, 0, 1}), clientGUID(net.HardwareAddr{2, 0xde, 0, 0, 0, 2})) {
		t.Error("two MACs share a GUID")
	}
}

func TestReadLease(t *testing.T) {
	ack := func(mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
		m, err := dhcpv4.New(append([]dhcpv4.Modifier{
			dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
			dhcpv4.WithYourIP(net.IPv4(198, 18, 0, 100)),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(198, 18, 0, 1))),
		}, mods...)...)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	// siaddr first, option 67 over the file field.
	m := ack(dhcpv4.WithServerIP(net.IPv4(198, 18, 0, 2)), dhcpv4.WithNetmask(net.CIDRMask(16, 32)),
		dhcpv4.WithOption(dhcpv4.OptTFTPServerName("198.18.0.3")), dhcpv4.WithOption(dhcpv4.OptBootFileName("snponly.efi")))
	m.BootFileName = "other"
	l, err := readLease(m)
	if err != nil || !l.IP.Equal(net.IPv4(198, 18, 0, 100)) || !l.Next.Equal(net.IPv4(198, 18, 0, 2)) || l.BootFile != "snponly.efi" || l.prefixLen() != 16 {
		t.Errorf("lease %+v %v", l, err)
	}
	// Then option 66, then option 54; the file field when option 67 is absent.
	m = ack(dhcpv4.WithOption(dhcpv4.OptTFTPServerName("198.18.0.3")))
	m.BootFileName = "undionly.kpxe"
	if l, _ := readLease(m); !l.Next.Equal(net.IPv4(198, 18, 0, 3)) || l.BootFile != "undionly.kpxe" || l.prefixLen() != 24 {
		t.Errorf("lease %+v", l)
	}
	if l, _ := readLease(ack(dhcpv4.WithOption(dhcpv4.OptTFTPServerName("tftp.example")))); !l.Next.Equal(net.IPv4(198, 18, 0, 1)) || l.BootFile != "" {
		t.Errorf("lease %+v", l)
	}
	if _, err := readLease(ack(dhcpv4.WithYourIP(net.IPv4zero))); err == nil {
		t.Error("ACK without yiaddr accepted")
	}
}
