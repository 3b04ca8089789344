package smb

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/oiweiwei/go-msrpc/msrpc/srvs/srvsvc/v3"

	"github.com/netdeploy/netdeploy/server/dcerpc"
)

// Named pipes on IPC$ ([MS-SMB2] 3.3.5.9 for CREATE on a pipe share,
// [MS-RPCE] 2.1.1.2 ncacn_np): each open pipe is one DCE/RPC connection
// served by the server's internal dcerpc.Server. WRITE sends a PDU,
// READ returns a response PDU, FSCTL_PIPE_TRANSCEIVE does both.

const (
	// pipeWait bounds how long a READ waits for the RPC server's answer.
	pipeWait = 5 * time.Second
	// pipeMaxQueued caps the answer bytes waiting to be read per pipe.
	pipeMaxQueued = 1 << 20
	// rpcMaxConns caps the pipes open on the whole server.
	rpcMaxConns = 1024

	StatusPipeEmpty Status = 0xC00000D9
)

// pipe is an open named pipe.
type pipe struct {
	name   string
	end    net.Conn // ours; the RPC server has the other end
	mu     sync.Mutex
	msgs   [][]byte
	queued int
	err    error // the RPC side ended
	notify chan struct{}
}

// pipeEnd is the RPC server's end of a pipe, naming the SMB client as
// its peer.
type pipeEnd struct {
	net.Conn
	local, remote net.Addr
}

func (p pipeEnd) LocalAddr() net.Addr  { return p.local }
func (p pipeEnd) RemoteAddr() net.Addr { return p.remote }

// rpcServer returns the server behind IPC$ (srvsvc).
func (s *Server) rpcServer() *dcerpc.Server {
	s.rpcOnce.Do(func() {
		s.rpc = &dcerpc.Server{
			Interfaces: []dcerpc.Interface{{
				Name:   "srvsvc",
				Syntax: *srvsvc.SrvsvcSyntaxV3_0,
				Handle: srvsvc.NewSrvsvcServerHandle(&srvsvcServer{srv: s}),
			}},
			ComputerName: s.name(),
			MaxConns:     rpcMaxConns,
			IdleTimeout:  s.idleTimeout(),
			Log:          s.Log,
		}
	})
	return s.rpc
}

// createPipe opens a named pipe on IPC$; srvsvc is the one served.
func (c *conn) createPipe(r *request, w *response, name string, access uint32) (Status, error) {
	n := strings.TrimPrefix(name, `\`)
	if len(n) > 5 && strings.EqualFold(n[:5], `PIPE\`) {
		n = n[5:]
	}
	if !strings.EqualFold(n, "srvsvc") {
		return StatusObjectNameNotFound, nil
	}
	if len(c.opens) >= MaxOpens {
		return StatusTooManyOpenedFiles, nil
	}
	a, b := net.Pipe()
	p := &pipe{name: "srvsvc", end: a, notify: make(chan struct{}, 1)}
	rpc := c.srv.rpcServer()
	go func() {
		if err := rpc.ServeConn(pipeEnd{b, c.nc.LocalAddr(), c.nc.RemoteAddr()}); err != nil {
			c.log.Warn("smb pipe refused", "pipe", p.name, "err", err)
		}
	}()
	go p.readLoop()
	c.nextFile++
	o := &open{id: fileID{c.nextFile, c.nextFile}, sess: r.sess, tree: r.tree, name: n, access: access, pipe: p}
	c.opens[o.id.Volatile] = o
	w.fid, w.hasFID = o.id, true
	w.buf.u16(89)
	w.buf.u8(0)
	w.buf.u8(0)
	w.buf.u32(actionOpened)
	w.buf.zero(32) // times
	w.buf.u64(4096)
	w.buf.u64(0)
	w.buf.u32(attrNormal)
	w.buf.u32(0)
	w.buf.fid(o.id)
	w.buf.u32(0)
	w.buf.u32(0)
	return StatusSuccess, nil
}

// readLoop splits what the RPC server sends into PDUs by their
// frag_length (C706 12.6.3.1) and queues them as pipe messages.
func (p *pipe) readLoop() {
	var err error
	for {
		hdr := make([]byte, 16)
		if _, err = io.ReadFull(p.end, hdr); err != nil {
			break
		}
		n := int(binary.LittleEndian.Uint16(hdr[8:]))
		if hdr[4]&0xF0 == 0 { // big-endian data representation
			n = int(binary.BigEndian.Uint16(hdr[8:]))
		}
		if n < 16 {
			err = errors.New("smb: pipe PDU shorter than its header")
			break
		}
		msg := make([]byte, n)
		copy(msg, hdr)
		if _, err = io.ReadFull(p.end, msg[16:]); err != nil {
			break
		}
		p.mu.Lock()
		if p.queued+n > pipeMaxQueued {
			p.mu.Unlock()
			err = errors.New("smb: pipe answers not read")
			break
		}
		p.msgs = append(p.msgs, msg)
		p.queued += n
		p.mu.Unlock()
		select {
		case p.notify <- struct{}{}:
		default:
		}
	}
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
	p.end.Close()
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// write hands a client's write to the RPC server.
func (p *pipe) write(data []byte) Status {
	p.end.SetWriteDeadline(time.Now().Add(pipeWait))
	if _, err := p.end.Write(data); err != nil {
		return StatusPipeBroken
	}
	return StatusSuccess
}

// read returns the next message, up to max bytes (the rest stays, with
// STATUS_BUFFER_OVERFLOW), waiting up to pipeWait for one.
func (p *pipe) read(max uint32) ([]byte, Status) {
	deadline := time.NewTimer(pipeWait)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		if len(p.msgs) > 0 {
			m := p.msgs[0]
			if uint32(len(m)) > max {
				p.msgs[0] = m[max:]
				p.queued -= int(max)
				p.mu.Unlock()
				return m[:max], StatusBufferOverflow
			}
			p.msgs = p.msgs[1:]
			p.queued -= len(m)
			p.mu.Unlock()
			return m, StatusSuccess
		}
		failed := p.err != nil
		p.mu.Unlock()
		if failed {
			return nil, StatusPipeBroken
		}
		select {
		case <-p.notify:
		case <-deadline.C:
			return nil, StatusPipeEmpty
		}
	}
}

func (p *pipe) close() { p.end.Close() }

func (c *conn) readPipe(o *open, w *response, n uint32) (Status, error) {
	data, st := o.pipe.read(n)
	if st != StatusSuccess && st != StatusBufferOverflow {
		return st, nil
	}
	w.buf.u16(17)
	w.buf.u8(headerLen + 16)
	w.buf.u8(0)
	w.buf.u32(uint32(len(data)))
	w.buf.u32(0)
	w.buf.u32(0)
	w.buf.bytes(data)
	return st, nil
}

func (c *conn) writePipe(o *open, w *response, data []byte) (Status, error) {
	if st := o.pipe.write(data); st != StatusSuccess {
		return st, nil
	}
	w.buf.u16(17)
	w.buf.u16(0)
	w.buf.u32(uint32(len(data)))
	w.buf.u32(0)
	w.buf.u16(0)
	w.buf.u16(0)
	return StatusSuccess, nil
}

func (c *conn) transceive(o *open, in []byte, maxOut uint32) ([]byte, Status) {
	if st := o.pipe.write(in); st != StatusSuccess {
		return nil, st
	}
	return o.pipe.read(maxOut)
}

func (c *conn) pipeInfo(o *open, class byte) ([]byte, bool, Status) {
	var b le
	switch class {
	case fileStandardInformation:
		b.u64(4096)
		b.u64(0)
		b.u32(1)
		b.u8(1) // DeletePending, as Windows reports for pipes
		b.u8(0)
		b.u16(0)
	case fileBasicInformation:
		b.zero(32)
		b.u32(attrNormal)
		b.u32(0)
	default:
		return nil, false, StatusInvalidInfoClass
	}
	return b, false, StatusSuccess
}

// srvsvcServer answers [MS-SRVS] NetrShareEnum (NetShareEnumAll) with
// the shares, so that share listings (smbclient -L) work; every other
// call is not implemented.
type srvsvcServer struct {
	srvsvc.UnimplementedSrvsvcServer
	srv *Server
}

// STYPE values ([MS-SRVS] 2.2.2.4).
const (
	stypeDisktree = 0x00000000
	stypeIPC      = 0x00000003
	stypeSpecial  = 0x80000000
)

func (h *srvsvcServer) ShareEnum(ctx context.Context, req *srvsvc.ShareEnumRequest) (*srvsvc.ShareEnumResponse, error) {
	const errorInvalidLevel = 0x7C
	level := uint32(1)
	if req.Info != nil {
		level = req.Info.Level
	}
	resp := &srvsvc.ShareEnumResponse{Info: &srvsvc.ShareEnum{Level: level}}
	var n uint32
	switch level {
	case 0:
		c := &srvsvc.ShareInfo0Container{}
		for _, sh := range h.srv.shares {
			c.Buffer = append(c.Buffer, &srvsvc.ShareInfo0{NetworkName: sh.name})
		}
		n = uint32(len(c.Buffer))
		c.EntriesRead = n
		resp.Info.ShareInfo = &srvsvc.ShareEnumUnion{Value: &srvsvc.ShareEnumUnion_Level0{Level0: c}}
	case 1:
		c := &srvsvc.ShareInfo1Container{}
		for _, sh := range h.srv.shares {
			typ := uint32(stypeDisktree)
			if sh.ipc {
				typ = stypeIPC | stypeSpecial
			}
			c.Buffer = append(c.Buffer, &srvsvc.ShareInfo1{NetworkName: sh.name, Type: typ, Remark: sh.comment})
		}
		n = uint32(len(c.Buffer))
		c.EntriesRead = n
		resp.Info.ShareInfo = &srvsvc.ShareEnumUnion{Value: &srvsvc.ShareEnumUnion_Level1{Level1: c}}
	default:
		resp.Return = errorInvalidLevel
		return resp, nil
	}
	resp.TotalEntries = n
	return resp, nil
}
