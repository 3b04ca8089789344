package tftp

import (
	"strconv"
	"strings"
	"time"
)

// Negotiation bounds.
const (
	defaultBlockSize = 512   // RFC 1350
	minBlockSize     = 8     // RFC 2348
	maxWindowSize    = 64    // our cap on RFC 7440 windowsize and msftwindow
	minTimeout       = 1     // RFC 2349, seconds
	maxTimeout       = 255   // RFC 2349, seconds
	msftRequest      = 31416 // Microsoft variable window: client's magic
	msftReply        = 27182 // and the server's answer
)

// limits is the server's side of a negotiation.
type limits struct {
	maxBlockSize int // clamped to 8..65464
	maxWindow    int // clamped to 1..64
}

// params is the outcome of a negotiation.
type params struct {
	blksize int           // bytes per DATA packet
	timeout time.Duration // client's timeout option; 0: the server default
	window  int           // DATA packets per ACK
	msft    bool          // ACKs may carry a window size (Microsoft)
	tsize   bool          // tsize was asked for and answered
	oack    []option      // nil: plain RFC 1350 transfer, no OACK
}

// negotiate answers the options of a read request (RFC 2347 section 2):
// size is what will be sent. Unknown or invalid options are left out of
// the OACK, which is then the plain RFC 1350 behaviour for that option.
// The first occurrence of an option wins; names match without case and
// are echoed as the client spelt them.
func negotiate(req []option, size int64, lim limits) params {
	maxBlk := min(max(lim.maxBlockSize, minBlockSize), maxBlockSize)
	if lim.maxBlockSize == 0 {
		maxBlk = maxBlockSize
	}
	maxWin := min(max(lim.maxWindow, 1), maxWindowSize)
	if lim.maxWindow == 0 {
		maxWin = maxWindowSize
	}
	p := params{blksize: defaultBlockSize, window: 1}
	seen := map[string]bool{}
	for _, o := range req {
		name := strings.ToLower(o.name)
		if seen[name] {
			continue
		}
		seen[name] = true
		switch name {
		case "blksize": // RFC 2348 section 2
			n, ok := number(o.value)
			if !ok || n < minBlockSize {
				continue
			}
			p.blksize = min(n, maxBlk)
			p.oack = append(p.oack, option{o.name, strconv.Itoa(p.blksize)})
		case "timeout": // RFC 2349 section 2: echoed unchanged
			n, ok := number(o.value)
			if !ok || n < minTimeout || n > maxTimeout {
				continue
			}
			p.timeout = time.Duration(n) * time.Second
			p.oack = append(p.oack, option{o.name, strconv.Itoa(n)})
		case "tsize": // RFC 2349 section 3: the real size in a read
			if size < 0 {
				continue
			}
			p.tsize = true
			p.oack = append(p.oack, option{o.name, strconv.FormatInt(size, 10)})
		case "windowsize": // RFC 7440 section 3
			n, ok := number(o.value)
			if !ok || n < 1 {
				continue
			}
			p.window = min(n, maxWin)
			p.oack = append(p.oack, option{o.name, strconv.Itoa(p.window)})
		case "msftwindow": // Microsoft variable window
			if n, ok := number(o.value); !ok || n != msftRequest {
				continue
			}
			p.msft = true
			p.oack = append(p.oack, option{o.name, strconv.Itoa(msftReply)})
		}
	}
	return p
}

// number parses a decimal option value; huge values saturate.
func number(s string) (int, bool) {
	if s == "" || len(s) > 20 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < 1<<30 {
			n = n*10 + int(c-'0')
		}
	}
	return n, true
}

// clampWindow bounds a window size asked for in an ACK.
func clampWindow(n, maxWin int) int {
	return min(max(n, 1), maxWin)
}
