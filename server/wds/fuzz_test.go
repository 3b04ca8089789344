package wds

import (
	"net"
	"reflect"
	"testing"

	"github.com/netdeploy/netdeploy/imaging"
	"github.com/netdeploy/netdeploy/server/dcerpc"
)

// seedRequests are valid requests for every opcode, as a deployment client
// sends them, plus the quirky forms seen in the wild.
func seedRequests() [][]byte {
	mac := WStringVar(VarClientMAC, "525400123456")
	guid := WStringVar(VarClientGUID, "{4C4C4544-0042-3510-8052-B4C04F4B4E31}")
	seeds := [][]byte{
		NewRequest(OpLogInit, ULongVar(VarVersion, 1)),
		NewRequest(OpLogMsg, ULongVar(VarVersion, 1), ULongVar(VarMessageType, MsgClientGenericMessage), ULongVar(VarArchitecture, ArchAMD64),
			WStringVar(VarClientAddress, "198.18.0.130"), WStringVar(VarClientUUID, "4c4c4544-0042-3510-8052-b4c04f4b4e31"), mac,
			WStringVar(VarTransactionID, "{0F3E1C55-7C41-4C8B-9C1B-3D0F1E2A4B5C}"), WStringVar(VarMessage, "applying image")),
		NewRequest(OpLogMsg, ULongVar(VarMessageType, MsgClientImageSelected), WStringVar("IMAGE_NAME", "Windows 11 Pro"), WStringVar("GROUP_NAME", "Default")),
		NewRequest(OpGetClientUnattend, ULongVar(VarVersion, 1), ULongVar(VarArchitecture, ArchAMD64), mac, guid),
		NewRequest(OpGetClientUnattend, ULongVar(VarVersion, 1), ByteVar(VarArchitecture, byte(ArchARM64)), mac, guid, ULongVar(VarFirmware, FirmwareUEFI)),
		NewRequest(OpGetUnattendVariables, ULongVar(VarVersion, 1), mac, guid),
		NewRequest(OpImgEnumerate, ULongVar(VarVersion, 1)),
		NewRequest(OpImgEnumerate, ULongVar(VarVersion, 1), ULongVar(VarCC, ClientCapV2|ClientCapVHDX), ULongArrayVar("IMDC", 0)),
		NewRequest(OpResetBootProgram, ULongVar(VarVersion, 1), mac, guid),
		NewRequest(OpGetDomainJoinInformation, ULongVar(VarVersion, 1), mac, guid),
		msfClientUnattend(),
	}
	other, _ := EncodeRequest(MustGUID("01234567-89ab-cdef-0123-456789abcdef"), OpLogInit, ULongVar(VarVersion, 1))
	join, _ := EncodeRequest(MulticastEndpoint, OpMcJoin, WStringVar(VarMcImage, "Alpha"), mac)
	joinReply, _ := (&Packet{Endpoint: MulticastEndpoint, Type: PacketReply, Vars: []Var{
		WStringVar(VarMcPath, "a.img"), StringVar(VarMcGroup, "239.255.77.1"), ULongVar(VarMcPort, 64100),
		StringVar(VarMcServer, "198.18.0.1"), ULongVar(VarMcServerPort, 64099), ULongVar(VarMcSession, 1),
		ULongVar(VarMcClient, 1), BlobVar(VarMcKey, make([]byte, 32)), ULong64Var(VarMcSize, 100), ULongVar(VarMcBlock, 1400),
	}}).Encode()
	return append(seeds, other, join, joinReply)
}

// FuzzDecodePacket feeds arbitrary bytes to Decode and the decisions. It
// must never panic; what decodes must encode again and decode to the same
// packet; every decision's reply must encode, and an anonymous caller's
// reply to anything but the open operations must carry ERROR_ACCESS_DENIED
// or another error and no variables.
func FuzzDecodePacket(f *testing.F) {
	for _, s := range seedRequests() {
		f.Add(s)
		f.Add(s[:len(s)/2])
		f.Add(s[:56])
	}
	f.Add([]byte{})
	f.Add(make([]byte, 56))

	images := fakeImages()
	st := State{Images: func() ([]imaging.Image, error) { return images, nil }, LogLevel: LogLevelInfo, NewTransactionID: func() string { return "{ID}" }}
	anon := dcerpc.Caller{Remote: &net.TCPAddr{IP: net.IPv4(198, 18, 0, 130), Port: 49152}}
	user := anon
	user.Authenticated, user.Account, user.AuthLevel = true, "deploy", dcerpc.AuthLevelPrivacy
	st.Join = func(r JoinRequest) (MulticastJoin, error) {
		if r.Image != "Alpha" {
			return MulticastJoin{}, ErrNoMulticast
		}
		return MulticastJoin{Path: "a.img", Group: &net.UDPAddr{IP: net.IPv4(239, 255, 77, 1), Port: 64100},
			Server: &net.UDPAddr{IP: net.IPv4(198, 18, 0, 1), Port: 64099}, Key: make([]byte, 32), Size: 1, BlockSize: 1400}, nil
	}

	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Decode(b)
		if err == nil {
			out, err := p.Encode()
			if err != nil {
				t.Fatalf("decoded packet does not encode: %v\n%+v", err, p)
			}
			q, err := Decode(out)
			if err != nil {
				t.Fatalf("re-encoded packet does not decode: %v", err)
			}
			if !reflect.DeepEqual(p, q) {
				t.Fatalf("round trip differs:\n%+v\n%+v", p, q)
			}
			// The agent reads join replies: never a panic, and what it
			// accepts is usable.
			if j, err := ParseMulticastJoin(p); err == nil && (j.Group == nil || j.Server == nil || j.BlockSize <= 0) {
				t.Fatalf("accepted join %+v", j)
			}
		}
		for _, c := range []dcerpc.Caller{anon, user} {
			d := DecideBytes(b, c, st)
			if d.Reply == nil {
				t.Fatal("no reply")
			}
			if _, err := d.Reply.Encode(); err != nil {
				t.Fatalf("reply does not encode: %v", err)
			}
			if d.Status != StatusSuccess && (len(d.Reply.Vars) != 0 || d.Reply.Code != uint32(d.Status)) {
				t.Fatalf("error reply carries variables or the wrong code: %+v", d.Reply)
			}
			if !c.Authenticated && d.Status == StatusSuccess && !AnonymousAllowed(d.Op) {
				t.Fatalf("anonymous %s succeeded", OpName(d.Op))
			}
		}
	})
}
