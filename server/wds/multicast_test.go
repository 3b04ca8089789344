package wds

import (
	"bytes"
	"errors"
	"net"
	"testing"

	"github.com/netdeploy/netdeploy/server/dcerpc"
)

func decideJoin(t *testing.T, c dcerpc.Caller, st State, vars ...Var) Decision {
	t.Helper()
	b, err := EncodeRequest(MulticastEndpoint, OpMcJoin, vars...)
	if err != nil {
		t.Fatal(err)
	}
	d := DecideBytes(b, c, st)
	if d.Reply == nil || d.Reply.Endpoint != MulticastEndpoint || d.Reply.Type != PacketReply {
		t.Fatalf("reply %+v", d.Reply)
	}
	if _, err := d.Reply.Encode(); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestMulticastJoin(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	var gotImage string
	var gotMAC net.HardwareAddr
	var gotIP net.IP
	st := testState()
	var gotSlow bool
	st.Join = func(r JoinRequest) (MulticastJoin, error) {
		image := r.Image
		gotImage, gotMAC, gotIP, gotSlow = image, r.MAC, r.IP, r.Slow
		if image == "none" {
			return MulticastJoin{}, ErrNoMulticast
		}
		if image == "broken" {
			return MulticastJoin{}, errors.New("no port left in udp_range")
		}
		return MulticastJoin{Path: `raw\alpha.img`, Group: &net.UDPAddr{IP: net.IPv4(239, 255, 77, 1), Port: 64100},
			Server: &net.UDPAddr{IP: net.IPv4(198, 18, 0, 1), Port: 64099}, SessionID: 9, ClientID: 3, Key: key,
			Size: 5 << 30, BlockSize: 1400}, nil
	}
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	d := decideJoin(t, userCaller, st, WStringVar(VarMcImage, "Alpha"), WStringVar(VarClientMAC, "525400123456"))
	if d.Status != StatusSuccess || d.Join == nil || gotImage != "Alpha" || gotMAC.String() != mac.String() || !gotIP.Equal(net.IPv4(198, 18, 0, 131)) {
		t.Fatalf("decision %+v (image %q mac %v ip %v)", d, gotImage, gotMAC, gotIP)
	}
	if gotSlow {
		t.Error("a join without a lane asked for the slow lane")
	}
	if d := decideJoin(t, userCaller, st, WStringVar(VarMcImage, "Alpha"), ULongVar(VarMcLane, 1)); d.Status != StatusSuccess || !gotSlow {
		t.Errorf("slow lane join: %v, slow %v", d.Status, gotSlow)
	}
	j, err := ParseMulticastJoin(d.Reply)
	if err != nil {
		t.Fatal(err)
	}
	if j.Path != `raw\alpha.img` || j.Group.String() != "239.255.77.1:64100" || j.Server.String() != "198.18.0.1:64099" ||
		j.SessionID != 9 || j.ClientID != 3 || !bytes.Equal(j.Key, key) || j.Size != 5<<30 || j.BlockSize != 1400 {
		t.Fatalf("parsed %+v", j)
	}

	for _, tc := range []struct {
		name   string
		c      dcerpc.Caller
		st     State
		image  string
		status Status
	}{
		{"anonymous", anonCaller, st, "Alpha", StatusAccessDenied},
		{"integrity only", dcerpc.Caller{Remote: userCaller.Remote, AuthType: dcerpc.AuthTypeNTLM, AuthLevel: dcerpc.AuthLevelIntegrity, Authenticated: true}, st, "Alpha", StatusAccessDenied},
		{"not offered", userCaller, st, "none", StatusNotFound},
		{"server error", userCaller, st, "broken", StatusInternalError},
		{"multicast off", userCaller, testState(), "Alpha", StatusNotSupported},
		{"no image", userCaller, st, "", StatusInvalidParameter},
	} {
		d := decideJoin(t, tc.c, tc.st, WStringVar(VarMcImage, tc.image))
		if d.Status != tc.status || d.Join != nil || len(d.Reply.Vars) != 0 {
			t.Errorf("%s: status %v, join %v, vars %d; want %v", tc.name, d.Status, d.Join, len(d.Reply.Vars), tc.status)
		}
	}
	b, _ := EncodeRequest(MulticastEndpoint, 0x7)
	if d := DecideBytes(b, userCaller, st); d.Status != StatusNotSupported {
		t.Errorf("unknown multicast opcode: %v", d.Status)
	}
}

func TestParseMulticastJoinRejects(t *testing.T) {
	good := []Var{
		WStringVar(VarMcPath, "a.img"), StringVar(VarMcGroup, "239.255.77.1"), ULongVar(VarMcPort, 64100),
		StringVar(VarMcServer, "198.18.0.1"), ULongVar(VarMcServerPort, 64099), ULongVar(VarMcSession, 1),
		ULongVar(VarMcClient, 1), BlobVar(VarMcKey, make([]byte, 32)), ULong64Var(VarMcSize, 100), ULongVar(VarMcBlock, 1400),
	}
	if _, err := ParseMulticastJoin(&Packet{Vars: good}); err != nil {
		t.Fatal(err)
	}
	with := func(v Var) []Var {
		out := append([]Var{}, good...)
		for i := range out {
			if out[i].Name == v.Name {
				out[i] = v
			}
		}
		return out
	}
	for name, vars := range map[string][]Var{
		"unicast group":  with(StringVar(VarMcGroup, "198.18.0.9")),
		"bad server":     with(StringVar(VarMcServer, "nope")),
		"port 0":         with(ULongVar(VarMcPort, 0)),
		"port too large": with(ULongVar(VarMcServerPort, 70000)),
		"block 0":        with(ULongVar(VarMcBlock, 0)),
		"huge block":     with(ULongVar(VarMcBlock, 70000)),
		"missing key":    good[:7],
	} {
		if _, err := ParseMulticastJoin(&Packet{Vars: vars}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
