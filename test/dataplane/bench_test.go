package dataplane_test

import (
	"encoding/binary"
	"errors"
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
	src4    netip.Addr // the sending node's VIP: the peer drops any other source
	dst     netip.Addr
	size    int
	credits chan struct{}
	closed  chan struct{}
	once    sync.Once

	next    uint64 // source: next sequence number
	src     *benchDevice
	want    atomic.Uint64 // sink: next expected
	target  uint64
	done    chan struct{}
	badSeq  atomic.Bool
	written atomic.Uint64
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
	n := 0
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

func (d *benchDevice) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		seq := binary.BigEndian.Uint64(b[offset+20:])
		if seq != d.want.Load() {
			d.badSeq.Store(true)
		}
		d.want.Store(seq + 1)
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
// (both nodes, actors included) divided by packets.
func BenchmarkEndToEnd(b *testing.B) {
	const size, window = 1400, 16
	f := newPKI(b)
	src, sink := newBenchDevice(window), newBenchDevice(window)
	sink.src = src
	a := newNode(b, f, "alice", 1, func(c *dataplane.Config) { c.Device = src })
	bob := newNode(b, f, "bob", 2, func(c *dataplane.Config) { c.Device = sink })
	src.src4, src.dst, src.size = a.vip4, bob.vip4, size
	connect(b, a, bob, bob.addr, a.addr)

	sink.target = uint64(b.N)
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
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
	// allocs/op rounds down to an integer; this is the exact figure.
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N), "mallocs/pkt")
	if sink.badSeq.Load() {
		b.Error(errors.New("packets arrived out of order"), a.dp.Status(), a.dp.Drops(), bob.dp.Status(), bob.dp.Drops())
	}
}
