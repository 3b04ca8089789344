package epm

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"sync"

	"github.com/oiweiwei/go-msrpc/dcerpc"
	"github.com/oiweiwei/go-msrpc/msrpc/dcetypes"
	"github.com/oiweiwei/go-msrpc/msrpc/dtyp"
	epmv3 "github.com/oiweiwei/go-msrpc/msrpc/epm/epm/v3"

	ncerpc "github.com/netdeploy/netdeploy/server/dcerpc"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// Status codes of the endpoint mapper (C706 appendix O, [MS-RPCE] 2.2.1.2).
const (
	StatusOK            = 0
	StatusNotRegistered = 0x16c9a0d6 // EPT_S_NOT_REGISTERED
	StatusCantPerform   = 0x16c9a0d8 // EPT_S_CANT_PERFORM_OP
	StatusInvalidEntry  = 0x16c9a0d7 // EPT_S_INVALID_ENTRY
)

// ept_lookup inquiry types and version options (C706 appendix O).
const (
	inquiryAll   = 0
	inquiryByIf  = 1
	inquiryByObj = 2
	inquiryBoth  = 3

	versAll        = 1
	versCompatible = 2
	versExact      = 3
	versMajorOnly  = 4
	versUpto       = 5
)

// Endpoint is an interface this server offers.
type Endpoint struct {
	Annotation string          // shown by rpcdump
	Syntax     dcerpc.SyntaxID // interface UUID and version
	Port       int             // TCP port
}

// maxHandles caps the lookup cursors kept for clients that never free
// theirs; the oldest goes first.
const maxHandles = 1024

// Mapper answers ept_map and ept_lookup for a fixed set of endpoints. The
// management operations (insert, delete) are refused: the set is ours.
type Mapper struct {
	// ServerIP is the address put in the towers.
	ServerIP net.IP
	// Endpoints are the interfaces served.
	Endpoints []Endpoint
	// Port is reported in events (135).
	Port int
	// Events receives endpoint lookups; nil: none.
	Events tracker.Emitter
	// Log; nil: discard.
	Log *slog.Logger

	mu      sync.Mutex
	cursors map[[16]byte]int
	order   [][16]byte
}

var _ epmv3.EpmServer = (*Mapper)(nil)

// Handle returns the go-msrpc server handle for the runtime.
func (m *Mapper) Handle() dcerpc.ServerHandle { return epmv3.NewEpmServerHandle(m) }

// Syntax is the endpoint mapper's interface (v3).
func Syntax() dcerpc.SyntaxID { return *epmv3.EpmSyntaxV3_0 }

func (m *Mapper) log() *slog.Logger {
	if m.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return m.Log
}

func (m *Mapper) emit(ctx context.Context, kind tracker.Kind, detail string) {
	if m.Events == nil {
		return
	}
	c, _ := ncerpc.CallerFrom(ctx)
	m.Events.Emit(tracker.Event{Stage: tracker.StageRPC, Event: kind, IP: c.IP(), Port: m.Port, Proto: "tcp", Detail: detail})
}

// matches reports whether endpoint e answers an inquiry.
func matches(e Endpoint, inquiry uint32, id *dcetypes.InterfaceID, vers uint32) bool {
	if inquiry == inquiryAll || inquiry == inquiryByObj {
		return true // we register no objects: every entry has the nil object
	}
	if id == nil || id.UUID == nil {
		return false
	}
	if !sameGUID(dtyp.GUIDFromUUID(e.Syntax.IfUUID), id.UUID) {
		return false
	}
	maj, mnr := e.Syntax.IfVersionMajor, e.Syntax.IfVersionMinor
	switch vers {
	case versAll:
		return true
	case versCompatible:
		return maj == id.VersMajor && mnr >= id.VersMinor
	case versExact:
		return maj == id.VersMajor && mnr == id.VersMinor
	case versMajorOnly:
		return maj == id.VersMajor
	case versUpto:
		return maj < id.VersMajor || maj == id.VersMajor && mnr <= id.VersMinor
	}
	return false
}

func sameGUID(a, b *dtyp.GUID) bool {
	if a.Data1 != b.Data1 || a.Data2 != b.Data2 || a.Data3 != b.Data3 || len(a.Data4) != len(b.Data4) {
		return false
	}
	for i := range a.Data4 {
		if a.Data4[i] != b.Data4[i] {
			return false
		}
	}
	return true
}

func (m *Mapper) tower(e Endpoint) *dcetypes.Tower {
	b := tcpTower(*e.Syntax.IfUUID, e.Syntax.IfVersionMajor, e.Syntax.IfVersionMinor, m.ServerIP, e.Port)
	return &dcetypes.Tower{TowerLength: uint32(len(b)), TowerOctetString: b}
}

// Lookup implements ept_lookup (opnum 2): the matching entries from the
// cursor in entry_handle on, at most max_ents of them; the handle comes
// back nil when the listing is complete.
func (m *Mapper) Lookup(ctx context.Context, req *epmv3.LookupRequest) (*epmv3.LookupResponse, error) {
	var all []Endpoint
	for _, e := range m.Endpoints {
		if matches(e, req.InquiryType, req.InterfaceID, req.VersOption) {
			all = append(all, e)
		}
	}
	start := m.cursor(req.EntryHandle)
	resp := &epmv3.LookupResponse{MaxEntries: req.MaxEntries, EntryHandle: &epmv3.LookupHandle{UUID: &dtyp.GUID{}}}
	if start >= len(all) || req.MaxEntries == 0 {
		resp.Status = StatusNotRegistered
		m.emit(ctx, tracker.KindError, "endpoint lookup: nothing registered")
		return resp, nil
	}
	end := min(len(all), start+int(req.MaxEntries))
	for _, e := range all[start:end] {
		resp.Entries = append(resp.Entries, &epmv3.Entry{Object: &dtyp.GUID{}, Tower: m.tower(e), Annotation: e.Annotation})
	}
	resp.EntriesLength = uint32(len(resp.Entries))
	if end < len(all) {
		resp.EntryHandle = m.newCursor(end)
	}
	m.log().Debug("epm: lookup", "entries", len(resp.Entries), "port", m.Port, "proto", "tcp")
	noun := " endpoints"
	if len(resp.Entries) == 1 {
		noun = " endpoint"
	}
	m.emit(ctx, tracker.KindDone, "endpoint lookup: listed "+itoa(len(resp.Entries))+noun)
	return resp, nil
}

// Map implements ept_map (opnum 3): the towers of the endpoints serving
// the interface in the client's tower.
func (m *Mapper) Map(ctx context.Context, req *epmv3.MapRequest) (*epmv3.MapResponse, error) {
	resp := &epmv3.MapResponse{MaxTowers: req.MaxTowers, EntryHandle: &epmv3.LookupHandle{UUID: &dtyp.GUID{}}}
	if req.MapTower == nil {
		resp.Status = StatusInvalidEntry
		return resp, nil
	}
	q, err := parseQuery(req.MapTower.TowerOctetString)
	if err != nil {
		m.log().Debug("epm: ignored map request", "err", err, "port", m.Port, "proto", "tcp")
		resp.Status = StatusInvalidEntry
		return resp, nil
	}
	for _, e := range m.Endpoints {
		if *e.Syntax.IfUUID == q.iface && e.Syntax.IfVersionMajor == q.major && e.Syntax.IfVersionMinor >= q.minor && q.tcp {
			if uint32(len(resp.Towers)) < req.MaxTowers {
				resp.Towers = append(resp.Towers, m.tower(e))
			}
		}
	}
	resp.TowersLength = uint32(len(resp.Towers))
	name := q.iface.String()
	for _, e := range m.Endpoints {
		if *e.Syntax.IfUUID == q.iface && e.Annotation != "" {
			name = e.Annotation
		}
	}
	if len(resp.Towers) == 0 {
		resp.Status = StatusNotRegistered
		m.emit(ctx, tracker.KindError, "endpoint lookup: "+name+" not registered")
		return resp, nil
	}
	m.emit(ctx, tracker.KindDone, "endpoint lookup: "+name+" at port "+itoa(int(towerPort(resp.Towers[0]))))
	return resp, nil
}

func towerPort(t *dcetypes.Tower) uint16 {
	fl, err := parseTower(t.TowerOctetString)
	if err != nil {
		return 0
	}
	for _, f := range fl {
		if f.proto == protoTCP && len(f.rhs) == 2 {
			return uint16(f.rhs[0])<<8 | uint16(f.rhs[1])
		}
	}
	return 0
}

// LookupHandleFree implements ept_lookup_handle_free (opnum 4).
func (m *Mapper) LookupHandleFree(_ context.Context, req *epmv3.LookupHandleFreeRequest) (*epmv3.LookupHandleFreeResponse, error) {
	if k, ok := handleKey(req.EntryHandle); ok {
		m.mu.Lock()
		delete(m.cursors, k)
		m.mu.Unlock()
	}
	return &epmv3.LookupHandleFreeResponse{EntryHandle: &epmv3.LookupHandle{UUID: &dtyp.GUID{}}}, nil
}

// Insert (opnum 0) is refused: remote registration is not allowed.
func (m *Mapper) Insert(context.Context, *epmv3.InsertRequest) (*epmv3.InsertResponse, error) {
	return &epmv3.InsertResponse{Status: StatusCantPerform}, nil
}

// Delete (opnum 1) is refused.
func (m *Mapper) Delete(context.Context, *epmv3.DeleteRequest) (*epmv3.DeleteResponse, error) {
	return &epmv3.DeleteResponse{Status: StatusCantPerform}, nil
}

// InquireObject (opnum 5): no objects are registered.
func (m *Mapper) InquireObject(context.Context, *epmv3.InquireObjectRequest) (*epmv3.InquireObjectResponse, error) {
	return &epmv3.InquireObjectResponse{Object: &dtyp.GUID{}, Status: StatusNotRegistered}, nil
}

// ManagementDelete (opnum 6) is refused.
func (m *Mapper) ManagementDelete(context.Context, *epmv3.ManagementDeleteRequest) (*epmv3.ManagementDeleteResponse, error) {
	return &epmv3.ManagementDeleteResponse{Status: StatusCantPerform}, nil
}

func handleKey(h *epmv3.LookupHandle) ([16]byte, bool) {
	var k [16]byte
	if h == nil || h.UUID == nil {
		return k, false
	}
	g := h.UUID
	k[0], k[1], k[2], k[3] = byte(g.Data1), byte(g.Data1>>8), byte(g.Data1>>16), byte(g.Data1>>24)
	k[4], k[5], k[6], k[7] = byte(g.Data2), byte(g.Data2>>8), byte(g.Data3), byte(g.Data3>>8)
	copy(k[8:], g.Data4)
	return k, k != [16]byte{}
}

// cursor is where a lookup continues: 0 for a nil handle or an unknown one.
func (m *Mapper) cursor(h *epmv3.LookupHandle) int {
	k, ok := handleKey(h)
	if !ok {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	pos, ok := m.cursors[k]
	if !ok {
		return 0
	}
	delete(m.cursors, k) // each handle is used once; a new one continues
	return pos
}

func (m *Mapper) newCursor(pos int) *epmv3.LookupHandle {
	var k [16]byte
	rand.Read(k[:])
	m.mu.Lock()
	if m.cursors == nil {
		m.cursors = map[[16]byte]int{}
	}
	if len(m.order) >= maxHandles {
		delete(m.cursors, m.order[0])
		m.order = m.order[1:]
	}
	m.cursors[k] = pos
	m.order = append(m.order, k)
	m.mu.Unlock()
	u := uuidFromLE(k[:])
	return &epmv3.LookupHandle{UUID: dtyp.GUIDFromUUID(&u)}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
