package creds

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/server/ntlmssp"
)

func TestMintLookupRevoke(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	s := &Store{TTL: time.Hour, Now: func() time.Time { return now }}
	c, err := s.Mint("52:54:00:AB:CD:01")
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "nd-525400abcd01" || len(c.Password) != 24 || c.MAC != "52:54:00:ab:cd:01" {
		t.Fatalf("credential %+v", c)
	}
	if again, _ := s.Mint("52:54:00:ab:cd:01"); again != c {
		t.Fatalf("a second script fetch changed the credential: %+v", again)
	}
	other, _ := s.Mint("52:54:00:ab:cd:02")
	if other.Password == c.Password {
		t.Fatal("two clients share a password")
	}
	a, ok := s.Lookup("ND-525400ABCD01")
	if !ok || a.Name != c.Name || a.NTHash != ntlmssp.NTHash(c.Password) {
		t.Fatalf("lookup %+v %v", a, ok)
	}
	for _, u := range []string{"alice", "nd-525400abcd03", "", "nd-"} {
		if _, ok := s.Lookup(u); ok {
			t.Errorf("lookup %q found something", u)
		}
	}
	if !s.Revoke("52:54:00:ab:cd:01") {
		t.Fatal("revoke found nothing")
	}
	if _, ok := s.Lookup(c.Name); ok {
		t.Fatal("revoked credential still works")
	}
	if fresh, _ := s.Mint("52:54:00:ab:cd:01"); fresh.Password == c.Password {
		t.Fatal("a new deployment got the spent password")
	}
	// Expiry.
	now = now.Add(time.Hour)
	if _, ok := s.Lookup(other.Name); ok {
		t.Fatal("expired credential still works")
	}
	if next, _ := s.Mint("52:54:00:ab:cd:02"); next.Password == other.Password || !next.Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("expired credential reissued: %+v", next)
	}
}

func TestMintBadMAC(t *testing.T) {
	s := &Store{}
	for _, mac := range []string{"", "52:54:00:ab:cd", "52-54-00-ab-cd-01", "52:54:00:ab:cd:zz", "nd-525400abcd01", "52:54:00:ab:cd:01:02"} {
		if _, err := s.Mint(mac); !errors.Is(err, ErrBadMAC) {
			t.Errorf("Mint(%q): %v", mac, err)
		}
	}
}

func TestCap(t *testing.T) {
	now := time.Unix(0, 0)
	s := &Store{Max: 3, Now: func() time.Time { return now }}
	var first Credential
	for i := 0; i < 5; i++ {
		now = now.Add(time.Second)
		c, err := s.Mint("52:54:00:00:00:0" + string(rune('1'+i)))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = c
		}
	}
	if s.Len() != 3 {
		t.Fatalf("%d held, cap 3", s.Len())
	}
	if _, ok := s.Lookup(first.Name); ok {
		t.Fatal("the oldest survived the cap")
	}
}

func TestPassword(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		p := password()
		if len(p) != 24 || strings.Trim(p, "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789") != "" || seen[p] {
			t.Fatalf("password %q", p)
		}
		seen[p] = true
	}
}
