package dcerpc

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	msdcerpc "github.com/oiweiwei/go-msrpc/dcerpc"
	wdsrpcinterface "github.com/oiweiwei/go-msrpc/msrpc/wdsc/wdsrpcinterface/v1"
	"github.com/oiweiwei/go-msrpc/ssp"
	"github.com/oiweiwei/go-msrpc/ssp/credential"

	"github.com/netdeploy/netdeploy/server/tracker"
)

// These tests drive the server with go-msrpc's DCE/RPC client and its
// generated WdsRpcInterface client, unauthenticated and over NTLM and
// SPNEGO at the integrity and privacy levels.

const (
	testUser     = "alice"
	testPassword = "Passw0rd!"
)

func testAccounts() []Account {
	return []Account{{Name: testUser, NTHash: NTHash(testPassword)}}
}

// dial connects a go-msrpc client to addr and binds WdsRpcInterface.
func dial(t *testing.T, addr string, opts ...msdcerpc.Option) (wdsrpcinterface.InterfaceClient, error) {
	t.Helper()
	// go-msrpc runs the connection's sender and receiver under the
	// context given to Bind: it must outlive the client.
	ctx := context.Background()
	host, port, _ := net.SplitHostPort(addr)
	cc, err := msdcerpc.Dial(ctx, fmt.Sprintf("ncacn_ip_tcp:%s[%s]", host, port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(context.Background()) })
	return wdsrpcinterface.NewInterfaceClient(ctx, cc, opts...)
}

func call(cli wdsrpcinterface.InterfaceClient, payload []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cli.Message(ctx, &wdsrpcinterface.MessageRequest{RequestPacketSize: uint32(len(payload)), RequestPacket: payload})
	if err != nil {
		return nil, err
	}
	return resp.ReplyPacket, nil
}

func ntlmOpts(user, password string, level msdcerpc.SecurityOption) []msdcerpc.Option {
	return []msdcerpc.Option{
		msdcerpc.WithCredentials(credential.NewFromPassword(user, password)),
		msdcerpc.WithMechanism(ssp.NTLM),
		level,
	}
}

func spnegoOpts(user, password string, level msdcerpc.SecurityOption) []msdcerpc.Option {
	return []msdcerpc.Option{
		msdcerpc.WithCredentials(credential.NewFromPassword(user, password)),
		msdcerpc.WithMechanism(ssp.SPNEGO),
		msdcerpc.WithMechanism(ssp.NTLM),
		level,
	}
}

func TestClientUnauthenticated(t *testing.T) {
	ev := &events{}
	s := &Server{Interfaces: []Interface{wdsInterface()}, Accounts: testAccounts(), Events: ev}
	addr := startServer(t, s)
	cli, err := dial(t, addr, msdcerpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	reply, err := call(cli, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	who, echo := splitReply(t, reply)
	if want := "type=0 level=1 account= auth=false ip=127.0.0.1"; who != want {
		t.Errorf("caller %q, want %q", who, want)
	}
	if string(echo) != "hello" {
		t.Errorf("echo %q", echo)
	}
	e, ok := ev.find(tracker.KindStart, "bind WdsRpcInterface")
	if !ok {
		t.Fatalf("no bind event in %+v", ev.evs)
	}
	if e.Stage != tracker.StageRPC || e.IP != "127.0.0.1" || e.Proto != "tcp" || e.Peer == "" || e.Port == 0 {
		t.Errorf("bind event %+v", e)
	}
	// The server counts a packet after writing it, so the client can read
	// the reply before the count moves.
	waitFor(t, 5*time.Second, "bind and response counted", func() bool {
		st := s.Stats()
		return st.PacketsIn >= 2 && st.PacketsOut >= 2 && st.BytesIn > 0 && st.BytesOut > 0 && st.Active == 1
	})
}

func TestClientAuthenticated(t *testing.T) {
	for _, tc := range []struct {
		name        string
		opts        []msdcerpc.Option
		noTimestamp bool
		want        string
		event       string
	}{
		{"ntlm-integrity", ntlmOpts(testUser, testPassword, msdcerpc.WithSign()), false,
			"type=10 level=5 account=alice auth=true", "logon alice (ntlm, integrity)"},
		{"ntlm-privacy", ntlmOpts(testUser, testPassword, msdcerpc.WithSeal()), false,
			"type=10 level=6 account=alice auth=true", "logon alice (ntlm, privacy)"},
		{"ntlm-privacy-no-mic", ntlmOpts(testUser, testPassword, msdcerpc.WithSeal()), true,
			"type=10 level=6 account=alice auth=true", "logon alice (ntlm, privacy)"},
		{"ntlm-connect", ntlmOpts("ALICE", testPassword, msdcerpc.WithConnect()), false,
			"type=10 level=2 account=alice auth=true", "logon alice (ntlm, connect)"},
		{"spnego-privacy", spnegoOpts(`NETDEPLOY\alice`, testPassword, msdcerpc.WithSeal()), false,
			"type=9 level=6 account=alice auth=true", "logon alice (spnego, privacy)"},
		{"spnego-integrity", spnegoOpts(testUser, testPassword, msdcerpc.WithSign()), false,
			"type=9 level=5 account=alice auth=true", "logon alice (spnego, integrity)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := &events{}
			s := &Server{Interfaces: []Interface{wdsInterface()}, Accounts: testAccounts(), Events: ev, noTimestamp: tc.noTimestamp}
			addr := startServer(t, s)
			cli, err := dial(t, addr, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 { // several calls: sequence numbers and RC4 state carry on
				msg := []byte(fmt.Sprintf("call %d of %s", i, tc.name))
				reply, err := call(cli, msg)
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				who, echo := splitReply(t, reply)
				if !strings.HasPrefix(who, tc.want) {
					t.Errorf("caller %q, want %q", who, tc.want)
				}
				if !bytes.Equal(echo, msg) {
					t.Errorf("echo %q, want %q", echo, msg)
				}
			}
			waitFor(t, time.Second, "logon event", func() bool { _, ok := ev.find(tracker.KindDone, tc.event); return ok })
		})
	}
}

func TestClientLargeCallFragmented(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []msdcerpc.Option
	}{
		{"insecure", []msdcerpc.Option{msdcerpc.WithInsecure()}},
		{"ntlm-integrity", ntlmOpts(testUser, testPassword, msdcerpc.WithSign())},
		{"spnego-privacy", spnegoOpts(testUser, testPassword, msdcerpc.WithSeal())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{Interfaces: []Interface{wdsInterface()}, Accounts: testAccounts()}
			addr := startServer(t, s)
			cli, err := dial(t, addr, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			payload := make([]byte, 100<<10)
			rand.Read(payload)
			before := s.Stats()
			reply, err := call(cli, payload)
			if err != nil {
				t.Fatal(err)
			}
			_, echo := splitReply(t, reply)
			if !bytes.Equal(echo, payload) {
				t.Fatalf("echo of %d bytes differs from the %d sent", len(echo), len(payload))
			}
			// 100 KiB in fragments of at most 4096 bytes (go-msrpc's
			// default) both ways; the last one out is counted after it is
			// written.
			waitFor(t, 5*time.Second, "the call counted as fragmented both ways", func() bool {
				after := s.Stats()
				return after.PacketsIn-before.PacketsIn >= 25 && after.PacketsOut-before.PacketsOut >= 25
			})
		})
	}
}

func TestClientWrongPassword(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []msdcerpc.Option
	}{
		{"ntlm", ntlmOpts(testUser, "wrong", msdcerpc.WithSeal())},
		{"spnego", spnegoOpts(testUser, "wrong", msdcerpc.WithSeal())},
		{"unknown-user", ntlmOpts("mallory", testPassword, msdcerpc.WithSign())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := &events{}
			s := &Server{Interfaces: []Interface{wdsInterface()}, Accounts: testAccounts(), Events: ev}
			addr := startServer(t, s)
			cli, err := dial(t, addr, tc.opts...)
			if err == nil {
				// NTLM: auth3 is not answered; the call faults.
				_, err = call(cli, []byte("x"))
				if err == nil {
					t.Fatal("call with a wrong password succeeded")
				}
				if !strings.Contains(err.Error(), "0x00000005") {
					t.Errorf("error %v, want access denied (0x00000005)", err)
				}
			}
			waitFor(t, time.Second, "logon failure event", func() bool { _, ok := ev.find(tracker.KindError, "logon failed for "); return ok })
			if _, ok := ev.find(tracker.KindDone, "logon"); ok {
				t.Error("a logon succeeded")
			}
		})
	}
}

func TestClientLogonRateLimit(t *testing.T) {
	ev := &events{}
	s := &Server{Interfaces: []Interface{wdsInterface()}, Accounts: testAccounts(), Events: ev, LogonLimit: 3, LogonBlock: time.Hour}
	addr := startServer(t, s)
	for i := range 3 {
		cli, err := dial(t, addr, ntlmOpts(testUser, "wrong", msdcerpc.WithSign())...)
		if err != nil {
			t.Fatalf("bind %d: %v", i, err)
		}
		if _, err := call(cli, []byte("x")); err == nil {
			t.Fatalf("call %d with a wrong password succeeded", i)
		}
	}
	waitFor(t, time.Second, "block event", func() bool { _, ok := ev.find(tracker.KindError, "too many failed logons"); return ok })
	if n := ev.count(tracker.KindError, "logon failed for alice"); n != 3 {
		t.Errorf("%d logon failure events, want 3", n)
	}
	// Even the right password is refused now, at bind.
	if _, err := dial(t, addr, ntlmOpts(testUser, testPassword, msdcerpc.WithSign())...); err == nil {
		t.Fatal("bind from a blocked address succeeded")
	}
	if n := ev.count(tracker.KindError, "too many failed logons"); n != 1 {
		t.Errorf("%d block events, want 1", n)
	}
}

func TestClientAnonymousNTLM(t *testing.T) {
	opts := []msdcerpc.Option{
		msdcerpc.WithCredentials(credential.Anonymous()),
		msdcerpc.WithMechanism(ssp.NTLM),
		msdcerpc.WithSeal(),
	}
	s := &Server{Interfaces: []Interface{wdsInterface()}}
	addr := startServer(t, s)
	cli, err := dial(t, addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	reply, err := call(cli, []byte("anon"))
	if err != nil {
		t.Fatal(err)
	}
	who, echo := splitReply(t, reply)
	if !strings.HasPrefix(who, "type=10 level=6 account= auth=false") || string(echo) != "anon" {
		t.Errorf("caller %q, echo %q", who, echo)
	}

	s = &Server{Interfaces: []Interface{wdsInterface()}, RefuseAnonymous: true}
	addr = startServer(t, s)
	if cli, err = dial(t, addr, opts...); err == nil {
		_, err = call(cli, []byte("anon"))
	}
	if err == nil {
		t.Error("anonymous call succeeded with RefuseAnonymous")
	}
}

// TestClientPrivacyOnTheWire checks through a recording proxy that
// PKT_PRIVACY encrypts request and response stubs and PKT_INTEGRITY
// does not.
func TestClientPrivacyOnTheWire(t *testing.T) {
	marker := bytes.Repeat([]byte("PLAINTEXT-MARKER."), 8)
	for _, tc := range []struct {
		name    string
		opts    []msdcerpc.Option
		visible bool
	}{
		{"ntlm-privacy", ntlmOpts(testUser, testPassword, msdcerpc.WithSeal()), false},
		{"spnego-privacy", spnegoOpts(testUser, testPassword, msdcerpc.WithSeal()), false},
		{"ntlm-integrity", ntlmOpts(testUser, testPassword, msdcerpc.WithSign()), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{Interfaces: []Interface{wdsInterface()}, Accounts: testAccounts()}
			addr := startServer(t, s)
			p := newRecordingProxy(t, addr)
			cli, err := dial(t, p.addr, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			reply, err := call(cli, marker)
			if err != nil {
				t.Fatal(err)
			}
			if _, echo := splitReply(t, reply); !bytes.Equal(echo, marker) {
				t.Fatalf("echo %q", echo)
			}
			up, down := p.recorded()
			if got := bytes.Contains(up, marker); got != tc.visible {
				t.Errorf("request stub visible on the wire: %t, want %t", got, tc.visible)
			}
			if got := bytes.Contains(down, marker); got != tc.visible {
				t.Errorf("response stub visible on the wire: %t, want %t", got, tc.visible)
			}
		})
	}
}

// TestClientTamperedRequest flips one stub byte of a protected request on
// the way: the server must refuse the call.
func TestClientTamperedRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []msdcerpc.Option
	}{
		{"ntlm-integrity", ntlmOpts(testUser, testPassword, msdcerpc.WithSign())},
		{"ntlm-privacy", ntlmOpts(testUser, testPassword, msdcerpc.WithSeal())},
		{"spnego-privacy", spnegoOpts(testUser, testPassword, msdcerpc.WithSeal())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{Interfaces: []Interface{wdsInterface()}, Accounts: testAccounts()}
			addr := startServer(t, s)
			p := newMutatingProxy(t, addr, func(pdu []byte) {
				if pdu[2] == ptypeRequest && len(pdu) > requestHeaderLen+4 {
					pdu[requestHeaderLen+2] ^= 0x40
				}
			})
			cli, err := dial(t, p.addr, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			_, err = call(cli, []byte("tampered"))
			if err == nil {
				t.Fatal("a tampered request was served")
			}
			if !strings.Contains(err.Error(), "0x00000005") {
				t.Errorf("error %v, want access denied", err)
			}
		})
	}
}
