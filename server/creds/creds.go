// Package creds mints the one-time logons that approved clients find in
// their boot script: one per MAC, good for one deployment. The RPC and
// SMB servers look them up beside the configured accounts.
package creds

import (
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/netdeploy/netdeploy/server/ntlmssp"
)

// DefaultTTL is how long an unused credential stays valid.
const DefaultTTL = 12 * time.Hour

// DefaultMax caps the credentials held at once.
const DefaultMax = 4096

// Prefix starts every one-time account name, so it never collides with
// an operator's account.
const Prefix = "nd-"

// ErrBadMAC is returned for a MAC that is not six colon-separated octets.
var ErrBadMAC = errors.New("creds: not a MAC address")

// Credential is a one-time logon.
type Credential struct {
	Name     string
	Password string
	MAC      string
	Expires  time.Time
}

// Store holds the live credentials. The zero value is ready to use.
type Store struct {
	// TTL is how long a credential lives; 0: DefaultTTL.
	TTL time.Duration
	// Max caps how many are held; the oldest goes first. 0: DefaultMax.
	Max int
	// Now is the clock; nil: time.Now.
	Now func() time.Time

	mu     sync.Mutex
	byName map[string]*entry // lower-case name
}

type entry struct {
	Credential
	hash  [16]byte
	since time.Time
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// NameFor is the account name of mac's credential: nd- and the twelve hex
// digits, within the 20 characters a SAM account name allows.
func NameFor(mac string) (string, error) {
	hex := strings.ReplaceAll(strings.ToLower(mac), ":", "")
	if len(hex) != 12 || len(mac) != 17 || strings.Trim(hex, "0123456789abcdef") != "" {
		return "", ErrBadMAC
	}
	return Prefix + hex, nil
}

// Mint returns mac's credential: the live one if there is one (a client
// that fetches its script twice keeps its password), else a new one.
func (s *Store) Mint(mac string) (Credential, error) {
	name, err := NameFor(mac)
	if err != nil {
		return Credential{}, err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byName == nil {
		s.byName = map[string]*entry{}
	}
	if e := s.byName[name]; e != nil && now.Before(e.Expires) {
		return e.Credential, nil
	}
	s.prune(now)
	ttl := s.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	pw := password()
	e := &entry{Credential: Credential{Name: name, Password: pw, MAC: strings.ToLower(mac), Expires: now.Add(ttl)},
		hash: ntlmssp.NTHash(pw), since: now}
	s.byName[name] = e
	return e.Credential, nil
}

// prune drops expired credentials and, over the cap, the oldest.
func (s *Store) prune(now time.Time) {
	for k, e := range s.byName {
		if !now.Before(e.Expires) {
			delete(s.byName, k)
		}
	}
	limit := s.Max
	if limit <= 0 {
		limit = DefaultMax
	}
	for len(s.byName) >= limit {
		var oldest *entry
		for _, e := range s.byName {
			if oldest == nil || e.since.Before(oldest.since) {
				oldest = e
			}
		}
		delete(s.byName, oldest.Name)
	}
}

// Lookup finds a live credential by account name (any case), for
// ntlmssp.Config.Lookup.
func (s *Store) Lookup(user string) (ntlmssp.Account, bool) {
	if !strings.HasPrefix(strings.ToLower(user), Prefix) {
		return ntlmssp.Account{}, false
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.byName[strings.ToLower(user)]
	if e == nil || !now.Before(e.Expires) {
		return ntlmssp.Account{}, false
	}
	return ntlmssp.Account{Name: e.Name, NTHash: e.hash}, true
}

// Revoke ends mac's credential (its deployment finished).
func (s *Store) Revoke(mac string) bool {
	name, err := NameFor(mac)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.byName[name]
	delete(s.byName, name)
	return ok
}

// Len is the number of credentials held (expired ones included until the
// next Mint).
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byName)
}

// password is 24 letters and digits from crypto/rand (about 142 bits);
// nothing in it needs quoting on a kernel command line or in iPXE.
func password() string {
	const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
	b := make([]byte, 24)
	buf := make([]byte, 1)
	for i := range b {
		for {
			rand.Read(buf)
			// Rejection sampling keeps every letter equally likely.
			if int(buf[0]) < 256-256%len(alphabet) {
				b[i] = alphabet[int(buf[0])%len(alphabet)]
				break
			}
		}
	}
	return string(b)
}
