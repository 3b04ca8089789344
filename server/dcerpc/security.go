package dcerpc

import (
	"context"
	"errors"
	"fmt"

	"github.com/netdeploy/netdeploy/server/ntlmssp"
)

// A connection runs at most one security context ([MS-RPCE] 3.3.1.5.4:
// the server does not offer security context multiplexing). It is set
// up by the verifier of the bind (or of an alter_context on a connection
// bound without one), continued by auth3 (NTLM) or alter_context
// (SPNEGO), and then protects every request and response at its level.

var (
	errAuthType  = errors.New("authentication type not supported")
	errAuthLevel = errors.New("authentication level not supported")
)

// secContext is a connection's security context.
type secContext struct {
	authType uint8
	level    uint8
	ctxID    uint32
	ntlm     *ntlmssp.Acceptor
	spnego   *ntlmssp.SPNEGO // nil for NTLM

	established bool
	failed      bool
}

func newSecContext(ctx context.Context, s *Server, v *authVerifier) (*secContext, error) {
	if v.authType != AuthTypeNTLM && v.authType != AuthTypeSPNEGO {
		return nil, fmt.Errorf("%w: %d", errAuthType, v.authType)
	}
	if v.level < AuthLevelConnect || v.level > AuthLevelPrivacy {
		return nil, fmt.Errorf("%w: %d", errAuthLevel, v.level)
	}
	sc := &secContext{authType: v.authType, level: v.level, ctxID: v.ctxID}
	// Signing needs extended session security, sealing needs SEAL.
	sc.ntlm = ntlmssp.NewAcceptor(ctx, ntlmssp.Config{
		Computer:        s.computerName(),
		Accounts:        s.Accounts,
		Lookup:          s.AccountLookup,
		RefuseAnonymous: s.RefuseAnonymous,
		RequireESS:      v.level >= AuthLevelCall,
		RequireSeal:     v.level == AuthLevelPrivacy,
		NoTimestamp:     s.noTimestamp,
	})
	if v.authType == AuthTypeSPNEGO {
		sc.spnego = ntlmssp.NewSPNEGO(sc.ntlm)
	}
	return sc, nil
}

// matches reports whether a verifier belongs to this context.
func (sc *secContext) matches(v *authVerifier) bool {
	return v.authType == sc.authType && v.ctxID == sc.ctxID
}

// step feeds one token to the mechanism. On error the context has
// failed; out may still hold a token to send (an SPNEGO reject).
func (sc *secContext) step(tok []byte) (out []byte, err error) {
	if sc.established || sc.failed {
		sc.failed = true
		return nil, fmt.Errorf("%w: security context already complete", ntlmssp.ErrProtocol)
	}
	var done bool
	if sc.spnego != nil {
		out, done, err = sc.spnego.Step(tok)
	} else {
		out, done, err = sc.ntlm.Step(tok)
	}
	if err != nil {
		sc.failed = true
		return out, err
	}
	sc.established = done
	return out, nil
}

// protects reports whether requests and responses carry a verifier:
// every level above connect (call is promoted to packet on
// connection-oriented transports, [MS-RPCE] 3.3.1.5.2).
func (sc *secContext) protects() bool {
	return sc != nil && sc.established && sc.level > AuthLevelConnect
}

func (sc *secContext) sealed() bool { return sc.level == AuthLevelPrivacy }

// mechName names the mechanism in events.
func (sc *secContext) mechName() string {
	if sc.authType == AuthTypeSPNEGO {
		return "spnego"
	}
	return "ntlm"
}

// attempted is the account the client tried to log on as.
func (sc *secContext) attempted() string {
	if sc.ntlm.User() == "" {
		return "(unknown)"
	}
	return sc.ntlm.User()
}

// levelName names an authentication level in events and logs.
func levelName(l uint8) string {
	switch l {
	case AuthLevelNone:
		return "none"
	case AuthLevelConnect:
		return "connect"
	case AuthLevelCall:
		return "call"
	case AuthLevelPacket:
		return "packet"
	case AuthLevelIntegrity:
		return "integrity"
	case AuthLevelPrivacy:
		return "privacy"
	}
	return fmt.Sprint(l)
}
