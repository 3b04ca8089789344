// Package stats holds the per-port traffic counters every service keeps
// for the console's Ports screen. Counters are updated with atomics and
// never block a server.
package stats

import "sync/atomic"

// Counter counts one port's traffic. The zero value is ready; a nil
// *Counter ignores updates.
type Counter struct {
	packetsIn, packetsOut atomic.Uint64
	bytesIn, bytesOut     atomic.Uint64
	active                atomic.Int64
}

// In counts one received packet (or request) of n bytes.
func (c *Counter) In(n int) {
	if c == nil {
		return
	}
	c.packetsIn.Add(1)
	c.bytesIn.Add(uint64(max(n, 0)))
}

// Out counts one sent packet (or response) of n bytes.
func (c *Counter) Out(n int) {
	if c == nil {
		return
	}
	c.packetsOut.Add(1)
	c.bytesOut.Add(uint64(max(n, 0)))
}

// OutBatch counts packets sent packets of n bytes in all (a batch that
// left in one system call).
func (c *Counter) OutBatch(packets, n int) {
	if c == nil {
		return
	}
	c.packetsOut.Add(uint64(max(packets, 0)))
	c.bytesOut.Add(uint64(max(n, 0)))
}

// OutBytes counts n more bytes sent without counting a packet (a stream).
func (c *Counter) OutBytes(n int) {
	if c == nil {
		return
	}
	c.bytesOut.Add(uint64(max(n, 0)))
}

// Open and Close track sessions or connections in progress.
func (c *Counter) Open() {
	if c != nil {
		c.active.Add(1)
	}
}

// Close ends a session counted by Open.
func (c *Counter) Close() {
	if c != nil {
		c.active.Add(-1)
	}
}

// Snapshot is a counter's value at one moment.
type Snapshot struct {
	PacketsIn  uint64 `json:"packets_in"`
	PacketsOut uint64 `json:"packets_out"`
	BytesIn    uint64 `json:"bytes_in"`
	BytesOut   uint64 `json:"bytes_out"`
	Active     int64  `json:"active"`
}

// Snapshot reads the counter.
func (c *Counter) Snapshot() Snapshot {
	if c == nil {
		return Snapshot{}
	}
	return Snapshot{
		PacketsIn:  c.packetsIn.Load(),
		PacketsOut: c.packetsOut.Load(),
		BytesIn:    c.bytesIn.Load(),
		BytesOut:   c.bytesOut.Load(),
		Active:     c.active.Load(),
	}
}
