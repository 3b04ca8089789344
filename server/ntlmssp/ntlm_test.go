package ntlmssp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/oiweiwei/go-msrpc/ssp/credential"
	"github.com/oiweiwei/go-msrpc/ssp/ntlm"
)

// ntlmClient is go-msrpc's NTLM initiator.
func ntlmClient(user, password string, cfg *ntlm.Config) *ntlm.Authentifier {
	if cfg == nil {
		cfg = ntlm.NewConfig()
	}
	cfg.Credential = credential.NewFromPassword(user, password)
	cfg.Confidentiality = true
	return &ntlm.Authentifier{Config: cfg}
}

// logon runs NEGOTIATE, CHALLENGE and AUTHENTICATE between a go-msrpc
// client and an acceptor; edit may change the AUTHENTICATE first.
func logon(t *testing.T, acc *Acceptor, cli *ntlm.Authentifier, edit func([]byte)) error {
	t.Helper()
	ctx := context.Background()
	neg, err := cli.Negotiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ch, done, err := acc.Step(neg)
	if err != nil || done {
		t.Fatalf("NEGOTIATE: done %t, %v", done, err)
	}
	auth, err := cli.Authenticate(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(auth)
	}
	_, done, err = acc.Step(auth)
	if err == nil && !done {
		t.Fatal("AUTHENTICATE accepted but not done")
	}
	return err
}

func newAcceptor(accounts []Account, timestamp bool) *Acceptor {
	return NewAcceptor(context.Background(), Config{Computer: testComputer, Accounts: accounts,
		RequireESS: true, RequireSeal: true, NoTimestamp: !timestamp})
}

// ntResponseAVPairs returns the AV_PAIRs of the AUTHENTICATE's NTLMv2
// response (aliasing msg).
func ntResponseAVPairs(msg []byte) []byte {
	return field(msg, 20)[ntlmv2Min:]
}

func TestNTLMMIC(t *testing.T) {
	accounts := testAccounts()

	// MsvAvTimestamp in the CHALLENGE: go-msrpc flags and sends a MIC.
	acc := newAcceptor(accounts, true)
	if err := logon(t, acc, ntlmClient(testUser, testPassword, nil), nil); err != nil {
		t.Fatalf("logon with a MIC: %v", err)
	}
	if !acc.micFlag || acc.account != testUser {
		t.Errorf("MIC flagged %t, account %q", acc.micFlag, acc.account)
	}

	// A flagged MIC that is wrong fails the logon.
	acc = newAcceptor(accounts, true)
	err := logon(t, acc, ntlmClient(testUser, testPassword, nil), func(m []byte) { m[ntlmMICOffset] ^= 1 })
	if err == nil {
		t.Fatal("logon with a corrupted MIC succeeded")
	}
	if acc.account != "" {
		t.Errorf("account %q after a failed logon", acc.account)
	}

	// Clearing MIC_PROVIDED in MsvAvFlags breaks the NTLMv2 proof (the
	// flags are inside the HMAC), so the MIC cannot be stripped.
	acc = newAcceptor(accounts, true)
	err = logon(t, acc, ntlmClient(testUser, testPassword, nil), func(m []byte) {
		av := ntResponseAVPairs(m)
		for len(av) >= 4 {
			id, n := binary.LittleEndian.Uint16(av), int(binary.LittleEndian.Uint16(av[2:]))
			if id == avFlags {
				av[4] &^= avFlagMIC
			}
			if id == avEOL {
				break
			}
			av = av[4+n:]
		}
	})
	if !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("logon with MIC_PROVIDED cleared: %v, want a wrong password", err)
	}

	// No MsvAvTimestamp: go-msrpc sends no MIC flag, and go-msrpc's
	// own VerifyAuthenticate would refuse that; the acceptor does not.
	acc = newAcceptor(accounts, false)
	if err := logon(t, acc, ntlmClient(testUser, testPassword, nil), nil); err != nil {
		t.Fatalf("logon without a MIC: %v", err)
	}
	if acc.micFlag || acc.account != testUser {
		t.Errorf("MIC flagged %t, account %q", acc.micFlag, acc.account)
	}
}

func TestNTLMSealRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, timestamp := range []bool{true, false} {
		acc := newAcceptor(testAccounts(), timestamp)
		cli := ntlmClient(testUser, testPassword, nil)
		if err := logon(t, acc, cli, nil); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			// client -> server
			hdr, trailer := []byte("header"), []byte("trailer!")
			plain := []byte("request body")
			body := bytes.Clone(plain)
			chk, _ := cli.MakeOutboundChecksum(ctx, [][]byte{hdr, body, trailer})
			cli.ApplyOutboundCipher(ctx, body)
			sig, _ := cli.MakeOutboundSignature(ctx, chk)
			if bytes.Equal(body, plain) {
				t.Fatal("client seal left the body in clear")
			}
			if err := acc.Unwrap(hdr, body, trailer, sig, true); err != nil {
				t.Fatalf("message %d: unwrap: %v", i, err)
			}
			if !bytes.Equal(body, plain) {
				t.Fatalf("message %d: unsealed %q", i, body)
			}
			// server -> client
			body = []byte("response body")
			sig = make([]byte, SignatureLen)
			if err := acc.Wrap(hdr, body, trailer, sig, true); err != nil {
				t.Fatal(err)
			}
			cli.ApplyInboundCipher(ctx, body)
			chk, _ = cli.MakeInboundChecksum(ctx, [][]byte{hdr, body, trailer})
			want, _ := cli.MakeInboundSignature(ctx, chk)
			if string(body) != "response body" || !bytes.Equal(sig, want) {
				t.Fatalf("message %d: client sees %q, signature ok %t", i, body, bytes.Equal(sig, want))
			}
		}
		// A replayed or altered message fails.
		body := []byte("x")
		if err := acc.Unwrap([]byte("h"), body, nil, make([]byte, SignatureLen), true); !errors.Is(err, ErrBadSignature) {
			t.Errorf("forged signature: %v", err)
		}
	}
}

func TestNTLMAccounts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		accounts []Account
		user     string
		password string
		want     error
	}{
		{"plain", []Account{{Name: "alice", NTHash: NTHash("pw")}}, "alice", "pw", nil},
		{"case-insensitive name", []Account{{Name: "Alice", NTHash: NTHash("pw")}}, "ALICE", "pw", nil},
		{"domain sent", []Account{{Name: "alice", NTHash: NTHash("pw")}}, `WORKGROUP\alice`, "pw", nil},
		{"domain required", []Account{{Name: `netdeploy\alice`, NTHash: NTHash("pw")}}, `NETDEPLOY\alice`, "pw", nil},
		{"other domain", []Account{{Name: `OTHER\alice`, NTHash: NTHash("pw")}}, `NETDEPLOY\alice`, "pw", ErrUnknownUser},
		{"wrong password", []Account{{Name: "alice", NTHash: NTHash("pw")}}, "alice", "Pw", ErrWrongPassword},
		{"no accounts", nil, "alice", "pw", ErrUnknownUser},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acc := newAcceptor(tc.accounts, true)
			err := logon(t, acc, ntlmClient(tc.user, tc.password, nil), nil)
			if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
				t.Fatalf("logon: %v, want %v", err, tc.want)
			}
			if tc.want == nil && acc.account != tc.accounts[0].Name {
				t.Errorf("account %q", acc.account)
			}
		})
	}
}

func TestNTLMv1Refused(t *testing.T) {
	cfg := ntlm.NewConfigFromAuthLevel(ntlm.NTLMv1WithESS)
	cfg.Require128BitEncryption = true
	acc := newAcceptor(testAccounts(), true)
	err := logon(t, acc, ntlmClient(testUser, testPassword, cfg), nil)
	if !errors.Is(err, ErrNTLMv1) {
		t.Fatalf("NTLMv1 logon: %v", err)
	}
}

func TestNTLMFlagsForLevel(t *testing.T) {
	ctx := context.Background()
	neg, err := ntlmClient(testUser, testPassword, nil).Negotiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	flags := binary.LittleEndian.Uint32(neg[12:])
	for _, tc := range []struct {
		name  string
		clear uint32
		ess   bool
		seal  bool
		ok    bool
	}{
		{"full", 0, true, true, true},
		{"no seal, seal required", ntlmFlagSeal, true, true, false},
		{"no seal, signing only", ntlmFlagSeal, true, false, true},
		{"no ESS, ESS required", ntlmFlagESS, true, false, false},
		{"no ESS, nothing required", ntlmFlagESS, false, false, true},
	} {
		m := bytes.Clone(neg)
		binary.LittleEndian.PutUint32(m[12:], flags&^tc.clear)
		acc := NewAcceptor(ctx, Config{Computer: testComputer, RequireESS: tc.ess, RequireSeal: tc.seal})
		_, _, err := acc.Step(m)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestCheckAuthenticateRejects(t *testing.T) {
	ctx := context.Background()
	acc := newAcceptor(testAccounts(), true)
	cli := ntlmClient(testUser, testPassword, nil)
	neg, _ := cli.Negotiate(ctx)
	ch, _, err := acc.Step(neg)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := cli.Authenticate(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CheckAuthenticate(auth); err != nil {
		t.Fatalf("valid AUTHENTICATE: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func([]byte) []byte
	}{
		{"truncated", func(m []byte) []byte { return m[:60] }},
		{"NT offset outside", func(m []byte) []byte { binary.LittleEndian.PutUint32(m[24:], 0xfffffff0); return m }},
		{"NT length outside", func(m []byte) []byte { binary.LittleEndian.PutUint16(m[20:], 0xffff); return m }},
		{"short NTLMv2 response", func(m []byte) []byte { binary.LittleEndian.PutUint16(m[20:], 30); return m }},
		{"MsvAvFlags of 2 bytes", func(m []byte) []byte {
			av := ntResponseAVPairs(m)
			binary.LittleEndian.PutUint16(av, avFlags)
			binary.LittleEndian.PutUint16(av[2:], 2)
			return m
		}},
		{"AV_PAIR past the end", func(m []byte) []byte {
			av := ntResponseAVPairs(m)
			binary.LittleEndian.PutUint16(av[2:], 0xfff0)
			return m
		}},
		{"wrong type", func(m []byte) []byte { m[8] = 2; return m }},
	} {
		if _, err := CheckAuthenticate(tc.edit(bytes.Clone(auth))); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// TestWithVersionAndMIC: an AUTHENTICATE whose payload starts at 64 (no
// Version, no MIC, as impacket sends it) is laid out again from 88 with
// every field's bytes unchanged.
func TestWithVersionAndMIC(t *testing.T) {
	payload := []byte("LMRESP--NTRESPONSEDOMAINUSERWKSKEY")
	fields := [][2]int{{0, 8}, {8, 10}, {18, 6}, {24, 4}, {28, 3}, {31, 3}} // offset in payload, length
	msg := make([]byte, 64)
	copy(msg, "NTLMSSP\x00\x03\x00\x00\x00")
	for i, at := range []int{12, 20, 28, 36, 44, 52} {
		binary.LittleEndian.PutUint16(msg[at:], uint16(fields[i][1]))
		binary.LittleEndian.PutUint16(msg[at+2:], uint16(fields[i][1]))
		binary.LittleEndian.PutUint32(msg[at+4:], uint32(64+fields[i][0]))
	}
	msg = append(msg, payload...)
	out := withVersionAndMIC(msg)
	if len(out) != len(msg)+24 {
		t.Fatalf("length %d, want %d", len(out), len(msg)+24)
	}
	for i, at := range []int{12, 20, 28, 36, 44, 52} {
		off := int(binary.LittleEndian.Uint32(out[at+4:]))
		if off != 88+fields[i][0] || string(out[off:off+fields[i][1]]) != string(payload[fields[i][0]:fields[i][0]+fields[i][1]]) {
			t.Errorf("field %d at %d: %q", i, off, out[off:off+fields[i][1]])
		}
	}
	if full := withVersionAndMIC(out); len(full) != len(out) {
		t.Errorf("a full message was changed")
	}
	if short := withVersionAndMIC(msg[:40]); len(short) != 40 {
		t.Errorf("a short message was changed")
	}
}

// TestNTLMLookup checks the accounts found beyond the list (one-time
// credentials): matched by name, checked like any other.
func TestNTLMLookup(t *testing.T) {
	lookup := func(user string) (Account, bool) {
		if user == "nd-525400000001" {
			return Account{Name: user, NTHash: NTHash("once")}, true
		}
		return Account{}, false
	}
	for _, tc := range []struct {
		user, password string
		want           error
	}{
		{"nd-525400000001", "once", nil},
		{"nd-525400000001", "twice", ErrWrongPassword},
		{"nd-525400000002", "once", ErrUnknownUser},
		{testUser, testPassword, nil},
	} {
		acc := NewAcceptor(context.Background(), Config{Computer: testComputer, Accounts: testAccounts(), Lookup: lookup})
		err := logon(t, acc, ntlmClient(tc.user, tc.password, nil), nil)
		if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
			t.Errorf("%s/%s: %v, want %v", tc.user, tc.password, err, tc.want)
		}
		if tc.want == nil && acc.account != tc.user {
			t.Errorf("%s: account %q", tc.user, acc.account)
		}
	}
}
