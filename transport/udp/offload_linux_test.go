package udp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cyphonic/cyphonic-go/test/systest"
)

// cmsg builds one control message of level/typ carrying data, padded to
// its space.
func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	cm := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	cm.Level, cm.Type = level, typ
	cm.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

func timespec(ns int64) []byte {
	ts := unix.NsecToTimespec(ns)
	return unsafe.Slice((*byte)(unsafe.Pointer(&ts)), unsafe.Sizeof(ts))
}

func int32Bytes(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func TestParseRecvCmsgs(t *testing.T) {
	const ns = 1_700_000_000_123_456_789
	stamp := cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, timespec(ns))
	gro := cmsg(unix.SOL_UDP, unix.UDP_GRO, int32Bytes(1452))
	tests := []struct {
		name      string
		ctrl      []byte
		wantStamp int64
		wantGSO   int
	}{
		{"none", nil, 0, 0},
		{"stamp only", stamp, ns, 0},
		{"gro only", gro, 0, 1452},
		{"stamp then gro", append(append([]byte{}, stamp...), gro...), ns, 1452},
		{"gro then stamp", append(append([]byte{}, gro...), stamp...), ns, 1452},
		{"gro as uint16", cmsg(unix.SOL_UDP, unix.UDP_GRO, []byte{0xac, 0x05}[:2]), 0, int(binary.NativeEndian.Uint16([]byte{0xac, 0x05}))},
		{"unknown skipped", append(cmsg(unix.SOL_IP, unix.IP_TTL, int32Bytes(64)), gro...), 0, 1452},
		{"short stamp ignored", cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, []byte{1, 2, 3}), 0, 0},
		{"length past buffer", stamp[:len(stamp)-8], 0, 0},
		{"truncated header", stamp[:4], 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotStamp, gotGSO := parseRecvCmsgs(tt.ctrl)
			if gotStamp != tt.wantStamp || gotGSO != tt.wantGSO {
				t.Fatalf("parseRecvCmsgs = %d, %d; want %d, %d", gotStamp, gotGSO, tt.wantStamp, tt.wantGSO)
			}
		})
	}
	// A zero-length header must not loop forever.
	bad := make([]byte, 64)
	if s, g := parseRecvCmsgs(bad); s != 0 || g != 0 {
		t.Fatalf("zeroed control = %d, %d", s, g)
	}
}

func TestPutSegmentCmsg(t *testing.T) {
	for _, size := range []uint16{1, 1280, 1452, 65507} {
		b := make([]byte, segCtrlLen)
		for i := range b {
			b[i] = 0xff // garbage from the last use
		}
		if n := putSegmentCmsg(b, size); n != segCtrlLen {
			t.Fatalf("putSegmentCmsg length %d, want %d", n, segCtrlLen)
		}
		cm := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		if cm.Level != unix.SOL_UDP || cm.Type != unix.UDP_SEGMENT || int(cm.Len) != unix.CmsgLen(2) {
			t.Fatalf("header %+v", *cm)
		}
		if got := binary.NativeEndian.Uint16(b[unix.CmsgLen(0):]); got != size {
			t.Fatalf("segment size %d, want %d", got, size)
		}
		if !bytes.Equal(b[unix.CmsgLen(2):], make([]byte, segCtrlLen-unix.CmsgLen(2))) {
			t.Fatalf("padding not cleared: %x", b)
		}
	}
}

func TestSegmentSplit(t *testing.T) {
	tests := []struct {
		size, gso int
		want      [][2]int // offset, length of each datagram
	}{
		{0, 0, [][2]int{{0, 0}}},
		{100, 0, [][2]int{{0, 100}}},
		{100, 100, [][2]int{{0, 100}}},
		{100, 200, [][2]int{{0, 100}}},
		{300, 100, [][2]int{{0, 100}, {100, 100}, {200, 100}}},
		{250, 100, [][2]int{{0, 100}, {100, 100}, {200, 50}}},
		{201, 100, [][2]int{{0, 100}, {100, 100}, {200, 1}}},
		{1452*44 + 60, 1452, nil}, // checked by the sum below
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%d", tt.size, tt.gso), func(t *testing.T) {
			n := segments(tt.size, tt.gso)
			if tt.want != nil && n != len(tt.want) {
				t.Fatalf("segments = %d, want %d", n, len(tt.want))
			}
			next := 0
			for i := range n {
				off, l := segment(tt.size, tt.gso, i)
				if tt.want != nil && [2]int{off, l} != tt.want[i] {
					t.Fatalf("segment %d = %d+%d, want %v", i, off, l, tt.want[i])
				}
				if off != next || l <= 0 && tt.size > 0 {
					t.Fatalf("segment %d = %d+%d does not follow %d", i, off, l, next)
				}
				next = off + l
			}
			if next != tt.size {
				t.Fatalf("segments cover %d of %d bytes", next, tt.size)
			}
		})
	}
}

func TestPlanRuns(t *testing.T) {
	a := netip.MustParseAddrPort("192.0.2.1:1")
	b := netip.MustParseAddrPort("192.0.2.2:1")
	type dg struct {
		len int
		to  netip.AddrPort
	}
	many := func(n, l int, to netip.AddrPort) []dg {
		d := make([]dg, n)
		for i := range d {
			d[i] = dg{l, to}
		}
		return d
	}
	cat := func(parts ...[]dg) []dg {
		var out []dg
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		name string
		in   []dg
		want []gsoRun
	}{
		{"one", many(1, 100, a), []gsoRun{{0, 1, 100}}},
		{"equal run", many(5, 100, a), []gsoRun{{0, 5, 100}}},
		{"shorter last joins", cat(many(3, 100, a), many(1, 40, a)), []gsoRun{{0, 4, 100}}},
		{"after shorter a new run", cat(many(2, 100, a), many(1, 40, a), many(2, 100, a)), []gsoRun{{0, 3, 100}, {3, 2, 100}}},
		{"longer starts a run", cat(many(2, 100, a), many(2, 200, a)), []gsoRun{{0, 2, 100}, {2, 2, 200}}},
		{"destination change", cat(many(2, 100, a), many(2, 100, b), many(1, 100, a)), []gsoRun{{0, 2, 100}, {2, 2, 100}, {4, 1, 100}}},
		{"segment bound", many(maxGSOSegments+1, 100, a), []gsoRun{{0, maxGSOSegments, 100}, {maxGSOSegments, 1, 100}}},
		{"byte bound", many(50, 1452, a), []gsoRun{{0, maxGSOBytes / 1452, 1452}, {maxGSOBytes / 1452, 50 - maxGSOBytes/1452, 1452}}},
		{"empty datagrams stay single", many(2, 0, a), []gsoRun{{0, 1, 0}, {1, 1, 0}}},
		{"too big to pair", many(2, 40000, a), []gsoRun{{0, 1, 40000}, {1, 1, 40000}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bufs := make([][]byte, len(tt.in))
			eps := make([]netip.AddrPort, len(tt.in))
			for i, d := range tt.in {
				bufs[i], eps[i] = make([]byte, d.len), d.to
			}
			out := make([]gsoRun, len(tt.in))
			n := planRuns(bufs, eps, 0, len(bufs), out)
			if fmt.Sprint(out[:n]) != fmt.Sprint(tt.want) {
				t.Fatalf("planRuns = %v, want %v", out[:n], tt.want)
			}
			// Every run fits the kernel's bounds.
			for _, r := range out[:n] {
				if r.n > maxGSOSegments || r.n > 1 && r.n*r.size > maxGSOBytes {
					t.Fatalf("run %v exceeds the kernel's bounds", r)
				}
			}
		})
	}
	// A window inside the batch starts numbering at start.
	bufs := [][]byte{make([]byte, 9), make([]byte, 10), make([]byte, 10)}
	eps := []netip.AddrPort{a, a, a}
	out := make([]gsoRun, 3)
	if n := planRuns(bufs, eps, 1, 3, out); n != 1 || out[0] != (gsoRun{1, 2, 10}) {
		t.Fatalf("window: %v", out[:n])
	}
}

func TestOnGSOError(t *testing.T) {
	tests := []struct {
		err  error
		want gsoAction
	}{
		{unix.EIO, gsoDisable},
		{fmt.Errorf("wrapped: %w", unix.EIO), gsoDisable},
		{unix.EINVAL, gsoRetrySingles},
		{unix.EMSGSIZE, gsoRetrySingles},
		{unix.ENETUNREACH, gsoRetrySingles},
		{errors.New("other"), gsoRetrySingles},
	}
	for _, tt := range tests {
		if got := onGSOError(tt.err); got != tt.want {
			t.Errorf("onGSOError(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

// listenWith is listen with the offloads o allows.
func listenWith(t *testing.T, network, addr string, o offload) *Conn {
	t.Helper()
	c, err := listenOffload(network, addr, o)
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

// gsoPayloads is a batch shaped like the data plane's under bulk TCP:
// runs of full-size datagrams, a short one ending a run, then ACK-sized
// ones, each numbered so order and content can be checked.
func gsoPayloads(full int) [][]byte {
	var sizes []int
	for range 50 {
		sizes = append(sizes, full)
	}
	sizes = append(sizes, 300)
	for range 70 {
		sizes = append(sizes, full)
	}
	for range 20 {
		sizes = append(sizes, 92)
	}
	sizes = append(sizes, full, 92, full)
	out := make([][]byte, len(sizes))
	for i, l := range sizes {
		out[i] = bytes.Repeat([]byte{byte(i * 7)}, l)
		binary.BigEndian.PutUint32(out[i], uint32(i))
	}
	return out
}

// checkArrival reads want's datagrams from rx and checks each arrived
// intact, in order, from tx.
func checkArrival(t *testing.T, rx, tx *Conn, want [][]byte) {
	t.Helper()
	got, from := readN(t, rx, len(want))
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			seq := -1
			if len(got[i]) >= 4 {
				seq = int(binary.BigEndian.Uint32(got[i]))
			}
			t.Fatalf("datagram %d: got seq %d len %d, want len %d", i, seq, len(got[i]), len(want[i]))
		}
		if from[i] != tx.LocalAddr() {
			t.Fatalf("datagram %d from %v, want %v", i, from[i], tx.LocalAddr())
		}
	}
}

// TestGSOLoopback sends runs with UDP GSO to a receiver with GRO on and
// off: every datagram arrives intact, in order, as the datagram it was
// sent as. With GRO on, the receiver really read a coalesced run (its
// first read's message carries a segment size), so the split is tested on
// the kernel's output, not on a model of it.
func TestGSOLoopback(t *testing.T) {
	for _, lb := range loopbacks {
		for _, gro := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/gro=%v", lb.network, gro), func(t *testing.T) {
				tx := listenWith(t, lb.network, lb.addr, offload{gso: true})
				if tx == nil {
					return
				}
				rx := listenWith(t, lb.network, lb.addr, offload{gro: gro})
				if !tx.GSO() || gro && !rx.GRO() {
					systest.Missing(t, "a kernel with UDP_SEGMENT and UDP_GRO (4.18, 5.0)")
					return
				}
				want := gsoPayloads(1452)
				eps := make([]netip.AddrPort, len(want))
				for i := range eps {
					eps[i] = rx.LocalAddr()
				}
				sent, err := tx.WriteBatch(want, eps)
				if err != nil || sent != len(want) {
					t.Fatalf("WriteBatch = %d, %v; want %d, nil", sent, err, len(want))
				}
				if !tx.GSO() {
					t.Fatal("the kernel refused GSO on loopback")
				}
				// Read the first run alone to see how it arrived.
				bufs, sizes, from := newBatch(1, 2048)
				if n, err := rx.ReadBatch(bufs, sizes, from); n != 1 || err != nil {
					t.Fatalf("first read: %d, %v", n, err)
				}
				if !bytes.Equal(bufs[0][:sizes[0]], want[0]) {
					t.Fatalf("first datagram: len %d, want %d", sizes[0], len(want[0]))
				}
				if gro {
					if _, g := rx.rd.cmsgs(0); g != 1452 {
						t.Fatalf("first message's GRO segment size %d, want 1452: no coalesced run arrived", g)
					}
				}
				checkArrival(t, rx, tx, want[1:])
				if rx.Truncated() != 0 {
					t.Fatalf("Truncated = %d", rx.Truncated())
				}
			})
		}
	}
}

// TestGROIntoSmallBuffers: a coalesced run cut into buffers too small for
// its datagrams drops and counts exactly those, keeping the rest in order.
func TestGROIntoSmallBuffers(t *testing.T) {
	tx := listenWith(t, "udp4", "127.0.0.1:0", offload{gso: true})
	rx := listenWith(t, "udp4", "127.0.0.1:0", offload{gro: true})
	if !tx.GSO() || !rx.GRO() {
		systest.Missing(t, "a kernel with UDP_SEGMENT and UDP_GRO")
		return
	}
	out := [][]byte{make([]byte, 500), make([]byte, 500), make([]byte, 100)}
	out[2][0] = 'x'
	to := []netip.AddrPort{rx.LocalAddr(), rx.LocalAddr(), rx.LocalAddr()}
	if sent, err := tx.WriteBatch(out, to); sent != 3 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", sent, err)
	}
	bufs, sizes, eps := newBatch(3, 200)
	got := 0
	for got < 3 {
		n, err := rx.ReadBatch(bufs[got:], sizes[got:], eps[got:])
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	if sizes[0] != 0 || sizes[1] != 0 || sizes[2] != 100 || bufs[2][0] != 'x' || rx.Truncated() != 2 {
		t.Fatalf("sizes %v, Truncated %d; want [0 0 100], 2", sizes, rx.Truncated())
	}
}

// TestGSOOffFallsBack: with GSO off (a kernel without it) the same batch
// goes out as single datagrams and arrives the same.
func TestGSOOffFallsBack(t *testing.T) {
	tx := listenWith(t, "udp4", "127.0.0.1:0", offload{})
	rx := listenWith(t, "udp4", "127.0.0.1:0", offload{gro: true})
	if tx.GSO() {
		t.Fatal("GSO on though not allowed")
	}
	want := gsoPayloads(1200)
	eps := make([]netip.AddrPort, len(want))
	for i := range eps {
		eps[i] = rx.LocalAddr()
	}
	if sent, err := tx.WriteBatch(want, eps); sent != len(want) || err != nil {
		t.Fatalf("WriteBatch = %d, %v", sent, err)
	}
	checkArrival(t, rx, tx, want)
}

// TestGSORefusedRunGoesSingly: in a namespace whose loopback MTU is below
// the segment size, the kernel refuses the GSO run (EMSGSIZE: a segment
// would not fit the device); the writer sends the run's datagrams singly,
// which IP fragments, so every one still arrives in order, and GSO stays
// on for runs that fit.
func TestGSORefusedRunGoesSingly(t *testing.T) {
	systest.Require(t, systest.Root(), systest.Tool("ip", "iproute2"))
	ns := fmt.Sprintf("udp-gso-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "mtu", "1280", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo: %v: %s", err, out)
	}
	var tx, rx *Conn
	err := inNamespace(ns, func() error {
		var err error
		if tx, err = listenOffload("udp4", "127.0.0.1:0", offload{gso: true}); err != nil {
			return err
		}
		rx, err = listenOffload("udp4", "127.0.0.1:0", offload{gro: true})
		return err
	})
	if tx != nil {
		t.Cleanup(func() { tx.Close() })
	}
	if rx != nil {
		t.Cleanup(func() { rx.Close() })
	}
	if err != nil {
		t.Fatal(err)
	}
	if !tx.GSO() {
		systest.Missing(t, "a kernel with UDP_SEGMENT")
		return
	}
	// 1400-byte segments do not fit a 1280-byte MTU; 1000-byte ones do.
	want := gsoPayloads(1400)
	for _, size := range []int{1000} {
		for range 10 {
			p := bytes.Repeat([]byte{0xee}, size)
			want = append(want, p)
		}
	}
	for i := range want {
		binary.BigEndian.PutUint32(want[i], uint32(i))
	}
	eps := make([]netip.AddrPort, len(want))
	for i := range eps {
		eps[i] = rx.LocalAddr()
	}
	sent, err := tx.WriteBatch(want, eps)
	if err != nil || sent != len(want) {
		t.Fatalf("WriteBatch = %d, %v; want %d, nil", sent, err, len(want))
	}
	if !tx.GSO() || tx.GSORefused() == 0 {
		t.Fatalf("GSO %v, %d runs refused: want the too-big run refused and GSO still on", tx.GSO(), tx.GSORefused())
	}
	checkArrival(t, rx, tx, want)
}

// TestGSOWithoutChecksumOffload: on a device that cannot checksum (a veth
// with transmit checksumming turned off, between two namespaces of the
// test's own) older kernels refuse every GSO send with EIO: the writer
// must send the run singly and turn GSO off for the socket for good. Newer
// ones (6.18 here) checksum such runs in software and send them. Either
// way every datagram arrives in order; which one happened is read off
// GSORefused.
func TestGSOWithoutChecksumOffload(t *testing.T) {
	systest.Require(t, systest.Root(), systest.Tool("ip", "iproute2"))
	nsTx, nsRx := fmt.Sprintf("udp-eio-tx-%d", os.Getpid()), fmt.Sprintf("udp-eio-rx-%d", os.Getpid())
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	for _, ns := range []string{nsTx, nsRx} {
		ip("netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	ip("-n", nsTx, "link", "add", "eio0", "type", "veth", "peer", "name", "eio1", "netns", nsRx)
	ip("-n", nsTx, "addr", "add", "198.18.0.1/24", "dev", "eio0")
	ip("-n", nsRx, "addr", "add", "198.18.0.2/24", "dev", "eio1")
	ip("-n", nsTx, "link", "set", "eio0", "up")
	ip("-n", nsRx, "link", "set", "eio1", "up")
	var tx, rx *Conn
	err := inNamespace(nsTx, func() error {
		if err := setTxChecksum("eio0", false); err != nil {
			return fmt.Errorf("turn off eio0's tx checksumming: %w", err)
		}
		var err error
		tx, err = listenOffload("udp4", "198.18.0.1:0", offload{gso: true})
		return err
	})
	if tx != nil {
		t.Cleanup(func() { tx.Close() })
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := inNamespace(nsRx, func() error {
		var err error
		rx, err = listenOffload("udp4", "198.18.0.2:0", offload{gro: true})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx.Close() })
	if !tx.GSO() {
		systest.Missing(t, "a kernel with UDP_SEGMENT")
		return
	}
	want := gsoPayloads(1000)
	eps := make([]netip.AddrPort, len(want))
	for i := range eps {
		eps[i] = rx.LocalAddr()
	}
	sent, err := tx.WriteBatch(want, eps)
	if err != nil || sent != len(want) {
		t.Fatalf("WriteBatch = %d, %v; want %d, nil", sent, err, len(want))
	}
	switch refused := tx.GSORefused(); {
	case refused > 0 && tx.GSO():
		t.Fatalf("the kernel refused %d runs (EIO) and GSO is still on", refused)
	case refused == 0:
		t.Log("this kernel sends GSO runs from a device without checksum offload (software checksum); the EIO path did not run")
	}
	checkArrival(t, rx, tx, want)
	// Later batches go out singly from the start.
	if sent, err := tx.WriteBatch(want[:10], eps[:10]); sent != 10 || err != nil {
		t.Fatalf("second WriteBatch = %d, %v", sent, err)
	}
	checkArrival(t, rx, tx, want[:10])
}

// setTxChecksum turns transmit checksum offload of the interface name on
// or off (SIOCETHTOOL, ETHTOOL_STXCSUM), in the calling thread's network
// namespace.
func setTxChecksum(name string, on bool) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	value := &struct{ cmd, data uint32 }{cmd: unix.ETHTOOL_STXCSUM}
	if on {
		value.data = 1
	}
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer
		_    [16]byte // the rest of struct ifreq's union
	}
	copy(ifr.name[:], name)
	ifr.data = unsafe.Pointer(value)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		return errno
	}
	return nil
}

// inNamespace runs f on an OS thread inside network namespace ns; sockets
// f opens stay in ns. The thread is never unlocked, so Go discards it.
func inNamespace(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

// TestGRODirectReads: once bulk runs arrive, a GRO socket reads the next
// run straight into the caller's buffers (direct), and anything that does
// not fit that layout (another segment size, a single datagram longer
// than the segment) is cut correctly all the same; the mode follows the
// traffic. Every datagram arrives intact and in order through each switch.
func TestGRODirectReads(t *testing.T) {
	tx := listenWith(t, "udp4", "127.0.0.1:0", offload{gso: true})
	rx := listenWith(t, "udp4", "127.0.0.1:0", offload{gro: true})
	if !tx.GSO() || !rx.GRO() {
		systest.Missing(t, "a kernel with UDP_SEGMENT and UDP_GRO")
		return
	}
	seq := 0
	run := func(n, size int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = bytes.Repeat([]byte{byte(seq)}, size)
			binary.BigEndian.PutUint32(out[i], uint32(seq))
			seq++
		}
		return out
	}
	steps := []struct {
		name       string
		send       [][]byte
		wantDirect int // rx.direct after the step's reads
	}{
		{"bulk run, read as runs: learns its size", run(40, 1452), 1452},
		{"bulk run, read direct", append(run(30, 1452), run(1, 400)...), 1452},
		{"another size while direct: gathered, learnt", run(20, 1300), 1300},
		{"single longer than the segment: gathered", run(1, 1900), 0},
		{"bulk again", run(45, 1452), 1452},
		{"a lone datagram ends direct reads", run(1, 100), 0},
	}
	for _, st := range steps {
		to := make([]netip.AddrPort, len(st.send))
		for i := range to {
			to[i] = rx.LocalAddr()
		}
		if sent, err := tx.WriteBatch(st.send, to); sent != len(st.send) || err != nil {
			t.Fatalf("%s: WriteBatch = %d, %v", st.name, sent, err)
		}
		checkArrival(t, rx, tx, st.send)
		if rx.direct != st.wantDirect {
			t.Fatalf("%s: direct = %d, want %d", st.name, rx.direct, st.wantDirect)
		}
	}
	if rx.Truncated() != 0 {
		t.Fatalf("Truncated = %d", rx.Truncated())
	}
}

// TestGSODualStackToIPv4: a dual-stack socket sends a run to an IPv4
// endpoint (as an IPv4-mapped address) as one GSO message too.
func TestGSODualStackToIPv4(t *testing.T) {
	dual := listenWith(t, "udp", "[::]:0", offload{gso: true})
	if dual == nil || !dual.Is6() || !dual.GSO() {
		systest.Missing(t, "a dual-stack IPv6 socket with UDP_SEGMENT")
		return
	}
	rx := listenWith(t, "udp4", "127.0.0.1:0", offload{gro: true})
	want := gsoPayloads(1452)
	eps := make([]netip.AddrPort, len(want))
	for i := range eps {
		eps[i] = rx.LocalAddr()
	}
	if sent, err := dual.WriteBatch(want, eps); sent != len(want) || err != nil {
		t.Fatalf("WriteBatch = %d, %v", sent, err)
	}
	if dual.GSORefused() != 0 {
		t.Fatalf("%d runs refused", dual.GSORefused())
	}
	got, from := readN(t, rx, len(want))
	for i := range want {
		if !bytes.Equal(got[i], want[i]) || from[i].Port() != dual.LocalAddr().Port() {
			t.Fatalf("datagram %d: len %d from %v", i, len(got[i]), from[i])
		}
	}
}
