package dhcp

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/netdeploy/netdeploy/server/policy"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// Lab addresses (RFC 2544 benchmarking range).
var (
	testServerIP = net.IPv4(198, 18, 0, 1).To4()
	testRouter   = net.IPv4(198, 18, 0, 254).To4()
	testDNS      = net.IPv4(198, 18, 0, 53).To4()
	testMask     = net.CIDRMask(24, 32)
	testPool     = Pool{Start: net.IPv4(198, 18, 0, 100), End: net.IPv4(198, 18, 0, 109)}
	testScript   = "http://198.18.0.1/boot.ipxe"
	testNow      = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
)

func hasAll(names ...string) func(string) bool {
	return func(n string) bool {
		for _, x := range names {
			if x == n {
				return true
			}
		}
		return false
	}
}

// allBinaries is a boot file system holding every iPXE binary.
var allBinaries = hasAll("undionly.kpxe", "snponly.efi", "ipxe.efi", "snponly-arm64.efi", "ipxe-arm64.efi")

func testSettings(mode Mode) settings {
	return settings{
		mode:      mode,
		serverIP:  testServerIP,
		netmask:   testMask,
		router:    testRouter,
		dns:       []net.IP{testDNS},
		leaseTime: time.Hour,
		scriptURL: testScript,
		has:       allBinaries,
	}
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// testLogger writes to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(b []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(b, "\n")))
	return len(b), nil
}

// newTestHandler is a handler with an in-memory lease store on testPool.
func newTestHandler(t testing.TB, mode Mode, has func(string) bool, pol policy.Policy) *handler {
	st := testSettings(mode)
	st.has = has
	st.policy = pol
	h := &handler{
		s:          st,
		ownMAC:     net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01},
		subnet:     &net.IPNet{IP: testServerIP.Mask(testMask), Mask: testMask},
		port:       67,
		pxePort:    4011,
		clientPort: 68,
		log:        quietLog(),
	}
	if mode == Authoritative {
		ls, err := newLeaseStore(testPool, testServerIP, testMask, []net.IP{testRouter}, time.Hour, "", testNow)
		if err != nil {
			t.Fatal(err)
		}
		h.leases = ls
	}
	return h
}

func mac(i byte) net.HardwareAddr { return net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, i} }

func arch(a uint16) dhcpv4.Modifier {
	return dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, binary.BigEndian.AppendUint16(nil, a))
}

var pxeClass = dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001"))

func msg(t testing.TB, typ dhcpv4.MessageType, hw net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithHwAddr(hw),
		dhcpv4.WithTransactionID(dhcpv4.TransactionID{1, 2, 3, 4}),
	}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	// Round-trip through the wire form like the server does.
	m, err = dhcpv4.FromBytes(m.ToBytes())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// eventLog collects events and lets tests wait for one.
type eventLog struct {
	mu     sync.Mutex
	events []tracker.Event
	ch     chan struct{}
}

func newEventLog() *eventLog { return &eventLog{ch: make(chan struct{}, 1)} }

func (l *eventLog) Emit(e tracker.Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
	select {
	case l.ch <- struct{}{}:
	default:
	}
}

func (l *eventLog) all() []tracker.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]tracker.Event(nil), l.events...)
}

// wait returns the first event that match accepts.
func (l *eventLog) wait(ctx context.Context, t testing.TB, what string, match func(tracker.Event) bool) tracker.Event {
	t.Helper()
	return l.waitFrom(ctx, t, 0, what, match)
}

// waitFrom returns the first event from index from on that match accepts.
func (l *eventLog) waitFrom(ctx context.Context, t testing.TB, from int, what string, match func(tracker.Event) bool) tracker.Event {
	t.Helper()
	for {
		evs := l.all()
		for _, e := range evs[min(from, len(evs)):] {
			if match(e) {
				return e
			}
		}
		select {
		case <-l.ch:
		case <-ctx.Done():
			t.Fatalf("no %s event; got %+v", what, l.all())
		}
	}
}

func (l *eventLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

func findEvent(evs []tracker.Event, stage tracker.Stage, kind tracker.Kind) (tracker.Event, bool) {
	for _, e := range evs {
		if e.Stage == stage && e.Event == kind {
			return e, true
		}
	}
	return tracker.Event{}, false
}

// fixedPolicy answers d for everyone.
type fixedPolicy policy.Decision

func (p fixedPolicy) Decide(string) policy.Decision { return policy.Decision(p) }

type policyFunc func(string) policy.Decision

func (f policyFunc) Decide(mac string) policy.Decision { return f(mac) }

func waitCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
