// Package dcerpc is netdeploy's connection-oriented DCE/RPC server runtime
// (C706 chapter 12, [MS-RPCE]): TCP transport, PDU framing, bind and
// alter_context, NTLM and SPNEGO authentication, request reassembly,
// response fragmentation and faults. Interfaces plug in as go-msrpc
// server handles.
package dcerpc

import (
	"context"
	"net"

	"github.com/netdeploy/netdeploy/server/ntlmssp"
)

// Authentication types and levels of the sec_trailer ([MS-RPCE] 2.2.1.1.7,
// 2.2.1.1.8).
const (
	AuthTypeNone   uint8 = 0
	AuthTypeSPNEGO uint8 = 9
	AuthTypeNTLM   uint8 = 10

	AuthLevelNone      uint8 = 1
	AuthLevelConnect   uint8 = 2
	AuthLevelCall      uint8 = 3
	AuthLevelPacket    uint8 = 4
	AuthLevelIntegrity uint8 = 5
	AuthLevelPrivacy   uint8 = 6
)

// Caller is who made a call, as the runtime established it. Handlers read
// it with CallerFrom to decide what an unauthenticated caller may do.
type Caller struct {
	Remote        net.Addr
	AuthType      uint8  // AuthTypeNone, AuthTypeNTLM or AuthTypeSPNEGO
	AuthLevel     uint8  // the level the security context runs at
	Account       string // the account that logged on; "" when anonymous
	Authenticated bool   // a logon with one of the configured accounts succeeded
}

// IP is the caller's address without the port ("" when unknown).
func (c Caller) IP() string {
	if a, ok := c.Remote.(*net.TCPAddr); ok {
		return a.IP.String()
	}
	if c.Remote == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(c.Remote.String())
	if err != nil {
		return ""
	}
	return host
}

type callerKey struct{}

// WithCaller returns ctx carrying c.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller stored in ctx by the runtime.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// Account is a configured logon: a name and the NT hash of its password
// (MD4 of the UTF-16LE password, [MS-NLMP] 3.3.1).
type Account = ntlmssp.Account
