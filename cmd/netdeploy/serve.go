package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/netdeploy/netdeploy/config"
	"github.com/netdeploy/netdeploy/server"
	"github.com/netdeploy/netdeploy/server/tracker"
)

func newServe() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the enabled services headless: JSON events on stdout, logs on stderr",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cmd.Flags())
			if err != nil {
				return err
			}
			rt, err := cfg.Resolve(config.SystemInterfaces)
			if err != nil {
				return err
			}
			log := newLogger(cmd.ErrOrStderr(), rt.LogLevel)
			return serve(cmd.Context(), rt, log, cmd.OutOrStdout())
		},
	}
	config.AddFlags(cmd.Flags())
	return cmd
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	l.UnmarshalText([]byte(strings.ToUpper(level)))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// serve runs every service until SIGINT or SIGTERM, writing events as JSON
// lines to out.
func serve(parent context.Context, rt *config.Runtime, log *slog.Logger, out io.Writer) error {
	if parent == nil {
		parent = context.Background()
	}
	o, err := server.New(rt, log)
	if err != nil {
		return err
	}
	sub := o.Tracker.Subscribe()
	defer sub.Close()
	if err := o.Listen(); err != nil {
		return err
	}
	log.Info("netdeploy serving", "interface", rt.Iface.Name, "ip", rt.ServerIP, "dhcp", rt.DHCP.Mode,
		"authorization", rt.DHCP.Authorization, "udp_range", rt.Range.String(), "http_port", rt.HTTP.Port,
		"pool", poolString(rt), "policy", string(rt.Policy))

	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	streamStop, streamDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(streamDone)
		writeEvents(streamStop, sub, out, log)
	}()
	err = runServices(ctx, o, log, nil)
	close(streamStop)
	<-streamDone
	if err != nil {
		return err
	}
	log.Info("stopped cleanly")
	return nil
}

// runServices runs every service of o, one goroutine each, plus the front
// end (if any), until ctx ends, a service fails or the front end returns;
// then it shuts every service down.
func runServices(ctx context.Context, o *server.Orchestrator, log *slog.Logger, front func(ctx context.Context) error) error {
	g, gctx := errgroup.WithContext(ctx)
	services := o.Services()
	for _, s := range services {
		g.Go(s.Serve)
	}
	o.Announce()
	if front != nil {
		g.Go(func() error {
			err := front(gctx)
			if err == nil {
				err = errFrontEndDone
			}
			return err
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		log.Info("stopping", "reason", context.Cause(gctx))
		// Every service gets the same 10 s, in parallel; one that runs
		// out of time is closed hard, which is logged, not an error.
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		errs := make([]error, len(services))
		var wg sync.WaitGroup
		for i, s := range services {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.Shutdown(sctx)
				switch {
				case err == nil, errors.Is(err, context.Canceled):
				case errors.Is(err, context.DeadlineExceeded):
					log.Warn("service closed before its transfers ended", "service", s.Name)
				default:
					errs[i] = fmt.Errorf("%s: %w", s.Name, err)
				}
			}()
		}
		wg.Wait()
		return errors.Join(errs...)
	})
	if err := g.Wait(); err != nil && !errors.Is(err, errFrontEndDone) {
		return err
	}
	return nil
}

// errFrontEndDone stops the services when the console quits.
var errFrontEndDone = errors.New("console closed")

func poolString(rt *config.Runtime) string {
	if rt.PoolStart == nil || rt.DHCP.Mode != config.ModeAuthoritative {
		return "none"
	}
	return rt.PoolStart.String() + "-" + rt.PoolEnd.String()
}

// writeEvents copies the event stream to out, one JSON object per line,
// until stop is closed (and then writes what is still queued).
func writeEvents(stop <-chan struct{}, sub *tracker.Subscription, out io.Writer, log *slog.Logger) {
	w := bufio.NewWriter(out)
	enc := json.NewEncoder(w)
	broken := false
	flush := func() {
		for _, e := range sub.Next() {
			if broken {
				continue
			}
			if err := enc.Encode(e); err != nil {
				broken = true
			}
		}
		if !broken && w.Flush() != nil {
			broken = true
			log.Warn("event output closed; services keep running")
		}
	}
	for {
		select {
		case <-sub.Ready():
			flush()
			// Let events gather: under load one write carries many, and
			// the services are not woken for every line.
			select {
			case <-time.After(20 * time.Millisecond):
			case <-stop:
			}
		case <-stop:
			flush()
			return
		}
	}
}
