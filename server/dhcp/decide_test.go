package dhcp

import (
	"bytes"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/netdeploy/netdeploy/server/boot"
	"github.com/netdeploy/netdeploy/server/policy"
	"github.com/netdeploy/netdeploy/server/tracker"
)

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"authoritative": Authoritative, "Proxy": Proxy, " off ": Off} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseMode("dhcp"); err == nil || !strings.HasPrefix(err.Error(), "dhcp: ") {
		t.Errorf("ParseMode(dhcp) error %v", err)
	}
}

func TestParseUserClass(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want []string
		ipxe bool
	}{
		{nil, nil, false},
		{[]byte("iPXE"), []string{"iPXE"}, true},                // the bare string iPXE sends
		{[]byte{4, 'i', 'P', 'X', 'E'}, []string{"iPXE"}, true}, // RFC 3004
		{[]byte{3, 'a', 'b', 'c', 4, 'i', 'P', 'X', 'E'}, []string{"abc", "iPXE"}, true},
		{[]byte{3, 'a', 'b'}, []string{"\x03ab"}, false}, // truncated list: taken whole
		{[]byte{0, 'x'}, []string{"\x00x"}, false},       // zero length: taken whole
		{[]byte("gPXE"), []string{"gPXE"}, false},
	} {
		got := parseUserClass(tc.in)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
			t.Errorf("parseUserClass(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if hasIPXEUserClass(tc.in) != tc.ipxe {
			t.Errorf("hasIPXEUserClass(%q) = %v", tc.in, !tc.ipxe)
		}
	}
}

func TestPrecheck(t *testing.T) {
	good := msg(t, dhcpv4.MessageTypeDiscover, mac(1)).ToBytes()
	if err := precheck(good); err != nil {
		t.Fatal(err)
	}
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for name, b := range map[string][]byte{
		"short":    good[:239],
		"reply":    mut(func(b []byte) []byte { b[0] = 2; return b }),
		"hlen 0":   mut(func(b []byte) []byte { b[2] = 0; return b }),
		"hlen 17":  mut(func(b []byte) []byte { b[2] = 17; return b }),
		"hlen 255": mut(func(b []byte) []byte { b[2] = 255; return b }),
		"empty":    nil,
		"one byte": {1},
	} {
		if err := precheck(b); err == nil {
			t.Errorf("%s: precheck accepted it", name)
		}
	}
}

// replyCheck inspects one reply.
type replyCheck func(t *testing.T, r *dhcpv4.DHCPv4, o outcome)

func wantType(typ dhcpv4.MessageType) replyCheck {
	return func(t *testing.T, r *dhcpv4.DHCPv4, _ outcome) {
		t.Helper()
		if r.MessageType() != typ {
			t.Errorf("type %s, want %s", r.MessageType(), typ)
		}
	}
}

func wantFile(file string) replyCheck {
	return func(t *testing.T, r *dhcpv4.DHCPv4, o outcome) {
		t.Helper()
		if r.BootFileName != file || r.BootFileNameOption() != file {
			t.Errorf("file %q / option 67 %q, want %q", r.BootFileName, r.BootFileNameOption(), file)
		}
		if e, ok := findEvent(o.events, tracker.StagePXE, tracker.KindDone); ok && e.File != file {
			t.Errorf("pxe done event file %q, want %q", e.File, file)
		}
	}
}

// wantPXE checks the options every reply with boot information carries.
func wantPXE(t *testing.T, r *dhcpv4.DHCPv4, _ outcome) {
	t.Helper()
	if !r.ServerIPAddr.Equal(testServerIP) {
		t.Errorf("siaddr %s", r.ServerIPAddr)
	}
	if r.TFTPServerName() != "198.18.0.1" {
		t.Errorf("option 66 %q", r.TFTPServerName())
	}
	if r.ClassIdentifier() != "PXEClient" {
		t.Errorf("option 60 %q", r.ClassIdentifier())
	}
	if !r.ServerIdentifier().Equal(testServerIP) {
		t.Errorf("option 54 %s", r.ServerIdentifier())
	}
	if v := r.Options.Get(dhcpv4.OptionVendorSpecificInformation); !bytes.Equal(v, []byte{6, 1, 8, 0xff}) {
		t.Errorf("option 43 % x, want 06 01 08 ff", v)
	}
}

func wantNoBoot(t *testing.T, r *dhcpv4.DHCPv4, _ outcome) {
	t.Helper()
	if r.BootFileName != "" || r.Options.Has(dhcpv4.OptionBootfileName) || r.Options.Has(dhcpv4.OptionVendorSpecificInformation) || r.Options.Has(dhcpv4.OptionClassIdentifier) {
		t.Errorf("reply carries boot information: %s", r.Summary())
	}
}

// wantLeaseOptions checks options 1, 3, 6, 51, 54 (and 58, 59).
func wantLeaseOptions(t *testing.T, r *dhcpv4.DHCPv4, _ outcome) {
	t.Helper()
	if got := r.SubnetMask(); !bytes.Equal(got, testMask) {
		t.Errorf("option 1 %v", got)
	}
	if got := r.Router(); len(got) != 1 || !got[0].Equal(testRouter) {
		t.Errorf("option 3 %v", got)
	}
	if got := r.DNS(); len(got) != 1 || !got[0].Equal(testDNS) {
		t.Errorf("option 6 %v", got)
	}
	if got := r.IPAddressLeaseTime(0); got != time.Hour {
		t.Errorf("option 51 %s", got)
	}
	if got := r.IPAddressRenewalTime(0); got != 30*time.Minute {
		t.Errorf("option 58 %s", got)
	}
	if got := r.IPAddressRebindingTime(0); got != 52*time.Minute+30*time.Second {
		t.Errorf("option 59 %s", got)
	}
	if !r.ServerIdentifier().Equal(testServerIP) {
		t.Errorf("option 54 %s", r.ServerIdentifier())
	}
	if !testPoolContains(r.YourIPAddr) {
		t.Errorf("yiaddr %s outside the pool", r.YourIPAddr)
	}
}

func testPoolContains(ip net.IP) bool {
	v, ok := ipToU32(ip)
	a, _ := ipToU32(testPool.Start)
	b, _ := ipToU32(testPool.End)
	return ok && v >= a && v <= b
}

func wantNoLease(t *testing.T, r *dhcpv4.DHCPv4, _ outcome) {
	t.Helper()
	if !r.YourIPAddr.IsUnspecified() {
		t.Errorf("yiaddr %s, want 0.0.0.0", r.YourIPAddr)
	}
	for _, code := range []dhcpv4.OptionCode{dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter} {
		if r.Options.Has(code) {
			t.Errorf("proxy reply has option %d", code.Code())
		}
	}
}

func wantDest(ip string, port int) replyCheck {
	return func(t *testing.T, _ *dhcpv4.DHCPv4, o outcome) {
		t.Helper()
		if o.dest.String() != net.JoinHostPort(ip, strconv.Itoa(port)) {
			t.Errorf("dest %s, want %s:%d", o.dest, ip, port)
		}
	}
}

func wantEvent(stage tracker.Stage, kind tracker.Kind, detail string) replyCheck {
	return func(t *testing.T, _ *dhcpv4.DHCPv4, o outcome) {
		t.Helper()
		e, ok := findEvent(o.events, stage, kind)
		if !ok {
			t.Errorf("no %s/%s event in %+v", stage, kind, o.events)
			return
		}
		if !strings.Contains(e.Detail, detail) {
			t.Errorf("%s/%s event detail %q lacks %q", stage, kind, e.Detail, detail)
		}
	}
}

func TestHandleTable(t *testing.T) {
	srcPXE := &net.UDPAddr{IP: net.IPv4(198, 18, 0, 77), Port: 4011}
	for _, tc := range []struct {
		name   string
		mode   Mode
		has    func(string) bool
		policy policy.Policy
		pxe    bool // received on the PXE port
		src    *net.UDPAddr
		typ    dhcpv4.MessageType
		mods   []dhcpv4.Modifier
		// noReply names why no reply is wanted (substring of drop).
		noReply string
		checks  []replyCheck
	}{
		{
			name: "non-PXE gets an address and no boot info", mode: Authoritative,
			typ:    dhcpv4.MessageTypeDiscover,
			checks: []replyCheck{wantType(dhcpv4.MessageTypeOffer), wantLeaseOptions, wantNoBoot, wantDest("255.255.255.255", 68)},
		},
		{
			name: "BIOS without option 93 gets undionly.kpxe", mode: Authoritative,
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{pxeClass},
			checks: []replyCheck{wantType(dhcpv4.MessageTypeOffer), wantLeaseOptions, wantPXE, wantFile("undionly.kpxe")},
		},
		{
			name: "BIOS arch 0 gets undionly.kpxe", mode: Authoritative,
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{pxeClass, arch(0)},
			checks: []replyCheck{wantPXE, wantFile("undionly.kpxe"), wantEvent(tracker.StageDHCP, tracker.KindStart, "discover")},
		},
		{
			name: "arch 7 prefers snponly.efi", mode: Authoritative,
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{pxeClass, arch(7)},
			checks: []replyCheck{wantPXE, wantFile("snponly.efi")},
		},
		{
			name: "arch 7 falls back to ipxe.efi", mode: Authoritative, has: hasAll("ipxe.efi"),
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{pxeClass, arch(7)},
			checks: []replyCheck{wantPXE, wantFile("ipxe.efi")},
		},
		{
			name: "arch 9 prefers snponly.efi", mode: Authoritative,
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{pxeClass, arch(9)},
			checks: []replyCheck{wantPXE, wantFile("snponly.efi")},
		},
		{
			name: "arch 9 falls back to ipxe.efi", mode: Proxy, has: hasAll("ipxe.efi", "undionly.kpxe"),
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{pxeClass, arch(9)},
			checks: []replyCheck{wantPXE, wantFile("ipxe.efi")},
		},
		{
			name: "arch 11 when present", mode: Authoritative,
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{pxeClass, arch(11)},
			checks: []replyCheck{wantPXE, wantFile("snponly-arm64.efi")},
		},
		{
			name: "arch 11 absent: no answer", mode: Authoritative, has: hasAll("undionly.kpxe", "snponly.efi"),
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{pxeClass, arch(11)},
			noReply: "not installed",
			checks:  []replyCheck{wantEvent(tracker.StagePXE, tracker.KindError, "not installed")},
		},
		{
			name: "unknown arch: no answer", mode: Authoritative,
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{pxeClass, arch(2)},
			noReply: "no boot program",
			checks:  []replyCheck{wantEvent(tracker.StagePXE, tracker.KindError, "no boot program for this architecture")},
		},
		{
			name: "unknown arch in proxy: no answer", mode: Proxy,
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{pxeClass, arch(3)},
			noReply: "no boot program",
			checks:  []replyCheck{wantEvent(tracker.StagePXE, tracker.KindError, "no boot program")},
		},
		{
			name: "iPXE user class (bare string) gets the script URL", mode: Authoritative,
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{pxeClass, arch(7), dhcpv4.WithUserClass("iPXE", false)},
			checks: []replyCheck{wantPXE, wantFile(testScript)},
		},
		{
			name: "iPXE user class (RFC 3004) gets the script URL", mode: Proxy,
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{pxeClass, dhcpv4.WithUserClass("iPXE", true)},
			checks: []replyCheck{wantPXE, wantFile(testScript)},
		},
		{
			name: "iPXE user class without option 60 is a PXE client", mode: Proxy,
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{dhcpv4.WithUserClass("iPXE", false)},
			checks: []replyCheck{wantPXE, wantFile(testScript)},
		},
		{
			name: "option 97 echoed", mode: Authoritative,
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{pxeClass, dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})},
			checks: []replyCheck{wantPXE, func(t *testing.T, r *dhcpv4.DHCPv4, _ outcome) {
				if v := r.Options.Get(dhcpv4.OptionClientMachineIdentifier); len(v) != 17 || v[16] != 16 {
					t.Errorf("option 97 % x", v)
				}
			}},
		},
		{
			name: "no option 97 when the client sent none", mode: Authoritative,
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{pxeClass},
			checks: []replyCheck{func(t *testing.T, r *dhcpv4.DHCPv4, _ outcome) {
				if r.Options.Has(dhcpv4.OptionClientMachineIdentifier) {
					t.Error("option 97 invented")
				}
			}},
		},
		{
			name: "UEFI HTTP boot gets a URL and HTTPClient", mode: Proxy,
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003001")), arch(16)},
			checks: []replyCheck{wantFile("http://198.18.0.1/snponly.efi"), func(t *testing.T, r *dhcpv4.DHCPv4, _ outcome) {
				if r.ClassIdentifier() != "HTTPClient" || r.Options.Has(dhcpv4.OptionVendorSpecificInformation) {
					t.Errorf("HTTP boot reply: %s", r.Summary())
				}
			}},
		},
		{
			name: "proxy OFFER: yiaddr 0, no lease, boot info", mode: Proxy,
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{pxeClass, arch(0)},
			checks: []replyCheck{wantType(dhcpv4.MessageTypeOffer), wantNoLease, wantPXE, wantFile("undionly.kpxe"), wantDest("255.255.255.255", 68),
				wantEvent(tracker.StagePXE, tracker.KindDone, "undionly.kpxe")},
		},
		{
			name: "proxy: non-PXE client gets nothing", mode: Proxy,
			typ: dhcpv4.MessageTypeDiscover, noReply: "not a PXE client",
		},
		{
			name: "proxy: REQUEST for the real DHCP server is not ours", mode: Proxy,
			typ: dhcpv4.MessageTypeRequest, mods: []dhcpv4.Modifier{pxeClass, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(198, 18, 0, 2)))},
			noReply: "for the DHCP server",
		},
		{
			name: "proxy: REQUEST on 4011 gets ACK back to its source", mode: Proxy, pxe: true, src: srcPXE,
			typ: dhcpv4.MessageTypeRequest, mods: []dhcpv4.Modifier{pxeClass, arch(7), dhcpv4.WithClientIP(net.IPv4(198, 18, 0, 77))},
			checks: []replyCheck{wantType(dhcpv4.MessageTypeAck), wantNoLease, wantPXE, wantFile("snponly.efi"), wantDest("198.18.0.77", 4011)},
		},
		{
			name: "authoritative: REQUEST on 4011 too", mode: Authoritative, pxe: true, src: &net.UDPAddr{IP: net.IPv4(198, 18, 0, 100), Port: 68},
			typ: dhcpv4.MessageTypeRequest, mods: []dhcpv4.Modifier{pxeClass, arch(9)},
			checks: []replyCheck{wantType(dhcpv4.MessageTypeAck), wantNoLease, wantFile("snponly.efi"), wantDest("198.18.0.100", 68)},
		},
		{
			name: "4011: non-PXE ignored", mode: Proxy, pxe: true, src: srcPXE,
			typ: dhcpv4.MessageTypeRequest, noReply: "not a PXE client",
		},
		{
			name: "4011: DISCOVER ignored", mode: Proxy, pxe: true, src: srcPXE,
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{pxeClass}, noReply: "PXE port",
		},
		{
			name: "policy pending: address but no boot info", mode: Authoritative, policy: fixedPolicy(policy.Pending),
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{pxeClass},
			checks: []replyCheck{wantType(dhcpv4.MessageTypeOffer), wantLeaseOptions, wantNoBoot, wantEvent(tracker.StagePXE, tracker.KindError, "waiting for approval")},
		},
		{
			name: "policy deny: address but no boot info", mode: Authoritative, policy: fixedPolicy(policy.Deny),
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{pxeClass},
			checks: []replyCheck{wantLeaseOptions, wantNoBoot, wantEvent(tracker.StagePXE, tracker.KindError, "denied by policy")},
		},
		{
			name: "policy pending in proxy: nothing", mode: Proxy, policy: fixedPolicy(policy.Pending),
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{pxeClass},
			noReply: "waiting for approval",
			checks:  []replyCheck{wantEvent(tracker.StagePXE, tracker.KindError, "waiting for approval")},
		},
		{
			name: "policy deny on 4011: nothing", mode: Proxy, policy: fixedPolicy(policy.Deny), pxe: true, src: srcPXE,
			typ: dhcpv4.MessageTypeRequest, mods: []dhcpv4.Modifier{pxeClass},
			noReply: "denied by policy",
		},
		{
			name: "policy allow", mode: Proxy, policy: fixedPolicy(policy.Allow),
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{pxeClass},
			checks: []replyCheck{wantFile("undionly.kpxe")},
		},
		{
			name: "INFORM: ACK without lease, unicast to ciaddr", mode: Authoritative,
			typ: dhcpv4.MessageTypeInform, mods: []dhcpv4.Modifier{dhcpv4.WithClientIP(net.IPv4(198, 18, 0, 30))},
			checks: []replyCheck{wantType(dhcpv4.MessageTypeAck), wantDest("198.18.0.30", 68), func(t *testing.T, r *dhcpv4.DHCPv4, _ outcome) {
				if r.Options.Has(dhcpv4.OptionIPAddressLeaseTime) || !r.YourIPAddr.IsUnspecified() || !r.ClientIPAddr.Equal(net.IPv4(198, 18, 0, 30)) {
					t.Errorf("inform ack: %s", r.Summary())
				}
				if !bytes.Equal(r.SubnetMask(), testMask) {
					t.Errorf("inform ack without option 1")
				}
			}},
		},
		{
			name: "relayed DISCOVER goes to the relay", mode: Authoritative,
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{dhcpv4.WithGatewayIP(net.IPv4(198, 18, 0, 250))},
			checks: []replyCheck{wantDest("198.18.0.250", 67), func(t *testing.T, r *dhcpv4.DHCPv4, _ outcome) {
				if !r.GatewayIPAddr.Equal(net.IPv4(198, 18, 0, 250)) {
					t.Errorf("giaddr %s", r.GatewayIPAddr)
				}
			}},
		},
		{
			name: "relayed from another subnet ignored", mode: Authoritative,
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{dhcpv4.WithGatewayIP(net.IPv4(198, 18, 7, 1))},
			noReply: "outside the served subnet",
		},
		{
			name: "REQUEST for another server's offer", mode: Authoritative,
			typ: dhcpv4.MessageTypeRequest, mods: []dhcpv4.Modifier{
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(198, 18, 0, 2))),
				dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(198, 18, 0, 101)))},
			noReply: "chose server 198.18.0.2",
		},
		{
			name: "INIT-REBOOT outside the pool: NAK", mode: Authoritative,
			typ: dhcpv4.MessageTypeRequest, mods: []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 1, 2, 3)))},
			checks: []replyCheck{wantType(dhcpv4.MessageTypeNak), wantDest("255.255.255.255", 68), wantEvent(tracker.StageDHCP, tracker.KindError, "outside the pool")},
		},
		{
			name: "REQUEST for the server's own address: NAK", mode: Authoritative,
			typ: dhcpv4.MessageTypeRequest, mods: []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(testServerIP))},
			checks: []replyCheck{wantType(dhcpv4.MessageTypeNak)},
		},
		{
			name: "our own probe is ignored", mode: Authoritative,
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{dhcpv4.WithHwAddr(net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01})},
			noReply: "own authorization probe",
		},
		{
			name: "malformed option 93 dropped", mode: Proxy,
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{pxeClass, dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{7})},
			noReply: "option 93",
		},
		{
			name: "no script URL for iPXE: no answer", mode: Proxy,
			typ: dhcpv4.MessageTypeDiscover, mods: []dhcpv4.Modifier{pxeClass, dhcpv4.WithUserClass("iPXE", false)},
			noReply: "no iPXE script URL",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			has := tc.has
			if has == nil {
				has = allBinaries
			}
			h := newTestHandler(t, tc.mode, has, tc.policy)
			if strings.Contains(tc.name, "no script URL") {
				h.s.scriptURL = ""
			}
			m := msg(t, tc.typ, mac(1), tc.mods...)
			o := h.handle(m, tc.pxe, tc.src, testNow)
			if tc.noReply != "" {
				if o.reply != nil {
					t.Fatalf("unexpected reply: %s", o.reply.Summary())
				}
				if !strings.Contains(o.drop, tc.noReply) {
					t.Errorf("drop reason %q lacks %q", o.drop, tc.noReply)
				}
			} else if o.reply == nil {
				t.Fatalf("no reply: %s", o.drop)
			}
			if o.reply != nil {
				// Every reply must survive the wire.
				r, err := dhcpv4.FromBytes(o.reply.ToBytes())
				if err != nil {
					t.Fatal(err)
				}
				if r.TransactionID != m.TransactionID || r.ClientHWAddr.String() != mac(1).String() && !strings.Contains(tc.name, "own") {
					t.Errorf("xid/chaddr not echoed: %s", r.Summary())
				}
				o.reply = r
			}
			for _, c := range tc.checks {
				c(t, o.reply, o)
			}
			for _, e := range o.events {
				if e.MAC != mac(1).String() || e.Proto != "udp" || (e.Port != 67 && e.Port != 4011) {
					t.Errorf("event %+v", e)
				}
				if bytes.Contains([]byte(tc.name), []byte("PXE")) && e.Stage == tracker.StagePXE && e.Arch == "" {
					t.Errorf("pxe event without arch: %+v", e)
				}
			}
		})
	}
}

// TestLongScriptURL: a URL longer than the file field goes in option 67
// only.
func TestLongScriptURL(t *testing.T) {
	h := newTestHandler(t, Proxy, allBinaries, nil)
	h.s.scriptURL = "http://198.18.0.1:8080/" + strings.Repeat("x", 200) + "/boot.ipxe"
	o := h.handle(msg(t, dhcpv4.MessageTypeDiscover, mac(1), pxeClass, dhcpv4.WithUserClass("iPXE", false)), false, nil, testNow)
	if o.reply == nil {
		t.Fatal(o.drop)
	}
	r, err := dhcpv4.FromBytes(o.reply.ToBytes())
	if err != nil {
		t.Fatal(err)
	}
	if r.BootFileName != "" || r.BootFileNameOption() != h.s.scriptURL {
		t.Errorf("file %q option 67 %q", r.BootFileName, r.BootFileNameOption())
	}
}

func TestDecideBootArchNames(t *testing.T) {
	s := testSettings(Proxy)
	for _, tc := range []struct {
		arch boot.Arch
		file string
	}{{0, "undionly.kpxe"}, {7, "snponly.efi"}, {9, "snponly.efi"}, {11, "snponly-arm64.efi"}} {
		b := decideBoot(client{pxe: true, arch: tc.arch, mac: "x"}, &s)
		if b.kind != bootOK || b.choice.File != tc.file {
			t.Errorf("arch %d: %+v", tc.arch, b)
		}
	}
	if b := decideBoot(client{pxe: false}, &s); b.kind != bootNone {
		t.Errorf("non-PXE: %+v", b)
	}
	s.has = nil
	if b := decideBoot(client{pxe: true}, &s); b.kind != bootRefused {
		t.Errorf("nil Has: %+v", b)
	}
	s = testSettings(Proxy)
	s.scriptURL = "http://x/"
	if b := decideBoot(client{pxe: true, arch: boot.ArchHTTPX64}, &s); b.kind != bootRefused {
		t.Errorf("HTTP boot with an odd script URL: %+v", b)
	}
}

// TestLeaseFlow runs DISCOVER, REQUEST, renew, RELEASE and DECLINE through
// the handler.
func TestLeaseFlow(t *testing.T) {
	h := newTestHandler(t, Authoritative, allBinaries, nil)
	now := testNow
	o := h.handle(msg(t, dhcpv4.MessageTypeDiscover, mac(1), pxeClass), false, nil, now)
	if o.reply == nil {
		t.Fatal(o.drop)
	}
	ip := o.reply.YourIPAddr
	if !testPoolContains(ip) {
		t.Fatalf("offer %s", ip)
	}
	// SELECTING.
	o = h.handle(msg(t, dhcpv4.MessageTypeRequest, mac(1), pxeClass,
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(testServerIP)),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip)),
		dhcpv4.WithOption(dhcpv4.OptHostName("pc-01"))), false, nil, now)
	if o.reply == nil || o.reply.MessageType() != dhcpv4.MessageTypeAck || !o.reply.YourIPAddr.Equal(ip) {
		t.Fatalf("ack: %v %s", o.reply, o.drop)
	}
	wantLeaseOptions(t, o.reply, o)
	wantFile("undionly.kpxe")(t, o.reply, o)
	e, ok := findEvent(o.events, tracker.StageDHCP, tracker.KindDone)
	if !ok || e.IP != ip.String() || !strings.Contains(e.Detail, "lease 1h0m0s") {
		t.Errorf("dhcp done event %+v", e)
	}
	if _, ok := findEvent(o.events, tracker.StagePXE, tracker.KindDone); !ok {
		t.Errorf("no pxe done event: %+v", o.events)
	}
	ls := h.leases.leases()
	if len(ls) != 1 || ls[0].MAC != mac(1).String() || !ls[0].IP.Equal(ip) || ls[0].Hostname != "pc-01" || !ls[0].Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("leases %+v", ls)
	}

	// Another MAC asking for that address (INIT-REBOOT) is refused.
	o = h.handle(msg(t, dhcpv4.MessageTypeRequest, mac(2), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip))), false, nil, now)
	if o.reply == nil || o.reply.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("someone else's address: %v %s", o.reply, o.drop)
	}
	if e, ok := findEvent(o.events, tracker.StageDHCP, tracker.KindError); !ok || !strings.Contains(e.Detail, "another client") {
		t.Errorf("nak event %+v", o.events)
	}
	// SELECTING with our server id but an address that is not ours to give.
	o = h.handle(msg(t, dhcpv4.MessageTypeRequest, mac(2),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(testServerIP)),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip))), false, nil, now)
	if o.reply == nil || o.reply.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("selecting someone else's address: %v", o.reply)
	}

	// RENEWING: ciaddr set, unicast back.
	later := now.Add(40 * time.Minute)
	o = h.handle(msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithClientIP(ip)), false, nil, later)
	if o.reply == nil || o.reply.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("renew: %v %s", o.reply, o.drop)
	}
	if o.dest.String() != ip.String()+":68" || !o.reply.ClientIPAddr.Equal(ip) {
		t.Errorf("renew reply to %s ciaddr %s", o.dest, o.reply.ClientIPAddr)
	}
	if ls := h.leases.leases(); !ls[0].Expires.Equal(later.Add(time.Hour)) {
		t.Errorf("renew did not extend: %+v", ls)
	}

	// RELEASE frees the address; the MAC still gets it again.
	o = h.handle(msg(t, dhcpv4.MessageTypeRelease, mac(1), dhcpv4.WithClientIP(ip), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(testServerIP))), false, nil, later)
	if o.reply != nil {
		t.Fatal("reply to RELEASE")
	}
	if ls := h.leases.leases(); !ls[0].Expired(later) {
		t.Errorf("release: %+v", ls)
	}
	o = h.handle(msg(t, dhcpv4.MessageTypeDiscover, mac(1)), false, nil, later)
	if o.reply == nil || !o.reply.YourIPAddr.Equal(ip) {
		t.Fatalf("same MAC after release got %v", o.reply)
	}

	// DECLINE: the address is not offered again for a while.
	o = h.handle(msg(t, dhcpv4.MessageTypeDecline, mac(1), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(testServerIP))), false, nil, later)
	if o.reply != nil {
		t.Fatal("reply to DECLINE")
	}
	if _, ok := findEvent(o.events, tracker.StageDHCP, tracker.KindError); !ok {
		t.Errorf("no decline event")
	}
	o = h.handle(msg(t, dhcpv4.MessageTypeDiscover, mac(1)), false, nil, later)
	if o.reply == nil || o.reply.YourIPAddr.Equal(ip) {
		t.Fatalf("declined address offered again: %v", o.reply)
	}
	o = h.handle(msg(t, dhcpv4.MessageTypeRequest, mac(3), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip))), false, nil, later)
	if o.reply == nil || o.reply.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("declined address acked")
	}
}

// TestExhaustionEvent: no offer and an error event when the pool is full.
func TestExhaustionEvent(t *testing.T) {
	h := newTestHandler(t, Authoritative, allBinaries, nil)
	for i := 0; i < 10; i++ {
		if o := h.handle(msg(t, dhcpv4.MessageTypeDiscover, mac(byte(i))), false, nil, testNow); o.reply == nil {
			t.Fatalf("client %d: %s", i, o.drop)
		}
	}
	o := h.handle(msg(t, dhcpv4.MessageTypeDiscover, mac(99)), false, nil, testNow)
	if o.reply != nil {
		t.Fatalf("offer from a full pool: %s", o.reply.YourIPAddr)
	}
	if e, ok := findEvent(o.events, tracker.StageDHCP, tracker.KindError); !ok || !strings.Contains(e.Detail, "exhausted") {
		t.Errorf("events %+v", o.events)
	}
}

// TestRefusalLogRate: the Info line for an unbootable client comes once a
// minute per MAC, the event every time.
func TestRefusalLogRate(t *testing.T) {
	h := newTestHandler(t, Proxy, allBinaries, nil)
	if !h.logRefusal("a", testNow) || h.logRefusal("a", testNow.Add(time.Second)) || !h.logRefusal("b", testNow) {
		t.Fatal("first refusal per MAC must log, the repeat must not")
	}
	if !h.logRefusal("a", testNow.Add(time.Minute)) {
		t.Fatal("a minute later it logs again")
	}
	for i := 0; i < maxRefusedMACs+10; i++ {
		h.logRefusal(strconv.Itoa(i), testNow)
	}
	if len(h.refused) > maxRefusedMACs {
		t.Fatalf("refusal map grew to %d", len(h.refused))
	}
}
