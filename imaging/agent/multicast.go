package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/netdeploy/netdeploy/server/multicast"
	"github.com/netdeploy/netdeploy/server/wds"
)

// joinMulticast asks the server for a place in the image's multicast
// session, or its slow lane (netdeploy's ND_MC_JOIN).
func (s *session) joinMulticast(ctx context.Context, im imageInfo, slow bool) (wds.MulticastJoin, error) {
	vars := []wds.Var{wds.WStringVar(wds.VarMcImage, im.Path)}
	if slow {
		vars = append(vars, wds.ULongVar(wds.VarMcLane, 1))
	}
	if s.mac != "" {
		vars = append(vars, wds.WStringVar(wds.VarClientMAC, s.mac))
	}
	p, err := s.callEndpoint(ctx, wds.MulticastEndpoint, wds.OpMcJoin, vars...)
	if err != nil {
		return wds.MulticastJoin{}, fmt.Errorf("agent: multicast join: %w", err)
	}
	j, err := wds.ParseMulticastJoin(p)
	if err != nil {
		return wds.MulticastJoin{}, fmt.Errorf("agent: %w", err)
	}
	if j.Size != im.Size && im.Size > 0 {
		return wds.MulticastJoin{}, fmt.Errorf("agent: multicast session of %d bytes for an image of %d", j.Size, im.Size)
	}
	return j, nil
}

// groupInterface is where to join the group: cfg.Iface, else the
// interface whose address routes to the server.
func groupInterface(name string, server net.IP) (*net.Interface, error) {
	if name != "" {
		return net.InterfaceByName(name)
	}
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: server, Port: 9}) // no packet is sent
	if err != nil {
		return nil, err
	}
	local := c.LocalAddr().(*net.UDPAddr).IP
	c.Close()
	list, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for i := range list {
		addrs, _ := list[i].Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(local) {
				return &list[i], nil
			}
		}
	}
	return nil, fmt.Errorf("no interface holds %s", local)
}

// multicast receives the image from its multicast session onto the
// target, block by block at their offsets, reads the target back and
// returns the SHA-256 of what it holds. The read-back runs while the
// image arrives, as far as its start is written, and finishes after.
// Progress goes to the server as apply reports from a goroutine of its
// own, so that the receiver never waits for an RPC call.
func (a *applier) multicast(ctx context.Context, j wds.MulticastJoin, iface *net.Interface) (string, int64, error) {
	var held atomic.Int64
	back := newPrefixHash(a.t.f, j.Size, a.t.device)
	r := &multicast.Receiver{
		Interface: iface, Group: j.Group, Server: j.Server, SessionID: j.SessionID, ClientID: j.ClientID,
		Key: j.Key, Size: j.Size, BlockSize: j.BlockSize, Target: a.t.f, Log: a.log,
		Progress: func(h, _ int64) { held.Store(h) },
		Written:  back.advance,
	}
	a.im.Size = j.Size
	a.started = true
	if err := a.progress(ctx, true); err != nil {
		a.log.Warn("agent could not report progress", "err", err)
	}
	stop := make(chan struct{})
	beat := make(chan struct{})
	go func() {
		defer close(beat)
		tick := time.NewTicker(a.every)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if h := held.Load(); h < j.Size {
					a.written = h
					if err := a.progress(ctx, false); err != nil {
						a.log.Warn("agent could not report progress", "err", err)
					}
				}
			}
		}
	}()
	err := r.Run(ctx)
	close(stop)
	<-beat
	if err != nil {
		back.abandon()
		return "", held.Load(), err
	}
	a.written = j.Size
	sum, err := a.readBack(ctx, back)
	if err != nil {
		return "", j.Size, err
	}
	if err := a.progress(ctx, true); err != nil {
		a.log.Warn("agent could not report progress", "err", err)
	}
	return sum, j.Size, nil
}

// readBack waits for back to hash the whole target, with a LOG_MSG
// every syncBeat meanwhile.
func (a *applier) readBack(ctx context.Context, back *prefixHash) (string, error) {
	tick := time.NewTicker(syncBeat)
	defer tick.Stop()
	for {
		select {
		case err := <-back.done:
			if err != nil {
				return "", fmt.Errorf("agent: read back %s: %w", a.s.cfg.TargetFile, err)
			}
			return hex.EncodeToString(back.h.Sum(nil)), nil
		case <-tick.C:
			if err := a.s.logMsg(ctx, wds.MsgClientGenericMessage, "reading the image back from the disk"); err != nil {
				a.log.Warn("agent could not report progress", "err", err)
			}
		}
	}
}

// evictAlign is what the read-back's chunks are aligned to below the
// end: a page, at least (posix_fadvise drops whole pages only).
const evictAlign = 64 << 10

// prefixHash reads the target back from its start and hashes it, in a
// goroutine of its own, as far as advance says it is written; done gets
// nil once size bytes are hashed, or the read error.
type prefixHash struct {
	f          *os.File
	size       int64
	fromDevice bool // evict each run first: read back from the device
	h          hash.Hash
	written    atomic.Int64
	kick       chan struct{}
	stop       chan struct{}
	done       chan error
}

func newPrefixHash(f *os.File, size int64, fromDevice bool) *prefixHash {
	p := &prefixHash{f: f, size: size, fromDevice: fromDevice, h: sha256.New(), kick: make(chan struct{}, 1), stop: make(chan struct{}),
		done: make(chan error, 1)}
	go p.run()
	return p
}

// advance says the target's first n bytes are written.
func (p *prefixHash) advance(n int64) {
	p.written.Store(n)
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// abandon stops the hashing (the receive failed).
func (p *prefixHash) abandon() { close(p.stop) }

func (p *prefixHash) run() {
	buf := make([]byte, 1<<20)
	var off int64
	for {
		w := min(p.written.Load(), p.size)
		if w < p.size {
			w &^= evictAlign - 1 // whole pages, so that evict drops each one
		}
		for off < w {
			select {
			case <-p.stop: // the receive failed: leave the target to what comes next
				return
			default:
			}
			n := int(min(int64(len(buf)), w-off))
			if p.fromDevice {
				if err := evict(p.f, off, int64(n)); err != nil {
					p.done <- err
					return
				}
			}
			if _, err := p.f.ReadAt(buf[:n], off); err != nil {
				p.done <- err
				return
			}
			p.h.Write(buf[:n])
			off += int64(n)
		}
		if off >= p.size {
			p.done <- nil
			return
		}
		select {
		case <-p.kick:
		case <-p.stop:
			return
		}
	}
}

// tryMulticast runs the multicast path when the server offers one for
// the image; ok is false when the caller should read the image by SMB
// (not offered, or the session failed: fallback).
func (a *applier) tryMulticast(ctx context.Context) (sum string, n int64, ok bool) {
	if a.s.cfg.Unicast || a.im.Compression != "" || a.im.SHA256 == "" {
		return "", 0, false // the read-back needs the manifest's SHA-256
	}
	var err error
	for _, slow := range []bool{false, true} {
		var j wds.MulticastJoin
		j, err = a.s.joinMulticast(ctx, a.im, slow)
		var se *wds.StatusError
		if errors.As(err, &se) {
			a.log.Info("agent: no multicast session for the image; reading it by SMB", "path", a.im.Path, "slow_lane", slow, "reason", se)
			return "", 0, false
		}
		if err != nil {
			a.log.Warn("agent: multicast join failed; reading the image by SMB", "err", err)
			return "", 0, false
		}
		iface, ierr := groupInterface(a.s.cfg.Iface, j.Server.IP)
		if ierr != nil {
			a.log.Warn("agent: no interface for the multicast group; reading the image by SMB", "err", ierr)
			return "", 0, false
		}
		a.log.Info("agent joined the multicast session", "group", j.Group.String(), "session", j.SessionID, "client", j.ClientID, "iface", iface.Name, "slow_lane", slow)
		sum, n, err = a.multicast(ctx, j, iface)
		if err == nil {
			return sum, n, true
		}
		if ctx.Err() != nil {
			return "", n, false
		}
		var fe *multicast.FallbackError
		if slow || !errors.As(err, &fe) || (fe.Reason != multicast.ReasonSlow && fe.Reason != multicast.ReasonLossy) {
			break
		}
		// Too slow for the group, or losing most of it at the group's
		// rate: the slow lane, if the server keeps one.
		a.log.Info("agent: too slow for the multicast group; asking for the slow lane", "held", n)
		_ = a.s.logMsg(ctx, wds.MsgClientGenericMessage, "too slow for the multicast group; moving to the slow lane")
		a.written = 0
	}
	a.log.Warn("agent: multicast failed; reading the image by SMB", "err", err, "held", n)
	_ = a.s.logMsg(ctx, wds.MsgClientGenericMessage, fmt.Sprintf("multicast of %s failed after %d bytes (%v); reading it by SMB", a.im.Path, n, err))
	a.written = 0
	return "", 0, false
}
