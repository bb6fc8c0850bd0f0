package udp

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDP segmentation offload (UDP_SEGMENT, Linux 4.18) and its receive side
// (UDP_GRO, Linux 5.0). With GSO, one sendmsg carries a run of datagrams of
// one size to one destination as a single buffer the kernel cuts into
// datagrams as late as possible (on loopback and veth it reaches the
// receiving socket whole), so the stack is walked once per run instead of
// once per datagram. With GRO, one recvmsg returns such a run (or one the
// NIC coalesced) as one buffer plus its segment size, which ReadBatch cuts
// back into datagrams.
//
// This is the approach of golang.zx2c4.com/wireguard/conn's StdNetBind. Its
// code is not used directly: it coalesces by copying each datagram into the
// first one's buffer and needs every receive buffer to be 64 KiB (hundreds
// of MiB under load), and it has no receive timestamps, which the data
// plane's CoDel uses. Here a run goes out as an iovec per datagram
// straight from the data plane's buffers; runs are read into a few 64 KiB
// buffers per socket and cut into the caller's ordinary ones, and while
// bulk runs arrive (one segment size, as a TCP stream sends them) the next
// run is read with one iovec per caller buffer of that size, so it lands
// cut already and is not copied at all (readDirect).

const (
	// maxGSOSegments is the most datagrams one UDP_SEGMENT send may carry
	// (the kernel's UDP_MAX_SEGMENTS; newer kernels allow 128).
	maxGSOSegments = 64
	// maxGSOBytes bounds a run's payload: one IPv4 datagram's (65535 less
	// the IPv4 and UDP headers), which also fits IPv6.
	maxGSOBytes = 65535 - 20 - 8
	// groBufSize holds the largest run GRO can return.
	groBufSize = 65535
	// groMsgs is how many runs one GRO read takes. Each costs a 64 KiB
	// buffer per socket; a run holds up to 64 datagrams, so 8 keep reads
	// of single datagrams (many peers, small packets) batched while the
	// socket's memory stays at half a megabyte.
	groMsgs = 8
)

// segCtrlLen is the room for one UDP_SEGMENT control message (a uint16).
var segCtrlLen = unix.CmsgSpace(2)

// putSegmentCmsg writes a UDP_SEGMENT control message for segments of size
// bytes into b (at least segCtrlLen long) and returns its length.
func putSegmentCmsg(b []byte, size uint16) int {
	clear(b[:segCtrlLen])
	cm := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	cm.Level = unix.SOL_UDP
	cm.Type = unix.UDP_SEGMENT
	cm.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], size)
	return segCtrlLen
}

// parseRecvCmsgs walks the control messages of one received message and
// returns the kernel's receive timestamp (SCM_TIMESTAMPNS, Unix ns; 0 if
// absent) and the GRO segment size (UDP_GRO; 0 if the message is one
// datagram). Malformed or unknown messages are skipped.
func parseRecvCmsgs(ctrl []byte) (stamp int64, gso int) {
	hdrLen := unix.CmsgLen(0)
	for len(ctrl) >= hdrLen {
		cm := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[0]))
		l := int(cm.Len)
		if l < hdrLen || l > len(ctrl) {
			return stamp, gso
		}
		data := ctrl[hdrLen:l]
		switch {
		case cm.Level == unix.SOL_SOCKET && cm.Type == unix.SCM_TIMESTAMPNS && len(data) >= int(unsafe.Sizeof(unix.Timespec{})):
			ts := (*unix.Timespec)(unsafe.Pointer(&data[0]))
			stamp = ts.Nano()
		case cm.Level == unix.SOL_UDP && cm.Type == unix.UDP_GRO:
			// The kernel puts an int; older ones have been seen with
			// less, so take what is there.
			switch {
			case len(data) >= 4:
				gso = int(binary.NativeEndian.Uint32(data))
			case len(data) >= 2:
				gso = int(binary.NativeEndian.Uint16(data))
			}
		}
		space := unix.CmsgSpace(l - hdrLen)
		if space > len(ctrl) {
			break
		}
		ctrl = ctrl[space:]
	}
	return stamp, gso
}

// segments is how many datagrams a received message of size bytes with
// GRO segment size gso holds: every one gso bytes but the last, which may
// be shorter. gso 0 (or not below size) means one datagram.
func segments(size, gso int) int {
	if gso <= 0 || gso >= size {
		return 1
	}
	return (size + gso - 1) / gso
}

// segment returns datagram i of a received message of size bytes cut at
// gso bytes: its offset and length.
func segment(size, gso, i int) (off, n int) {
	if gso <= 0 || gso >= size {
		return 0, size
	}
	off = i * gso
	return off, min(gso, size-off)
}

// gsoRun is one message a GSO write sends: datagrams [first, first+n) of
// the batch, all to one destination, every one size bytes but maybe the
// last (shorter).
type gsoRun struct {
	first, n int
	size     int
}

// planRuns splits datagrams [start, end) of bufs/eps into runs a GSO send
// can carry, in order, into out (at least end-start long), and returns how
// many. A run continues while the destination is the same, the length
// equals the run's first (a shorter one ends it, as the last segment), and
// the kernel's bounds on segments and bytes hold.
func planRuns(bufs [][]byte, eps []netip.AddrPort, start, end int, out []gsoRun) int {
	n := 0
	open := false // whether out[n-1] may take more
	for i := start; i < end; i++ {
		l := len(bufs[i])
		if open {
			r := &out[n-1]
			if eps[i] == eps[r.first] && l <= r.size && r.n < maxGSOSegments && (r.n+1)*r.size <= maxGSOBytes {
				r.n++
				open = l == r.size
				continue
			}
		}
		out[n] = gsoRun{first: i, n: 1, size: l}
		n++
		open = l > 0 && 2*l <= maxGSOBytes
	}
	return n
}

// planSingles is planRuns without coalescing: one run per datagram.
func planSingles(bufs [][]byte, start, end int, out []gsoRun) int {
	for i := start; i < end; i++ {
		out[i-start] = gsoRun{first: i, n: 1, size: len(bufs[i])}
	}
	return end - start
}

// gsoAction is what a failed GSO send makes the writer do.
type gsoAction uint8

const (
	gsoRetrySingles gsoAction = iota + 1 // send the run's datagrams one by one
	gsoDisable                           // the same, and never use GSO on this socket again
)

// onGSOError decides what a GSO send failing with err means. EIO is the
// kernel saying the device cannot checksum (a hard requirement of
// UDP_SEGMENT), which will not change: stop using GSO on the socket, as
// wireguard-go does. Anything else (EMSGSIZE or EINVAL for a segment above
// the device's MTU, an unreachable destination) may be this run's alone: its
// datagrams go out singly, where IP fragments what is too big and a
// per-datagram failure stays that datagram's.
func onGSOError(err error) gsoAction {
	if errors.Is(err, unix.EIO) {
		return gsoDisable
	}
	return gsoRetrySingles
}
