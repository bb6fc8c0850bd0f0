package tun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"testing"

	"github.com/cyphonic/cyphonic-go/test/systest"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// enterFreshNetns moves the calling test goroutine's OS thread into a new,
// empty network namespace so the test never touches the host's. The thread
// stays locked: when the test goroutine ends, the runtime discards the thread
// and the namespace with it. Everything that creates a device or socket must
// therefore run on the test goroutine itself.
func enterFreshNetns(t testing.TB) {
	t.Helper()
	systest.Require(t, systest.Root(), systest.File("/dev/net/tun"))
	runtime.LockOSThread() // never unlocked, see above
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare network namespace: %v", err)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
}

var (
	testVIP6    = netip.MustParseAddr("fd00:cafe::1")
	testPeer6   = netip.MustParseAddr("fd00:cafe::2")
	testPrefix6 = netip.MustParsePrefix("fd00:cafe::/64")
	testVIP4    = netip.MustParseAddr("100.64.0.1")
	testPeer4   = netip.MustParseAddr("100.64.0.2")
	testPrefix4 = netip.MustParsePrefix("100.64.0.0/10")
)

const testMTU = 1380

func TestWaterDeviceInFreshNetns(t *testing.T) {
	enterFreshNetns(t)
	dev, err := Open("cyphtest0", testMTU)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	exerciseDevice(t, dev)
}

// exerciseDevice checks a freshly opened device both ways, with both IP
// families, then that Close unblocks a parked reader. Backend-independent.
func exerciseDevice(t *testing.T, dev Device) {
	t.Helper()
	if err := Configure(dev.Name(), testVIP6, testPrefix6, testVIP4, testPrefix4, testMTU); err != nil {
		t.Fatal(err)
	}
	// Idempotent: a second run replaces rather than failing on EEXIST.
	if err := Configure(dev.Name(), testVIP6, testPrefix6, testVIP4, testPrefix4, testMTU); err != nil {
		t.Fatalf("second Configure: %v", err)
	}
	checkLinkConfig(t, dev.Name())

	for _, fam := range []struct {
		name      string
		vip, peer netip.Addr
	}{{"ipv4", testVIP4, testPeer4}, {"ipv6", testVIP6, testPeer6}} {
		// Not t.Run: subtests run on other goroutines, outside the netns.
		sock, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(fam.vip, 0)))
		if err != nil {
			t.Fatalf("%s: bind VIP: %v", fam.name, err)
		}
		local := sock.LocalAddr().(*net.UDPAddr).AddrPort()
		peer := netip.AddrPortFrom(fam.peer, 7777)

		// Outbound: the socket's datagrams leave through the TUN in order,
		// sourced from the VIP.
		const burst = 8
		for i := range burst {
			if _, err := sock.WriteToUDPAddrPort([]byte{'o', byte(i)}, peer); err != nil {
				t.Fatalf("%s: send: %v", fam.name, err)
			}
		}
		var got [][]byte
		bufs, sizes := memBufs(burst, 16+testMTU)
		for len(got) < burst {
			n, err := dev.Read(bufs, sizes, 16)
			if err != nil {
				t.Fatalf("%s: tun read: %v", fam.name, err)
			}
			for i := range n {
				src, dst, payload, ok := parseUDP(bufs[i][16 : 16+sizes[i]])
				if !ok || dst != peer {
					continue // the kernel's own chatter (MLD, router solicitations)
				}
				if src != local {
					t.Fatalf("%s: outbound source %v, want %v", fam.name, src, local)
				}
				got = append(got, bytes.Clone(payload)) // bufs are reused by the next Read
			}
		}
		for i, p := range got {
			if !bytes.Equal(p, []byte{'o', byte(i)}) {
				t.Fatalf("%s: outbound datagram %d = %q, want in-order %q", fam.name, i, p, []byte{'o', byte(i)})
			}
		}

		// Inbound: packets written to the TUN reach the socket bound to the VIP.
		const headroom = 16
		var in [][]byte
		for i := range burst {
			pkt := buildUDP(peer, local, []byte{'i', byte(i)})
			in = append(in, append(make([]byte, headroom), pkt...))
		}
		if n, err := dev.Write(in, headroom); err != nil || n != burst {
			t.Fatalf("%s: tun write = %d, %v; want %d, nil", fam.name, n, err, burst)
		}
		buf := make([]byte, 64)
		for i := range burst {
			n, from, err := sock.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("%s: socket read: %v", fam.name, err)
			}
			if from.Addr().Unmap() != peer.Addr() || from.Port() != peer.Port() || !bytes.Equal(buf[:n], []byte{'i', byte(i)}) {
				t.Fatalf("%s: inbound %d = %q from %v, want %q from %v", fam.name, i, buf[:n], from, []byte{'i', byte(i)}, peer)
			}
		}
		sock.Close()
	}

	// A malformed packet is rejected by the kernel but does not stop the batch.
	bad := [][]byte{{0x00, 0x01}, buildUDP(netip.AddrPortFrom(testPeer4, 1), netip.AddrPortFrom(testVIP4, 9), nil)}
	n, err := dev.Write(bad, 0)
	if n != 1 || err == nil {
		t.Fatalf("Write with one malformed packet = %d, %v; want 1 and an error", n, err)
	}

	// Close unblocks a reader parked on the idle device. Until then Read
	// blocks: it never returns without a packet or an error.
	readErr := make(chan error, 1)
	reading := make(chan struct{})
	go func() {
		bufs, sizes := memBufs(4, testMTU)
		close(reading)
		for {
			n, err := dev.Read(bufs, sizes, 0)
			if err != nil {
				readErr <- err
				return
			}
			if n == 0 {
				readErr <- errors.New("Read returned no packet and no error instead of blocking")
				return
			}
		}
	}()
	<-reading
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-readErr; !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close: %v, want ErrClosed", err)
	}
	if _, err := dev.Write(bad[1:], 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v, want ErrClosed", err)
	}
}

func checkLinkConfig(t *testing.T, name string) {
	t.Helper()
	link, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if a := link.Attrs(); a.MTU != testMTU || a.Flags&net.FlagUp == 0 {
		t.Fatalf("link %s: mtu %d flags %v; want mtu %d and up", name, a.MTU, a.Flags, testMTU)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"100.64.0.1/32": false, "fd00:cafe::1/128": false}
	for _, a := range addrs {
		if _, ok := want[a.IPNet.String()]; ok {
			want[a.IPNet.String()] = true
		}
	}
	routes, err := netlink.RouteList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	want["route 100.64.0.0/10"], want["route fd00:cafe::/64"] = false, false
	for _, r := range routes {
		if r.Dst != nil {
			if _, ok := want["route "+r.Dst.String()]; ok {
				want["route "+r.Dst.String()] = true
			}
		}
	}
	for k, found := range want {
		if !found {
			t.Errorf("link %s: missing %s (addrs %v, routes %v)", name, k, addrs, routes)
		}
	}
}

// buildUDP makes an IPv4 or IPv6 UDP packet with valid checksums.
func buildUDP(src, dst netip.AddrPort, payload []byte) []byte {
	udp := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[8:], payload)
	s, d := src.Addr().AsSlice(), dst.Addr().AsSlice()

	// Pseudo-header sum: addresses, protocol, UDP length.
	sum := checksumAdd(0, s)
	sum = checksumAdd(sum, d)
	sum += uint32(unix.IPPROTO_UDP) + uint32(len(udp))
	ck := ^checksumFold(checksumAdd(sum, udp))
	if ck == 0 {
		ck = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], ck)

	if src.Addr().Is4() {
		ip := make([]byte, 20, 20+len(udp))
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
		ip[8] = 64
		ip[9] = unix.IPPROTO_UDP
		copy(ip[12:16], s)
		copy(ip[16:20], d)
		binary.BigEndian.PutUint16(ip[10:], ^checksumFold(checksumAdd(0, ip)))
		return append(ip, udp...)
	}
	ip := make([]byte, 40, 40+len(udp))
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(udp)))
	ip[6] = unix.IPPROTO_UDP
	ip[7] = 64
	copy(ip[8:24], s)
	copy(ip[24:40], d)
	return append(ip, udp...)
}

func checksumAdd(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func checksumFold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// parseUDP extracts the endpoints and payload of an IPv4/IPv6 UDP packet
// (no IPv6 extension headers).
func parseUDP(p []byte) (src, dst netip.AddrPort, payload []byte, ok bool) {
	if len(p) < 1 {
		return
	}
	var sa, da netip.Addr
	var l4 []byte
	switch p[0] >> 4 {
	case 4:
		ihl := int(p[0]&0x0f) * 4
		if len(p) < 20 || ihl < 20 || len(p) < ihl || p[9] != unix.IPPROTO_UDP {
			return
		}
		sa, da, l4 = netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20])), p[ihl:]
	case 6:
		if len(p) < 40 || p[6] != unix.IPPROTO_UDP {
			return
		}
		sa, da, l4 = netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40])), p[40:]
	default:
		return
	}
	if len(l4) < 8 {
		return
	}
	src = netip.AddrPortFrom(sa, binary.BigEndian.Uint16(l4[0:]))
	dst = netip.AddrPortFrom(da, binary.BigEndian.Uint16(l4[2:]))
	return src, dst, l4[8:], true
}

// BenchmarkWaterOutbound: a socket on the VIP sends 1400-byte datagrams to a
// peer VIP and the device drains them in batches of up to 64. One op is one
// packet (socket send plus its share of the batched TUN read).
func BenchmarkWaterOutbound(b *testing.B) { benchmarkOutbound(b, Open) }

// BenchmarkOffloadOutbound is BenchmarkWaterOutbound on the offload backend
// (UDP without GSO: one packet per read(2), batched by readiness polling).
func BenchmarkOffloadOutbound(b *testing.B) { benchmarkOutbound(b, OpenOffload) }

func benchmarkOutbound(b *testing.B, open func(string, int) (Device, error)) {
	enterFreshNetns(b)
	dev, err := open("cyphbench0", testMTU)
	if err != nil {
		b.Fatal(err)
	}
	defer dev.Close()
	if err := Configure(dev.Name(), netip.Addr{}, netip.Prefix{}, testVIP4, testPrefix4, testMTU); err != nil {
		b.Fatal(err)
	}
	sock, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(testVIP4, 0)))
	if err != nil {
		b.Fatal(err)
	}
	defer sock.Close()
	peer := netip.AddrPortFrom(testPeer4, 7777)
	payload := make([]byte, 1400-28)
	bufs, sizes := memBufs(64, 16+testMTU)
	b.SetBytes(1400)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += 64 {
		for range 64 {
			if _, err := sock.WriteToUDPAddrPort(payload, peer); err != nil {
				b.Fatal(err)
			}
		}
		for got := 0; got < 64; {
			n, err := dev.Read(bufs, sizes, 16)
			if err != nil {
				b.Fatal(err)
			}
			for i := range n {
				if _, dst, _, ok := parseUDP(bufs[i][16 : 16+sizes[i]]); ok && dst == peer {
					got++
				}
			}
		}
	}
}
