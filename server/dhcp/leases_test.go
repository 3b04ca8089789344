package dhcp

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newStore(t *testing.T, pool Pool, dir string, now time.Time) *leaseStore {
	t.Helper()
	s, err := newLeaseStore(pool, testServerIP, testMask, []net.IP{testRouter}, time.Hour, dir, now)
	if err != nil {
		t.Fatal(err)
	}
	s.saveFailed = func(err error) { t.Errorf("save: %v", err) }
	return s
}

func bind(t *testing.T, s *leaseStore, m string, now time.Time) net.IP {
	t.Helper()
	ip, err := s.offer(m, nil, now)
	if err != nil {
		t.Fatalf("offer %s: %v", m, err)
	}
	if _, err := s.ack(m, ip, "", now); err != nil {
		t.Fatalf("ack %s %s: %v", m, ip, err)
	}
	return ip
}

func TestPoolBounds(t *testing.T) {
	for name, p := range map[string]Pool{
		"inverted":       {Start: net.IPv4(198, 18, 0, 20), End: net.IPv4(198, 18, 0, 10)},
		"ipv6":           {Start: net.ParseIP("2001:db8::1"), End: net.ParseIP("2001:db8::9")},
		"nil":            {},
		"other subnet":   {Start: net.IPv4(198, 18, 1, 10), End: net.IPv4(198, 18, 1, 20)},
		"too large":      {Start: net.IPv4(10, 0, 0, 0), End: net.IPv4(10, 255, 255, 255)},
		"crosses subnet": {Start: net.IPv4(198, 18, 0, 200), End: net.IPv4(198, 18, 1, 20)},
	} {
		if _, err := newLeaseStore(p, testServerIP, testMask, nil, time.Hour, "", testNow); err == nil {
			t.Errorf("%s: pool accepted", name)
		}
	}
}

// TestLeasesPersist: a new store on the same directory has every lease.
func TestLeasesPersist(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := newStore(t, testPool, dir, testNow)
	want := map[string]string{}
	for i := byte(0); i < 8; i++ {
		ip := bind(t, s, mac(i).String(), testNow)
		want[mac(i).String()] = ip.String()
	}
	// One expired lease and one released must survive too (affinity).
	s.release(mac(3).String(), net.ParseIP(want[mac(3).String()]), testNow)
	later := testNow.Add(2 * time.Hour)

	r := newStore(t, testPool, dir, later)
	got := r.leases()
	if len(got) != len(want) {
		t.Fatalf("after restart %d leases, want %d: %+v", len(got), len(want), got)
	}
	for _, l := range got {
		if want[l.MAC] != l.IP.String() {
			t.Errorf("after restart %s has %s, want %s", l.MAC, l.IP, want[l.MAC])
		}
	}
	// Every MAC gets its address back, even expired.
	for m, ip := range want {
		got, err := r.offer(m, nil, later)
		if err != nil || got.String() != ip {
			t.Errorf("%s offered %s (%v), want %s", m, got, err, ip)
		}
	}
	// The snapshot is complete JSON, the journal was folded into it at
	// start, and no temporary file is left behind.
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 2 || ents[0].Name() != "leases.journal" || ents[1].Name() != "leases.json" {
		t.Errorf("lease directory holds %v", ents)
	}
	if st, err := os.Stat(filepath.Join(dir, "leases.journal")); err != nil || st.Size() != 0 {
		t.Errorf("journal after start: %v %v", st, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "leases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var lf leaseFile
	if err := json.Unmarshal(b, &lf); err != nil || lf.Version != 1 || len(lf.Leases) != 8 {
		t.Fatalf("lease file %s: %v", b, err)
	}
}

func TestLeasesCorruptFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "leases.json"), []byte("{not json"), 0o600)
	if _, err := newLeaseStore(testPool, testServerIP, testMask, nil, time.Hour, dir, testNow); err == nil {
		t.Fatal("corrupt lease file accepted")
	}
	os.WriteFile(filepath.Join(dir, "leases.json"), []byte(`{"version":7}`), 0o600)
	if _, err := newLeaseStore(testPool, testServerIP, testMask, nil, time.Hour, dir, testNow); err == nil || !strings.Contains(err.Error(), "version") {
		t.Fatalf("unknown version: %v", err)
	}
}

// TestLeasesLoadDropsClashes: a hand-edited file with one address twice,
// one MAC twice, addresses outside the pool or reserved loads clean.
func TestLeasesLoadDropsClashes(t *testing.T) {
	dir := t.TempDir()
	exp := testNow.Add(time.Hour)
	lf := leaseFile{Version: 1, Leases: []Lease{
		{MAC: "m1", IP: net.IPv4(198, 18, 0, 100), Expires: exp},
		{MAC: "m2", IP: net.IPv4(198, 18, 0, 100), Expires: exp.Add(time.Minute)}, // wins .100
		{MAC: "m3", IP: net.IPv4(198, 18, 0, 101), Expires: exp},
		{MAC: "m3", IP: net.IPv4(198, 18, 0, 102), Expires: exp.Add(-time.Minute)}, // m3 keeps .101
		{MAC: "m4", IP: net.IPv4(198, 18, 0, 1), Expires: exp},                     // server IP
		{MAC: "m5", IP: net.IPv4(198, 18, 5, 5), Expires: exp},                     // outside
		{MAC: "", IP: net.IPv4(198, 18, 0, 103), Expires: exp},
	}}
	b, _ := json.Marshal(lf)
	os.WriteFile(filepath.Join(dir, "leases.json"), b, 0o600)
	s := newStore(t, testPool, dir, testNow)
	got := s.leases()
	if len(got) != 2 || got[0].MAC != "m2" || got[1].MAC != "m3" || !got[1].IP.Equal(net.IPv4(198, 18, 0, 101)) {
		t.Fatalf("loaded %+v", got)
	}
	checkInvariants(t, s)
}

// checkInvariants: the two indexes agree, no address has two MACs and no
// MAC two addresses.
func checkInvariants(t *testing.T, s *leaseStore) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byIP) != len(s.byMAC) {
		t.Fatalf("%d addresses, %d MACs", len(s.byIP), len(s.byMAC))
	}
	for ip, e := range s.byIP {
		if e.ip != ip || s.byMAC[e.mac] != e {
			t.Fatalf("index mismatch at %s: %+v", u32ToIP(ip), e)
		}
		if !s.inPool(ip) || s.exclude[ip] {
			t.Fatalf("%s handed out", u32ToIP(ip))
		}
	}
}

// TestLeasesNeverShared drives random operations from many MACs against a
// small pool and checks that no address is ever held by two MACs.
func TestLeasesNeverShared(t *testing.T) {
	s := newStore(t, testPool, t.TempDir(), testNow)
	rng := rand.New(rand.NewPCG(1, 2))
	now := testNow
	for step := 0; step < 3000; step++ {
		now = now.Add(time.Duration(rng.IntN(120)) * time.Second)
		m := mac(byte(rng.IntN(16))).String()
		ip := u32ToIP(0xc6120000 | uint32(95+rng.IntN(20))) // 198.18.0.95-114
		switch rng.IntN(6) {
		case 0, 1:
			s.offer(m, ip, now)
		case 2, 3:
			if l, err := s.ack(m, ip, "", now); err == nil && (l.MAC != m || !l.IP.Equal(ip)) {
				t.Fatalf("ack returned %+v", l)
			}
		case 4:
			s.release(m, ip, now)
		case 5:
			s.decline(m, ip, now)
		}
		checkInvariants(t, s)
		active := map[string]string{}
		for _, l := range s.leases() {
			if l.Expired(now) {
				continue
			}
			if other, ok := active[l.IP.String()]; ok {
				t.Fatalf("step %d: %s leased to %s and %s", step, l.IP, other, l.MAC)
			}
			active[l.IP.String()] = l.MAC
		}
	}
}

// TestOfferReserves: two DISCOVERs from different MACs in a row never get
// the same address.
func TestOfferReserves(t *testing.T) {
	s := newStore(t, testPool, "", testNow)
	a, err1 := s.offer("a", nil, testNow)
	b, err2 := s.offer("b", a, testNow) // even asking for a's address
	if err1 != nil || err2 != nil || a.Equal(b) {
		t.Fatalf("offers %s %s (%v %v)", a, b, err1, err2)
	}
	if _, err := s.ack("b", a, "", testNow); !errors.Is(err, errTaken) {
		t.Fatalf("b took a's reserved address: %v", err)
	}
	// After the hold, a's unbound offer may go to someone else.
	later := testNow.Add(offerHold + time.Second)
	if _, err := s.ack("b", a, "", later); err != nil {
		t.Fatalf("expired offer not reusable: %v", err)
	}
	checkInvariants(t, s)
}

// TestPoolExhaustion: a 4-address pool holding the server's own address
// has 3 leases; the 4th client gets none until one expires.
func TestPoolExhaustion(t *testing.T) {
	pool := Pool{Start: net.IPv4(198, 18, 0, 0), End: net.IPv4(198, 18, 0, 3)} // .0 network, .1 server
	s := newStore(t, pool, "", testNow)
	got := map[string]bool{}
	for _, m := range []string{"a", "b"} {
		got[bind(t, s, m, testNow).String()] = true
	}
	if !got["198.18.0.2"] || !got["198.18.0.3"] {
		t.Fatalf("leased %v; the network and server addresses must never be", got)
	}
	if ip, err := s.offer("c", nil, testNow); !errors.Is(err, errPoolExhausted) {
		t.Fatalf("offer from a full pool: %s %v", ip, err)
	}
	// Once a's lease has expired it goes to c; b stays.
	s.ack("b", net.IPv4(198, 18, 0, 3), "", testNow.Add(30*time.Minute))
	later := testNow.Add(61 * time.Minute)
	ip, err := s.offer("c", nil, later)
	if err != nil || !ip.Equal(net.IPv4(198, 18, 0, 2)) {
		t.Fatalf("after expiry c got %s %v", ip, err)
	}
	checkInvariants(t, s)
}

// TestPreferNeverUsed: a new MAC gets a never-used address before an
// expired one, then the one that expired longest ago; an old MAC keeps its
// address while nobody else took it.
func TestPreferNeverUsed(t *testing.T) {
	pool := Pool{Start: net.IPv4(198, 18, 0, 100), End: net.IPv4(198, 18, 0, 103)}
	s := newStore(t, pool, "", testNow)
	ipA := bind(t, s, "a", testNow)
	ipB := bind(t, s, "b", testNow.Add(time.Minute))
	later := testNow.Add(3 * time.Hour) // a and b expired; a first
	ipC, _ := s.offer("c", nil, later)
	ipD, _ := s.offer("d", nil, later)
	if ipC.Equal(ipA) || ipC.Equal(ipB) || ipD.Equal(ipA) || ipD.Equal(ipB) {
		t.Fatalf("expired addresses reused while never-used ones were left: a %s b %s c %s d %s", ipA, ipB, ipC, ipD)
	}
	if got, _ := s.offer("b", nil, later); !got.Equal(ipB) {
		t.Fatalf("b lost its expired address: %s, want %s", got, ipB)
	}
	ipE, err := s.offer("e", nil, later)
	if err != nil || !ipE.Equal(ipA) {
		t.Fatalf("e got %s %v, want a's long-expired %s", ipE, err, ipA)
	}
	if got, _ := s.offer("a", nil, later); got.Equal(ipA) {
		t.Fatal("a got back an address that was reused")
	}
}

// TestNakForeignAddress: requesting an address held by another MAC, the
// server's, or outside the pool is refused; a free pool address is given.
func TestNakForeignAddress(t *testing.T) {
	s := newStore(t, testPool, "", testNow)
	ipA := bind(t, s, "a", testNow)
	for _, tc := range []struct {
		ip   net.IP
		want error
	}{
		{ipA, errTaken},
		{testServerIP, errOutsidePool}, // .1 is not in .100-.109
		{net.IPv4(198, 18, 0, 99), errOutsidePool},
		{net.IPv4(10, 0, 0, 1), errOutsidePool},
		{nil, errOutsidePool},
	} {
		if _, err := s.ack("b", tc.ip, "", testNow); !errors.Is(err, tc.want) {
			t.Errorf("b asking for %s: %v, want %v", tc.ip, err, tc.want)
		}
	}
	if l, err := s.ack("b", net.IPv4(198, 18, 0, 105), "", testNow); err != nil || l.MAC != "b" {
		t.Fatalf("free address refused: %v", err)
	}
	// The server's own address inside the pool is reserved.
	pool := Pool{Start: net.IPv4(198, 18, 0, 1), End: net.IPv4(198, 18, 0, 5)}
	s2 := newStore(t, pool, "", testNow)
	if _, err := s2.ack("b", testServerIP, "", testNow); !errors.Is(err, errReserved) {
		t.Fatalf("server address: %v", err)
	}
	for i := 0; i < 4; i++ {
		if ip := bind(t, s2, string(rune('a'+i)), testNow); ip.Equal(testServerIP) {
			t.Fatal("server address handed out")
		}
	}
}

// TestMACKeepsAddress: the same MAC gets the same address on every
// DISCOVER, also after a restart and after its lease expired.
func TestMACKeepsAddress(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, testPool, dir, testNow)
	for i := byte(0); i < 3; i++ {
		bind(t, s, mac(i).String(), testNow)
	}
	ip := bind(t, s, "x", testNow)
	for i := 0; i < 3; i++ {
		if got, _ := s.offer("x", nil, testNow.Add(time.Duration(i)*time.Minute)); !got.Equal(ip) {
			t.Fatalf("DISCOVER %d got %s, want %s", i, got, ip)
		}
	}
	r := newStore(t, testPool, dir, testNow.Add(48*time.Hour))
	if got, _ := r.offer("x", net.IPv4(198, 18, 0, 109), testNow.Add(48*time.Hour)); !got.Equal(ip) {
		t.Fatalf("after restart and expiry got %s, want %s", got, ip)
	}
}

func TestLeaseWriteFails(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, testPool, dir, testNow)
	var failed error
	s.saveFailed = func(err error) { failed = err }
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	// The store opened its journal at start; make the next open fail.
	s.journal.Close()
	s.journal = nil
	if os.Geteuid() == 0 {
		// root writes anyway; make the path a directory instead.
		os.Chmod(dir, 0o700)
		os.Remove(filepath.Join(dir, "leases.journal"))
		os.Mkdir(filepath.Join(dir, "leases.journal"), 0o700)
		os.WriteFile(filepath.Join(dir, "leases.journal", "x"), nil, 0o600)
	}
	ip := bind(t, s, "a", testNow)
	if failed == nil || !strings.HasPrefix(failed.Error(), "dhcp: write lease") {
		t.Fatalf("write failure not reported: %v", failed)
	}
	if ls := s.leases(); len(ls) != 1 || !ls[0].IP.Equal(ip) {
		t.Fatalf("lease lost in memory: %+v", ls)
	}
}

// TestLeaseJournalCrash: changes reach the journal at once, so a store that
// was never closed (a crash) loses nothing; a torn last line is ignored;
// close folds everything into leases.json.
func TestLeaseJournalCrash(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, testPool, dir, testNow)
	a := bind(t, s, mac(1).String(), testNow)
	b := bind(t, s, mac(2).String(), testNow)
	s.release(mac(2).String(), b, testNow)
	c := bind(t, s, mac(3).String(), testNow)
	if !s.decline(mac(3).String(), c, testNow) {
		t.Fatal("decline")
	}
	// A write cut short by the crash.
	f, err := os.OpenFile(filepath.Join(dir, "leases.journal"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"op":"bind","mac":"02:00:00:00:00:09","ip":"19`)
	f.Close()

	r := newStore(t, testPool, dir, testNow.Add(time.Minute))
	got := map[string]string{}
	for _, l := range r.leases() {
		got[l.MAC] = l.IP.String()
	}
	if got[mac(1).String()] != a.String() || got[mac(2).String()] != b.String() || len(got) != 2 {
		t.Fatalf("after crash: %v (want %s=%s, %s=%s)", got, mac(1), a, mac(2), b)
	}
	if ip, err := r.offer("02:00:00:00:00:77", c, testNow.Add(time.Minute)); err == nil && ip.Equal(c) {
		t.Errorf("declined address %s offered again within the hold", c)
	}
	if err := r.close(); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "leases.json"))
	var lf leaseFile
	if err := json.Unmarshal(raw, &lf); err != nil || len(lf.Leases) != 2 || len(lf.Declined) != 1 {
		t.Fatalf("snapshot after close: %v %s", err, raw)
	}
	if st, _ := os.Stat(filepath.Join(dir, "leases.journal")); st.Size() != 0 {
		t.Errorf("journal not emptied by close")
	}
}

// TestLeaseJournalCompacts: a long journal is folded into the snapshot.
func TestLeaseJournalCompacts(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, testPool, dir, testNow)
	ip := bind(t, s, mac(1).String(), testNow)
	for i := 0; i < compactMin+10; i++ {
		if _, err := s.ack(mac(1).String(), ip, "", testNow); err != nil {
			t.Fatal(err)
		}
	}
	s.sync() // the server calls it every second
	if s.journalLines != 0 {
		t.Errorf("journal has %d lines after sync; want it folded past %d", s.journalLines, compactMin)
	}
	if _, err := os.Stat(filepath.Join(dir, "leases.journal.old")); !os.IsNotExist(err) {
		t.Errorf("old journal left behind: %v", err)
	}
	// Changes after the rotation go to a new journal.
	other := bind(t, s, mac(2).String(), testNow)
	// A crash in the middle of a later rotation: the old journal is still
	// there next to a new one; both are replayed.
	os.Rename(filepath.Join(dir, "leases.journal"), filepath.Join(dir, "leases.journal.old"))
	third := bind(t, s, mac(3).String(), testNow)
	r := newStore(t, testPool, dir, testNow)
	got := map[string]string{}
	for _, l := range r.leases() {
		got[l.MAC] = l.IP.String()
	}
	if got[mac(2).String()] != other.String() || got[mac(3).String()] != third.String() || got[mac(1).String()] != ip.String() {
		t.Fatalf("after rotation and crash: %v", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "leases.journal.old")); !os.IsNotExist(err) {
		t.Errorf("old journal not folded in at start: %v", err)
	}
}
