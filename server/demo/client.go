package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Defaults of Client.
const (
	DefaultTFTPPort = 69
	DefaultHTTPPort = 80
	// ScriptRetry is how often a client asks again for a pending script.
	ScriptRetry = 3 * time.Second
)

// HTTP client limits.
const (
	httpDialTimeout   = 5 * time.Second
	httpHeaderTimeout = 10 * time.Second
	// httpIdleTimeout ends a download that delivers nothing for this long
	// (a paced download may take minutes, so there is no overall limit).
	httpIdleTimeout = 15 * time.Second
)

// Client is one simulated PXE machine that performs real exchanges with
// the server: DHCP as PXE firmware, TFTP of the boot program, DHCP again as
// iPXE, then the iPXE script, kernel and initrd over HTTP.
type Client struct {
	// Iface is the interface for DHCP; "" means no DHCP (loopback mode:
	// fetch BootFile by TFTP directly).
	Iface string
	// Arch is the PXE client architecture (option 93): 0 BIOS, 7 EFI x86-64.
	Arch uint16
	// LocalIP is the source address every socket binds to in loopback mode
	// (127.0.0.N); nil in namespace mode.
	LocalIP net.IP
	// Server is the server address in loopback mode (namespace mode learns
	// it from DHCP).
	Server net.IP
	// TFTPPort is the server's TFTP port; 0 means 69.
	TFTPPort int
	// HTTPPort is the server's HTTP port in loopback mode (namespace mode
	// takes the URL from DHCP and the script); 0 means 80.
	HTTPPort int
	// BootFile is the TFTP file fetched first in loopback mode (e.g.
	// "undionly.kpxe").
	BootFile string
	// Rate caps every download at this many bytes per second so progress
	// is visible (0: unlimited). TFTP is never slowed below one block per
	// half second, since the server retransmits after one second.
	Rate int64
	// Log receives step-by-step progress lines (nil: discarded).
	Log *slog.Logger
	// MAC is the address put into the script's URLs (${mac}) in loopback
	// mode, which lets the server attribute the HTTP downloads to it and
	// apply its policy; nil: none, the server knows the client by its IP
	// only. Namespace mode always uses Iface's address.
	MAC net.HardwareAddr

	// Account and Password, when set, make the machine act as the imaging
	// agent after its boot: RPC through the endpoint mapper, an NTLM logon
	// at packet privacy, LOG_INIT, LOG_MSG and IMG_ENUMERATE.
	Account, Password string
	// EPMPort is the endpoint mapper's port (0: 135).
	EPMPort int
	// SMBPort is the image share's port (0: 445).
	SMBPort int

	// scriptRetry overrides ScriptRetry (tests).
	scriptRetry time.Duration
	// What the boot learned: the server, the local address, the MAC.
	bootServer, bootLocal net.IP
	bootMAC               net.HardwareAddr
}

// Run boots the simulated machine once and returns nil when the kernel and
// initrd have been downloaded completely.
func (c *Client) Run(ctx context.Context) error {
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var err error
	if c.Iface != "" {
		err = c.runNamespace(ctx, log)
	} else {
		err = c.runLoopback(ctx, log)
	}
	if err != nil || c.Account == "" {
		return err
	}
	return c.agent(ctx, log)
}

func (c *Client) tftpPort() int {
	if c.TFTPPort > 0 {
		return c.TFTPPort
	}
	return DefaultTFTPPort
}

// runLoopback skips DHCP: TFTP BootFile from Server, then the script.
func (c *Client) runLoopback(ctx context.Context, log *slog.Logger) error {
	if c.Server == nil {
		return errors.New("demo: loopback client needs Server")
	}
	if c.BootFile == "" {
		return errors.New("demo: loopback client needs BootFile")
	}
	httpPort := c.HTTPPort
	if httpPort <= 0 {
		httpPort = DefaultHTTPPort
	}
	log = log.With("local_ip", ipString(c.LocalIP))
	var laddr *net.UDPAddr
	if c.LocalIP != nil {
		laddr = &net.UDPAddr{IP: c.LocalIP}
	}
	if err := c.tftp(ctx, log, laddr, c.Server, c.BootFile, 0); err != nil {
		return err
	}
	script := "http://" + net.JoinHostPort(c.Server.String(), strconv.Itoa(httpPort)) + "/boot.ipxe"
	return c.boot(ctx, log, c.LocalIP, script, ScriptVars{MAC: c.MAC, IP: c.LocalIP})
}

// tftp downloads file from server and logs it.
func (c *Client) tftp(ctx context.Context, log *slog.Logger, laddr *net.UDPAddr, server net.IP, file string, mtu int) error {
	blk := tftpBlockSize
	if mtu > 0 {
		blk = min(blk, mtu-32)
	}
	to := &net.UDPAddr{IP: server, Port: c.tftpPort()}
	log.Info("tftp start", "server", to.String(), "file", file, "blksize", blk)
	p := newPacer(c.Rate)
	tick := progressLogger(log, "tftp progress", file)
	res, err := tftpGet(ctx, laddr, to, file, blk, p, tick)
	if err != nil {
		return err
	}
	log.Info("tftp done", "file", file, "bytes", res.Bytes, "tsize", res.TSize, "blksize", res.BlkSize,
		"session", res.Session.String(), "ms", res.Elapsed.Milliseconds())
	return nil
}

// progressLogger returns a callback that logs progress at debug level at
// most once a second.
func progressLogger(log *slog.Logger, msg, file string) func(int64) {
	last := time.Now()
	return func(n int64) {
		if now := time.Now(); now.Sub(last) >= time.Second {
			last = now
			log.Debug(msg, "file", file, "bytes", n)
		}
	}
}

// boot fetches the iPXE script at scriptURL (waiting while it is the
// pending script), then the kernel and initrd it names.
func (c *Client) boot(ctx context.Context, log *slog.Logger, local net.IP, scriptURL string, vars ScriptVars) error {
	hc := newHTTPClient(local, c.Rate)
	defer hc.CloseIdleConnections()
	retry := c.scriptRetry
	if retry <= 0 {
		retry = ScriptRetry
	}
	u, err := url.Parse(expand(scriptURL, vars))
	if err != nil {
		return fmt.Errorf("demo: script URL %q: %w", scriptURL, err)
	}
	c.bootServer, c.bootLocal, c.bootMAC = net.ParseIP(u.Hostname()), local, vars.MAC
	if u.Query().Get("mac") == "" && len(vars.MAC) > 0 {
		// As the chained scripts do: tell the server who asks.
		q := u.Query()
		q.Set("mac", expand("${mac:hexhyp}", vars))
		u.RawQuery = q.Encode()
	}
	var s Script
	for attempt := 1; ; attempt++ {
		start := time.Now()
		body, err := getSmall(ctx, hc, u.String())
		if err != nil {
			return err
		}
		s, err = ParseScript(body, u, vars)
		if err != nil {
			return err
		}
		log.Info("script", "url", u.String(), "kind", s.Kind.String(), "bytes", len(body), "ms", time.Since(start).Milliseconds(), "attempt", attempt)
		if s.Kind != ScriptWait {
			break
		}
		if attempt == 1 {
			log.Info("script pending: waiting for the operator", "message", s.Message, "retry_every", retry.String())
		}
		if err := sleepCtx(ctx, retry); err != nil {
			return fmt.Errorf("demo: waiting for approval: %w", err)
		}
		if next, err := url.Parse(s.Chain); err == nil {
			u = next
		}
	}
	switch s.Kind {
	case ScriptDenied:
		log.Info("script denied", "message", s.Message)
		return fmt.Errorf("%w (%s)", ErrDenied, s.Message)
	case ScriptExit:
		log.Info("script ends without booting", "message", s.Message)
		return fmt.Errorf("demo: script does not boot: %s", s.Message)
	}
	log.Info("script boots", "kernel", s.Kernel, "initrd", s.Initrd, "cmdline", s.Cmdline)
	if err := c.download(ctx, log, hc, s.Kernel); err != nil {
		return err
	}
	if s.Initrd != "" {
		if err := c.download(ctx, log, hc, s.Initrd); err != nil {
			return err
		}
	}
	log.Info("boot files loaded: the machine would boot now")
	return nil
}

// newHTTPClient returns a client whose connections leave from local (nil:
// any address) and never go through a proxy. With a rate the receive
// buffer is kept small, so the server can run only a little ahead of the
// paced reader and its progress events follow the client's pace.
func newHTTPClient(local net.IP, rate int64) *http.Client {
	d := &net.Dialer{Timeout: httpDialTimeout}
	if local != nil {
		d.LocalAddr = &net.TCPAddr{IP: local}
	}
	if rate > 0 {
		n := int(min(max(rate/256, 8<<10), 1<<20))
		d.Control = func(_, _ string, c syscall.RawConn) error { return smallWindow(c, n) }
	}
	return &http.Client{Transport: &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ResponseHeaderTimeout: httpHeaderTimeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       30 * time.Second,
	}}
}

// getSmall GETs a small document (the script).
func getSmall(ctx context.Context, hc *http.Client, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, httpHeaderTimeout+httpIdleTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("demo: GET %s: %w", u, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("demo: GET %s: %w", u, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("demo: GET %s: %s", u, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxScript+1))
	if err != nil {
		return nil, fmt.Errorf("demo: GET %s: %w", u, err)
	}
	return b, nil
}

// download GETs u at the client's rate, discarding the data, and checks
// that it got as many bytes as Content-Length announced.
func (c *Client) download(ctx context.Context, log *slog.Logger, hc *http.Client, u string) error {
	start := time.Now()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := newWatchdog(httpIdleTimeout, func() { cancel(fmt.Errorf("no data for %s", httpIdleTimeout)) })
	defer idle.stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("demo: GET %s: %w", u, err)
	}
	log.Info("http start", "url", u)
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("demo: GET %s: %w", u, causeOr(ctx, unwrapURLError(err)))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("demo: GET %s: %s", u, resp.Status)
	}
	tick := progressLogger(log, "http progress", u)
	n, err := copyPaced(ctx, resp.Body, newPacer(c.Rate), func(n int64) {
		idle.reset()
		tick(n)
	})
	if err != nil {
		return fmt.Errorf("demo: GET %s after %d bytes: %w", u, n, causeOr(ctx, err))
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fmt.Errorf("demo: GET %s: got %d bytes, Content-Length %d", u, n, resp.ContentLength)
	}
	el := time.Since(start)
	log.Info("http done", "url", u, "bytes", n, "ms", el.Milliseconds(), "bytes_per_s", int64(float64(n)/max(el.Seconds(), 1e-3)))
	return nil
}

// causeOr prefers the reason ctx was cancelled with (the idle watchdog) to
// the bare error it caused.
func causeOr(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) && !errors.Is(c, context.DeadlineExceeded) {
		return c
	}
	return err
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// watchdog calls fire when reset has not been called for d.
type watchdog struct {
	mu sync.Mutex
	t  *time.Timer
	d  time.Duration
}

func newWatchdog(d time.Duration, fire func()) *watchdog {
	return &watchdog{t: time.AfterFunc(d, fire), d: d}
}

func (w *watchdog) reset() {
	w.mu.Lock()
	w.t.Reset(w.d)
	w.mu.Unlock()
}

func (w *watchdog) stop() {
	w.mu.Lock()
	w.t.Stop()
	w.mu.Unlock()
}

func ipString(ip net.IP) string {
	if ip == nil {
		return ""
	}
	return ip.String()
}
