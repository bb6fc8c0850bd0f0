package tun

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOffloadQueues: an interface opened with several queues carries
// traffic on every queue, and the host's answer to a flow written on a
// queue comes back on that queue (the steering a reader and writer per
// queue relies on). A queue count below one is refused.
func TestOffloadQueues(t *testing.T) { forQueueBackends(t, testOffloadQueues) }

func testOffloadQueues(t *testing.T, b Backend) {
	enterFreshNetns(t)
	if _, err := OpenBackendQueues(b, "cyphmq0", testMTU, 0); err == nil {
		t.Fatal("0 queues opened")
	}
	const queues = 3
	devs, err := OpenBackendQueues(b, "cyphmq0", testMTU, queues)
	if err != nil {
		t.Fatal(err)
	}
	checkRaw(t, devs, b == BackendOffloadRaw)
	defer func() {
		for _, d := range devs {
			d.Close()
		}
	}()
	if len(devs) != queues {
		t.Fatalf("%d devices, want %d", len(devs), queues)
	}
	for _, d := range devs {
		if d.Name() != "cyphmq0" {
			t.Fatalf("queue on %q, want cyphmq0", d.Name())
		}
	}
	if err := Configure("cyphmq0", testVIP6, testPrefix6, testVIP4, testPrefix4, testMTU); err != nil {
		t.Fatal(err)
	}
	sock, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(testVIP4, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	local := sock.LocalAddr().(*net.UDPAddr).AddrPort()

	// Each queue's reader, reporting the test's UDP answers (not the
	// kernel's own chatter) with the queue they came on.
	type answer struct {
		queue int
		to    netip.AddrPort
		data  []byte
	}
	answers := make(chan answer, 64)
	for q, d := range devs {
		go func() {
			bufs, sizes := memBufs(8, 16+testMTU)
			for {
				n, err := d.Read(bufs, sizes, 16)
				if err != nil {
					return // closed
				}
				for i := range n {
					src, dst, payload, ok := parseUDP(bufs[i][16 : 16+sizes[i]])
					if ok && src == local {
						answers <- answer{q, dst, bytes.Clone(payload)}
					}
				}
			}
		}()
	}

	buf := make([]byte, 64)
	for round := range 2 {
		for q, d := range devs {
			peer := netip.AddrPortFrom(testPeer4, uint16(7000+10*round+q))
			pkt := buildUDP(peer, local, []byte{'q', byte(q)})
			if n, err := d.Write([][]byte{pkt}, 0); err != nil || n != 1 {
				t.Fatalf("queue %d: write = %d, %v", q, n, err)
			}
			if err := sock.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
				t.Fatal(err)
			}
			n, from, err := sock.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("queue %d: the packet written on it did not reach the host: %v", q, err)
			}
			if from.Port() != peer.Port() || !bytes.Equal(buf[:n], []byte{'q', byte(q)}) {
				t.Fatalf("queue %d: host got %q from %v", q, buf[:n], from)
			}
			if _, err := sock.WriteToUDPAddrPort([]byte{'a', byte(q)}, peer); err != nil {
				t.Fatal(err)
			}
			select {
			case a := <-answers:
				if a.to != peer || !bytes.Equal(a.data, []byte{'a', byte(q)}) {
					t.Fatalf("queue %d: answer %q to %v, want %q to %v", q, a.data, a.to, []byte{'a', byte(q)}, peer)
				}
				if a.queue != q {
					t.Fatalf("the answer to a flow written on queue %d came back on queue %d", q, a.queue)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("queue %d: no answer on any queue", q)
			}
		}
	}
}

// TestOffloadQueuesExclusive: a multi-queue interface in use is not joined
// by a second open of its name (which would attach more queues to it): that
// open fails with EBUSY, as a single-queue open of a name in use does.
func TestOffloadQueuesExclusive(t *testing.T) {
	enterFreshNetns(t)
	devs, err := OpenOffloadQueues("cyphmq1", testMTU, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, d := range devs {
			d.Close()
		}
	}()
	if more, err := OpenOffloadQueues("cyphmq1", testMTU, 2); !errors.Is(err, syscall.EBUSY) {
		for _, d := range more {
			d.Close()
		}
		t.Fatalf("second open of an interface in use: %v, want EBUSY", err)
	}
}

// TestOffloadQueuesClose: closing a queue wakes the Read pending on it,
// with ErrClosed, on every queue (each is a file of its own: closing the
// first wakes none of the others).
func TestOffloadQueuesClose(t *testing.T) { forQueueBackends(t, testOffloadQueuesClose) }

func testOffloadQueuesClose(t *testing.T, b Backend) {
	enterFreshNetns(t)
	devs, err := OpenBackendQueues(b, "cyphmq2", testMTU, 3)
	if err != nil {
		t.Fatal(err)
	}
	checkRaw(t, devs, b == BackendOffloadRaw)
	done := make(chan error, len(devs))
	for _, d := range devs {
		go func() {
			bufs, sizes := memBufs(8, 16+testMTU)
			_, err := d.Read(bufs, sizes, 16)
			done <- err
		}()
	}
	for _, d := range devs {
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for range devs {
		select {
		case err := <-done:
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("read after close: %v, want ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a queue's Read did not return after its Close")
		}
	}
}

// TestOffloadQueuesSteered: steered to its first two queues, a three-queue
// TUN sends the host's answers out on those two only, even to flows written
// on the third (which the kernel's own steering answers on the third).
func TestOffloadQueuesSteered(t *testing.T) { forQueueBackends(t, testOffloadQueuesSteered) }

func testOffloadQueuesSteered(t *testing.T, b Backend) {
	enterFreshNetns(t)
	const queues = 3
	devs, err := OpenBackendQueues(b, "cyphmq3", testMTU, queues)
	if err != nil {
		t.Fatal(err)
	}
	checkRaw(t, devs, b == BackendOffloadRaw)
	defer func() {
		for _, d := range devs {
			d.Close()
		}
	}()
	if err := SteerToFirst(devs, queues-1); err != nil {
		t.Fatal(err)
	}
	if err := Configure("cyphmq3", testVIP6, testPrefix6, testVIP4, testPrefix4, testMTU); err != nil {
		t.Fatal(err)
	}
	sock, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(testVIP4, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	local := sock.LocalAddr().(*net.UDPAddr).AddrPort()
	type answer struct {
		queue int
		to    netip.AddrPort
	}
	answers := make(chan answer, 64)
	for q, d := range devs {
		go func() {
			bufs, sizes := memBufs(8, 16+testMTU)
			for {
				n, err := d.Read(bufs, sizes, 16)
				if err != nil {
					return
				}
				for i := range n {
					src, dst, _, ok := parseUDP(bufs[i][16 : 16+sizes[i]])
					if ok && src == local {
						answers <- answer{q, dst}
					}
				}
			}
		}()
	}
	buf := make([]byte, 64)
	last := devs[queues-1]
	for i := range 16 {
		peer := netip.AddrPortFrom(testPeer4, uint16(7100+i))
		if n, err := last.Write([][]byte{buildUDP(peer, local, []byte("s"))}, 0); err != nil || n != 1 {
			t.Fatalf("write = %d, %v", n, err)
		}
		if err := sock.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := sock.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatalf("the packet written on the last queue did not reach the host: %v", err)
		}
		if _, err := sock.WriteToUDPAddrPort([]byte("a"), peer); err != nil {
			t.Fatal(err)
		}
		select {
		case a := <-answers:
			if a.to != peer {
				t.Fatalf("answer to %v, want %v", a.to, peer)
			}
			if a.queue == queues-1 {
				t.Fatalf("an answer to flow %d came out on the last queue, which is steered away from", i)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no answer on any queue")
		}
	}
	if err := SteerToFirst(devs, queues+1); err == nil {
		t.Fatal("steered to more queues than there are")
	}
}

// forQueueBackends runs a multi-queue test on each backend that opens
// queues, each in a fresh network namespace of its own.
func forQueueBackends(t *testing.T, test func(*testing.T, Backend)) {
	for _, b := range []Backend{BackendOffload, BackendOffloadRaw} {
		t.Run(string(b), func(t *testing.T) { test(t, b) })
	}
}

// checkRaw: every queue does raw I/O exactly when its backend asks for it.
func checkRaw(t *testing.T, devs []Device, raw bool) {
	t.Helper()
	for q, d := range devs {
		if od, ok := d.(*offloadDevice); !ok || od.raw != raw {
			t.Fatalf("queue %d: %T, raw I/O %v, want %v", q, d, ok && od.raw, raw)
		}
	}
}

// TestBackendQueuesWater: the water backend opens one queue, and asking it
// for more is an error that says so, not a single queue.
func TestBackendQueuesWater(t *testing.T) {
	devs, err := OpenBackendQueues(BackendWater, "cyphmq4", testMTU, 2)
	if err == nil || !strings.Contains(err.Error(), "opens one queue") {
		for _, d := range devs {
			d.Close()
		}
		t.Fatalf("water with 2 queues: %v", err)
	}
	if _, err := OpenBackendQueues("bogus", "cyphmq4", testMTU, 2); !errors.Is(err, ErrUnknownBackend) {
		t.Fatalf("unknown backend: %v, want ErrUnknownBackend", err)
	}
}
