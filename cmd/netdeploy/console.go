package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/term"
	"github.com/spf13/cobra"

	"github.com/netdeploy/netdeploy/config"
	"github.com/netdeploy/netdeploy/server"
	"github.com/netdeploy/netdeploy/server/policy"
	"github.com/netdeploy/netdeploy/server/tracker"
	"github.com/netdeploy/netdeploy/server/udprange"
	"github.com/netdeploy/netdeploy/tui"
)

// runConsole is the root command: the services with the interactive
// console in front of them.
func runConsole(cmd *cobra.Command, _ []string) error {
	in, out := cmd.InOrStdin(), cmd.OutOrStdout()
	if !isTerminal(in) || !isTerminal(out) {
		return usageError{errors.New("the console needs a terminal; for scripts run \"netdeploy serve\" (JSON events on stdout)")}
	}
	cfg, err := config.Load(cmd.Flags())
	if err != nil {
		return err
	}
	rt, err := cfg.Resolve(config.SystemInterfaces)
	if err != nil {
		return err
	}
	return console(cmd.Context(), rt, consoleIO{in: in, out: out, errOut: cmd.ErrOrStderr()}, nil)
}

type consoleIO struct {
	in          io.Reader
	out, errOut io.Writer
	tempData    bool // data_dir goes away on exit: do not point at its log
}

// console runs the services of rt behind the console until the operator
// quits or a signal arrives. Logs go to the console's log pane and to
// data_dir/netdeploy.log. started, if set, runs once the services are up
// (the demo starts its clients there).
func console(parent context.Context, rt *config.Runtime, cio consoleIO, started func(ctx context.Context, log *slog.Logger)) error {
	if parent == nil {
		parent = context.Background()
	}
	if err := os.MkdirAll(rt.DataDir, 0o755); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	logPath := filepath.Join(rt.DataDir, "netdeploy.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("console: log file: %w", err)
	}
	defer logFile.Close()
	var level slog.Level
	level.UnmarshalText([]byte(strings.ToUpper(rt.LogLevel)))
	buf := tui.NewLogBuffer(slog.LevelDebug, 20000)
	log := slog.New(teeHandler{
		buf,
		slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: level}),
	})

	o, err := server.New(rt, log)
	if err != nil {
		return err
	}
	sub := o.Tracker.Subscribe()
	defer sub.Close()
	if err := o.Listen(); err != nil {
		return err // before the screen is taken: the error prints plainly
	}
	log.Info("netdeploy serving", "interface", rt.Iface.Name, "ip", rt.ServerIP, "dhcp", rt.DHCP.Mode,
		"udp_range", rt.Range.String(), "http_port", rt.HTTP.Port, "policy", string(rt.Policy), "log", logPath)
	be := &consoleBackend{o: o, sub: sub, logs: buf, started: time.Now(), file: rt.File}
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	startedDone := make(chan struct{})
	if started == nil {
		close(startedDone)
	}
	err = runServices(ctx, o, log, func(ctx context.Context) error {
		if started != nil {
			go func() {
				defer close(startedDone)
				started(ctx, log)
			}()
		}
		p := tea.NewProgram(tui.New(be, tui.Options{}), tea.WithAltScreen(), tea.WithContext(ctx),
			tea.WithInput(cio.in), tea.WithOutput(cio.out))
		_, err := p.Run()
		if errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil {
			return nil // a signal or a failed service ended it
		}
		return err
	})
	// What started runs on ctx, which has ended: let it finish before the
	// log file closes.
	select {
	case <-startedDone:
	case <-time.After(5 * time.Second):
		log.Warn("demo clients still running at exit")
	}
	if err != nil {
		return err
	}
	where := "; log in " + logPath
	if cio.tempData {
		where = ""
	}
	fmt.Fprintf(cio.errOut, "netdeploy: stopped cleanly; %d clients seen%s\n", o.Tracker.Len(), where)
	return nil
}

func isTerminal(v any) bool {
	f, ok := v.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(f.Fd())
}

// teeHandler sends every record to each of its handlers.
type teeHandler []slog.Handler

func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range t {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	for _, h := range t {
		if h.Enabled(ctx, r.Level) {
			errs = append(errs, h.Handle(ctx, r.Clone()))
		}
	}
	return errors.Join(errs...)
}

func (t teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(teeHandler, len(t))
	for i, h := range t {
		out[i] = h.WithAttrs(as)
	}
	return out
}

func (t teeHandler) WithGroup(name string) slog.Handler {
	out := make(teeHandler, len(t))
	for i, h := range t {
		out[i] = h.WithGroup(name)
	}
	return out
}

// consoleBackend is the console's view of the orchestrator.
type consoleBackend struct {
	o       *server.Orchestrator
	sub     *tracker.Subscription
	logs    *tui.LogBuffer
	started time.Time
	file    string

	imagesAt  time.Time
	imagesSum string
}

func (b *consoleBackend) Snapshot() tui.Snapshot {
	now := time.Now()
	st := b.o.Status()
	// The image store is scanned at most every two seconds.
	if now.Sub(b.imagesAt) > 2*time.Second {
		b.imagesSum, b.imagesAt = b.o.Catalog.Summary(), now
	}
	s := tui.Snapshot{
		At: now, Started: b.started,
		Interface: st.Interface, ServerIP: st.ServerIP, DHCPMode: st.DHCPMode,
		Authorization: st.Authorization, Authorized: st.Authorized, Reason: st.Reason,
		UDPRange: st.UDPRange, Policy: st.Policy, Images: b.imagesSum, ConfigFile: b.file,
	}
	for _, p := range b.o.PortTable() {
		s.Ports = append(s.Ports, tui.PortState{
			Service: p.Service, Proto: p.Proto, Port: p.Port, State: p.State, Reason: p.Reason,
			PacketsIn: p.Stats.PacketsIn, PacketsOut: p.Stats.PacketsOut, BytesIn: p.Stats.BytesIn, BytesOut: p.Stats.BytesOut, Active: p.Stats.Active,
		})
	}
	for _, x := range b.o.Sessions() {
		s.Sessions = append(s.Sessions, tui.Session{Proto: "tftp", Client: x.Client, LocalPort: x.LocalPort, File: x.File, Bytes: x.Bytes, Total: x.Total, Started: x.Started})
	}
	for _, m := range b.o.MulticastSessions() {
		for _, c := range m.Stats.Clients {
			client := c.Peer
			if client == "" {
				client = c.IP
			}
			s.Sessions = append(s.Sessions, tui.Session{Proto: "multicast", Client: client, LocalPort: m.Port, File: m.Image, Bytes: c.Bytes, Total: m.Size, Started: m.Started})
		}
	}
	for _, p := range b.o.Pending() {
		s.Pending = append(s.Pending, tui.Pending{MAC: p.MAC, Since: p.Since})
	}
	return s
}

func (b *consoleBackend) Events() []tracker.Event { return b.sub.Next() }

func (b *consoleBackend) Logs() []tui.LogLine {
	lines, lost := b.logs.Drain()
	if lost > 0 {
		lines = append(lines, tui.LogLine{Time: time.Now(), Level: slog.LevelWarn, Msg: "console: " + strconv.Itoa(lost) + " log lines dropped (the full log is in data_dir/netdeploy.log)"})
	}
	return lines
}

func (b *consoleBackend) SetAuthorization(on bool) error { b.o.SetAuthorization(on); return nil }
func (b *consoleBackend) SetDHCPMode(mode string) error  { return b.o.SetDHCPMode(mode) }
func (b *consoleBackend) SetUDPRange(r udprange.Range) error {
	return b.o.SetUDPRange(r)
}

func (b *consoleBackend) SetPolicy(mode string) error {
	m, err := policy.ParseMode(mode)
	if err != nil {
		return err
	}
	b.o.SetPolicy(m)
	return nil
}

func (b *consoleBackend) Approve(mac string) error { return b.o.Approve(mac) }
func (b *consoleBackend) Deny(mac string) error    { return b.o.Deny(mac) }

func (b *consoleBackend) StartMulticast() (int, error) { return b.o.StartMulticast() }

func (b *consoleBackend) Save() (string, error) {
	st := b.o.Status()
	err := config.Save(b.file, map[string]any{
		"dhcp.mode":          st.DHCPMode,
		"dhcp.authorization": st.Authorization,
		"udp_range":          st.UDPRange,
		"pxe.policy":         st.Policy,
	})
	return b.file, err
}
