package tun

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestOffloadDeviceInFreshNetns(t *testing.T) {
	enterFreshNetns(t)
	dev, err := OpenOffload("cyphoff0", testMTU)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	exerciseDevice(t, dev)
}

// TestOffloadRawDeviceInFreshNetns: UDP both ways through the raw I/O,
// and Close unblocking a reader parked in the netpoller.
func TestOffloadRawDeviceInFreshNetns(t *testing.T) {
	enterFreshNetns(t)
	dev, err := OpenOffloadRaw("cyphraw0", testMTU)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if d := dev.(*offloadDevice); d.dev.BatchSize() > 1 && !d.raw {
		t.Fatal("raw I/O off on a device with virtio headers")
	}
	exerciseDevice(t, dev)
}

func TestParseBackend(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Backend
		err  error
	}{
		{"", DefaultBackend, nil},
		{"offload", BackendOffload, nil},
		{"offload-raw", BackendOffloadRaw, nil},
		{"water", BackendWater, nil},
		{"Water", "", ErrUnknownBackend},
		{"vhost", "", ErrUnknownBackend},
	} {
		got, err := ParseBackend(tt.in)
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("ParseBackend(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestMaxSegments(t *testing.T) {
	for _, mtu := range []int{576, 1280, 1380, 1420, 9000} {
		// The smallest MSS a TCP/IPv6 sender can use with this MTU.
		if got, mss := maxSegments(mtu), mtu-100; got*mss < maxIPPacket || (got-1)*mss >= maxIPPacket {
			t.Errorf("maxSegments(%d) = %d, want ceil(%d/%d)", mtu, got, maxIPPacket, mss)
		}
	}
}

// TestOffloadTCPThroughReflector runs TCP connections through the offload
// device: a goroutine reads every packet the kernel routes into the TUN,
// swaps its source and destination addresses and writes it back, so a
// client's connection to the peer address reaches a server on the local VIP
// (and the replies find their way back the same way). Swapping addresses
// keeps every checksum valid. This exercises TSO (the kernel hands the TUN
// 64 KB super-packets that Read splits) and GRO (Write coalesces segments
// again), and checks the stream arrives intact.
func TestOffloadTCPThroughReflector(t *testing.T) {
	testTCPThroughReflector(t, OpenOffload, "cyphoff1", false)
}

// TestOffloadRawTCPThroughReflector is the reflector on the raw I/O: its
// own virtio read and GSO split (IPv4 and IPv6 TCP super-packets from the
// kernel), and its non-GRO writes, must deliver both streams intact.
func TestOffloadRawTCPThroughReflector(t *testing.T) {
	testTCPThroughReflector(t, OpenOffloadRaw, "cyphraw1", true)
}

func testTCPThroughReflector(t *testing.T, open func(string, int) (Device, error), name string, wantRaw bool) {
	enterFreshNetns(t)
	d, err := open(name, testMTU)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := Configure(d.Name(), testVIP6, testPrefix6, testVIP4, testPrefix4, testMTU); err != nil {
		t.Fatal(err)
	}
	const (
		headroom = 16
		batch    = 64
	)
	done := reflect(d, batch, headroom)

	const size = 16 << 20
	for _, fam := range []struct {
		name      string
		vip, peer netip.Addr
	}{{"ipv4", testVIP4, testPeer4}, {"ipv6", testVIP6, testPeer6}} {
		// Sockets are made here: only this goroutine is in the namespace.
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(fam.vip, 0)))
		if err != nil {
			t.Fatalf("%s: listen: %v", fam.name, err)
		}
		dialer := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(fam.vip, 0))}
		port := ln.Addr().(*net.TCPAddr).AddrPort().Port()
		c, err := dialer.Dial("tcp", netip.AddrPortFrom(fam.peer, port).String())
		if err != nil {
			t.Fatalf("%s: dial through the reflector: %v", fam.name, err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatalf("%s: accept: %v", fam.name, err)
		}
		ln.Close()

		type result struct {
			n   int64
			sum [sha256.Size]byte
			err error
		}
		got := make(chan result, 1)
		go func() {
			h := sha256.New()
			n, err := io.Copy(h, s)
			var r result
			r.n, r.err = n, err
			copy(r.sum[:], h.Sum(nil))
			got <- r
		}()
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i*7 + i>>11)
		}
		if _, err := c.Write(data); err != nil {
			t.Fatalf("%s: send: %v", fam.name, err)
		}
		c.Close()
		r := <-got
		s.Close()
		if want := sha256.Sum256(data); r.err != nil || r.n != size || r.sum != want {
			t.Fatalf("%s: received %d bytes (err %v), sha256 match %v; want %d bytes intact", fam.name, r.n, r.err, r.sum == want, size)
		}
	}

	link, err := netlink.LinkByName(d.Name())
	if err != nil {
		t.Fatal(err)
	}
	rx := link.Attrs().Statistics.RxPackets // write(2)s the kernel took from us
	offloads := d.(*offloadDevice).dev.BatchSize() > 1
	raw := d.(*offloadDevice).raw
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	st := <-done
	if st.err != nil {
		t.Fatalf("reflector: %v", st.err)
	}
	t.Logf("offloads %v (raw I/O %v): %d reads, up to %d packets per read; %d packets written in %d write(2)s", offloads, raw, st.reads, st.maxPerRead, st.written, rx)
	if !offloads {
		t.Log("kernel without IFF_VNET_HDR offloads: nothing more to check")
		return
	}
	if raw != wantRaw {
		t.Errorf("raw I/O %v, want %v", raw, wantRaw)
	}
	// Readiness polling alone stops while fewer free buffers remain than a
	// super-packet may need, so more packets than that in one Read mean the
	// kernel handed us a TSO super-packet that Read split.
	if drain := batch - maxSegments(testMTU) + 1; st.maxPerRead <= drain {
		t.Errorf("at most %d packets per Read: no TSO super-packet was split", st.maxPerRead)
	}
	// GRO: coalesced segments share a write(2), so the kernel counted fewer
	// packets than we wrote.
	if rx*2 > uint64(st.written) {
		t.Errorf("%d packets written in %d write(2)s: Write did not coalesce (GRO)", st.written, rx)
	}
}

// reflectStats is what a reflector saw.
type reflectStats struct {
	reads, maxPerRead, written int
	err                        error
}

// reflect runs a reflector on d until it is closed: it reads batches and
// writes every TCP packet back with its addresses swapped, so a connection
// from a VIP to a peer address behind d talks to itself.
func reflect(d Device, batch, headroom int) <-chan reflectStats {
	done := make(chan reflectStats, 1)
	go func() {
		var st reflectStats
		bufs, sizes := memBufs(batch, headroom+testMTU)
		out := make([][]byte, 0, batch)
		for {
			n, err := d.Read(bufs, sizes, headroom)
			if err != nil {
				if !errors.Is(err, ErrClosed) {
					st.err = err
				}
				done <- st
				return
			}
			st.reads++
			st.maxPerRead = max(st.maxPerRead, n)
			out = out[:0]
			for i := range n {
				if pkt := bufs[i][headroom : headroom+sizes[i]]; swapTCPAddrs(pkt) {
					out = append(out, bufs[i][:headroom+sizes[i]])
				}
			}
			w, err := d.Write(out, headroom)
			if err != nil {
				if !errors.Is(err, ErrClosed) { // closed while writing: the end, as for Read
					st.err = err
				}
				done <- st
				return
			}
			st.written += w
		}
	}()
	return done
}

// swapTCPAddrs swaps the source and destination addresses of an IPv4 or
// IPv6 TCP packet in place (the checksums do not change: the pseudo-header
// sum is commutative). It reports false for anything else.
func swapTCPAddrs(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	var a, b []byte
	switch p[0] >> 4 {
	case 4:
		if len(p) < 20 || p[9] != unix.IPPROTO_TCP {
			return false
		}
		a, b = p[12:16], p[16:20]
	case 6:
		if len(p) < 40 || p[6] != unix.IPPROTO_TCP {
			return false
		}
		a, b = p[8:24], p[24:40]
	default:
		return false
	}
	var tmp [16]byte
	copy(tmp[:], a)
	copy(a, b)
	copy(b, tmp[:len(a)])
	return !bytes.Equal(a, b)
}

// A stage is made the first time a write needs it: a 64 KB one only for
// a packet predicted to be a GRO head with followers, none for the others
// when the caller leaves room for the virtio header (they go as they are),
// else one of the packet's own size: a node whose writes carry a few
// packets of different flows each holds no 64 KB stage; a run of one flow
// takes one.
func TestOffloadStagesFollowWrites(t *testing.T) {
	enterFreshNetns(t)
	dev, err := OpenOffload("cyphoff2", testMTU)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if err := Configure(dev.Name(), testVIP6, testPrefix6, testVIP4, testPrefix4, testMTU); err != nil {
		t.Fatal(err)
	}
	d := dev.(*offloadDevice)
	stages := func() (small, full int) {
		for i := range d.small {
			if d.small[i] != nil {
				small++
			}
			if d.heads[i] != nil {
				full++
			}
		}
		return small, full
	}
	if s, f := stages(); s+f != 0 {
		t.Fatalf("%d small and %d full stages made at open, want none", s, f)
	}
	write := func(size, headroom int, port func(i int) uint16) {
		t.Helper()
		var bufs [][]byte
		for i := range size {
			pkt := buildUDP(netip.AddrPortFrom(testPeer4, port(i)), netip.AddrPortFrom(testVIP4, 9), []byte("stage"))
			bufs = append(bufs, append(make([]byte, headroom), pkt...))
		}
		if n, err := dev.Write(bufs, headroom); err != nil || n != size {
			t.Fatalf("write %d: %d, %v", size, n, err)
		}
	}
	aFlowEach := func(i int) uint16 { return uint16(4000 + i) }
	oneFlow := func(int) uint16 { return 5000 }
	for _, size := range []int{3, 2, 5} {
		write(size, virtioNetHdrLen, aFlowEach)
	}
	if s, f := stages(); s != 0 || f != 0 {
		t.Errorf("%d small and %d full stages after writes of at most 5 packets of different flows with headroom, want none", s, f)
	}
	write(8, 16, oneFlow)
	if s, f := stages(); s != 0 || f != 1 {
		t.Errorf("%d small and %d full stages after a write of 8 packets of one flow, want 0 and 1", s, f)
	}
	// Without headroom for the virtio header every packet is copied.
	for _, size := range []int{3, 2, 5} {
		write(size, 0, aFlowEach)
	}
	if s, f := stages(); s != 5 || f != 1 {
		t.Errorf("%d small and %d full stages after writes of at most 5 packets without headroom, want 5 and 1", s, f)
	}
	write(8, 0, oneFlow)
	if s, f := stages(); s != 8 || f != 1 {
		t.Errorf("%d small and %d full stages after a write of 8 packets of one flow without headroom, want 8 and 1", s, f)
	}
}

// BenchmarkOffloadReflector moves one TCP stream through an offload TUN
// and a reflector that reads its batches (TSO super-packets split into
// segments) and writes them back in batches of 64 (coalesced by GRO into
// super-packets): every packet in a 64 KB stage, with Write's chunk of
// them at 64 (as before), 32 and 16, and the default, a stage of its own
// size per packet and 64 KB ones only for predicted GRO heads (groplan.go):
// what a smaller staging costs the TUN writer. One op is 64 KiB through the
// reflector; cores is the process's CPU seconds per second (the kernel's
// TCP work in the syscalls included), so CPU per byte survives a shared
// machine better than the rate does. stages-MiB is what the staging holds
// afterwards.
func BenchmarkOffloadReflector(b *testing.B) {
	for _, v := range []struct {
		name  string
		chunk int
		full  bool
	}{{"full=64", 64, true}, {"full=32", 32, true}, {"full=16", 16, true}, {"heads", stageCount, false}} {
		b.Run(v.name, func(b *testing.B) { benchReflector(b, v.chunk, v.full) })
	}
}

func benchReflector(b *testing.B, chunk int, full bool) {
	enterFreshNetns(b)
	dev, err := OpenOffload("cyphbench", testMTU)
	if err != nil {
		b.Fatal(err)
	}
	defer dev.Close()
	d := dev.(*offloadDevice)
	if d.dev.BatchSize() == 1 {
		b.Skip("kernel without IFF_VNET_HDR offloads: no GRO to measure")
	}
	d.chunk, d.full = chunk, full
	if err := Configure(dev.Name(), testVIP6, testPrefix6, testVIP4, testPrefix4, testMTU); err != nil {
		b.Fatal(err)
	}
	const (
		headroom = 16
		batch    = 64
		op       = 64 << 10
	)
	done := reflect(dev, batch, headroom)
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(testVIP4, 0)))
	if err != nil {
		b.Fatal(err)
	}
	dialer := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(testVIP4, 0))}
	c, err := dialer.Dial("tcp", netip.AddrPortFrom(testPeer4, ln.Addr().(*net.TCPAddr).AddrPort().Port()).String())
	if err != nil {
		b.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	ln.Close()
	total := int64(b.N) * op
	got := make(chan error, 1)
	go func() {
		_, err := io.CopyN(io.Discard, s, total)
		got <- err
	}()
	data := make([]byte, op)
	link, err := netlink.LinkByName(dev.Name())
	if err != nil {
		b.Fatal(err)
	}
	rx0 := link.Attrs().Statistics.RxPackets
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.SetBytes(op)
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(data); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-got; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	if link, err = netlink.LinkByName(dev.Name()); err != nil {
		b.Fatal(err)
	}
	rx := link.Attrs().Statistics.RxPackets - rx0
	c.Close()
	s.Close()
	stages := 0
	for i := range d.small {
		stages += len(d.small[i]) + len(d.heads[i])
	}
	if err := dev.Close(); err != nil {
		b.Fatal(err)
	}
	st := <-done
	if st.err != nil {
		b.Fatal(st.err)
	}
	b.ReportMetric(cpu.Seconds()/b.Elapsed().Seconds(), "cores")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(total>>10), "cpu-ns/KiB")
	b.ReportMetric(float64(stages)/(1<<20), "stages-MiB")
	b.ReportMetric(float64(st.written)/float64(max(rx, 1)), "pkts/write")
}

// A write of one flow's segments from two TSO bursts (their timestamp
// options differ) reaches the kernel as two super-packets: the second
// burst's first segment must get a full stage, or GRO finds no room in it
// and hands that burst's segments to the kernel one by one (the planner
// once predicted them all as followers of the first head). Counted by the
// namespace's IP InReceives, one per skb.
func TestOffloadWriteCoalescesEachBurst(t *testing.T) {
	enterFreshNetns(t)
	dev, err := OpenOffload("cyphoff3", testMTU)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if err := Configure(dev.Name(), testVIP6, testPrefix6, testVIP4, testPrefix4, testMTU); err != nil {
		t.Fatal(err)
	}
	const (
		headroom = 16
		perBurst = 8
		payload  = 1300
	)
	src, dst := netip.AddrPortFrom(testPeer4, 40000), netip.AddrPortFrom(testVIP4, 9)
	var bufs [][]byte
	for i := range 2 * perBurst {
		p := withTS(tcpSeg(src, dst, payload), uint32(1000+i/perBurst))
		binary.BigEndian.PutUint32(p[24:], uint32(1+i*payload)) // seq
		p[8] = 64                                               // TTL
		sealTCP4(p)
		bufs = append(bufs, append(make([]byte, headroom), p...))
	}
	before := ipInReceives(t)
	if n, err := dev.Write(bufs, headroom); err != nil || n != len(bufs) {
		t.Fatalf("write: %d, %v", n, err)
	}
	if got := ipInReceives(t) - before; got != 2 {
		t.Errorf("the kernel received %d packets for two bursts of %d segments, want 2 (one per burst)", got, perBurst)
	}
}

// sealTCP4 fills in an IPv4 TCP segment's header and TCP checksums.
func sealTCP4(p []byte) {
	ihl := int(p[0]&0x0f) * 4
	p[10], p[11] = 0, 0
	binary.BigEndian.PutUint16(p[10:], ^checksumFold(checksumAdd(0, p[:ihl])))
	l4 := p[ihl:]
	l4[16], l4[17] = 0, 0
	sum := checksumAdd(0, p[12:20]) + uint32(unix.IPPROTO_TCP) + uint32(len(l4))
	binary.BigEndian.PutUint16(l4[16:], ^checksumFold(checksumAdd(sum, l4)))
}

// ipInReceives reads IP InReceives of this thread's network namespace.
func ipInReceives(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/thread-self/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Ip:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "InReceives" && i < len(f) {
				v, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
	}
	t.Fatalf("no Ip InReceives in %q", b)
	return 0
}
