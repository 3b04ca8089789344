package ntlmssp

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"fmt"
)

// SPNEGO ([RFC 4178], [MS-SPNG]) wrapping NTLM only: the server selects
// NTLM from the client's mechanism list, carries the NTLM tokens in
// NegTokenResp, and exchanges the mechListMIC once NTLM is done.

var (
	oidSPNEGO = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 2}
	OIDNTLM   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 2, 10}

	ErrSPNEGOProtocol = errors.New("spnego: malformed token")
	ErrSPNEGONoNTLM   = errors.New("spnego: client does not offer NTLM")
	ErrSPNEGOMIC      = errors.New("spnego: mechListMIC missing or wrong")
)

// negState values ([RFC 4178] 4.2.2).
const (
	NegAcceptCompleted  = 0
	NegAcceptIncomplete = 1
	NegReject           = 2
)

// SPNEGO runs SPNEGO over an Acceptor.
type SPNEGO struct {
	ntlm        *Acceptor
	raw         bool   // the client sent bare NTLMSSP tokens
	mechList    []byte // DER MechTypeList as the client sent it, for the mechListMIC
	micRequired bool   // NTLM was not the client's first choice ([RFC 4178] 5)
	state       int    // 0 want NegTokenInit, 1 want NTLM NEGOTIATE, 2 want AUTHENTICATE, 3 done
}

// Step consumes one SPNEGO token and returns the reply.
func (s *SPNEGO) Step(tok []byte) (out []byte, done bool, err error) {
	if s.raw {
		return s.ntlm.Step(tok)
	}
	switch s.state {
	case 0:
		if bytes.HasPrefix(tok, ntlmSignature) {
			s.raw = true
			return s.ntlm.Step(tok)
		}
		init, err := parseNegTokenInit(tok)
		if err != nil {
			return NegTokenResp(NegReject, nil, nil, nil), false, err
		}
		idx := -1
		for i, m := range init.mechTypes {
			if m.Equal(OIDNTLM) {
				idx = i
				break
			}
		}
		if idx < 0 {
			return NegTokenResp(NegReject, nil, nil, nil), false, ErrSPNEGONoNTLM
		}
		s.mechList = init.mechListDER
		s.micRequired = idx != 0
		if idx == 0 && len(init.mechToken) > 0 {
			ch, _, err := s.ntlm.Step(init.mechToken)
			if err != nil {
				return NegTokenResp(NegReject, nil, nil, nil), false, err
			}
			s.state = 2
			return NegTokenResp(NegAcceptIncomplete, OIDNTLM, ch, nil), false, nil
		}
		// The optimistic token (if any) was for another mechanism: ask
		// for an NTLM NEGOTIATE.
		s.state = 1
		return NegTokenResp(NegAcceptIncomplete, OIDNTLM, nil, nil), false, nil
	case 1:
		resp, err := parseNegTokenResp(tok)
		if err != nil {
			return NegTokenResp(NegReject, nil, nil, nil), false, err
		}
		ch, _, err := s.ntlm.Step(resp.responseToken)
		if err != nil {
			return NegTokenResp(NegReject, nil, nil, nil), false, err
		}
		s.state = 2
		return NegTokenResp(NegAcceptIncomplete, nil, ch, nil), false, nil
	case 2:
		s.state = 3
		resp, err := parseNegTokenResp(tok)
		if err != nil {
			return NegTokenResp(NegReject, nil, nil, nil), false, err
		}
		if _, done, err := s.ntlm.Step(resp.responseToken); err != nil || !done {
			if err == nil {
				err = fmt.Errorf("%w: no AUTHENTICATE", ErrSPNEGOProtocol)
			}
			return NegTokenResp(NegReject, nil, nil, nil), false, err
		}
		if len(resp.mechListMIC) == 0 && !s.micRequired {
			return NegTokenResp(NegAcceptCompleted, nil, nil, nil), true, nil
		}
		if len(resp.mechListMIC) == 0 {
			return NegTokenResp(NegReject, nil, nil, nil), false, ErrSPNEGOMIC
		}
		if err := s.ntlm.VerifyMIC(s.mechList, resp.mechListMIC); err != nil {
			return NegTokenResp(NegReject, nil, nil, nil), false, fmt.Errorf("%w: %w", ErrSPNEGOMIC, err)
		}
		mic, err := s.ntlm.MakeMIC(s.mechList)
		if err != nil {
			return nil, false, err
		}
		if err := s.ntlm.ResetCiphers(); err != nil {
			return nil, false, err
		}
		return NegTokenResp(NegAcceptCompleted, nil, nil, mic), true, nil
	}
	return nil, false, fmt.Errorf("%w: unexpected token", ErrSPNEGOProtocol)
}

// negTokenInit holds the parts of a NegTokenInit the server uses.
type negTokenInit struct {
	mechTypes   []asn1.ObjectIdentifier
	mechListDER []byte
	mechToken   []byte
}

// parseNegTokenInit parses the initial token: an InitialContextToken
// ([RFC 2743] 3.1) of the SPNEGO OID around [0] NegTokenInit, or a bare
// [0] NegTokenInit.
func parseNegTokenInit(b []byte) (*negTokenInit, error) {
	var v asn1.RawValue
	if _, err := asn1.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSPNEGOProtocol, err)
	}
	if v.Class == asn1.ClassApplication && v.Tag == 0 && v.IsCompound {
		var oid asn1.ObjectIdentifier
		rest, err := asn1.Unmarshal(v.Bytes, &oid)
		if err != nil || !oid.Equal(oidSPNEGO) {
			return nil, fmt.Errorf("%w: not SPNEGO", ErrSPNEGOProtocol)
		}
		if _, err := asn1.Unmarshal(rest, &v); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSPNEGOProtocol, err)
		}
	}
	if v.Class != asn1.ClassContextSpecific || v.Tag != 0 || !v.IsCompound {
		return nil, fmt.Errorf("%w: not a NegTokenInit", ErrSPNEGOProtocol)
	}
	fields, err := contextFields(v.Bytes)
	if err != nil {
		return nil, err
	}
	t := &negTokenInit{}
	mt, ok := fields[0]
	if !ok {
		return nil, fmt.Errorf("%w: NegTokenInit without mechTypes", ErrSPNEGOProtocol)
	}
	var list asn1.RawValue
	if _, err := asn1.Unmarshal(mt, &list); err != nil {
		return nil, fmt.Errorf("%w: mechTypes: %w", ErrSPNEGOProtocol, err)
	}
	if _, err := asn1.Unmarshal(list.FullBytes, &t.mechTypes); err != nil {
		return nil, fmt.Errorf("%w: mechTypes: %w", ErrSPNEGOProtocol, err)
	}
	t.mechListDER = bytes.Clone(list.FullBytes)
	if tok, ok := fields[2]; ok {
		if _, err := asn1.Unmarshal(tok, &t.mechToken); err != nil {
			return nil, fmt.Errorf("%w: mechToken: %w", ErrSPNEGOProtocol, err)
		}
	}
	return t, nil
}

// negTokenRespIn holds the parts of a client's NegTokenResp the server
// uses.
type negTokenRespIn struct {
	responseToken []byte
	mechListMIC   []byte
}

// parseNegTokenResp parses [1] NegTokenResp.
func parseNegTokenResp(b []byte) (*negTokenRespIn, error) {
	var v asn1.RawValue
	if _, err := asn1.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSPNEGOProtocol, err)
	}
	if v.Class != asn1.ClassContextSpecific || v.Tag != 1 || !v.IsCompound {
		return nil, fmt.Errorf("%w: not a NegTokenResp", ErrSPNEGOProtocol)
	}
	fields, err := contextFields(v.Bytes)
	if err != nil {
		return nil, err
	}
	r := &negTokenRespIn{}
	if f, ok := fields[0]; ok {
		var st asn1.Enumerated
		if _, err := asn1.Unmarshal(f, &st); err != nil {
			return nil, fmt.Errorf("%w: negState: %w", ErrSPNEGOProtocol, err)
		}
		if st == NegReject {
			return nil, fmt.Errorf("%w: client rejected the negotiation", ErrSPNEGOProtocol)
		}
	}
	if f, ok := fields[2]; ok {
		if _, err := asn1.Unmarshal(f, &r.responseToken); err != nil {
			return nil, fmt.Errorf("%w: responseToken: %w", ErrSPNEGOProtocol, err)
		}
	}
	if f, ok := fields[3]; ok {
		if _, err := asn1.Unmarshal(f, &r.mechListMIC); err != nil {
			return nil, fmt.Errorf("%w: mechListMIC: %w", ErrSPNEGOProtocol, err)
		}
	}
	return r, nil
}

// contextFields parses a SEQUENCE of explicitly tagged fields and returns
// each field's contents by tag number.
func contextFields(b []byte) (map[int][]byte, error) {
	var seq asn1.RawValue
	if _, err := asn1.Unmarshal(b, &seq); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSPNEGOProtocol, err)
	}
	if seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence {
		return nil, fmt.Errorf("%w: expected a SEQUENCE", ErrSPNEGOProtocol)
	}
	out := map[int][]byte{}
	for p := seq.Bytes; len(p) > 0; {
		var f asn1.RawValue
		rest, err := asn1.Unmarshal(p, &f)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSPNEGOProtocol, err)
		}
		if f.Class == asn1.ClassContextSpecific && f.IsCompound {
			out[f.Tag] = f.Bytes
		}
		p = rest
	}
	return out, nil
}

// NegTokenResp builds [1] NegTokenResp with negState always present.
func NegTokenResp(state int, mech asn1.ObjectIdentifier, token, mic []byte) []byte {
	var seq []byte
	add := func(tag int, v any) {
		inner, err := asn1.Marshal(v)
		if err != nil {
			return
		}
		f, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, IsCompound: true, Bytes: inner})
		if err == nil {
			seq = append(seq, f...)
		}
	}
	add(0, asn1.Enumerated(state))
	if mech != nil {
		add(1, mech)
	}
	if len(token) > 0 {
		add(2, token)
	}
	if len(mic) > 0 {
		add(3, mic)
	}
	s, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: seq})
	out, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: s})
	return out
}

// NewSPNEGO returns an SPNEGO acceptor over n.
func NewSPNEGO(n *Acceptor) *SPNEGO { return &SPNEGO{ntlm: n} }

// NTLM is the acceptor SPNEGO runs.
func (s *SPNEGO) NTLM() *Acceptor { return s.ntlm }

// NegTokenInitHint returns the server-initiated InitialContextToken
// carrying a NegTokenInit2 ([MS-SPNG] 2.2.1, 3.2.5.2) that lists NTLM as
// the only mechanism: what an SMB2 NEGOTIATE response carries as its
// security buffer ([MS-SMB2] 3.3.5.4).
func NegTokenInitHint() []byte {
	wrap := func(class, tag int, compound bool, b []byte) []byte {
		out, _ := asn1.Marshal(asn1.RawValue{Class: class, Tag: tag, IsCompound: compound, Bytes: b})
		return out
	}
	oid, _ := asn1.Marshal(OIDNTLM)
	mechTypes := wrap(asn1.ClassUniversal, asn1.TagSequence, true, oid)
	hintName := wrap(asn1.ClassUniversal, asn1.TagGeneralString, false, []byte("not_defined_in_RFC4178@please_ignore"))
	hints := wrap(asn1.ClassUniversal, asn1.TagSequence, true, wrap(asn1.ClassContextSpecific, 0, true, hintName))
	seq := wrap(asn1.ClassUniversal, asn1.TagSequence, true,
		append(wrap(asn1.ClassContextSpecific, 0, true, mechTypes), wrap(asn1.ClassContextSpecific, 3, true, hints)...))
	spnegoOID, _ := asn1.Marshal(oidSPNEGO)
	return wrap(asn1.ClassApplication, 0, true, append(spnegoOID, wrap(asn1.ClassContextSpecific, 0, true, seq)...))
}
