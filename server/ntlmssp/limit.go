package ntlmssp

import (
	"sync"
	"time"
)

// logonWindow is the interval over which failed logons are counted.
const logonWindow = time.Minute

// maxLimitedIPs bounds the addresses the limiter remembers.
const maxLimitedIPs = 4096

// LogonLimiter counts failed logons per client address and refuses an
// address for a while once it fails too often. Set Limit and Block
// before use; Now is time.Now when nil. Safe for concurrent use.
type LogonLimiter struct {
	Limit int           // failures within a minute that start a block
	Block time.Duration // how long a blocked address stays refused
	Now   func() time.Time

	mu  sync.Mutex
	ips map[string]*logonFailures
}

func (l *LogonLimiter) now() time.Time {
	if l.Now == nil {
		return time.Now()
	}
	return l.Now()
}

type logonFailures struct {
	recent       []time.Time // failures within logonWindow, oldest first
	blockedUntil time.Time
}

// Blocked reports whether ip is refused now.
func (l *LogonLimiter) Blocked(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.ips[ip]
	return f != nil && l.now().Before(f.blockedUntil)
}

// Fail records a failed logon from ip and reports whether it started a
// block (true once per block).
func (l *LogonLimiter) Fail(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.ips == nil {
		l.ips = map[string]*logonFailures{}
	}
	f := l.ips[ip]
	if f == nil {
		l.prune(now)
		f = &logonFailures{}
		l.ips[ip] = f
	}
	if now.Before(f.blockedUntil) {
		return false
	}
	keep := f.recent[:0]
	for _, t := range f.recent {
		if now.Sub(t) < logonWindow {
			keep = append(keep, t)
		}
	}
	f.recent = append(keep, now)
	if len(f.recent) < l.Limit {
		return false
	}
	f.recent = f.recent[:0]
	f.blockedUntil = now.Add(l.Block)
	return true
}

// prune forgets addresses with nothing recent; if too many remain, it
// forgets arbitrary ones that are not blocked.
func (l *LogonLimiter) prune(now time.Time) {
	if len(l.ips) < maxLimitedIPs {
		return
	}
	for ip, f := range l.ips {
		if !now.Before(f.blockedUntil) && (len(f.recent) == 0 || now.Sub(f.recent[len(f.recent)-1]) >= logonWindow) {
			delete(l.ips, ip)
		}
	}
	for ip, f := range l.ips {
		if len(l.ips) < maxLimitedIPs {
			break
		}
		if !now.Before(f.blockedUntil) {
			delete(l.ips, ip)
		}
	}
}
