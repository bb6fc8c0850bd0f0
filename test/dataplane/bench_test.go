package dataplane_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/tun"
)

// benchDevice is a TUN device that allocates nothing: as a source it makes
// numbered packets to dst while it has credits; as a sink it checks their
// order and hands the credits back. It keeps allocations of the device out
// of the data plane's allocs/op, and its own cost out of the way of the
// data plane's: credits are a counter the sink adds a whole write to and
// the source takes a whole read from, with a wake-up only when the source
// ran dry (a channel operation per packet on both sides, as before, cost
// the two devices more than the data plane's locks).
type benchDevice struct {
	batch  int        // source: packets per Read (0: whatever credits there are)
	src4   netip.Addr // the sending node's VIP: the peer drops any other source
	dst    netip.Addr
	size   int
	credit atomic.Int64  // source: packets it may still send
	wake   chan struct{} // source: credits came back (capacity 1)
	closed chan struct{}
	once   sync.Once

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

func newBenchDevice() *benchDevice {
	return &benchDevice{wake: make(chan struct{}, 1), closed: make(chan struct{}), done: make(chan struct{}, 1)}
}

// give hands the source n more credits.
func (d *benchDevice) give(n int) {
	d.credit.Add(int64(n))
	select {
	case d.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// Read waits for credits (a whole batch of them with a fixed batch size,
// so every Read hands the data plane exactly d.batch packets) and fills
// as many packets as it took. The source is the data plane's one TUN
// reader: only it takes credits.
func (d *benchDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	need := int64(1)
	if d.batch > 0 {
		need = int64(min(d.batch, len(bufs)))
	}
	for d.credit.Load() < need {
		select {
		case <-d.wake:
		case <-d.closed:
			return 0, tun.ErrClosed
		}
	}
	n := int(need)
	if d.batch == 0 {
		n = int(min(d.credit.Load(), int64(len(bufs))))
	}
	d.credit.Add(-int64(n))
	for i := range n {
		d.fill(bufs[i][offset:offset+d.size], sizes, i)
	}
	return n, nil
}

// fill writes the next numbered packet into p and records its size.
func (d *benchDevice) fill(p []byte, sizes []int, n int) {
	p[0] = 0x45
	p[9] = 17 // UDP: one flow, one lane (a stale byte here could make it ICMP)
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
	}
	if d.src != nil {
		d.src.give(len(bufs))
	}
	if w := d.written.Add(uint64(len(bufs))); w >= d.target && w-uint64(len(bufs)) < d.target {
		d.done <- struct{}{}
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
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchEndToEnd(b, batch, 4) })
	}
}

// BenchmarkEndToEndSaturated is BenchmarkEndToEnd with nearly as many
// batches in flight as the data plane itself admits (saturatedWindow):
// what a TUN under bulk TCP offers, where the
// kernel's queue always has the next batch ready and the data plane's own
// bound, not the source, limits what is in flight. The closed loop of
// BenchmarkEndToEnd (4 batches) cannot keep two cores busy: a stage that
// frees up finds nothing to do. It is still a closed loop (the sink hands
// credits back), so nothing is shed for the source's sake and the number
// it reports is what the pipeline moves with every stage offered work;
// cores is the CPU time the process used per second (both nodes, the
// kernel's UDP work in their syscalls included), which says whether a
// second core was used at all.
func BenchmarkEndToEndSaturated(b *testing.B) {
	for _, batch := range []int{8, 32} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchEndToEnd(b, batch, saturatedWindow) })
	}
}

// saturatedWindow is three quarters of the data plane's default outbound
// in-flight bound per peer (timing.go's OutInflight, 32 batches). At the
// bound itself the sender sheds a batch now and then (queue-full): the
// receiver runs on loopback inside the sender's sendmmsg, so the sink can
// hand a batch's credits back before the sender's writer has released
// that batch's slot.
const saturatedWindow = 24

func benchEndToEnd(b *testing.B, batch, batches int) {
	const size = 1400
	window := batches * batch // batches in flight: within the peer's in-flight bound
	f := newPKI(b)
	src, sink := newBenchDevice(), newBenchDevice()
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
	cpu0 := cpuTime(b)
	b.ResetTimer()
	src.give(window)
	<-sink.done
	b.StopTimer()
	cpu := cpuTime(b) - cpu0
	runtime.ReadMemStats(&after)
	mallocs := float64(after.Mallocs - before.Mallocs)
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "pkts/s")
	b.ReportMetric(cpu.Seconds()/b.Elapsed().Seconds(), "cores")
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

// cpuTime is the user and system CPU time the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
		src, sink := newBenchDevice(), newBenchDevice()
		src.batch, sink.src = 32, src
		a := newNode(b, f, fmt.Sprintf("alice%d", i), 1, func(c *dataplane.Config) { c.Device = src })
		bob := newNode(b, f, fmt.Sprintf("bob%d", i), 2, func(c *dataplane.Config) { c.Device = sink })
		src.src4, src.dst, src.size = a.vip4, bob.vip4, 1400
		runtime.GC()
		runtime.ReadMemStats(&started)
		connect(b, a, bob, bob.addr, a.addr)
		sink.target = 32 * 256
		src.give(256)
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
