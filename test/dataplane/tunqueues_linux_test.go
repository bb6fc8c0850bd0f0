package dataplane_test

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/test/systest"
	"github.com/cyphonic/cyphonic-go/tun"
)

// countingQueue is a TUN queue that counts the ICMP and other packets
// written on it, and the ICMP packets read from it.
type countingQueue struct {
	tun.Device
	icmp, other atomic.Int64
	icmpRead    atomic.Int64
}

func (c *countingQueue) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := c.Device.Read(bufs, sizes, offset)
	for i := range n {
		if p := bufs[i][offset : offset+sizes[i]]; len(p) >= 20 && p[0]>>4 == 4 && p[9] == unix.IPPROTO_ICMP {
			c.icmpRead.Add(1)
		}
	}
	return n, err
}

func (c *countingQueue) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		if p := b[offset:]; len(p) >= 20 && p[9] == unix.IPPROTO_ICMP {
			c.icmp.Add(1)
		} else {
			c.other.Add(1)
		}
	}
	return c.Device.Write(bufs, offset)
}

// TestTUNQueuesKernel: a data plane on a real three-queue TUN, in a fresh
// network namespace. A peer's UDP is written on its bulk queue and its
// ping on the ICMP queue, and the kernel's answers to both (a UDP reply
// from a socket on the VIP, the echo reply) come back through the tunnel,
// each read by the reader of the queue it was steered to: with the
// kernel's own steering the echo replies on the ICMP queue, steered to the
// bulk queues (tun.SteerToFirst, as the node opens it) on those.
func TestTUNQueuesKernel(t *testing.T) {
	systest.Require(t, systest.Root(), systest.File("/dev/net/tun"))
	runtime.LockOSThread() // never unlocked: the thread and the namespace go with the test goroutine
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare network namespace: %v", err)
	}
	if lo, err := netlink.LinkByName("lo"); err != nil {
		t.Fatal(err)
	} else if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	// Not subtests: every device and socket is made on this goroutine's
	// thread, the one in the namespace.
	for _, steer := range []bool{false, true} {
		tunQueuesKernel(t, steer)
	}
}

func tunQueuesKernel(t *testing.T, steer bool) {
	name := map[bool]string{false: "cyphdpq0", true: "cyphdpq1"}[steer]
	devs, err := tun.OpenOffloadQueues(name, mtu, 3)
	if err != nil {
		t.Fatal(err)
	}
	if steer {
		if err := tun.SteerToFirst(devs, len(devs)-1); err != nil {
			t.Fatal(err)
		}
	}
	queues := make([]*countingQueue, len(devs))
	for i, d := range devs {
		queues[i] = &countingQueue{Device: d}
	}
	f := newPKI(t)
	alice := newNode(t, f, "alice", 1, func(c *dataplane.Config) {
		c.Device, c.Queues = queues[0], []tun.Device{queues[1], queues[2]}
	})
	bob := newNode(t, f, "bob", 2, nil)
	connect(t, bob, alice, alice.addr, bob.addr)
	if err := tun.Configure(name, alice.vip6, pki.DefaultVIP6, alice.vip4, pki.DefaultVIP4, mtu); err != nil {
		t.Fatal(err)
	}
	sock, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(alice.vip4, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	local := sock.LocalAddr().(*net.UDPAddr).AddrPort()

	ctx, cancel := context.WithTimeout(context.Background(), failsafe)
	defer cancel()
	// await returns the next packet bob's host gets that match accepts
	// (alice's kernel also sends its own: router solicitations, MLD).
	await := func(what string, match func([]byte) bool) {
		t.Helper()
		for {
			p, err := bob.app.Recv(ctx)
			if err != nil {
				t.Fatalf("bob: no %s: %v (alice: %+v, drops %v)", what, err, alice.dp.Status(), alice.dp.Drops())
			}
			if match(p) {
				return
			}
		}
	}
	buf := make([]byte, 64)
	for round := range 3 {
		from := netip.AddrPortFrom(bob.vip4, uint16(7000+round))
		if err := bob.app.Send(ctx, udp4(from, local, []byte{'u', byte(round)})); err != nil {
			t.Fatal(err)
		}
		if err := sock.SetReadDeadline(time.Now().Add(failsafe)); err != nil {
			t.Fatal(err)
		}
		n, peer, err := sock.ReadFromUDPAddrPort(buf)
		if err != nil || peer != from || string(buf[:n]) != string([]byte{'u', byte(round)}) {
			t.Fatalf("alice's socket got %q from %v (%v), want bob's from %v", buf[:n], peer, err, from)
		}
		if _, err := sock.WriteToUDPAddrPort([]byte{'r', byte(round)}, from); err != nil {
			t.Fatal(err)
		}
		await("UDP reply", func(p []byte) bool {
			return len(p) >= 30 && p[9] == unix.IPPROTO_UDP && binary.BigEndian.Uint16(p[22:24]) == from.Port() && p[29] == byte(round)
		})
		if err := bob.app.Send(ctx, echo4(bob.vip4, alice.vip4, uint16(round))); err != nil {
			t.Fatal(err)
		}
		await("echo reply", func(p []byte) bool {
			return len(p) >= 28 && p[9] == unix.IPPROTO_ICMP && p[20] == 0 && binary.BigEndian.Uint16(p[26:28]) == uint16(round)
		})
	}
	if q := queues[2]; q.icmp.Load() != 3 || q.other.Load() != 0 {
		t.Fatalf("the ICMP queue wrote %d ICMP packets and %d others, want 3 and 0", q.icmp.Load(), q.other.Load())
	}
	if q := queues[0]; q.icmp.Load() != 0 || q.other.Load() != 3 {
		t.Fatalf("bob's bulk queue wrote %d ICMP packets and %d others, want 0 and 3", q.icmp.Load(), q.other.Load())
	}
	if q := queues[1]; q.icmp.Load()+q.other.Load() != 0 {
		t.Fatalf("the second bulk queue (no peer pinned to it) wrote %d packets", q.icmp.Load()+q.other.Load())
	}
	onLast := queues[2].icmpRead.Load()
	onBulk := queues[0].icmpRead.Load() + queues[1].icmpRead.Load()
	switch {
	case !steer && (onLast == 0 || onLast+onBulk != 3):
		// The kernel sends a flow's packets out on the queue it last
		// wrote one of them on, once it has seen the flow: most replies.
		t.Fatalf("kernel steering: %d echo replies read on the ICMP queue and %d on the bulk queues, want most of 3 on the ICMP queue", onLast, onBulk)
	case steer && (onLast != 0 || onBulk != 3):
		t.Fatalf("steered: %d echo replies read on the ICMP queue and %d on the bulk queues, want 0 and 3", onLast, onBulk)
	}
	alice.stop()
	bob.stop()
}

// udp4 builds an IPv4 UDP packet with valid checksums.
func udp4(src, dst netip.AddrPort, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	ipHeader(p, src.Addr(), dst.Addr(), unix.IPPROTO_UDP)
	u := p[20:]
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	copy(u[8:], payload)
	s, d := src.Addr().As4(), dst.Addr().As4()
	sum := csumAdd(csumAdd(0, s[:]), d[:]) + unix.IPPROTO_UDP + uint32(len(u))
	ck := ^csumFold(csumAdd(sum, u))
	if ck == 0 {
		ck = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], ck)
	return p
}

// echo4 builds an ICMP echo request with identifier 1 and sequence seq.
func echo4(src, dst netip.Addr, seq uint16) []byte {
	p := make([]byte, 28+8)
	ipHeader(p, src, dst, unix.IPPROTO_ICMP)
	m := p[20:]
	m[0] = 8 // echo request
	binary.BigEndian.PutUint16(m[4:], 1)
	binary.BigEndian.PutUint16(m[6:], seq)
	binary.BigEndian.PutUint16(m[2:], ^csumFold(csumAdd(0, m)))
	return p
}

func ipHeader(p []byte, src, dst netip.Addr, proto byte) {
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8], p[9] = 64, proto
	s, d := src.As4(), dst.As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	binary.BigEndian.PutUint16(p[10:], ^csumFold(csumAdd(0, p[:20])))
}

func csumAdd(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func csumFold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}
