package dhcp

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Pool is the range of addresses an authoritative server leases, both ends
// included.
type Pool struct {
	Start, End net.IP
}

// Lease is one client's address.
type Lease struct {
	MAC      string    `json:"mac"`
	IP       net.IP    `json:"ip"`
	Expires  time.Time `json:"expires"`
	Hostname string    `json:"hostname,omitempty"`
}

// Expired reports whether the lease has run out at now.
func (l Lease) Expired(now time.Time) bool { return !l.Expires.After(now) }

// Lease store limits.
const (
	maxPoolSize   = 1 << 16          // addresses; larger pools are refused
	maxLeaseFile  = 64 << 20         // bytes read from leases.json
	offerHold     = 30 * time.Second // an OFFERed address is kept for its client
	declineHold   = 10 * time.Minute // a DECLINEd address is not offered again
	leaseFileName = "leases.json"
	// journalFileName holds the changes since leases.json was written.
	journalFileName = "leases.journal"
	compactMin      = 4096 // journal lines before a snapshot is considered
	syncEvery       = time.Second
	leaseVersion    = 1
)

// Errors of the lease store; the handler turns them into NAKs or events.
var (
	errPoolExhausted = errors.New("address pool exhausted")
	errOutsidePool   = errors.New("address is outside the pool")
	errReserved      = errors.New("address is reserved")
	errDeclined      = errors.New("address was declined as in use")
	errTaken         = errors.New("address is leased to another client")
)

func ipToU32(ip net.IP) (uint32, bool) {
	ip4 := ip.To4()
	if ip4 == nil {
		return 0, false
	}
	return binary.BigEndian.Uint32(ip4), true
}

func u32ToIP(v uint32) net.IP {
	ip := make(net.IP, net.IPv4len)
	binary.BigEndian.PutUint32(ip, v)
	return ip
}

// bounds checks the pool against the server's subnet.
func (p Pool) bounds(serverIP net.IP, mask net.IPMask) (start, end uint32, err error) {
	start, ok1 := ipToU32(p.Start)
	end, ok2 := ipToU32(p.End)
	switch {
	case !ok1 || !ok2:
		return 0, 0, fmt.Errorf("pool %s-%s is not IPv4", p.Start, p.End)
	case start > end:
		return 0, 0, fmt.Errorf("pool %s-%s is inverted", p.Start, p.End)
	case end-start >= maxPoolSize:
		return 0, 0, fmt.Errorf("pool %s-%s has more than %d addresses", p.Start, p.End, maxPoolSize)
	}
	if len(mask) == net.IPv4len && serverIP != nil {
		sub := &net.IPNet{IP: serverIP.Mask(mask), Mask: mask}
		if !sub.Contains(p.Start) || !sub.Contains(p.End) {
			return 0, 0, fmt.Errorf("pool %s-%s is outside the server's subnet %s", p.Start, p.End, sub)
		}
	}
	return start, end, nil
}

// entry is one address bound or offered to one MAC.
type entry struct {
	mac      string
	ip       uint32
	expires  time.Time // end of the bound lease; zero: offered, never bound
	hold     time.Time // end of the offer reservation
	hostname string
}

// free reports whether the address may go to another MAC at now.
func (e *entry) free(now time.Time) bool {
	return !e.expires.After(now) && !e.hold.After(now)
}

func (e *entry) lease() Lease {
	return Lease{MAC: e.mac, IP: u32ToIP(e.ip), Expires: e.expires, Hostname: e.hostname}
}

// leaseStore hands out addresses from a pool. Every address is held by at
// most one MAC and every MAC holds at most one address. Bound leases are
// written to dir/leases.json on every change (dir "" keeps them in memory).
// Safe for concurrent use.
type leaseStore struct {
	start, end uint32
	exclude    map[uint32]bool
	leaseTime  time.Duration
	dir        string
	// saveFailed is told when leases.json cannot be written; the leases
	// in memory stay valid.
	saveFailed func(error)

	mu    sync.Mutex
	byIP  map[uint32]*entry
	byMAC map[string]*entry
	bad   map[uint32]time.Time // declined until
	// cursor is where the search for a never-used address resumes, so a
	// busy pool is not scanned from its start for every DISCOVER.
	cursor uint32

	// The journal (dir/leases.journal) gets one JSON line per change,
	// written at once; it is synced to disk every syncEvery and folded
	// into leases.json when it grows. A crash of netdeploy loses nothing
	// (the lines are in the kernel); a power cut loses at most syncEvery.
	journal      *os.File
	journalLines int
	dirty        bool // journal written since the last sync
}

// newLeaseStore loads dir/leases.json (if dir is set) for a pool. exclude
// lists addresses never handed out (the server's own, the router); the
// subnet's network and broadcast addresses are excluded when mask is set.
func newLeaseStore(pool Pool, serverIP net.IP, mask net.IPMask, exclude []net.IP, leaseTime time.Duration, dir string, now time.Time) (*leaseStore, error) {
	start, end, err := pool.bounds(serverIP, mask)
	if err != nil {
		return nil, err
	}
	s := &leaseStore{
		start: start, end: end,
		exclude:   map[uint32]bool{},
		leaseTime: leaseTime,
		dir:       dir,
		byIP:      map[uint32]*entry{},
		byMAC:     map[string]*entry{},
		bad:       map[uint32]time.Time{},
	}
	for _, ip := range append([]net.IP{serverIP}, exclude...) {
		if v, ok := ipToU32(ip); ok {
			s.exclude[v] = true
		}
	}
	if len(mask) == net.IPv4len && serverIP != nil {
		m := binary.BigEndian.Uint32(mask)
		if m != 0xffffffff && m != 0xfffffffe { // /31 and /32 have none
			netw, _ := ipToU32(serverIP.Mask(mask))
			s.exclude[netw] = true
			s.exclude[netw|^m] = true
		}
	}
	s.cursor = start
	if dir != "" {
		if err := s.load(now); err != nil {
			return nil, err
		}
		if err := s.replay(now); err != nil {
			return nil, err
		}
		// Start every run from one snapshot and an empty journal.
		if err := s.compactLocked(); err != nil {
			return nil, fmt.Errorf("write leases: %w", err)
		}
	}
	return s, nil
}

func (s *leaseStore) inPool(ip uint32) bool { return ip >= s.start && ip <= s.end }

// usable reports whether ip may be handed out at all at now.
func (s *leaseStore) usable(ip uint32, now time.Time) bool {
	if !s.inPool(ip) || s.exclude[ip] {
		return false
	}
	if until, ok := s.bad[ip]; ok {
		if until.After(now) {
			return false
		}
		delete(s.bad, ip)
	}
	return true
}

func (s *leaseStore) insert(e *entry) {
	s.byIP[e.ip] = e
	s.byMAC[e.mac] = e
}

func (s *leaseStore) remove(e *entry) {
	if s.byIP[e.ip] == e {
		delete(s.byIP, e.ip)
	}
	if s.byMAC[e.mac] == e {
		delete(s.byMAC, e.mac)
	}
}

// offer picks an address for mac and reserves it for offerHold: the one mac
// already has, else want (option 50) if free, else a never-used one, else
// the one that expired longest ago.
func (s *leaseStore) offer(mac string, want net.IP, now time.Time) (net.IP, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.byMAC[mac]; e != nil {
		if s.usable(e.ip, now) {
			e.hold = now.Add(offerHold)
			return u32ToIP(e.ip), nil
		}
		s.remove(e)
		if !e.expires.IsZero() {
			s.logLocked(journalRecord{Op: opDrop, MAC: e.mac, IP: u32ToIP(e.ip)})
		}
	}
	take := func(ip uint32) net.IP {
		s.insert(&entry{mac: mac, ip: ip, hold: now.Add(offerHold)})
		return u32ToIP(ip)
	}
	if w, ok := ipToU32(want); ok && s.usable(w, now) && s.byIP[w] == nil {
		return take(w), nil
	}
	// Never-used addresses first, resuming where the last search ended
	// and wrapping once round the pool.
	for i, ip := uint32(0), s.cursor; i <= s.end-s.start; i++ {
		if s.byIP[ip] == nil && s.usable(ip, now) {
			s.cursor = ip
			return take(ip), nil
		}
		if ip == s.end {
			ip = s.start
		} else {
			ip++
		}
	}
	var best *entry
	for _, e := range s.byIP {
		if !e.free(now) || !s.usable(e.ip, now) {
			continue
		}
		if best == nil || e.expires.Before(best.expires) || (e.expires.Equal(best.expires) && e.ip < best.ip) {
			best = e
		}
	}
	if best == nil {
		return nil, errPoolExhausted
	}
	s.remove(best)
	if !best.expires.IsZero() {
		s.logLocked(journalRecord{Op: opDrop, MAC: best.mac, IP: u32ToIP(best.ip)})
	}
	return take(best.ip), nil
}

// ack binds ip to mac for the lease time, or says why it may not.
func (s *leaseStore) ack(mac string, addr net.IP, hostname string, now time.Time) (Lease, error) {
	ip, ok := ipToU32(addr)
	if !ok {
		return Lease{}, errOutsidePool
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !s.inPool(ip):
		return Lease{}, errOutsidePool
	case s.exclude[ip]:
		return Lease{}, errReserved
	case !s.usable(ip, now):
		return Lease{}, errDeclined
	}
	e := s.byIP[ip]
	if e != nil && e.mac != mac {
		if !e.free(now) {
			return Lease{}, errTaken
		}
		s.remove(e)
		if !e.expires.IsZero() {
			s.logLocked(journalRecord{Op: opDrop, MAC: e.mac, IP: u32ToIP(e.ip)})
		}
		e = nil
	}
	if old := s.byMAC[mac]; old != nil && old != e {
		s.remove(old)
		if !old.expires.IsZero() {
			s.logLocked(journalRecord{Op: opDrop, MAC: old.mac, IP: u32ToIP(old.ip)})
		}
	}
	if e == nil {
		e = &entry{mac: mac, ip: ip}
		s.insert(e)
	}
	e.expires = now.Add(s.leaseTime)
	e.hold = time.Time{}
	if hostname != "" {
		e.hostname = hostname
	}
	s.logLocked(journalRecord{Op: opBind, MAC: e.mac, IP: u32ToIP(e.ip), Expires: e.expires, Hostname: e.hostname})
	return e.lease(), nil
}

// release ends mac's lease on ip now. mac keeps its claim to the address
// until another client needs it.
func (s *leaseStore) release(mac string, addr net.IP, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.heldLocked(mac, addr)
	if e == nil {
		return false
	}
	e.hold = time.Time{}
	if e.expires.After(now) {
		e.expires = now
	}
	s.logLocked(journalRecord{Op: opBind, MAC: e.mac, IP: u32ToIP(e.ip), Expires: e.expires, Hostname: e.hostname})
	return true
}

// decline drops mac's claim to ip and keeps ip out of use for declineHold.
// A client can only decline the address it was given.
func (s *leaseStore) decline(mac string, addr net.IP, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.heldLocked(mac, addr)
	if e == nil {
		return false
	}
	s.remove(e)
	s.bad[e.ip] = now.Add(declineHold)
	s.logLocked(journalRecord{Op: opDecline, MAC: e.mac, IP: u32ToIP(e.ip), Expires: s.bad[e.ip]})
	return true
}

// heldLocked returns the entry for addr if mac holds it, else nil.
func (s *leaseStore) heldLocked(mac string, addr net.IP) *entry {
	ip, ok := ipToU32(addr)
	if !ok {
		return nil
	}
	if e := s.byIP[ip]; e != nil && e.mac == mac {
		return e
	}
	return nil
}

// cancelOffer ends mac's offer reservation (it chose another server).
func (s *leaseStore) cancelOffer(mac string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.byMAC[mac]; e != nil {
		e.hold = time.Time{}
	}
}

// leases returns every bound lease (active or expired), by address.
func (s *leaseStore) leases() []Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leasesLocked()
}

func (s *leaseStore) leasesLocked() []Lease {
	out := s.boundLocked()
	sortLeases(out)
	return out
}

// boundLocked copies the bound leases, unsorted (cheap enough to run
// under the lock while requests wait).
func (s *leaseStore) boundLocked() []Lease {
	out := make([]Lease, 0, len(s.byIP))
	for _, e := range s.byIP {
		if !e.expires.IsZero() {
			out = append(out, e.lease())
		}
	}
	return out
}

// sortLeases orders leases by address.
func sortLeases(l []Lease) {
	slices.SortFunc(l, func(a, b Lease) int {
		x, _ := ipToU32(a.IP)
		y, _ := ipToU32(b.IP)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	})
}

// leaseFile is the JSON form of dir/leases.json.
type leaseFile struct {
	Version  int            `json:"version"`
	Leases   []Lease        `json:"leases"`
	Declined []declinedAddr `json:"declined,omitempty"`
}

type declinedAddr struct {
	IP    net.IP    `json:"ip"`
	Until time.Time `json:"until"`
}

func (s *leaseStore) path() string { return filepath.Join(s.dir, leaseFileName) }

// load reads the lease file. Leases outside the pool, on excluded
// addresses or clashing with a later-expiring one are dropped.
func (s *leaseStore) load(now time.Time) error {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("lease directory: %w", err)
	}
	f, err := os.Open(s.path())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read leases: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxLeaseFile+1))
	if err != nil {
		return fmt.Errorf("read leases: %w", err)
	}
	if len(b) > maxLeaseFile {
		return fmt.Errorf("read leases: %s is larger than %d bytes", s.path(), maxLeaseFile)
	}
	var lf leaseFile
	if err := json.Unmarshal(b, &lf); err != nil {
		return fmt.Errorf("read leases: %s: %w", s.path(), err)
	}
	if lf.Version != leaseVersion {
		return fmt.Errorf("read leases: %s has version %d, want %d", s.path(), lf.Version, leaseVersion)
	}
	for _, d := range lf.Declined {
		if ip, ok := ipToU32(d.IP); ok && s.inPool(ip) && d.Until.After(now) {
			s.bad[ip] = d.Until
		}
	}
	for _, l := range lf.Leases {
		ip, ok := ipToU32(l.IP)
		if !ok || l.MAC == "" || len(l.MAC) > 3*maxHWAddrLen || l.Expires.IsZero() || !s.usable(ip, now) {
			continue
		}
		e := &entry{mac: l.MAC, ip: ip, expires: l.Expires, hostname: l.Hostname}
		if o := s.byIP[ip]; o != nil {
			if !e.expires.After(o.expires) {
				continue
			}
			s.remove(o)
		}
		if o := s.byMAC[e.mac]; o != nil {
			if !e.expires.After(o.expires) {
				continue
			}
			s.remove(o)
		}
		s.insert(e)
	}
	return nil
}

// journal operations.
const (
	opBind    = "bind"    // MAC holds IP until Expires
	opDrop    = "drop"    // MAC no longer holds IP
	opDecline = "decline" // IP is out of use until Expires
)

// journalRecord is one line of dir/leases.journal.
type journalRecord struct {
	Op       string    `json:"op"`
	MAC      string    `json:"mac,omitempty"`
	IP       net.IP    `json:"ip"`
	Expires  time.Time `json:"expires,omitzero"`
	Hostname string    `json:"hostname,omitempty"`
}

func (s *leaseStore) journalPath() string { return filepath.Join(s.dir, journalFileName) }

// oldJournalPath is a journal being folded into a snapshot.
func (s *leaseStore) oldJournalPath() string { return s.journalPath() + ".old" }

// replay applies the journals written after the last snapshot, the one
// being folded first.
func (s *leaseStore) replay(now time.Time) error {
	if err := s.replayFile(s.oldJournalPath(), now); err != nil {
		return err
	}
	return s.replayFile(s.journalPath(), now)
}

// replayFile applies one journal. A torn last line (a crash in the middle
// of a write) is ignored.
func (s *leaseStore) replayFile(path string, now time.Time) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read lease journal: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxLeaseFile))
	sc.Buffer(make([]byte, 4096), 4096)
	for sc.Scan() {
		var r journalRecord
		if json.Unmarshal(sc.Bytes(), &r) != nil {
			continue
		}
		ip, ok := ipToU32(r.IP)
		if !ok || !s.inPool(ip) {
			continue
		}
		switch r.Op {
		case opBind:
			if r.MAC == "" || len(r.MAC) > 3*maxHWAddrLen || r.Expires.IsZero() || s.exclude[ip] {
				continue
			}
			if o := s.byIP[ip]; o != nil {
				s.remove(o)
			}
			if o := s.byMAC[r.MAC]; o != nil {
				s.remove(o)
			}
			s.insert(&entry{mac: r.MAC, ip: ip, expires: r.Expires, hostname: r.Hostname})
		case opDrop:
			if o := s.byIP[ip]; o != nil && o.mac == r.MAC {
				s.remove(o)
			}
		case opDecline:
			if o := s.byIP[ip]; o != nil {
				s.remove(o)
			}
			if r.Expires.After(now) {
				s.bad[ip] = r.Expires
			}
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, bufio.ErrTooLong) {
		return fmt.Errorf("read lease journal: %w", err)
	}
	return nil
}

// logLocked appends one change to the journal (one write, no fsync: see
// sync). Failures go to saveFailed; the leases in memory stay valid.
func (s *leaseStore) logLocked(r journalRecord) {
	if s.dir == "" {
		return
	}
	if err := s.appendLocked(r); err != nil && s.saveFailed != nil {
		s.saveFailed(err)
	}
}

func (s *leaseStore) appendLocked(r journalRecord) error {
	if s.journal == nil {
		f, err := os.OpenFile(s.journalPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("dhcp: write lease journal: %w", err)
		}
		s.journal = f
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("dhcp: encode lease: %w", err)
	}
	if _, err := s.journal.Write(append(b, '\n')); err != nil {
		// Start afresh from a snapshot next time.
		s.journal.Close()
		s.journal = nil
		return fmt.Errorf("dhcp: write lease journal: %w", err)
	}
	s.journalLines++
	s.dirty = true
	return nil
}

// sync flushes the journal to disk if it changed, and folds a long journal
// into a new snapshot. It runs every syncEvery from the server's own
// goroutine; the slow parts (fsync, encoding, writing the snapshot) run
// without the store's lock, so answering never waits for the disk.
func (s *leaseStore) sync() {
	s.mu.Lock()
	j := s.journal
	dirty := s.dirty
	s.dirty = false
	compact := s.journalLines > compactMin && s.journalLines > 2*len(s.byIP)
	s.mu.Unlock()
	if dirty && j != nil {
		if err := j.Sync(); err != nil && !errors.Is(err, os.ErrClosed) && s.saveFailed != nil {
			s.saveFailed(fmt.Errorf("dhcp: sync lease journal: %w", err))
		}
	}
	if compact {
		if err := s.rotate(); err != nil && s.saveFailed != nil {
			s.saveFailed(err)
		}
	}
}

// rotate moves the journal aside (new changes start a new one), writes a
// snapshot of the state at that moment, then removes the old journal. A
// crash at any point leaves files that load to the same leases: the old
// journal is replayed before the new one, and replaying it over a newer
// snapshot changes nothing.
func (s *leaseStore) rotate() error {
	s.mu.Lock()
	if s.journal != nil {
		s.journal.Sync()
		s.journal.Close()
		s.journal = nil
	}
	if err := os.Rename(s.journalPath(), s.oldJournalPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.mu.Unlock()
		return fmt.Errorf("dhcp: rotate lease journal: %w", err)
	}
	s.journalLines = 0
	lf := s.snapshotLocked(false)
	s.mu.Unlock()
	sortLeases(lf.Leases)
	if err := writeSnapshot(s.path(), lf); err != nil {
		return err
	}
	if err := os.Remove(s.oldJournalPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("dhcp: remove old lease journal: %w", err)
	}
	return nil
}

// close writes a final snapshot (leaving an empty journal) and closes the
// journal.
func (s *leaseStore) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" {
		return nil
	}
	err := s.compactLocked()
	if s.journal != nil {
		s.journal.Close()
		s.journal = nil
	}
	return err
}

// compactLocked writes leases.json atomically (temporary file, fsync,
// rename, fsync of the directory) and then empties the journals.
func (s *leaseStore) compactLocked() error {
	if err := writeSnapshot(s.path(), s.snapshotLocked(true)); err != nil {
		return err
	}
	if s.journal != nil {
		s.journal.Close()
		s.journal = nil
	}
	if err := os.Truncate(s.journalPath(), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("dhcp: truncate lease journal: %w", err)
	}
	if err := os.Remove(s.oldJournalPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("dhcp: remove old lease journal: %w", err)
	}
	s.journalLines, s.dirty = 0, false
	return nil
}

// snapshotLocked copies the state for leases.json, with the leases sorted
// by address or (sorted false) to be sorted by the caller after unlocking.
func (s *leaseStore) snapshotLocked(sorted bool) leaseFile {
	lf := leaseFile{Version: leaseVersion, Leases: s.boundLocked()}
	if sorted {
		sortLeases(lf.Leases)
	}
	for ip, until := range s.bad {
		lf.Declined = append(lf.Declined, declinedAddr{IP: u32ToIP(ip), Until: until})
	}
	slices.SortFunc(lf.Declined, func(a, b declinedAddr) int { return a.Until.Compare(b.Until) })
	return lf
}

func writeSnapshot(path string, lf leaseFile) error {
	b, err := json.MarshalIndent(lf, "", "  ")
	if err != nil {
		return fmt.Errorf("dhcp: encode leases: %w", err)
	}
	return writeFileAtomic(path, append(b, '\n'))
}

func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("dhcp: write leases: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("dhcp: write leases: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("dhcp: write leases: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("dhcp: write leases: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("dhcp: write leases: %w", err)
	}
	ok = true
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("dhcp: write leases: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("dhcp: write leases: sync %s: %w", dir, err)
	}
	return nil
}
