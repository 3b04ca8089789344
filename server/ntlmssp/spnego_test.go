package ntlmssp

import (
	"bytes"
	"context"
	"encoding/asn1"
	"errors"
	"testing"

	"github.com/oiweiwei/go-msrpc/ssp/spnego"
)

var oidKerberos = asn1.ObjectIdentifier{1, 2, 840, 113554, 1, 2, 2}

// parseResp decodes a NegTokenResp the server sent.
func parseResp(t *testing.T, b []byte) *spnego.NegTokenResp {
	t.Helper()
	r := &spnego.NegTokenResp{}
	if err := r.Unmarshal(context.Background(), b); err != nil {
		t.Fatalf("server NegTokenResp: %v", err)
	}
	return r
}

// TestSPNEGONTLMNotFirst runs the four-leg exchange when the client
// prefers Kerberos: the server selects NTLM, asks for its NEGOTIATE,
// and requires the mechListMIC, which both sides then exchange.
func TestSPNEGONTLMNotFirst(t *testing.T) {
	ctx := context.Background()
	mechs := []asn1.ObjectIdentifier{oidKerberos, OIDNTLM}
	mechList, _ := asn1.Marshal(mechs)
	init, err := (&spnego.NegTokenInit{MechTypes: mechs, MechToken: []byte("kerberos AP-REQ")}).Marshal(ctx)
	if err != nil {
		t.Fatal(err)
	}

	for _, withMIC := range []bool{false, true} {
		acc := NewSPNEGO(newAcceptor(testAccounts(), true))
		cli := ntlmClient(testUser, testPassword, nil)

		out, done, err := acc.Step(init)
		if err != nil || done {
			t.Fatalf("NegTokenInit: done %t, %v", done, err)
		}
		r := parseResp(t, out)
		if r.State != spnego.AcceptIncomplete || len(r.ResponseToken) != 0 {
			t.Fatalf("first reply: state %d, token %d bytes", r.State, len(r.ResponseToken))
		}
		if !bytes.Contains(out, mustMarshal(t, OIDNTLM)) {
			t.Error("first reply does not name NTLM as the supported mechanism")
		}

		neg, _ := cli.Negotiate(ctx)
		out, _, err = acc.Step(NegTokenResp(NegAcceptIncomplete, nil, neg, nil))
		if err != nil {
			t.Fatal(err)
		}
		ch := parseResp(t, out).ResponseToken
		auth, err := cli.Authenticate(ctx, ch)
		if err != nil {
			t.Fatal(err)
		}
		var mic []byte
		if withMIC {
			chk, _ := cli.MakeOutboundChecksum(ctx, [][]byte{mechList})
			mic, _ = cli.MakeOutboundSignature(ctx, chk)
			cli.ResetSecurityService(ctx)
		}
		out, done, err = acc.Step(NegTokenResp(NegAcceptIncomplete, nil, auth, mic))
		if !withMIC {
			if !errors.Is(err, ErrSPNEGOMIC) {
				t.Fatalf("no mechListMIC where required: %v", err)
			}
			continue
		}
		if err != nil || !done {
			t.Fatalf("final leg: done %t, %v", done, err)
		}
		r = parseResp(t, out)
		if r.State != spnego.AcceptCompleted || len(r.MechListMIC) != SignatureLen {
			t.Fatalf("final reply: state %d, MIC %d bytes", r.State, len(r.MechListMIC))
		}
		chk, _ := cli.MakeInboundChecksum(ctx, [][]byte{mechList})
		want, _ := cli.MakeInboundSignature(ctx, chk)
		if !bytes.Equal(r.MechListMIC, want) {
			t.Error("the server's mechListMIC does not verify")
		}
		if acc.ntlm.account != testUser {
			t.Errorf("account %q", acc.ntlm.account)
		}
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSPNEGORefusals(t *testing.T) {
	ctx := context.Background()
	krbOnly, _ := (&spnego.NegTokenInit{MechTypes: []asn1.ObjectIdentifier{oidKerberos}, MechToken: []byte{1}}).Marshal(ctx)
	acc := NewSPNEGO(newAcceptor(testAccounts(), true))
	if _, _, err := acc.Step(krbOnly); !errors.Is(err, ErrSPNEGONoNTLM) {
		t.Errorf("Kerberos only: %v", err)
	}
	acc = NewSPNEGO(newAcceptor(testAccounts(), true))
	if _, _, err := acc.Step([]byte{0x60, 0x03, 0x06, 0x01, 0x00}); !errors.Is(err, ErrSPNEGOProtocol) {
		t.Errorf("garbage: %v", err)
	}

	// Bare NTLMSSP under the SPNEGO auth type is NTLM.
	cli := ntlmClient(testUser, testPassword, nil)
	neg, _ := cli.Negotiate(ctx)
	acc = NewSPNEGO(newAcceptor(testAccounts(), true))
	ch, _, err := acc.Step(neg)
	if err != nil || !bytes.HasPrefix(ch, ntlmSignature) {
		t.Fatalf("raw NTLM: %v", err)
	}
	auth, _ := cli.Authenticate(ctx, ch)
	if _, done, err := acc.Step(auth); err != nil || !done {
		t.Fatalf("raw NTLM AUTHENTICATE: %t %v", done, err)
	}
}
