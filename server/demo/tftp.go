package demo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// TFTP opcodes (RFC 1350 section 5, RFC 2347 section 2 for OACK).
const (
	opRRQ   = 1
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

// TFTP client settings.
const (
	tftpBlockSize = 1468 // Ethernet MTU 1500 less IPv4, UDP and TFTP headers (RFC 2348)
	tftpTimeout   = time.Second
	tftpRetries   = 5
	// tftpMaxPause bounds the pacing sleep before one ACK: the server
	// retransmits after its own timeout (1 s by default), so TFTP cannot
	// be slowed below one block per half second.
	tftpMaxPause = 500 * time.Millisecond
)

// tftpResult describes a finished download.
type tftpResult struct {
	Bytes    int64
	TSize    int64 // the server's tsize answer, -1 when none
	BlkSize  int
	Session  *net.UDPAddr // the server's transfer address (its TID)
	Elapsed  time.Duration
	Requests int // RRQs sent (1 unless the first was lost)
}

// tftpRequest builds an RRQ in octet mode (RFC 1350 section 5) with the
// blksize (RFC 2348) and tsize (RFC 2349 section 3) options.
func tftpRequest(file string, blksize int) []byte {
	b := binary.BigEndian.AppendUint16(nil, opRRQ)
	for _, s := range []string{file, "octet", "blksize", strconv.Itoa(blksize), "tsize", "0"} {
		b = append(b, s...)
		b = append(b, 0)
	}
	return b
}

func tftpACK(block uint16) []byte {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, opACK), block)
}

func tftpError(code uint16, msg string) []byte {
	b := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, opERROR), code)
	return append(append(b, msg...), 0)
}

// parseOACK reads the name/value pairs of an OACK (RFC 2347 section 2).
func parseOACK(b []byte) (map[string]string, error) {
	parts := bytes.Split(b, []byte{0})
	if len(parts) == 0 || len(parts[len(parts)-1]) != 0 {
		return nil, errors.New("OACK not NUL-terminated")
	}
	parts = parts[:len(parts)-1]
	if len(parts)%2 != 0 {
		return nil, errors.New("OACK with an odd number of strings")
	}
	m := map[string]string{}
	for i := 0; i < len(parts); i += 2 {
		m[strings.ToLower(string(parts[i]))] = string(parts[i+1])
	}
	return m, nil
}

// tftpGet downloads file from server with a socket bound to laddr (nil:
// any address), discarding the data but counting it. It is a lock-step
// RFC 1350 reader: every DATA is answered with its ACK, a duplicate DATA
// with the ACK again, and silence with the last packet again.
func tftpGet(ctx context.Context, laddr, server *net.UDPAddr, file string, blksize int, p *pacer, progress func(int64)) (tftpResult, error) {
	res := tftpResult{TSize: -1, BlkSize: 512}
	start := time.Now()
	conn, err := net.ListenUDP("udp4", laddr)
	if err != nil {
		return res, fmt.Errorf("demo: tftp: %w", err)
	}
	defer conn.Close()
	// Wake a blocked read when ctx ends.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()

	buf := make([]byte, 4+max(blksize, 512)+64)
	last := tftpRequest(file, blksize)
	to := server // where last goes: the service port until the session answers
	var session *net.UDPAddr
	var expect uint64 = 1 // next block, counted without wrapping
	tries := 0
	send := func() error {
		_, err := conn.WriteToUDP(last, to)
		return err
	}
	if err := send(); err != nil {
		return res, fmt.Errorf("demo: tftp %s: %w", file, err)
	}
	res.Requests = 1
	for {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("demo: tftp %s: %w", file, err)
		}
		conn.SetReadDeadline(time.Now().Add(tftpTimeout))
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			if ctx.Err() != nil {
				return res, fmt.Errorf("demo: tftp %s: %w", file, ctx.Err())
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// RFC 1350 section 2: on timeout, retransmit the last packet.
				tries++
				if tries > tftpRetries {
					return res, fmt.Errorf("demo: tftp %s from %s: no answer after %d tries", file, server, tries)
				}
				if session == nil {
					res.Requests++
				}
				if err := send(); err != nil {
					return res, fmt.Errorf("demo: tftp %s: %w", file, err)
				}
				continue
			}
			return res, fmt.Errorf("demo: tftp %s: %w", file, err)
		}
		pkt := buf[:n]
		if session == nil {
			// RFC 1350 section 4: the first answer fixes the server's TID.
			if !from.IP.Equal(server.IP) {
				continue
			}
			session = from
			to = session
			res.Session = from
		} else if from.Port != session.Port || !from.IP.Equal(session.IP) {
			// RFC 1350 section 4: a packet from another TID gets ERROR 5
			// and does not disturb the transfer.
			conn.WriteToUDP(tftpError(5, "unknown transfer ID"), from)
			continue
		}
		if len(pkt) < 4 {
			continue
		}
		op := binary.BigEndian.Uint16(pkt)
		switch op {
		case opERROR:
			code := binary.BigEndian.Uint16(pkt[2:])
			msg := string(bytes.TrimRight(pkt[4:], "\x00"))
			return res, fmt.Errorf("demo: tftp %s: server error %d: %s", file, code, msg)
		case opOACK:
			if expect != 1 {
				continue // a repeated OACK after data: ignore
			}
			opts, err := parseOACK(pkt[2:])
			if err != nil {
				conn.WriteToUDP(tftpError(8, "bad OACK"), session)
				return res, fmt.Errorf("demo: tftp %s: %w", file, err)
			}
			res.BlkSize = 512
			if v, ok := opts["blksize"]; ok {
				// RFC 2348 section 2: the server may only lower it.
				k, err := strconv.Atoi(v)
				if err != nil || k < 8 || k > blksize {
					conn.WriteToUDP(tftpError(8, "bad blksize"), session)
					return res, fmt.Errorf("demo: tftp %s: server answered blksize %q to %d", file, v, blksize)
				}
				res.BlkSize = k
			}
			if v, ok := opts["tsize"]; ok {
				if k, err := strconv.ParseInt(v, 10, 64); err == nil && k >= 0 {
					res.TSize = k
				}
			}
			// RFC 2347 section 2: the client acknowledges an OACK with ACK 0.
			last, tries = tftpACK(0), 0
			if err := send(); err != nil {
				return res, fmt.Errorf("demo: tftp %s: %w", file, err)
			}
		case opDATA:
			block := binary.BigEndian.Uint16(pkt[2:])
			data := pkt[4:]
			if block != uint16(expect) {
				if block == uint16(expect-1) && expect > 1 {
					// Our ACK was lost: acknowledge again (never on a
					// timer alone, see RFC 1123 section 4.2.3.1).
					conn.WriteToUDP(last, session)
				}
				continue
			}
			if len(data) > res.BlkSize {
				conn.WriteToUDP(tftpError(4, "block too big"), session)
				return res, fmt.Errorf("demo: tftp %s: block %d has %d bytes, blksize %d", file, expect, len(data), res.BlkSize)
			}
			res.Bytes += int64(len(data))
			expect++
			if progress != nil {
				progress(res.Bytes)
			}
			final := len(data) < res.BlkSize
			if !final {
				if err := p.wait(ctx, len(data), tftpMaxPause); err != nil {
					conn.WriteToUDP(tftpError(0, "client gave up"), session)
					return res, fmt.Errorf("demo: tftp %s: %w", file, err)
				}
			}
			last, tries = tftpACK(block), 0
			if err := send(); err != nil {
				return res, fmt.Errorf("demo: tftp %s: %w", file, err)
			}
			if final {
				res.Elapsed = time.Since(start)
				if res.TSize >= 0 && res.TSize != res.Bytes {
					return res, fmt.Errorf("demo: tftp %s: got %d bytes, tsize said %d", file, res.Bytes, res.TSize)
				}
				return res, nil
			}
		default:
			conn.WriteToUDP(tftpError(4, "illegal TFTP operation"), session)
			return res, fmt.Errorf("demo: tftp %s: unexpected opcode %d", file, op)
		}
	}
}
