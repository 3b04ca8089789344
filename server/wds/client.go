package wds

import "fmt"

// This file is the client side, for tests and for netdeploy's imaging
// agent: build a request, read a reply.

// NewRequest encodes a request for the OS deployment endpoint. It panics
// when the variables cannot be encoded (an empty, over-long or duplicate
// name, a malformed array, more than MaxPacketSize bytes): callers pass
// names they chose. Use EncodeRequest for anything built from input.
func NewRequest(opcode uint32, vars ...Var) []byte {
	b, err := EncodeRequest(OSDeploymentEndpoint, opcode, vars...)
	if err != nil {
		panic(err)
	}
	return b
}

// EncodeRequest encodes a request for any endpoint.
func EncodeRequest(endpoint GUID, opcode uint32, vars ...Var) ([]byte, error) {
	p := Packet{Endpoint: endpoint, Type: PacketRequest, Code: opcode, Vars: vars}
	return p.Encode()
}

// StatusError is a reply whose operation header carries an error code.
type StatusError struct {
	Status Status
}

func (e *StatusError) Error() string { return fmt.Sprintf("wds: server replied %v", e.Status) }

// ParseReply decodes a reply. A reply carrying an error code is returned
// with a *StatusError; the packet type is not checked ([MS-WDSC] 2.2.1.2.1:
// the client should not reject a packet for it).
func ParseReply(b []byte) (*Packet, error) {
	p, err := Decode(b)
	if err != nil {
		return nil, err
	}
	if p.Code != 0 {
		return p, &StatusError{Status(p.Code)}
	}
	return p, nil
}
