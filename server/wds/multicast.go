package wds

import (
	"errors"
	"fmt"
	"net"

	"github.com/netdeploy/netdeploy/server/dcerpc"
)

// MulticastEndpoint is netdeploy's own service provider on WdsRpcMessage:
// joining a multicast session. [MS-WDSC] 2.2.1.1 names each provider of
// the message by an endpoint GUID; this one is netdeploy's, not
// Microsoft's multicast provider.
var MulticastEndpoint = MustGUID("9f1a7c52-3e0b-4d86-a1c4-6b2d8e5f0a37")

// OpMcJoin asks to join the multicast session of an image.
const OpMcJoin uint32 = 0x1

// Variables of OpMcJoin. The request carries VarMcImage and CLIENT_MAC;
// the reply carries the rest.
const (
	VarMcImage      = "ND_MC.IMAGE"       // WSTRING: image name or share path
	VarMcLane       = "ND_MC.LANE"        // ULONG, optional: 1 asks for the slow lane
	VarMcPath       = "ND_MC.PATH"        // WSTRING: the image's share path
	VarMcGroup      = "ND_MC.GROUP"       // STRING: dotted IPv4 group
	VarMcPort       = "ND_MC.PORT"        // ULONG: the group's UDP port
	VarMcServer     = "ND_MC.SERVER"      // STRING: where NACK and STATUS go
	VarMcServerPort = "ND_MC.SERVER_PORT" // ULONG
	VarMcSession    = "ND_MC.SESSION"     // ULONG
	VarMcClient     = "ND_MC.CLIENT"      // ULONG
	VarMcKey        = "ND_MC.KEY"         // BLOB: the session key
	VarMcSize       = "ND_MC.SIZE"        // ULONG64: image bytes
	VarMcBlock      = "ND_MC.BLOCK"       // ULONG: block size
)

// JoinRequest is a client asking for a place in an image's session.
type JoinRequest struct {
	Image string // name or share path
	MAC   net.HardwareAddr
	IP    net.IP
	// Slow asks for the image's slow lane: the client was too slow for
	// the main session (multicast.slow_client: split).
	Slow bool
}

// MulticastJoin is a client's place in a multicast session.
type MulticastJoin struct {
	Path      string // the image's share path
	Group     *net.UDPAddr
	Server    *net.UDPAddr
	SessionID uint32
	ClientID  uint32
	Key       []byte
	Size      int64
	BlockSize int
}

// ErrNoMulticast is returned by State.Join when an image is not offered
// by multicast; the client then reads it over SMB.
var ErrNoMulticast = errors.New("not offered by multicast")

// decideMulticast answers a request to netdeploy's multicast provider.
func decideMulticast(req *Packet, c dcerpc.Caller, st State) Decision {
	var d Decision
	if req.Code != OpMcJoin {
		return failed(req.Endpoint, req.Code, StatusNotSupported, fmt.Sprintf("unsupported multicast opcode 0x%x", req.Code))
	}
	if req.Has(VarClientMAC) {
		d.MAC, _ = req.MAC(VarClientMAC)
	}
	if !c.Authenticated {
		d = withStatus(d, req.Endpoint, req.Code, StatusAccessDenied, "ND_MC_JOIN needs an authenticated caller")
		d.Refused = true
		return d
	}
	if err := mcJoin(req, c, st, &d); err != nil {
		status := StatusInvalidParameter
		var se statusError
		if errors.As(err, &se) {
			status = se.status
		}
		return withStatus(d, req.Endpoint, req.Code, status, err.Error())
	}
	d.Op = req.Code
	d.Reply.Endpoint = req.Endpoint
	return d
}

// mcJoin decides OpMcJoin. The session key travels in the reply, so the
// caller must have logged on at packet privacy.
func mcJoin(req *Packet, c dcerpc.Caller, st State, d *Decision) error {
	if c.AuthLevel < dcerpc.AuthLevelPrivacy {
		return statusError{StatusAccessDenied, "ND_MC_JOIN needs packet privacy: the reply holds the session key"}
	}
	if st.Join == nil {
		return statusError{StatusNotSupported, "multicast is off"}
	}
	image, err := req.Text(VarMcImage)
	if err != nil || image == "" {
		return statusError{StatusInvalidParameter, "ND_MC_JOIN without " + VarMcImage}
	}
	var ip net.IP
	if a, ok := c.Remote.(*net.TCPAddr); ok {
		ip = a.IP
	}
	lane, _ := req.ULong(VarMcLane) // absent: the main session
	j, err := st.Join(JoinRequest{Image: image, MAC: d.MAC, IP: ip, Slow: lane == 1})
	if errors.Is(err, ErrNoMulticast) {
		return statusError{StatusNotFound, fmt.Sprintf("%s: %v", image, err)}
	}
	if err != nil {
		return statusError{StatusInternalError, fmt.Sprintf("join %s: %v", image, err)}
	}
	g4, s4 := j.Group.IP.To4(), j.Server.IP.To4()
	if g4 == nil || s4 == nil || j.Size < 0 || j.BlockSize <= 0 {
		return statusError{StatusInternalError, "join: the session has no IPv4 group, server or sizes"}
	}
	d.Join = &j
	d.Reply = reply([]Var{
		WStringVar(VarMcPath, j.Path),
		StringVar(VarMcGroup, g4.String()),
		ULongVar(VarMcPort, uint32(j.Group.Port)),
		StringVar(VarMcServer, s4.String()),
		ULongVar(VarMcServerPort, uint32(j.Server.Port)),
		ULongVar(VarMcSession, j.SessionID),
		ULongVar(VarMcClient, j.ClientID),
		BlobVar(VarMcKey, j.Key),
		ULong64Var(VarMcSize, uint64(j.Size)),
		ULongVar(VarMcBlock, uint32(j.BlockSize)),
	})
	return nil
}

// ParseMulticastJoin reads a join reply (the client's side).
func ParseMulticastJoin(p *Packet) (MulticastJoin, error) {
	var j MulticastJoin
	var errs []error
	text := func(name string) string {
		s, err := p.Text(name)
		errs = append(errs, err)
		return s
	}
	ulong := func(name string) uint32 {
		n, err := p.ULong(name)
		errs = append(errs, err)
		return n
	}
	j.Path = text(VarMcPath)
	group, port := text(VarMcGroup), ulong(VarMcPort)
	server, sport := text(VarMcServer), ulong(VarMcServerPort)
	j.SessionID, j.ClientID = ulong(VarMcSession), ulong(VarMcClient)
	key, err := p.Blob(VarMcKey)
	errs = append(errs, err)
	size, err := p.ULong64(VarMcSize)
	errs = append(errs, err)
	j.BlockSize = int(ulong(VarMcBlock))
	if err := errors.Join(errs...); err != nil {
		return MulticastJoin{}, fmt.Errorf("wds: multicast join reply: %w", err)
	}
	g, s := net.ParseIP(group).To4(), net.ParseIP(server).To4()
	switch {
	case g == nil || !g.IsMulticast():
		return MulticastJoin{}, fmt.Errorf("wds: multicast join reply: group %q is not an IPv4 multicast address", group)
	case s == nil:
		return MulticastJoin{}, fmt.Errorf("wds: multicast join reply: server %q is not an IPv4 address", server)
	case port == 0 || port > 65535 || sport == 0 || sport > 65535:
		return MulticastJoin{}, fmt.Errorf("wds: multicast join reply: ports %d and %d", port, sport)
	case size > 1<<62 || j.BlockSize <= 0 || j.BlockSize > 65507:
		return MulticastJoin{}, fmt.Errorf("wds: multicast join reply: size %d, block %d", size, j.BlockSize)
	}
	j.Group = &net.UDPAddr{IP: g, Port: int(port)}
	j.Server = &net.UDPAddr{IP: s, Port: int(sport)}
	j.Key, j.Size = key, int64(size)
	return j, nil
}
