package ntlmssp

import (
	"context"
	"encoding/asn1"
	"testing"

	"github.com/oiweiwei/go-msrpc/ssp/spnego"
)

// FuzzNTLMAuthenticate feeds NEGOTIATE and AUTHENTICATE tokens to the
// NTLM acceptor (and so to go-msrpc's parser behind it).
func FuzzNTLMAuthenticate(f *testing.F) {
	ctx := context.Background()
	for _, timestamp := range []bool{true, false} {
		cli := ntlmClient(testUser, testPassword, nil)
		neg, _ := cli.Negotiate(ctx)
		acc := newAcceptor(testAccounts(), timestamp)
		ch, _, err := acc.Step(neg)
		if err != nil {
			f.Fatal(err)
		}
		auth, err := cli.Authenticate(ctx, ch)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(neg, auth, timestamp)
		f.Add(neg, auth[:80], timestamp)
	}
	anon := make([]byte, 88)
	copy(anon, ntlmSignature)
	anon[8] = 3
	f.Add([]byte("NTLMSSP\x00\x01\x00\x00\x00\x05\x02\x88\xa2"), anon, false)
	f.Fuzz(func(t *testing.T, neg, auth []byte, timestamp bool) {
		acc := newAcceptor(testAccounts(), timestamp)
		ch, done, err := acc.Step(neg)
		if err != nil {
			return
		}
		if done || len(ch) == 0 {
			t.Fatal("NEGOTIATE completed the logon")
		}
		_, done, err = acc.Step(auth)
		if err != nil {
			if acc.Account() != "" {
				t.Fatalf("failed logon left account %q", acc.Account())
			}
			return
		}
		if !done || (acc.Account() == "" && !acc.Anonymous()) {
			t.Fatalf("logon done %t, account %q", done, acc.Account())
		}
		// The session can sign and seal.
		sig := make([]byte, SignatureLen)
		if err := acc.Wrap([]byte("h"), []byte("body"), []byte("t"), sig, true); err != nil {
			t.Fatal(err)
		}
		acc.Unwrap([]byte("h"), []byte("body"), []byte("t"), sig, true)
	})
}

// FuzzSPNEGO feeds two SPNEGO tokens to the acceptor.
func FuzzSPNEGO(f *testing.F) {
	ctx := context.Background()
	cli := ntlmClient(testUser, testPassword, nil)
	neg, _ := cli.Negotiate(ctx)
	init, _ := (&spnego.NegTokenInit{MechTypes: []asn1.ObjectIdentifier{OIDNTLM}, MechToken: neg}).Marshal(ctx)
	initKrb, _ := (&spnego.NegTokenInit{MechTypes: []asn1.ObjectIdentifier{{1, 2, 840, 113554, 1, 2, 2}, OIDNTLM}, MechToken: []byte{1}}).Marshal(ctx)
	resp := NegTokenResp(NegAcceptIncomplete, nil, []byte("NTLMSSP\x00\x03\x00\x00\x00"), make([]byte, 16))
	respNeg := NegTokenResp(NegAcceptIncomplete, nil, neg, nil)
	f.Add(init, resp)
	f.Add(initKrb, respNeg)
	f.Add(neg, []byte("NTLMSSP\x00\x03"))
	f.Fuzz(func(t *testing.T, tok1, tok2 []byte) {
		acc := NewSPNEGO(newAcceptor(testAccounts(), true))
		if _, _, err := acc.Step(tok1); err != nil {
			return
		}
		acc.Step(tok2)
	})
}
