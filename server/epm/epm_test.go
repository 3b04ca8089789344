package epm

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/oiweiwei/go-msrpc/msrpc/dcetypes"
	"github.com/oiweiwei/go-msrpc/msrpc/dtyp"
	epmv3 "github.com/oiweiwei/go-msrpc/msrpc/epm/epm/v3"
	wdsv1 "github.com/oiweiwei/go-msrpc/msrpc/wdsc/wdsrpcinterface/v1"
)

func testMapper() *Mapper {
	return &Mapper{
		ServerIP: net.IPv4(198, 18, 0, 1),
		Port:     135,
		Endpoints: []Endpoint{
			{Annotation: "WdsRpcInterface", Syntax: *wdsv1.InterfaceSyntaxV1_0, Port: 5040},
			{Annotation: "Endpoint mapper", Syntax: Syntax(), Port: 135},
		},
	}
}

// TestTowerReadByGoMsrpc: go-msrpc's own tower decoder reads our tower as
// ncacn_ip_tcp:198.18.0.1[5040] for the WDS interface.
func TestTowerReadByGoMsrpc(t *testing.T) {
	m := testMapper()
	tw := m.tower(m.Endpoints[0])
	b := tw.Binding()
	if got := b.StringBinding.String(); !strings.Contains(got, "ncacn_ip_tcp:198.18.0.1[5040]") {
		t.Fatalf("binding %q", got)
	}
	if b.SyntaxID.IfUUID.String() != wdsv1.InterfaceSyntaxUUID.String() || b.SyntaxID.IfVersionMajor != 1 {
		t.Fatalf("syntax %+v", b.SyntaxID)
	}
	fl, err := parseTower(tw.TowerOctetString)
	if err != nil || len(fl) != 5 || fl[0].id != *wdsv1.InterfaceSyntaxUUID || fl[1].id != ndr20 || fl[1].major != 2 {
		t.Fatalf("own parse: %v %+v", err, fl)
	}
}

func TestLookupPages(t *testing.T) {
	m := testMapper()
	ctx := context.Background()
	r, err := m.Lookup(ctx, &epmv3.LookupRequest{InquiryType: inquiryAll, MaxEntries: 1})
	if err != nil || r.Status != 0 || r.EntriesLength != 1 || r.Entries[0].Annotation != "WdsRpcInterface" {
		t.Fatalf("first page: %v %+v", err, r)
	}
	if _, ok := handleKey(r.EntryHandle); !ok {
		t.Fatal("no cursor while entries remain")
	}
	r2, _ := m.Lookup(ctx, &epmv3.LookupRequest{InquiryType: inquiryAll, MaxEntries: 1, EntryHandle: r.EntryHandle})
	if r2.Status != 0 || r2.EntriesLength != 1 || r2.Entries[0].Annotation != "Endpoint mapper" {
		t.Fatalf("second page: %+v", r2)
	}
	if _, ok := handleKey(r2.EntryHandle); ok {
		t.Fatal("cursor after the last entry (impacket would loop)")
	}
	// By interface, exact version: only WDS.
	id := &dcetypes.InterfaceID{UUID: dtyp.GUIDFromUUID(wdsv1.InterfaceSyntaxUUID), VersMajor: 1}
	r3, _ := m.Lookup(ctx, &epmv3.LookupRequest{InquiryType: inquiryByIf, VersOption: versExact, InterfaceID: id, MaxEntries: 500})
	if r3.EntriesLength != 1 || r3.Entries[0].Tower.Binding().StringBinding.String() != "ncacn_ip_tcp:198.18.0.1[5040]" {
		t.Fatalf("by interface: %+v", r3)
	}
	id.VersMajor = 2
	if r4, _ := m.Lookup(ctx, &epmv3.LookupRequest{InquiryType: inquiryByIf, VersOption: versExact, InterfaceID: id, MaxEntries: 500}); r4.Status != StatusNotRegistered {
		t.Fatalf("wrong version found: %+v", r4)
	}
}

func TestMap(t *testing.T) {
	m := testMapper()
	q := tcpTower(*wdsv1.InterfaceSyntaxUUID, 1, 0, net.IPv4zero, 0)
	r, err := m.Map(context.Background(), &epmv3.MapRequest{MapTower: &dcetypes.Tower{TowerLength: uint32(len(q)), TowerOctetString: q}, MaxTowers: 4})
	if err != nil || r.Status != 0 || r.TowersLength != 1 || towerPort(r.Towers[0]) != 5040 {
		t.Fatalf("map: %v %+v", err, r)
	}
	bad := append([]byte(nil), q...)
	bad[2] = 0xff // lhs length past the end
	if r, _ := m.Map(context.Background(), &epmv3.MapRequest{MapTower: &dcetypes.Tower{TowerOctetString: bad}, MaxTowers: 4}); r.Status != StatusInvalidEntry {
		t.Fatalf("malformed tower: %+v", r)
	}
	if r, _ := m.Map(context.Background(), &epmv3.MapRequest{MaxTowers: 4}); r.Status != StatusInvalidEntry {
		t.Fatalf("nil tower: %+v", r)
	}
}

func FuzzParseTower(f *testing.F) {
	f.Add(tcpTower(*wdsv1.InterfaceSyntaxUUID, 1, 0, net.IPv4(198, 18, 0, 1), 5040))
	f.Add([]byte{1, 0, 1, 0, 7, 2, 0, 0, 135})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		fl, err := parseTower(b)
		if err == nil && (len(fl) == 0 || len(fl) > maxFloors) {
			t.Fatalf("%d floors accepted", len(fl))
		}
		parseQuery(b)
	})
}
