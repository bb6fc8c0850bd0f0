package udp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/test/systest"
)

// loopbacks are the families tested; IPv6 is skipped where ::1 is missing.
var loopbacks = []struct{ network, addr string }{
	{"udp4", "127.0.0.1:0"},
	{"udp6", "[::1]:0"},
}

func listen(t *testing.T, network, addr string) *Conn {
	t.Helper()
	c, err := Listen(network, addr)
	if err != nil {
		if network == "udp6" {
			systest.Missing(t, fmt.Sprintf("an IPv6 loopback (%v)", err))
			return nil
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newBatch returns n buffers of size bytes plus matching sizes/eps slices.
func newBatch(n, size int) ([][]byte, []int, []netip.AddrPort) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs, make([]int, n), make([]netip.AddrPort, n)
}

// readN reads exactly n datagrams (possibly over several ReadBatch calls) and
// returns copies of their payloads and sources in arrival order.
func readN(t *testing.T, c *Conn, n int) ([][]byte, []netip.AddrPort) {
	t.Helper()
	bufs, sizes, eps := newBatch(MaxBatch, 2048)
	var got [][]byte
	var from []netip.AddrPort
	for len(got) < n {
		k, err := c.ReadBatch(bufs, sizes, eps)
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d: %v", len(got), n, err)
		}
		for i := range k {
			got = append(got, bytes.Clone(bufs[i][:sizes[i]]))
			from = append(from, eps[i])
		}
	}
	return got, from
}

func TestBatchRoundTripInOrder(t *testing.T) {
	for _, lb := range loopbacks {
		t.Run(lb.network, func(t *testing.T) {
			a, b := listen(t, lb.network, lb.addr), listen(t, lb.network, lb.addr)
			const n = 3*MaxBatch + 5 // more than one sendmmsg
			bufs := make([][]byte, n)
			eps := make([]netip.AddrPort, n)
			for i := range bufs {
				// Varying sizes catch a size/slot mix-up.
				bufs[i] = bytes.Repeat([]byte{byte(i)}, 8+i%1400)
				binary.BigEndian.PutUint32(bufs[i], uint32(i))
				eps[i] = b.LocalAddr()
			}
			sent, err := a.WriteBatch(bufs, eps)
			if err != nil || sent != n {
				t.Fatalf("WriteBatch = %d, %v; want %d, nil", sent, err, n)
			}
			got, from := readN(t, b, n)
			for i := range got {
				if !bytes.Equal(got[i], bufs[i]) {
					t.Fatalf("datagram %d: got seq %d len %d, want seq %d len %d",
						i, binary.BigEndian.Uint32(got[i]), len(got[i]), i, len(bufs[i]))
				}
				if from[i] != a.LocalAddr() {
					t.Fatalf("datagram %d from %v, want %v", i, from[i], a.LocalAddr())
				}
			}
		})
	}
}

func TestDualStackUnmapsIPv4(t *testing.T) {
	dual := listen(t, "udp", "[::]:0")
	if !dual.Is6() {
		systest.Missing(t, "a dual-stack IPv6 socket")
		return
	}
	v4 := listen(t, "udp4", "127.0.0.1:0")
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), dual.LocalAddr().Port())
	if _, err := v4.WriteBatch([][]byte{[]byte("ping")}, []netip.AddrPort{to}); err != nil {
		t.Fatal(err)
	}
	got, from := readN(t, dual, 1)
	if string(got[0]) != "ping" || from[0] != v4.LocalAddr() || !from[0].Addr().Is4() {
		t.Fatalf("got %q from %v, want \"ping\" from unmapped %v", got[0], from[0], v4.LocalAddr())
	}
	// The reply goes to the plain IPv4 endpoint through the IPv6 socket.
	if _, err := dual.WriteBatch([][]byte{[]byte("pong")}, from); err != nil {
		t.Fatal(err)
	}
	got, _ = readN(t, v4, 1)
	if string(got[0]) != "pong" {
		t.Fatalf("reply %q, want pong", got[0])
	}
}

func TestWriteSkipsUnsendableDatagram(t *testing.T) {
	a, b := listen(t, "udp4", "127.0.0.1:0"), listen(t, "udp4", "127.0.0.1:0")
	bufs := [][]byte{[]byte("one"), []byte("bad"), []byte("two")}
	eps := []netip.AddrPort{b.LocalAddr(), netip.MustParseAddrPort("[2001:db8::1]:9"), b.LocalAddr()}
	sent, err := a.WriteBatch(bufs, eps)
	if sent != 2 || !errors.Is(err, ErrFamily) {
		t.Fatalf("WriteBatch = %d, %v; want 2, ErrFamily", sent, err)
	}
	got, _ := readN(t, b, 2)
	if string(got[0]) != "one" || string(got[1]) != "two" {
		t.Fatalf("got %q, want one, two", got)
	}
}

func TestTruncatedDatagramIsDroppedAndCounted(t *testing.T) {
	a, b := listen(t, "udp4", "127.0.0.1:0"), listen(t, "udp4", "127.0.0.1:0")
	payloads := [][]byte{make([]byte, 100), []byte("fits")}
	if _, err := a.WriteBatch(payloads, []netip.AddrPort{b.LocalAddr(), b.LocalAddr()}); err != nil {
		t.Fatal(err)
	}
	bufs, sizes, eps := newBatch(2, 16)
	seen := 0
	for seen < 2 {
		n, err := b.ReadBatch(bufs[seen:], sizes[seen:], eps[seen:])
		if err != nil {
			t.Fatal(err)
		}
		seen += n
	}
	if sizes[0] != 0 || b.Truncated() != 1 {
		t.Fatalf("oversized datagram: size %d, Truncated %d; want 0, 1", sizes[0], b.Truncated())
	}
	if string(bufs[1][:sizes[1]]) != "fits" {
		t.Fatalf("second datagram %q, want fits", bufs[1][:sizes[1]])
	}
}

func TestCloseUnblocksReadBatch(t *testing.T) {
	for _, lb := range loopbacks {
		t.Run(lb.network, func(t *testing.T) {
			c := listen(t, lb.network, lb.addr)
			// The read parks in the netpoller (recvmmsg's EAGAIN) until
			// Close: it never returns without a datagram or an error.
			errc := make(chan error, 1)
			reading := make(chan struct{})
			go func() {
				bufs, sizes, eps := newBatch(4, 64)
				close(reading)
				n, err := c.ReadBatch(bufs, sizes, eps)
				if err == nil && n == 0 {
					err = errors.New("ReadBatch returned no datagram and no error instead of blocking")
				}
				errc <- err
			}()
			<-reading
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if err := <-errc; !errors.Is(err, ErrClosed) || !errors.Is(err, net.ErrClosed) {
				t.Fatalf("ReadBatch after Close: %v, want ErrClosed", err)
			}
			if _, err := c.WriteBatch([][]byte{{1}}, []netip.AddrPort{c.LocalAddr()}); !errors.Is(err, ErrClosed) {
				t.Fatalf("WriteBatch after Close: %v, want ErrClosed", err)
			}
		})
	}
}

func TestBindPicksSocketByFamily(t *testing.T) {
	b, err := ListenBind("127.0.0.1:0", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tests := []struct {
		ep      string
		want    *Conn
		wantErr error
	}{
		{"192.0.2.1:1", b.V4, nil},
		{"[::ffff:192.0.2.1]:1", b.V4, nil},
		{"[2001:db8::1]:1", b.V6, nil},
	}
	for _, tt := range tests {
		if tt.want == nil {
			continue // family unavailable on this host
		}
		got, err := b.ConnFor(netip.MustParseAddrPort(tt.ep))
		if got != tt.want || !errors.Is(err, tt.wantErr) {
			t.Errorf("ConnFor(%s) = %p, %v; want %p", tt.ep, got, err, tt.want)
		}
	}
	v4only, err := ListenBind("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	defer v4only.Close()
	if _, err := v4only.ConnFor(netip.MustParseAddrPort("[2001:db8::1]:1")); !errors.Is(err, ErrFamily) {
		t.Fatalf("v6 endpoint on v4-only bind: %v, want ErrFamily", err)
	}
	if _, err := ListenBind("", ""); err == nil {
		t.Fatal("ListenBind with no addresses succeeded")
	}
}

// TestReadBatchTimes: each datagram carries the kernel's receive time,
// which lies between the send and the end of the read.
func TestReadBatchTimes(t *testing.T) {
	for _, lb := range loopbacks {
		t.Run(lb.network, func(t *testing.T) {
			rx := listen(t, lb.network, lb.addr)
			tx := listen(t, lb.network, lb.addr)
			before := time.Now().UnixNano()
			out := [][]byte{[]byte("one"), []byte("two")}
			to := []netip.AddrPort{rx.LocalAddr(), rx.LocalAddr()}
			if sent, err := tx.WriteBatch(out, to); sent != 2 || err != nil {
				t.Fatalf("WriteBatch: %d %v", sent, err)
			}
			bufs, sizes, eps := newBatch(4, 64)
			times := make([]int64, 4)
			got := 0
			for got < 2 {
				n, err := rx.ReadBatchTimes(bufs[got:], sizes[got:], eps[got:], times[got:])
				if err != nil {
					t.Fatal(err)
				}
				got += n
			}
			after := time.Now().UnixNano()
			for i := range got {
				if times[i] < before || times[i] > after {
					t.Errorf("datagram %d: stamp %d outside [%d, %d]", i, times[i], before, after)
				}
			}
		})
	}
}

// TestBindRefusesBadAddress: a malformed or taken address of one family
// fails ListenBind even when the other family opens, and names the family;
// it used to be dropped once IPv6 bound, leaving a node on IPv6 alone.
func TestBindRefusesBadAddress(t *testing.T) {
	taken, err := Listen("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	tests := []struct {
		name         string
		addr4, addr6 string
		network      string
	}{
		{"malformed v4", "1.2.3", "[::1]:0", "udp4"},
		{"malformed v6", "127.0.0.1:0", "[::1", "udp6"},
		{"taken v4", taken.LocalAddr().String(), "[::1]:0", "udp4"},
		{"v6 address as v4", "[::1]:0", "[::1]:0", "udp4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ListenBind(tt.addr4, tt.addr6)
			if err == nil {
				b.Close()
				t.Fatalf("ListenBind(%q, %q) succeeded", tt.addr4, tt.addr6)
			}
			var le *ListenError
			if !errors.As(err, &le) || le.Network != tt.network {
				t.Fatalf("ListenBind(%q, %q): %v; want a ListenError for %s", tt.addr4, tt.addr6, err, tt.network)
			}
		})
	}
}
