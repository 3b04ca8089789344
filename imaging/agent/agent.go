// Package agent is the core of netdeploy's imaging agent: the program a
// booted client runs to copy a raw disk image from the server onto its
// disk. Run finds the WDS interface through the endpoint mapper, logs on
// with NTLM at packet privacy, enumerates the images, reads the chosen one
// from the "images" share over SMB, decompresses it (zstd, gzip or none)
// onto the target, verifies its SHA-256 and reports every step to the
// server with LOG_MSG, following the apply convention of server/wds
// (apply.go), so that the console shows the apply, done and failed stages.
package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	msdcerpc "github.com/oiweiwei/go-msrpc/dcerpc"
	dcerrors "github.com/oiweiwei/go-msrpc/dcerpc/errors"
	msepm "github.com/oiweiwei/go-msrpc/msrpc/epm/epm/v3"
	wdsv1 "github.com/oiweiwei/go-msrpc/msrpc/wdsc/wdsrpcinterface/v1"
	"github.com/oiweiwei/go-msrpc/ssp"
	"github.com/oiweiwei/go-msrpc/ssp/credential"
	"github.com/oiweiwei/go-msrpc/ssp/gssapi"

	"github.com/netdeploy/netdeploy/imaging"
	"github.com/netdeploy/netdeploy/server/wds"
)

// Config says where to find the server and what to write.
type Config struct {
	// Server is the deployment server. Nil: learned by DHCP on Iface
	// (option 54, else siaddr).
	Server net.IP
	// Iface is the network interface to use: DHCP runs on it, and its
	// hardware address is the CLIENT_MAC of the reports unless MAC is set.
	Iface string
	// MAC is the CLIENT_MAC sent with every report. Nil: Iface's
	// address; none at all leaves CLIENT_MAC out (the server then knows
	// the client by its IP address).
	MAC net.HardwareAddr
	// Account and Password log on to RPC and SMB (NTLM).
	Account, Password string
	// Image chooses the image: its name or path, without case. "": Choose
	// picks, else the first raw image enumerated.
	Image string
	// Choose, when Image is "" and several raw images are offered, picks
	// one of them (the technician at the machine's console) and returns
	// its index. The RPC connection is kept alive meanwhile.
	Choose func(ctx context.Context, offered []Offer) (int, error)
	// Unicast never joins a multicast session: the image is read by SMB.
	Unicast bool
	// TargetFile is written: a regular file is created or truncated; a
	// block device is written in place and must hold the image.
	TargetFile string
	// EPMPort and SMBPort are the endpoint mapper's and the SMB server's
	// TCP ports. 0: 135 and 445.
	EPMPort, SMBPort int
	// ProgressEvery spaces the apply reports. 0: one second.
	ProgressEvery time.Duration
	// Log receives the agent's diagnostics. Nil: slog.Default().
	Log *slog.Logger
}

// Offer is an image offered to Choose.
type Offer struct {
	Name, Path string
	Size       int64 // uncompressed size when known, else 0
}

// Result is what Run deployed.
type Result struct {
	Name     string        // the image's name
	Path     string        // its path on the images share
	SHA256   string        // hex SHA-256 of what was written (verified)
	Bytes    int64         // uncompressed bytes written
	Duration time.Duration // from the first RPC call to the verification
}

// Errors Run wraps; test with errors.Is.
var (
	ErrChecksum      = errors.New("checksum mismatch")
	ErrImageNotFound = errors.New("image not found")
	ErrTargetSmall   = errors.New("target too small")
	ErrUnsupported   = errors.New("image not supported")
	ErrLogon         = errors.New("logon refused")
)

// smbRetries is how many times the SMB transfer is attempted; the waits
// between attempts double from smbBackoff.
const smbRetries = 5

var smbBackoff = time.Second // a variable for tests

// imageInfo is an enumerated image with its XML read.
type imageInfo struct {
	Name        string
	Path        string
	Kind        string
	Compression string
	SHA256      string
	Size        int64 // uncompressed size when known, else 0
	FileSize    int64
}

// Run deploys one image as cfg says. Once the RPC logon succeeded, every
// failure is also reported to the server (ND_STAGE=failed) before Run
// returns it.
func Run(ctx context.Context, cfg Config) (Result, error) {
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	if cfg.TargetFile == "" {
		return Result{}, errors.New("agent: no target file")
	}
	s, err := connect(ctx, cfg, log)
	if err != nil {
		return Result{}, err
	}
	defer s.close()
	start := time.Now()
	res, err := s.deploy(ctx, log)
	if err != nil {
		r := wds.ApplyReport{Stage: wds.ApplyStageFailed, Image: res.Path, Reason: err.Error()}
		// Report even when ctx ended (s.call bounds the wait).
		if lerr := s.report(context.WithoutCancel(ctx), wds.MsgClientError, err.Error(), r); lerr != nil {
			log.Warn("agent could not report its failure", "err", lerr)
		}
		return res, err
	}
	res.Duration = time.Since(start)
	return res, nil
}

// connect finds the server (cfg.Server, else DHCP on cfg.Iface) and logs
// on to its RPC service.
func connect(ctx context.Context, cfg Config, log *slog.Logger) (*session, error) {
	server := cfg.Server
	if server == nil {
		if cfg.Iface == "" {
			return nil, errors.New("agent: no server and no interface to learn it on")
		}
		var err error
		if server, err = discoverServer(ctx, cfg.Iface); err != nil {
			return nil, err
		}
		log.Info("agent learned its server by DHCP", "server", server, "iface", cfg.Iface)
	}
	mac := cfg.MAC
	if mac == nil && cfg.Iface != "" {
		if ifi, err := net.InterfaceByName(cfg.Iface); err == nil {
			mac = ifi.HardwareAddr
		}
	}
	return dialRPC(ctx, server, cfg, mac)
}

// Fail reports a deployment that could not even start (no disk, for
// one) as failed with reason, so that the server's console and report
// show it: it logs on as cfg says and sends the failed report.
func Fail(ctx context.Context, cfg Config, reason error) error {
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	s, err := connect(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.logInit(ctx); err != nil {
		return err
	}
	r := wds.ApplyReport{Stage: wds.ApplyStageFailed, Image: cfg.Image, Reason: reason.Error()}
	return s.report(ctx, wds.MsgClientError, reason.Error(), r)
}

// session is the RPC side of a run.
type session struct {
	cfg    Config
	server string
	mac    string
	cc     msdcerpc.Conn
	cli    wdsv1.InterfaceClient
	ctx    context.Context // the security context the client was bound in
	cancel context.CancelFunc
}

func dialRPC(ctx context.Context, server net.IP, cfg Config, mac net.HardwareAddr) (*session, error) {
	sctx := gssapi.NewSecurityContext(ctx)
	host := server.String()
	epmPort := cfg.EPMPort
	if epmPort == 0 {
		epmPort = 135
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	// The connection lives as long as the context it was dialled with:
	// dctx lasts until close, or 30 seconds if the logon takes longer.
	dctx, cancel := context.WithCancel(sctx)
	timer := time.AfterFunc(30*time.Second, cancel)
	defer timer.Stop()
	// go-msrpc's mapper dials the well-known port 135 whatever the
	// address says: epmDialer sends it to epmPort.
	ed := epmDialer{d: d, port: strconv.Itoa(epmPort)}
	cc, err := msdcerpc.Dial(dctx, host, msepm.EndpointMapper(dctx, net.JoinHostPort(host, strconv.Itoa(epmPort)), msdcerpc.WithInsecure(), msdcerpc.WithDialer(ed)), msdcerpc.WithDialer(d))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("agent: dial %s: %w", host, err)
	}
	cli, err := wdsv1.NewInterfaceClient(dctx, cc, msdcerpc.WithEndpoint("ncacn_ip_tcp:"),
		msdcerpc.WithCredentials(credential.NewFromPassword(cfg.Account, cfg.Password)), msdcerpc.WithMechanism(ssp.NTLM), msdcerpc.WithSeal())
	if err != nil {
		cc.Close(sctx)
		cancel()
		return nil, fmt.Errorf("agent: rpc logon as %s: %w", cfg.Account, err)
	}
	if !timer.Stop() {
		cc.Close(sctx)
		return nil, fmt.Errorf("agent: rpc logon as %s: %w", cfg.Account, context.DeadlineExceeded)
	}
	s := &session{cfg: cfg, server: host, cc: cc, cli: cli, ctx: dctx, cancel: cancel}
	if len(mac) > 0 {
		s.mac = mac.String()
	}
	return s, nil
}

// epmDialer dials port 135 as port.
type epmDialer struct {
	d    *net.Dialer
	port string
}

func (e epmDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if host, port, err := net.SplitHostPort(address); err == nil && port == "135" {
		address = net.JoinHostPort(host, e.port)
	}
	return e.d.DialContext(ctx, network, address)
}

func (s *session) close() {
	s.cc.Close(s.ctx)
	s.cancel()
}

// call sends one request. The calls run in the security context the
// client was bound in, cancelled with ctx.
func (s *session) call(ctx context.Context, op uint32, vars ...wds.Var) (*wds.Packet, error) {
	return s.callEndpoint(ctx, wds.OSDeploymentEndpoint, op, vars...)
}

// callEndpoint sends one request to a service provider of WdsRpcMessage.
func (s *session) callEndpoint(ctx context.Context, ep wds.GUID, op uint32, vars ...wds.Var) (*wds.Packet, error) {
	cctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	req, err := wds.EncodeRequest(ep, op, vars...)
	if err != nil {
		return nil, err
	}
	resp, err := s.cli.Message(cctx, &wdsv1.MessageRequest{RequestPacketSize: uint32(len(req)), RequestPacket: req})
	if err != nil {
		return nil, err
	}
	return wds.ParseReply(resp.ReplyPacket)
}

// logMsg sends a LOG_MSG of type typ with text and extra variables.
func (s *session) logMsg(ctx context.Context, typ uint32, text string, extra ...wds.Var) error {
	vars := []wds.Var{wds.ULongVar(wds.VarMessageType, typ)}
	if s.mac != "" {
		vars = append(vars, wds.WStringVar(wds.VarClientMAC, s.mac))
	}
	if len(text) > 1000 {
		text = text[:1000]
	}
	vars = append(vars, wds.WStringVar(wds.VarMessage, text))
	_, err := s.call(ctx, wds.OpLogMsg, append(vars, extra...)...)
	return err
}

// report sends an apply-convention LOG_MSG.
func (s *session) report(ctx context.Context, typ uint32, text string, r wds.ApplyReport) error {
	if len(r.Reason) > 1000 {
		r.Reason = r.Reason[:1000]
	}
	return s.logMsg(ctx, typ, text, r.Vars()...)
}

// logInit sends LOG_INIT, the first call of a session. The NTLM exchange
// ends without a reply: a wrong password shows as this call failing with
// access denied, returned as ErrLogon.
func (s *session) logInit(ctx context.Context) error {
	if _, err := s.call(ctx, wds.OpLogInit, wds.ULongVar(wds.VarVersion, 1)); err != nil {
		var de *dcerrors.Error
		if errors.As(err, &de) && de.Value == uint32(5) {
			return fmt.Errorf("agent: %w for %s (wrong account or password?): %w", ErrLogon, s.cfg.Account, err)
		}
		return fmt.Errorf("agent: log init: %w", err)
	}
	return nil
}

// deploy runs the steps after the logon. The Result carries the image's
// name and path as soon as one was chosen, for the failure report.
func (s *session) deploy(ctx context.Context, log *slog.Logger) (Result, error) {
	var res Result
	if err := s.logInit(ctx); err != nil {
		return res, err
	}
	if err := s.logMsg(ctx, wds.MsgClientStarted, "netdeploy agent started; logged on as "+s.cfg.Account); err != nil {
		return res, fmt.Errorf("agent: log: %w", err)
	}
	images, err := s.enumerate(ctx)
	if err != nil {
		return res, err
	}
	want := s.cfg.Image
	if want == "" && s.cfg.Choose != nil {
		if want, err = s.askChoice(ctx, images); err != nil {
			return res, err
		}
	}
	im, err := choose(images, want)
	if err != nil {
		return res, err
	}
	res.Name, res.Path = im.Name, im.Path
	log.Info("agent chose its image", "name", im.Name, "path", im.Path, "compression", im.Compression, "size", im.Size)
	if err := s.logMsg(ctx, wds.MsgClientImageSelected, "selected "+im.Path, wds.WStringVar("IMAGE_NAME", im.Name)); err != nil {
		return res, fmt.Errorf("agent: log: %w", err)
	}
	t, err := openTarget(s.cfg.TargetFile, im.Size)
	if err != nil {
		return res, err
	}
	defer t.f.Close()
	a := &applier{s: s, im: im, t: t, log: log, every: s.cfg.ProgressEvery}
	if a.every <= 0 {
		a.every = time.Second
	}
	sum, n, ok := a.tryMulticast(ctx)
	if !ok {
		if sum, n, err = a.run(ctx); err != nil {
			return res, err
		}
	}
	res.Bytes = n
	if err := a.sync(ctx); err != nil {
		return res, fmt.Errorf("agent: fsync %s: %w", s.cfg.TargetFile, err)
	}
	// sum is of what read back from the target when the manifest has a
	// SHA-256, else of what was received, which read back the same
	// (applier.copy).
	if want := im.SHA256; want != "" && !strings.EqualFold(want, sum) {
		return res, fmt.Errorf("agent: verify %s: %w: %s read back with sha256 %s, the manifest says %s", s.cfg.TargetFile, ErrChecksum, im.Path, sum, want)
	}
	got := sum
	res.SHA256 = got
	log.Info("agent wrote and verified its image", "path", im.Path, "bytes", n, "sha256", got)
	done := wds.ApplyReport{Stage: wds.ApplyStageDone, Image: im.Path}
	if err := s.report(ctx, wds.MsgClientFinished, "sha256 "+got, done); err != nil {
		log.Warn("agent could not report its success", "err", err)
	}
	return res, nil
}

// enumerate asks for the image list (IMG_ENUMERATE version 2.0).
func (s *session) enumerate(ctx context.Context) ([]imageInfo, error) {
	reply, err := s.call(ctx, wds.OpImgEnumerate, wds.ULongVar(wds.VarVersion, 1), wds.ULongVar(wds.VarCC, wds.ClientCapV2))
	if err != nil {
		return nil, fmt.Errorf("agent: enumerate: %w", err)
	}
	var out []imageInfo
	for i := 0; reply.Has(wds.V2ImageVar("Xml", i)); i++ {
		x, err := reply.Text(wds.V2ImageVar("Xml", i))
		if err != nil {
			return nil, fmt.Errorf("agent: enumerate: %w", err)
		}
		p, err := reply.Text(wds.V2ImageVar("Path", i))
		if err != nil {
			return nil, fmt.Errorf("agent: enumerate: %w", err)
		}
		im, err := parseImageXML(x)
		if err != nil {
			return nil, fmt.Errorf("agent: enumerate: image %d (%s): %w", i, p, err)
		}
		im.Path = p
		out = append(out, im)
	}
	return out, nil
}

// imageXML is the part of wds.ImageXML the agent reads.
type imageXML struct {
	XMLName xml.Name `xml:"WIM"`
	Image   struct {
		Name       string `xml:"NAME"`
		TotalBytes int64  `xml:"TOTALBYTES"`
		ND         struct {
			Kind        string `xml:"KIND"`
			Compression string `xml:"COMPRESSION"`
			SHA256      string `xml:"SHA256"`
			FileSize    int64  `xml:"FILESIZE"`
		} `xml:"NETDEPLOY"`
	} `xml:"IMAGE"`
}

func parseImageXML(s string) (imageInfo, error) {
	var x imageXML
	if err := xml.Unmarshal([]byte(s), &x); err != nil {
		return imageInfo{}, fmt.Errorf("image xml: %w", err)
	}
	im := imageInfo{
		Name:        x.Image.Name,
		Kind:        strings.ToLower(x.Image.ND.Kind),
		Compression: strings.ToLower(x.Image.ND.Compression),
		SHA256:      strings.ToLower(x.Image.ND.SHA256),
		FileSize:    x.Image.ND.FileSize,
		Size:        x.Image.TotalBytes,
	}
	if im.SHA256 != "" {
		if b, err := hex.DecodeString(im.SHA256); err != nil || len(b) != sha256.Size {
			return imageInfo{}, fmt.Errorf("image xml: bad SHA256 %q", im.SHA256)
		}
	}
	// A compressed image without a manifest size reports its file size as
	// TOTALBYTES (imaging.Image.Size): the uncompressed size is unknown.
	if im.Compression != "" && im.Size == im.FileSize {
		im.Size = 0
	}
	if im.Size < 0 {
		im.Size = 0
	}
	return im, nil
}

// choose picks the image named by want (name or path, without case), or
// the first raw image when want is empty.
func choose(images []imageInfo, want string) (imageInfo, error) {
	norm := func(p string) string { return strings.ToLower(strings.ReplaceAll(p, "/", `\`)) }
	for _, im := range images {
		if want == "" {
			if im.Kind == imaging.KindRaw {
				return im, nil
			}
			continue
		}
		if strings.EqualFold(im.Name, want) || norm(im.Path) == norm(want) {
			if im.Kind != imaging.KindRaw {
				return im, fmt.Errorf("agent: %s: %w: kind %q (only raw images are written)", im.Path, ErrUnsupported, im.Kind)
			}
			return im, nil
		}
	}
	if want == "" {
		return imageInfo{}, fmt.Errorf("agent: %w: the server offers %d images, none raw", ErrImageNotFound, len(images))
	}
	return imageInfo{}, fmt.Errorf("agent: %w: %q is not among the %d images offered", ErrImageNotFound, want, len(images))
}

// askChoice asks cfg.Choose among the raw images, when there are several,
// and returns the chosen image's path ("" for the first raw image). A
// LOG_MSG every 30 s keeps the RPC connection from idling out while the
// technician reads the list.
func (s *session) askChoice(ctx context.Context, images []imageInfo) (string, error) {
	var raw []imageInfo
	var offers []Offer
	for _, im := range images {
		if im.Kind == imaging.KindRaw {
			raw = append(raw, im)
			offers = append(offers, Offer{Name: im.Name, Path: im.Path, Size: im.Size})
		}
	}
	if len(raw) < 2 {
		return "", nil
	}
	if err := s.logMsg(ctx, wds.MsgClientGenericMessage, "waiting for a choice at the console"); err != nil {
		return "", fmt.Errorf("agent: log: %w", err)
	}
	type answer struct {
		i   int
		err error
	}
	got := make(chan answer, 1)
	go func() {
		i, err := s.cfg.Choose(ctx, offers)
		got <- answer{i, err}
	}()
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case a := <-got:
			if a.err != nil {
				return "", fmt.Errorf("agent: choice: %w", a.err)
			}
			if a.i < 0 || a.i >= len(raw) {
				return "", fmt.Errorf("agent: choice %d of %d images", a.i, len(raw))
			}
			return raw[a.i].Path, nil
		case <-tick.C:
			if err := s.logMsg(ctx, wds.MsgClientGenericMessage, "still waiting for a choice at the console"); err != nil {
				return "", fmt.Errorf("agent: log: %w", err)
			}
		}
	}
}
