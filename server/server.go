// Package server starts netdeploy's enabled services on one interface and
// owns the client tracker; it is the control API the console and the
// headless mode share.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	wdsv1 "github.com/oiweiwei/go-msrpc/msrpc/wdsc/wdsrpcinterface/v1"

	"github.com/netdeploy/netdeploy/config"
	"github.com/netdeploy/netdeploy/imaging"
	"github.com/netdeploy/netdeploy/server/boot"
	"github.com/netdeploy/netdeploy/server/control"
	"github.com/netdeploy/netdeploy/server/creds"
	"github.com/netdeploy/netdeploy/server/dcerpc"
	"github.com/netdeploy/netdeploy/server/dhcp"
	"github.com/netdeploy/netdeploy/server/epm"
	"github.com/netdeploy/netdeploy/server/httpboot"
	"github.com/netdeploy/netdeploy/server/netbios"
	"github.com/netdeploy/netdeploy/server/policy"
	"github.com/netdeploy/netdeploy/server/smb"
	"github.com/netdeploy/netdeploy/server/tftp"
	"github.com/netdeploy/netdeploy/server/tracker"
	"github.com/netdeploy/netdeploy/server/udprange"
	"github.com/netdeploy/netdeploy/server/wds"
)

// Well-known ports.
const (
	PortDHCP = 67
	PortPXE  = 4011
	PortTFTP = 69
)

// Service is one running protocol server.
type Service struct {
	Name     string
	Serve    func() error
	Shutdown func(context.Context) error
}

// ListenError is a service that could not open its socket, with a hint
// for the operator.
type ListenError struct {
	Service string
	Proto   string
	Port    int
	Path    string // Unix socket path instead of a port
	Err     error
}

func (e *ListenError) Error() string {
	if e.Path != "" {
		return fmt.Sprintf("%s: cannot listen on %s: %v", e.Service, e.Path, e.Err)
	}
	msg := fmt.Sprintf("%s: cannot listen on %s port %d: %v", e.Service, e.Proto, e.Port, e.Err)
	switch {
	case errors.Is(e.Err, syscall.EACCES), errors.Is(e.Err, syscall.EPERM):
		exe, _ := os.Executable()
		if exe == "" {
			exe = "netdeploy"
		}
		msg += fmt.Sprintf(" (run as root, or grant the capabilities once: sudo setcap cap_net_bind_service,cap_net_raw,cap_net_admin+ep %s)", exe)
	case errors.Is(e.Err, syscall.EADDRINUSE):
		msg += fmt.Sprintf(" (another program holds %s port %d; find it with: ss -lnp%s 'sport = :%d')", e.Proto, e.Port, map[string]string{"udp": "u", "tcp": "t"}[e.Proto], e.Port)
	}
	return msg
}

func (e *ListenError) Unwrap() error { return e.Err }

// Orchestrator wires the services for one interface.
type Orchestrator struct {
	RT      *config.Runtime
	Tracker *tracker.Tracker
	Policy  *policy.Static
	Ports   *udprange.Live
	FS      *boot.FS
	Catalog *imaging.Catalog

	log      *slog.Logger
	dhcp     *dhcp.Server
	dhcpMu   sync.Mutex
	switchMu sync.Mutex
	dhcpLive bool          // sockets open: Serve runs, or is about to
	dhcpErr  error         // why enabling DHCP at runtime failed
	dhcpGo   chan struct{} // closed when DHCP goes live
	stopped  chan struct{} // closed by the first Shutdown
	stopOnce sync.Once
	tftp     *tftp.Server
	http     *httpboot.Server
	tftpConn *net.UDPConn
	httpLn   net.Listener
	rpc      *dcerpc.Server
	epm      *dcerpc.Server
	rpcLn    net.Listener
	epmLn    net.Listener
	smb      *smb.Server
	smbLn    net.Listener // direct TCP (445)
	nbssLn   net.Listener // NetBIOS session service (139)
	nbns     *netbios.Server
	nbdg     *netbios.DatagramServer
	nbnsConn *net.UDPConn
	nbdgConn *net.UDPConn
	ctlLn    net.Listener
	ctl      *http.Server

	reportSub *tracker.Subscription // the deployment report's view of events

	// Creds holds the one-time logons handed out in boot scripts.
	Creds    *creds.Store
	assignMu sync.Mutex
	assigned map[string]string // MAC -> image, set through the control API

	entryProblem string // why there is no default boot entry
	mc           *mcast // nil: multicast.enabled is off
}

// New builds the services from a resolved configuration. Nothing is
// opened until Listen.
func New(rt *config.Runtime, log *slog.Logger) (*Orchestrator, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{rt.DataDir, rt.TFTP.Root, rt.ImagesDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	o := &Orchestrator{
		RT:       rt,
		Tracker:  tracker.New(),
		Ports:    udprange.NewLive(rt.Range),
		log:      log,
		dhcpGo:   make(chan struct{}),
		stopped:  make(chan struct{}),
		Creds:    &creds.Store{},
		assigned: map[string]string{},
	}
	o.Policy = policy.NewStatic(rt.Policy, rt.PXE.Known)
	o.Policy.OnPending = func(mac string) {
		o.Tracker.Emit(tracker.Event{MAC: mac, Stage: tracker.StagePXE, Event: tracker.KindPending, Detail: "waiting for approval"})
		o.log.Info("client waits for approval", "mac", mac)
	}
	events := credRevoker{next: macFiller{t: o.Tracker, lookup: neighborMAC}, o: o}
	entry, problem := bootEntry(rt, log)
	o.entryProblem = problem
	o.FS = &boot.FS{
		Root:    rt.TFTP.Root,
		IPXEDir: rt.Boot.IPXEDir,
		Entry:   entry,
		Script:  func() []byte { return o.script("") },
	}
	o.tftp = &tftp.Server{
		FS:           o.FS,
		Ports:        o.Ports,
		MaxBlockSize: maxBlock(rt.Iface.MTU),
		Events:       events,
		Log:          log.With("service", "tftp"),
	}
	o.http = &httpboot.Server{
		FS:     o.FS,
		Script: o.script,
		// The DHCP lease (or the neighbour table) names a client that asks
		// for the script without ?mac=, so the policy applies to it.
		MACForIP: func(ip string) string {
			if mac := o.Tracker.MACForIP(ip); mac != "" {
				return mac
			}
			return neighborMAC(ip)
		},
		Port:   rt.HTTP.Port,
		Events: events,
		Log:    log.With("service", "http"),
	}
	// The DHCP server always exists so that the console can switch it on;
	// in mode off its sockets stay closed until then.
	mode := dhcp.Off
	switch rt.DHCP.Mode {
	case config.ModeAuthoritative:
		mode = dhcp.Authoritative
	case config.ModeProxy:
		mode = dhcp.Proxy
	}
	o.dhcp = &dhcp.Server{
		Interface:         rt.Iface.Name,
		ServerIP:          rt.ServerIP,
		Mode:              mode,
		Pool:              dhcp.Pool{Start: rt.PoolStart, End: rt.PoolEnd},
		Netmask:           rt.Subnet.Mask,
		Router:            rt.Router,
		DNS:               rt.DNS,
		LeaseTime:         rt.DHCP.Lease,
		LeaseDir:          rt.DataDir,
		ScriptURL:         boot.ScriptURL(rt.ServerIP, rt.HTTP.Port),
		Has:               o.FS.Has,
		Policy:            o.Policy,
		Authorization:     rt.DHCP.Authorization,
		AuthorizedServers: rt.AuthorizedServers,
		Events:            o.Tracker,
		Log:               log.With("service", "dhcp"),
	}
	o.Catalog = &imaging.Catalog{Dir: rt.ImagesDir}
	// Subscribed now, so that no event before the services run is missed.
	o.reportSub = o.Tracker.Subscribe()
	accounts := make([]dcerpc.Account, 0, len(rt.Accounts))
	for _, a := range rt.Accounts {
		accounts = append(accounts, dcerpc.Account{Name: a.Name, NTHash: a.NTHash})
	}
	wdsHandler := &wds.Handler{Images: o.Catalog, Events: events, Log: log.With("service", "rpc"), Port: rt.RPC.Port}
	if rt.Multicast.Enabled {
		mc, err := newMcast(o, rt, events, log.With("service", "multicast"))
		if err != nil {
			return nil, err
		}
		o.mc, wdsHandler.Join = mc, mc.Join
	}
	o.rpc = &dcerpc.Server{
		Interfaces:    []dcerpc.Interface{{Name: "WdsRpcInterface", Syntax: *wdsv1.InterfaceSyntaxV1_0, Handle: wdsv1.NewInterfaceServerHandle(wdsHandler)}},
		Accounts:      accounts,
		AccountLookup: o.accountLookup,
		Port:          rt.RPC.Port,
		Events:        events,
		Log:           log.With("service", "rpc"),
	}
	mapper := &epm.Mapper{
		ServerIP:  rt.ServerIP,
		Port:      rt.RPC.EPMPort,
		Events:    events,
		Log:       log.With("service", "epm"),
		Endpoints: []epm.Endpoint{{Annotation: "WdsRpcInterface", Syntax: *wdsv1.InterfaceSyntaxV1_0, Port: rt.RPC.Port}},
	}
	o.smb = &smb.Server{
		Shares:         []smb.Share{{Name: "images", Path: rt.ImagesDir, Comment: "netdeploy image store", Encrypt: rt.SMB.Encrypt}},
		Accounts:       accounts,
		AccountLookup:  o.accountLookup,
		Guest:          rt.SMB.Guest,
		RequireSigning: rt.SMB.Signing == "required",
		Name:           rt.SMB.Name,
		Port:           rt.SMB.Port,
		Events:         events,
		Log:            log.With("service", "smb"),
	}
	if rt.SMB.NetBIOS {
		o.nbns = &netbios.Server{Name: rt.SMB.Name, Workgroup: rt.SMB.Workgroup, IP: rt.ServerIP, MAC: rt.Iface.MAC,
			Interface: rt.Iface.Name, Events: events, Log: log.With("service", "netbios")}
		o.nbdg = &netbios.DatagramServer{Interface: rt.Iface.Name, Log: log.With("service", "netbios")}
	}
	o.epm = &dcerpc.Server{
		Interfaces: []dcerpc.Interface{{Name: "epm", Syntax: epm.Syntax(), Handle: mapper.Handle()}},
		Port:       rt.RPC.EPMPort,
		Events:     events,
		Log:        log.With("service", "epm"),
	}
	return o, nil
}

// macFiller gives TFTP and HTTP events the client's MAC from the kernel's
// ARP table when no DHCP exchange told the tracker (proxy mode, or a
// client with a static address). Service events are left alone.
type macFiller struct {
	t      *tracker.Tracker
	lookup func(ip string) string
}

func (m macFiller) Emit(e tracker.Event) {
	if e.MAC == "" && e.IP != "" && (e.Stage == tracker.StageTFTP || e.Stage == tracker.StageHTTP) &&
		e.Event != tracker.KindListening && m.t.MACForIP(e.IP) == "" {
		e.MAC = m.lookup(e.IP)
	}
	m.t.Emit(e)
}

// maxBlock is the largest TFTP block that fits the interface MTU
// (20 bytes IPv4, 8 UDP, 4 TFTP).
func maxBlock(mtu int) int {
	if mtu <= 0 {
		return 1468
	}
	return min(mtu-32, 65464)
}

// script renders the iPXE script for one client, honouring the policy.
func (o *Orchestrator) script(mac string) []byte {
	p := boot.ScriptParams{BaseURL: boot.BaseURL(o.RT.ServerIP, o.RT.HTTP.Port), Entry: o.FS.Entry, Problem: o.entryProblem}
	if mac == "" {
		p.Denied = o.Policy.Mode() != policy.All
	} else {
		switch o.Policy.Decide(mac) {
		case policy.Pending:
			p.Pending = true
		case policy.Deny:
			p.Denied = true
		}
	}
	if p.Entry.Agent && !p.Pending && !p.Denied {
		// Only an approved client gets a one-time logon.
		p.Args = o.agentArgs(mac)
	}
	return boot.Script(p)
}

// Listen opens every socket, so that a missing privilege or a port in use
// is reported before anything runs. The error is a *ListenError.
func (o *Orchestrator) Listen() error {
	ip := o.RT.ServerIP
	if o.RT.DHCP.Mode != config.ModeOff {
		if err := o.listenDHCP(); err != nil {
			return err
		}
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip, Port: o.RT.TFTP.Port})
	if err != nil {
		o.Close()
		return &ListenError{Service: "tftp", Proto: "udp", Port: o.RT.TFTP.Port, Err: errors.Unwrap(err)}
	}
	o.tftpConn = c
	l, err := net.Listen("tcp4", net.JoinHostPort(ip.String(), strconv.Itoa(o.RT.HTTP.Port)))
	if err != nil {
		o.Close()
		return &ListenError{Service: "http", Proto: "tcp", Port: o.RT.HTTP.Port, Err: errors.Unwrap(err)}
	}
	o.httpLn = l
	for _, x := range []struct {
		name string
		port int
		ln   *net.Listener
	}{{"rpc", o.RT.RPC.Port, &o.rpcLn}, {"epm", o.RT.RPC.EPMPort, &o.epmLn}, {"smb", o.RT.SMB.Port, &o.smbLn}, {"smb", o.RT.SMB.SessionPort, &o.nbssLn}} {
		l, err := net.Listen("tcp4", net.JoinHostPort(ip.String(), strconv.Itoa(x.port)))
		if err != nil {
			o.Close()
			return &ListenError{Service: x.name, Proto: "tcp", Port: x.port, Err: errors.Unwrap(err)}
		}
		*x.ln = l
	}
	if o.nbns != nil {
		for _, x := range []struct {
			port int
			c    **net.UDPConn
		}{{netbios.DefaultNamePort, &o.nbnsConn}, {netbios.DefaultDatagramPort, &o.nbdgConn}} {
			c, err := netbios.ListenUDP(o.RT.Iface.Name, x.port)
			if err != nil {
				o.Close()
				return &ListenError{Service: "netbios", Proto: "udp", Port: x.port, Err: causeOf(err)}
			}
			*x.c = c
		}
	}
	cl, err := control.Listen(ControlSocket(o.RT.DataDir))
	if err != nil {
		o.Close()
		return &ListenError{Service: "control", Path: ControlSocket(o.RT.DataDir), Err: err}
	}
	o.ctlLn = cl
	o.ctl = &http.Server{Handler: control.Handler(o), ReadHeaderTimeout: 10 * time.Second}
	// Said once the sockets are open, so that a listen error stays the
	// only line.
	switch e := o.FS.Entry; {
	case o.entryProblem != "":
		o.log.Warn("no default boot entry: clients get a script that says so", "reason", o.entryProblem)
	case e.Agent:
		o.log.Info("default boot entry: the imaging agent", "kernel", e.Kernel)
	}
	return nil
}

// listenDHCP opens the DHCP sockets and lets the dhcp service run.
func (o *Orchestrator) listenDHCP() error {
	if err := o.dhcp.Listen(); err != nil {
		port := PortDHCP
		var le *dhcp.ListenError
		if errors.As(err, &le) {
			port = le.Port
		}
		return &ListenError{Service: "dhcp", Proto: "udp", Port: port, Err: causeOf(err)}
	}
	o.dhcpMu.Lock()
	o.dhcpLive = true
	o.dhcpMu.Unlock()
	close(o.dhcpGo)
	return nil
}

// causeOf is the error a listen error wraps (the errno), or err itself.
func causeOf(err error) error {
	if c := errors.Unwrap(err); c != nil {
		return c
	}
	return err
}

// Close releases sockets opened by Listen when the services never ran.
func (o *Orchestrator) Close() {
	o.dhcpMu.Lock()
	live := o.dhcpLive
	o.dhcpMu.Unlock()
	if live {
		o.dhcp.Shutdown(context.Background())
	}
	if o.tftpConn != nil {
		o.tftpConn.Close()
	}
	for _, l := range []net.Listener{o.httpLn, o.rpcLn, o.epmLn, o.smbLn, o.nbssLn} {
		if l != nil {
			l.Close()
		}
	}
	for _, c := range []*net.UDPConn{o.nbnsConn, o.nbdgConn} {
		if c != nil {
			c.Close()
		}
	}
	if o.ctlLn != nil {
		o.ctlLn.Close()
	}
}

// Services returns the services to run, after Listen.
func (o *Orchestrator) Services() []Service {
	var out []Service
	out = append(out, Service{Name: "dhcp", Serve: o.serveDHCP, Shutdown: o.shutdownDHCP})
	out = append(out,
		Service{Name: "tftp", Serve: func() error { return o.tftp.Serve(o.tftpConn) }, Shutdown: o.tftp.Shutdown},
		Service{Name: "http", Serve: func() error { return o.http.Serve(o.httpLn) }, Shutdown: o.http.Shutdown},
		Service{Name: "rpc", Serve: func() error { return o.rpc.Serve(o.rpcLn) }, Shutdown: o.rpc.Shutdown},
		Service{Name: "epm", Serve: func() error { return o.epm.Serve(o.epmLn) }, Shutdown: o.epm.Shutdown},
		Service{Name: "smb", Serve: func() error { return o.smb.Serve(o.smbLn) }, Shutdown: o.smb.Shutdown},
		// One SMB server holds both listeners: its Shutdown (above) ends this too.
		Service{Name: "smb-139", Serve: func() error { return o.smb.ServeNetBIOS(o.nbssLn) }, Shutdown: func(context.Context) error { return nil }},
		Service{Name: "control", Serve: func() error {
			if err := o.ctl.Serve(o.ctlLn); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("control: %w", err)
			}
			return nil
		}, Shutdown: o.ctl.Shutdown},
	)
	out = append(out, o.reportService())
	if o.mc != nil {
		out = append(out, o.mc.service())
	}
	if o.nbns != nil {
		out = append(out,
			Service{Name: "netbios-ns", Serve: func() error { return o.nbns.Serve(o.nbnsConn) }, Shutdown: o.nbns.Shutdown},
			Service{Name: "netbios-dgm", Serve: func() error { return o.nbdg.Serve(o.nbdgConn) }, Shutdown: o.nbdg.Shutdown},
		)
	}
	return out
}

// serveDHCP waits until DHCP is live (at once, unless dhcp.mode is off
// and the operator switches it on later), then serves it.
func (o *Orchestrator) serveDHCP() error {
	select {
	case <-o.dhcpGo:
		select {
		case <-o.stopped:
			return nil
		default:
		}
		if err := o.dhcp.Serve(context.Background()); err != nil && !errors.Is(err, dhcp.ErrServerClosed) {
			return err
		}
		return nil
	case <-o.stopped:
		return nil
	}
}

func (o *Orchestrator) shutdownDHCP(ctx context.Context) error {
	o.stopOnce.Do(func() { close(o.stopped) })
	// A switch in progress finishes first, so sockets it opens are closed.
	o.switchMu.Lock()
	defer o.switchMu.Unlock()
	o.dhcpMu.Lock()
	live := o.dhcpLive
	o.dhcpMu.Unlock()
	if !live {
		return nil
	}
	return o.dhcp.Shutdown(ctx)
}

// SetDHCPMode switches dhcp.mode at once. Switching on a server that
// started with mode off opens its sockets first; switching to off keeps
// them open and answers nothing.
func (o *Orchestrator) SetDHCPMode(mode string) error {
	m, err := dhcp.ParseMode(mode)
	if err != nil {
		return err
	}
	o.switchMu.Lock() // one switch at a time: listenDHCP runs at most once
	defer o.switchMu.Unlock()
	o.dhcpMu.Lock()
	live := o.dhcpLive
	o.dhcpMu.Unlock()
	if live {
		if err := o.dhcp.SetMode(m); err != nil {
			return fmt.Errorf("dhcp mode %s: %w", m, err)
		}
		return nil
	}
	if m == dhcp.Off {
		return nil
	}
	select {
	case <-o.stopped:
		return errors.New("dhcp: shutting down")
	default:
	}
	// Open the sockets answering nothing, then switch: a failure leaves
	// nothing to undo.
	if err := o.listenDHCP(); err != nil {
		o.dhcpMu.Lock()
		o.dhcpErr = err
		o.dhcpMu.Unlock()
		return err
	}
	o.dhcpMu.Lock()
	o.dhcpErr = nil
	o.dhcpMu.Unlock()
	if err := o.dhcp.SetMode(m); err != nil {
		return fmt.Errorf("dhcp mode %s: %w", m, err)
	}
	o.log.Info("dhcp switched on", "mode", string(m))
	return nil
}

// DHCPMode is the mode DHCP answers in now.
func (o *Orchestrator) DHCPMode() string {
	o.dhcpMu.Lock()
	live := o.dhcpLive
	o.dhcpMu.Unlock()
	if !live {
		return config.ModeOff
	}
	return string(o.dhcp.CurrentMode())
}

// Announce emits a listening event for every service port.
func (o *Orchestrator) Announce() {
	ip := o.RT.ServerIP.String()
	emit := func(stage tracker.Stage, proto string, port int) {
		o.Tracker.Emit(tracker.Event{Stage: stage, Event: tracker.KindListening, IP: ip, Port: port, Proto: proto})
	}
	if o.RT.DHCP.Mode != config.ModeOff {
		emit(tracker.StageDHCP, "udp", PortDHCP)
		emit(tracker.StagePXE, "udp", PortPXE)
	}
	emit(tracker.StageTFTP, "udp", o.RT.TFTP.Port)
	emit(tracker.StageHTTP, "tcp", o.RT.HTTP.Port)
	emit(tracker.StageRPC, "tcp", o.RT.RPC.EPMPort)
	emit(tracker.StageRPC, "tcp", o.RT.RPC.Port)
	emit(tracker.StageSMB, "tcp", o.RT.SMB.Port)
	emit(tracker.StageSMB, "tcp", o.RT.SMB.SessionPort)
	if o.nbns != nil {
		emit(tracker.StageSMB, "udp", netbios.DefaultNamePort)
		emit(tracker.StageSMB, "udp", netbios.DefaultDatagramPort)
	}
}

// SetAuthorization turns DHCP authorization on or off at once.
func (o *Orchestrator) SetAuthorization(on bool) {
	o.dhcp.SetAuthorization(on)
}

// Authorized reports the DHCP authorization state and its reason.
func (o *Orchestrator) Authorized() (bool, string) {
	if o.DHCPMode() == config.ModeOff {
		return false, "dhcp is off"
	}
	return o.dhcp.Authorized()
}

// SetUDPRange changes the range used by the next TFTP session.
func (o *Orchestrator) SetUDPRange(r udprange.Range) error {
	return o.Ports.Set(r)
}

// Leases lists the DHCP leases (authoritative mode).
func (o *Orchestrator) Leases() []dhcp.Lease {
	return o.dhcp.Leases()
}

// LeaseFile is where the DHCP leases are kept.
func (o *Orchestrator) LeaseFile() string { return filepath.Join(o.RT.DataDir, "leases.json") }

// Status implements control.API.
func (o *Orchestrator) Status() control.Status {
	ok, reason := o.Authorized()
	authz := o.dhcp.AuthorizationEnabled()
	return control.Status{
		Interface:     o.RT.Iface.Name,
		ServerIP:      o.RT.ServerIP.String(),
		DHCPMode:      o.DHCPMode(),
		Authorization: authz,
		Authorized:    ok,
		Reason:        reason,
		UDPRange:      o.Ports.Get().String(),
		Policy:        string(o.Policy.Mode()),
		Clients:       o.Tracker.Len(),
		Pending:       len(o.Policy.Pending()),
	}
}

// Clients implements control.API.
func (o *Orchestrator) Clients() []tracker.Client { return o.Tracker.Clients() }

// Pending implements control.API.
func (o *Orchestrator) Pending() []policy.PendingClient { return o.Policy.Pending() }

// Approve lets a pending (or denied) client boot.
func (o *Orchestrator) Approve(mac string) error {
	o.Policy.Approve(mac)
	o.Tracker.Emit(tracker.Event{MAC: mac, Stage: tracker.StagePXE, Event: tracker.KindDone, Detail: "approved by the operator"})
	o.log.Info("client approved", "mac", mac)
	return nil
}

// Deny refuses a client.
func (o *Orchestrator) Deny(mac string) error {
	o.Policy.Deny(mac)
	o.Tracker.Emit(tracker.Event{MAC: mac, Stage: tracker.StagePXE, Event: tracker.KindError, Detail: "denied by the operator"})
	o.log.Info("client denied", "mac", mac)
	return nil
}

// SetPolicy changes the PXE policy at once.
func (o *Orchestrator) SetPolicy(m policy.Mode) {
	o.Policy.SetMode(m)
	o.log.Info("pxe policy changed", "policy", string(m))
}

// ControlSocket is the control API's Unix socket for a data directory.
func ControlSocket(dataDir string) string { return filepath.Join(dataDir, "control.sock") }
