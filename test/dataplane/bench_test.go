package dataplane_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/tun"
)

// benchDevice is a TUN device that allocates nothing: as a source it makes
// numbered packets to dst while it has credits; as a sink it checks their
// order and hands the credits back. It keeps allocations of the device out
// of the data plane's allocs/op.
type benchDevice struct {
	batch   int        // source: packets per Read (0: whatever credits there are)
	src4    netip.Addr // the sending node's VIP: the peer drops any other source
	dst     netip.Addr
	size    int
	credits chan struct{}
	closed  chan struct{}
	once    sync.Once

	next   uint64 // source: next sequence number
	src    *benchDevice
	want   atomic.Uint64 // sink: next expected
	target uint64
	done   chan struct{}
	// sink: packets that left the data plane behind a later one (order
	// broken), and gaps (packets skipped: shed under load, which a shared
	// machine may cause and the data plane counts as drops)
	outOfOrder atomic.Uint64
	gaps       atomic.Uint64
	written    atomic.Uint64
}

func newBenchDevice(window int) *benchDevice {
	return &benchDevice{credits: make(chan struct{}, window), closed: make(chan struct{}), done: make(chan struct{}, 1)}
}

func (d *benchDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case <-d.credits:
	case <-d.closed:
		return 0, tun.ErrClosed
	}
	// With a fixed batch size, wait for the whole batch's credits, so every
	// Read hands the data plane exactly d.batch packets.
	for range min(d.batch, len(bufs)) - 1 {
		select {
		case <-d.credits:
		case <-d.closed:
			return 0, tun.ErrClosed
		}
	}
	n := 0
	for d.batch > 0 {
		d.fill(bufs[n][offset:offset+d.size], sizes, n)
		n++
		if n == min(d.batch, len(bufs)) {
			return n, nil
		}
	}
	for {
		p := bufs[n][offset : offset+d.size]
		p[0] = 0x45
		s, a := d.src4.As4(), d.dst.As4()
		copy(p[12:16], s[:])
		copy(p[16:20], a[:])
		binary.BigEndian.PutUint64(p[20:28], d.next)
		d.next++
		sizes[n] = d.size
		n++
		if n == len(bufs) {
			return n, nil
		}
		select {
		case <-d.credits:
		default:
			return n, nil
		}
	}
}

// fill writes the next numbered packet into p and records its size.
func (d *benchDevice) fill(p []byte, sizes []int, n int) {
	p[0] = 0x45
	s, a := d.src4.As4(), d.dst.As4()
	copy(p[12:16], s[:])
	copy(p[16:20], a[:])
	binary.BigEndian.PutUint64(p[20:28], d.next)
	d.next++
	sizes[n] = d.size
}

func (d *benchDevice) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		seq, want := binary.BigEndian.Uint64(b[offset+20:]), d.want.Load()
		switch {
		case seq < want:
			d.outOfOrder.Add(1) // the stream stays where the later packet put it
		case seq > want:
			d.gaps.Add(seq - want)
			d.want.Store(seq + 1)
		default:
			d.want.Store(seq + 1)
		}
		if d.src != nil {
			d.src.credits <- struct{}{}
		}
		if d.written.Add(1) == d.target {
			d.done <- struct{}{}
		}
	}
	return len(bufs), nil
}

func (d *benchDevice) Name() string { return "bench" }
func (d *benchDevice) MTU() int     { return mtu }
func (d *benchDevice) Close() error {
	d.once.Do(func() { close(d.closed) })
	return nil
}

var _ tun.Device = (*benchDevice)(nil)

// BenchmarkEndToEnd pushes 1400-byte packets from one data plane to another
// over loopback UDP; one op is one packet. allocs/op is the whole path's
// (both nodes, actors included) divided by packets. The sub-benchmarks fix
// how many packets each TUN read hands over: the data plane moves batches,
// so what it allocates (inside protoactor: an envelope per message, a
// closure per mailbox schedule) is per batch, and mallocs/pkt falls as the
// batch grows while mallocs/batch stays flat — nothing is allocated per
// packet.
func BenchmarkEndToEnd(b *testing.B) {
	for _, batch := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchEndToEnd(b, batch) })
	}
}

func benchEndToEnd(b *testing.B, batch int) {
	const size = 1400
	window := 4 * batch // at most 4 batches in flight: within the peer's in-flight bound
	f := newPKI(b)
	src, sink := newBenchDevice(window), newBenchDevice(window)
	src.batch, sink.src = batch, src
	a := newNode(b, f, "alice", 1, func(c *dataplane.Config) { c.Device = src })
	bob := newNode(b, f, "bob", 2, func(c *dataplane.Config) { c.Device = sink })
	src.src4, src.dst, src.size = a.vip4, bob.vip4, size
	connect(b, a, bob, bob.addr, a.addr)

	// Whole batches only, so the last one is not left waiting for credits.
	n := (b.N + batch - 1) / batch * batch
	sink.target = uint64(n)
	b.SetBytes(size)
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for range window {
		src.credits <- struct{}{}
	}
	<-sink.done
	b.StopTimer()
	runtime.ReadMemStats(&after)
	mallocs := float64(after.Mallocs - before.Mallocs)
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "pkts/s")
	// allocs/op rounds down to an integer; these are the exact figures.
	b.ReportMetric(mallocs/float64(n), "mallocs/pkt")
	b.ReportMetric(mallocs/float64(n/batch), "mallocs/batch")
	// Counted, not only flagged: the data plane must deliver in order
	// however many cores work on it. A packet shed under load (a gap) is
	// not disorder: it is reported, and its drop shows in the statuses.
	ooo, gaps := sink.outOfOrder.Load(), sink.gaps.Load()
	b.ReportMetric(float64(ooo), "out-of-order")
	b.ReportMetric(float64(gaps), "lost")
	if ooo != 0 {
		b.Error(fmt.Errorf("%d packets left out of order (%d lost)", ooo, gaps), a.dp.Status(), a.dp.Drops(), bob.dp.Status(), bob.dp.Drops())
	}
	if gaps != 0 {
		b.Logf("%d packets shed under load: %v %v %v %v", gaps, a.dp.Status(), a.dp.Drops(), bob.dp.Status(), bob.dp.Drops())
	}
}

// BenchmarkNodeHeapAtRest reports the live heap one started data plane
// holds before any traffic (its actor system included; a daemon's is
// smaller by what supervise.SmallRegistry saves, which a test binary that
// has started systems already must not call), and after a tunnel carried
// a burst and went idle (heap-B/node-after-load: what load leaves behind).
func BenchmarkNodeHeapAtRest(b *testing.B) {
	f := newPKI(b)
	var rest, after float64
	for i := range b.N {
		var before, started, loaded runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		src, sink := newBenchDevice(256), newBenchDevice(256)
		src.batch, sink.src = 32, src
		a := newNode(b, f, fmt.Sprintf("alice%d", i), 1, func(c *dataplane.Config) { c.Device = src })
		bob := newNode(b, f, fmt.Sprintf("bob%d", i), 2, func(c *dataplane.Config) { c.Device = sink })
		src.src4, src.dst, src.size = a.vip4, bob.vip4, 1400
		runtime.GC()
		runtime.ReadMemStats(&started)
		connect(b, a, bob, bob.addr, a.addr)
		sink.target = 32 * 256
		for range 256 {
			src.credits <- struct{}{}
		}
		<-sink.done
		runtime.GC()
		runtime.ReadMemStats(&loaded)
		rest = float64(started.HeapAlloc-before.HeapAlloc) / 2
		after = float64(loaded.HeapAlloc-before.HeapAlloc) / 2
		a.stop()
		bob.stop()
	}
	b.ReportMetric(rest, "heap-B/node")
	b.ReportMetric(after, "heap-B/node-after-load")
}
