// Package udp is the node's UDP socket layer: one socket per address family,
// read and written in batches with recvmmsg/sendmmsg so that one syscall moves
// up to MaxBatch datagrams, and where the kernel allows, runs of datagrams
// to one destination sent as one with UDP GSO and received as one with UDP
// GRO (offload_linux.go).
//
// It calls the syscalls directly instead of going through
// golang.org/x/net/ipv4.PacketConn.ReadBatch: that API returns each source as
// a freshly allocated *net.UDPAddr (two allocations per datagram), while here
// the message headers and address slots live in the Conn and are decoded
// straight into netip.AddrPort, so steady-state batches do not allocate.
package udp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MaxBatch is the largest number of datagrams one ReadBatch or WriteBatch
// syscall moves; longer batches are split (writes) or truncated (reads).
const MaxBatch = 64

// SocketBufferSize is the receive buffer each socket asks for. The kernel's
// receive queue is a FIFO shared by every peer, in front of all the data
// plane's per-peer fairness: whatever the daemon cannot read at once waits
// there, an idle peer's ping behind the bulk. 2 MiB absorbs bursts between
// reader wake-ups; in test/perf with 10 TCP pushers on 2 cores, 7 MiB gave
// a 30 % higher idle-peer RTT and more memory for no more throughput, and
// 1 MiB (or less) lost pings to the kernel's tail drop (BENCHMARKS.md).
const SocketBufferSize = 2 << 20

// SendBufferSize is the send buffer each socket asks for. It is smaller:
// a full send buffer is a FIFO shared by every peer that nothing drains
// early, so the writer should rather wait (its per-peer queues have CoDel)
// than park megabytes in the kernel.
const SendBufferSize = 1 << 20

var (
	// ErrClosed is returned (wrapped) by reads and writes on a closed Conn.
	ErrClosed = net.ErrClosed
	// ErrFamily means an endpoint cannot be reached through this socket's
	// address family (an IPv6 endpoint on an IPv4 socket).
	ErrFamily = errors.New("udp: endpoint address family does not match socket")
	// ErrInvalidEndpoint means the endpoint has no address.
	ErrInvalidEndpoint = errors.New("udp: invalid endpoint")
)

// Conn is one UDP socket with batch I/O. One goroutine may read while another
// writes; concurrent readers (or writers) are serialised.
type Conn struct {
	pc     *net.UDPConn
	rc     syscall.RawConn
	family int // unix.AF_INET or unix.AF_INET6
	local  netip.AddrPort

	truncated  atomic.Uint64
	gsoRefused atomic.Uint64

	rmu    sync.Mutex
	rd     mmsgBatch
	readFn func(fd uintptr) bool // bound once so RawConn.Read does not allocate
	// gro: the socket returns coalesced runs (UDP_GRO), read into rd's
	// groMsgs buffers of groBufSize (groBuf) and cut into the caller's
	// buffers, possibly over several ReadBatch calls (rd.next*).
	gro    bool
	groBuf []byte
	// direct is the segment size of the bulk runs arriving lately (0:
	// none). While set, a GRO read takes one run straight into the
	// caller's buffers, one segment per iovec (readDirect): no copy.
	direct int
	dIovs  [MaxBatch]unix.Iovec

	wmu     sync.Mutex
	wr      mmsgBatch
	writeFn func(fd uintptr) bool
	// gso: runs to one destination go out as one UDP_SEGMENT message.
	// Only touched under wmu; cleared for good when the kernel says the
	// device cannot do it (onGSOError).
	gso bool
}

// ctrlLen is room for the control messages a read asks for: a struct
// timespec, the kernel's receive timestamp (SO_TIMESTAMPNS), and an int,
// the GRO segment size (UDP_GRO).
var ctrlLen = unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{}))) + unix.CmsgSpace(4)

// mmsgBatch is the reusable kernel-facing state of one direction. The header
// pointers into names (and on the read side iovs) are set once; only
// buffer pointers change per call.
type mmsgBatch struct {
	hdrs  [MaxBatch]unix.Mmsghdr
	iovs  [MaxBatch]unix.Iovec
	names [MaxBatch]sockaddr
	ctrl  []byte // read side: MaxBatch control buffers of ctrlLen bytes; write side: segCtrlLen each

	count int   // headers to move in this call
	done  int   // headers handled so far (write side)
	n     int   // datagrams received (read side) or sent (write side)
	err   error // first error of this call

	// Write side: the datagrams each header carries, and the header whose
	// GSO send failed (-1: none) with why.
	runs    [MaxBatch]gsoRun
	gsoFail int
	gsoErr  error

	// Read side with GRO: the next datagram to hand out is segment nextSeg
	// of message nextMsg of the n received.
	nextMsg, nextSeg int
	// nowait makes the read return at once (n 0) when nothing is queued.
	nowait bool
}

func (b *mmsgBatch) init(ctrlSize int) {
	if ctrlSize > 0 {
		b.ctrl = make([]byte, MaxBatch*ctrlSize)
	}
	for i := range b.hdrs {
		b.hdrs[i].Hdr.Name = &b.names[i][0]
		b.hdrs[i].Hdr.Iov = &b.iovs[i]
		b.hdrs[i].Hdr.SetIovlen(1)
	}
	if ctrlLen := ctrlSize; ctrlLen > 0 {
		for i := range b.hdrs {
			b.hdrs[i].Hdr.Control = &b.ctrl[i*ctrlLen]
		}
	}
}

// Listen opens a UDP socket. network is "udp4", "udp6" (IPv6 only) or "udp"
// (dual-stack when addr is unspecified); addr is host:port as for
// net.ListenPacket.
func Listen(network, addr string) (*Conn, error) {
	return listenOffload(network, addr, offload{gso: true, gro: true})
}

// offload says which offloads a socket may use (where the kernel has them).
type offload struct{ gso, gro bool }

func listenOffload(network, addr string, o offload) (*Conn, error) {
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		return nil, fmt.Errorf("udp: listen %s %s: %w", network, addr, err)
	}
	c, err := newConn(pc.(*net.UDPConn), o)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("udp: listen %s %s: %w", network, addr, err)
	}
	return c, nil
}

func newConn(pc *net.UDPConn, o offload) (*Conn, error) {
	rc, err := pc.SyscallConn()
	if err != nil {
		return nil, err
	}
	c := &Conn{pc: pc, rc: rc}
	var sockErr error
	err = rc.Control(func(fd uintptr) {
		c.family, sockErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		setSocketBuffers(int(fd), SocketBufferSize, SendBufferSize)
		// Receive timestamps let the data plane count the time a datagram
		// waited in the socket's queue as queueing delay (ReadBatchTimes).
		// Without them that time is merely invisible.
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
		// A kernel that knows UDP_SEGMENT answers its getsockopt.
		if o.gso {
			_, gerr := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
			c.gso = gerr == nil
		}
		if o.gro {
			c.gro = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil
		}
	})
	if err == nil {
		err = sockErr
	}
	if err != nil {
		return nil, fmt.Errorf("socket domain: %w", err)
	}
	if la, ok := pc.LocalAddr().(*net.UDPAddr); ok {
		c.local = la.AddrPort()
	}
	c.rd.init(ctrlLen)
	c.wr.init(segCtrlLen)
	if c.gro {
		// The read headers point at the run buffers for good.
		c.groBuf = make([]byte, groMsgs*groBufSize)
		for i := range groMsgs {
			c.rd.iovs[i].Base = &c.groBuf[i*groBufSize]
			c.rd.iovs[i].SetLen(groBufSize)
		}
	}
	c.readFn = c.recvmmsg
	c.writeFn = c.sendmmsg
	return c, nil
}

// setSocketBuffers asks for socket buffers of rcv and snd bytes. The FORCE variants
// ignore net.core.[rw]mem_max but need CAP_NET_ADMIN; without it the plain
// options give whatever the sysctl allows. Failure only costs burst capacity,
// so it is not an error.
func setSocketBuffers(fd, rcv, snd int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcv) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcv)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, snd) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, snd)
	}
}

// LocalAddr is the address the socket is bound to.
func (c *Conn) LocalAddr() netip.AddrPort { return c.local }

// Is6 reports whether this is an AF_INET6 socket (IPv6-only or dual-stack).
func (c *Conn) Is6() bool { return c.family == unix.AF_INET6 }

// Truncated counts datagrams dropped because they were larger than the buffer
// the reader offered.
func (c *Conn) Truncated() uint64 { return c.truncated.Load() }

// GSORefused counts GSO runs the kernel refused, which went out again
// datagram by datagram.
func (c *Conn) GSORefused() uint64 { return c.gsoRefused.Load() }

// GRO reports whether reads take coalesced runs (UDP_GRO).
func (c *Conn) GRO() bool { return c.gro }

// GSO reports whether writes send runs to one destination as one message
// (UDP_SEGMENT); it turns false if the kernel refuses it for good.
func (c *Conn) GSO() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.gso
}

// SetReadDeadline makes a blocked ReadBatch return an error wrapping
// os.ErrDeadlineExceeded at t; the zero time disables it.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.pc.SetReadDeadline(t) }

// SetWriteDeadline bounds how long WriteBatch waits for socket buffer space.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.pc.SetWriteDeadline(t) }

// Close closes the socket and unblocks any ReadBatch or WriteBatch in
// progress; they return an error wrapping ErrClosed.
func (c *Conn) Close() error { return c.pc.Close() }

// ReadBatch blocks until at least one datagram arrives, then fills as many of
// bufs as are already queued (up to MaxBatch) with one recvmmsg. For each of
// the n datagrams, sizes[i] is its length and eps[i] its source with any
// IPv4-mapped address unmapped. sizes[i] == 0 marks an empty datagram or one
// that did not fit bufs[i] (dropped and counted in Truncated).
func (c *Conn) ReadBatch(bufs [][]byte, sizes []int, eps []netip.AddrPort) (int, error) {
	return c.ReadBatchTimes(bufs, sizes, eps, nil)
}

// ReadBatchTimes is ReadBatch that also sets times[i] (if times is long
// enough) to when the kernel received datagram i, in Unix nanoseconds, or
// 0 if the kernel did not say. now minus that is how long the datagram
// waited in the socket's receive queue: under load, the longest queue on
// the inbound path and one that only the kernel's tail drop bounds.
func (c *Conn) ReadBatchTimes(bufs [][]byte, sizes []int, eps []netip.AddrPort, times []int64) (int, error) {
	count := min(len(bufs), len(sizes), len(eps), MaxBatch)
	if count == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.gro {
		return c.readGRO(bufs[:count], sizes, eps, times)
	}
	b := &c.rd
	for i := range count {
		b.iovs[i].Base = unsafe.SliceData(bufs[i])
		b.iovs[i].SetLen(len(bufs[i]))
	}
	b.count, b.n, b.err = count, 0, nil
	err := c.rc.Read(c.readFn)
	if err == nil {
		err = b.err
	}
	if err != nil {
		return 0, fmt.Errorf("udp: read %s: %w", c.local, err)
	}
	for i := range b.n {
		h := &b.hdrs[i]
		ep, ok := parseSockaddr(b.names[i][:min(int(h.Hdr.Namelen), sockaddrLen)])
		size := int(h.Len)
		if h.Hdr.Flags&unix.MSG_TRUNC != 0 || !ok {
			c.truncated.Add(1)
			size = 0
		}
		sizes[i], eps[i] = size, ep
		if i < len(times) {
			times[i], _ = b.cmsgs(i)
		}
	}
	return b.n, nil
}

// readGRO is ReadBatchTimes on a GRO socket: hand out the datagrams of
// the runs already read, reading up to groMsgs runs more whenever they are
// used up (blocking only while none is handed out yet), and copy each
// datagram into the next of bufs. A run longer than what is left of bufs
// is handed out over several calls, in order.
func (c *Conn) readGRO(bufs [][]byte, sizes []int, eps []netip.AddrPort, times []int64) (int, error) {
	b := &c.rd
	if b.nextMsg >= b.n && c.direct > 0 {
		if n, ok, err := c.readDirect(bufs, sizes, eps, times); ok || err != nil {
			return n, err
		}
	}
	k := 0
	for k < len(bufs) {
		if b.nextMsg >= b.n {
			b.count, b.n, b.err, b.nextMsg, b.nextSeg, b.nowait = groMsgs, 0, nil, 0, 0, k > 0
			err := c.rc.Read(c.readFn)
			if err == nil {
				err = b.err
			}
			if err != nil {
				b.n = 0
				if k > 0 {
					return k, nil // the next call reports it
				}
				return 0, fmt.Errorf("udp: read %s: %w", c.local, err)
			}
			if b.n == 0 {
				break // nothing more queued
			}
		}
		k = c.cutRuns(bufs, sizes, eps, times, k)
	}
	return k, nil
}

// directRun is the fewest datagrams in a run that makes readGRO expect
// more runs like it (and a direct read that gets fewer stop expecting).
const directRun = 8

// readDirect reads one run with its datagrams laid straight into bufs:
// each iovec is one buffer cut to c.direct bytes, so a run of that segment
// size lands one datagram per buffer, which is all that bulk traffic
// sends. Anything else (another segment size, a single datagram longer
// than that) is gathered into the run buffers and cut as readGRO does,
// at the cost of the copy the direct read avoids. ok false means it did
// not read (the buffers cannot hold a whole run that way): read as usual.
func (c *Conn) readDirect(bufs [][]byte, sizes []int, eps []netip.AddrPort, times []int64) (int, bool, error) {
	b := &c.rd
	g := c.direct
	n := min(len(bufs), MaxBatch)
	if n*g < groBufSize {
		return 0, false, nil // a run could overflow the iovecs: not worth the bookkeeping
	}
	for i := range n {
		if len(bufs[i]) < g {
			c.direct = 0
			return 0, false, nil
		}
		c.dIovs[i].Base = unsafe.SliceData(bufs[i])
		c.dIovs[i].SetLen(g)
	}
	h := &b.hdrs[0]
	h.Hdr.Iov = &c.dIovs[0]
	h.Hdr.SetIovlen(n)
	b.count, b.n, b.err, b.nextMsg, b.nextSeg, b.nowait = 1, 0, nil, 0, 0, false
	err := c.rc.Read(c.readFn)
	h.Hdr.Iov = &b.iovs[0] // back to the run buffer, for readGRO
	h.Hdr.SetIovlen(1)
	if err == nil {
		err = b.err
	}
	if err != nil {
		b.n = 0
		return 0, true, fmt.Errorf("udp: read %s: %w", c.local, err)
	}
	ep, ok := parseSockaddr(b.names[0][:min(int(h.Hdr.Namelen), sockaddrLen)])
	stamp, gso := b.cmsgs(0)
	size := int(h.Len)
	nseg := segments(size, gso)
	if ok && h.Hdr.Flags&unix.MSG_TRUNC == 0 && (gso == g || gso == 0 && size <= g) {
		b.n = 0 // handed out whole: nothing for readGRO to cut
		for k := range nseg {
			_, l := segment(size, gso, k)
			sizes[k], eps[k] = l, ep
			if k < len(times) {
				times[k] = stamp
			}
		}
		if nseg < directRun {
			c.direct = 0 // the bulk has paused: read many messages again
		}
		return nseg, true, nil
	}
	// Laid out at the wrong stride: gather it into the first run buffer
	// (n*g >= groBufSize, so nothing was cut off) and cut it there.
	c.direct = 0
	for i := 0; i*g < size && !(h.Hdr.Flags&unix.MSG_TRUNC != 0); i++ {
		copy(c.groBuf[i*g:size], bufs[i][:min(g, size-i*g)])
	}
	b.n = 1
	return c.cutRuns(bufs, sizes, eps, times, 0), true, nil
}

// cutRuns copies the datagrams of the runs read but not yet handed out
// into bufs[k:], in order, and returns the new k.
func (c *Conn) cutRuns(bufs [][]byte, sizes []int, eps []netip.AddrPort, times []int64, k int) int {
	b := &c.rd
	for k < len(bufs) && b.nextMsg < b.n {
		m := b.nextMsg
		h := &b.hdrs[m]
		ep, ok := parseSockaddr(b.names[m][:min(int(h.Hdr.Namelen), sockaddrLen)])
		stamp, gso := b.cmsgs(m)
		size := int(h.Len)
		if h.Hdr.Flags&unix.MSG_TRUNC != 0 || !ok {
			c.truncated.Add(1)
			size, gso = 0, 0
		}
		run := c.groBuf[m*groBufSize : m*groBufSize+size]
		nseg := segments(size, gso)
		if gso > 0 && nseg >= directRun {
			c.direct = gso // bulk: read the next run straight into the caller's buffers
		}
		for b.nextSeg < nseg && k < len(bufs) {
			off, l := segment(size, gso, b.nextSeg)
			if l > len(bufs[k]) {
				c.truncated.Add(1)
				l = 0
			}
			copy(bufs[k], run[off:off+l])
			sizes[k], eps[k] = l, ep
			if k < len(times) {
				times[k] = stamp
			}
			k++
			b.nextSeg++
		}
		if b.nextSeg == nseg {
			b.nextMsg, b.nextSeg = m+1, 0
		}
	}
	return k
}

// cmsgs decodes header i's control messages: the receive timestamp (Unix
// ns, 0 if none) and the GRO segment size (0: one datagram).
func (b *mmsgBatch) cmsgs(i int) (stamp int64, gso int) {
	h := &b.hdrs[i].Hdr
	if b.ctrl == nil || h.Flags&unix.MSG_CTRUNC != 0 {
		return 0, 0
	}
	return parseRecvCmsgs(b.ctrl[i*ctrlLen : i*ctrlLen+min(int(h.Controllen), ctrlLen)])
}

// recvmmsg runs under RawConn.Read; returning false waits for readability.
// With MSG_DONTWAIT it never blocks (EAGAIN goes back to the netpoller), so
// it is a RawSyscall: entersyscall would wake the scheduler's sysmon from
// its deep sleep whenever the process was idle, once per batch on a slow
// flow, and a woken sysmon polls every 20 µs for a while (BENCHMARKS.md,
// s9-push, s10-raw). The cost is that the P stays held for the call.
func (c *Conn) recvmmsg(fd uintptr) bool {
	b := &c.rd
	for i := range b.count {
		b.hdrs[i].Hdr.Namelen = sockaddrLen
		b.hdrs[i].Hdr.Flags = 0
		b.hdrs[i].Len = 0
		if b.ctrl != nil {
			b.hdrs[i].Hdr.SetControllen(ctrlLen)
		}
	}
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd,
			uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(b.count), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			b.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if b.nowait {
				b.n = 0
				return true
			}
			return false
		default:
			b.err = errno
			return true
		}
	}
}

// WriteBatch sends bufs[i] to eps[i] with as few sendmmsg calls as possible;
// on a GSO socket each run of same-size datagrams to one destination
// (planRuns) is one message. A datagram that fails (unreachable
// destination, wrong family, too big) is skipped so it cannot hold back
// the others; a run the kernel refuses is sent again datagram by datagram
// (onGSOError). sent counts the datagrams the kernel accepted and err is
// the first failure, if any.
func (c *Conn) WriteBatch(bufs [][]byte, eps []netip.AddrPort) (sent int, err error) {
	total := min(len(bufs), len(eps))
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b := &c.wr
	singlesTo := 0 // datagrams before this go out singly: a refused run's
	for pos := 0; pos < total; {
		end := min(pos+MaxBatch, total)
		var nr int
		if c.gso && pos >= singlesTo {
			nr = planRuns(bufs, eps, pos, end, b.runs[:])
		} else {
			if c.gso {
				end = min(end, singlesTo) // only the refused run goes singly
			}
			nr = planSingles(bufs, pos, end, b.runs[:])
		}
		count, iov := 0, 0
		for _, r := range b.runs[:nr] {
			namelen, perr := putSockaddr(&b.names[count], eps[r.first], c.family)
			if perr != nil {
				if err == nil {
					err = fmt.Errorf("udp: write %s to %s: %w", c.local, eps[r.first], perr)
				}
				continue
			}
			h := &b.hdrs[count].Hdr
			h.Namelen = namelen
			h.Iov = &b.iovs[iov]
			h.SetIovlen(r.n)
			for k := range r.n {
				b.iovs[iov+k].Base = unsafe.SliceData(bufs[r.first+k])
				b.iovs[iov+k].SetLen(len(bufs[r.first+k]))
			}
			if r.n > 1 {
				h.Control = &b.ctrl[count*segCtrlLen]
				h.SetControllen(putSegmentCmsg(b.ctrl[count*segCtrlLen:], uint16(r.size)))
			} else {
				h.Control = nil
				h.SetControllen(0)
			}
			b.runs[count] = r
			iov += r.n
			count++
		}
		if count == 0 {
			pos = end
			continue
		}
		b.count, b.done, b.n, b.err, b.gsoFail, b.gsoErr = count, 0, 0, nil, -1, nil
		if rerr := c.rc.Write(c.writeFn); rerr != nil {
			// Closed or deadline: nothing more can be sent.
			sent += b.n
			return sent, fmt.Errorf("udp: write %s: %w", c.local, rerr)
		}
		sent += b.n
		if b.err != nil && err == nil {
			err = fmt.Errorf("udp: write %s: %w", c.local, b.err)
		}
		if b.gsoFail >= 0 {
			r := b.runs[b.gsoFail]
			c.gsoRefused.Add(1)
			if onGSOError(b.gsoErr) == gsoDisable {
				c.gso = false
			}
			pos, singlesTo = r.first, r.first+r.n
			continue
		}
		pos = end
	}
	return sent, err
}

// sendmmsg runs under RawConn.Write; returning false waits for buffer space.
// sendmmsg stops at the first failing message and reports the error on the
// next call, so a failure here belongs to hdrs[done]: a single datagram is
// skipped, a GSO run stops the call (gsoFail) so WriteBatch can send it
// again singly. Like recvmmsg it is a RawSyscall: with MSG_DONTWAIT it
// does not block, though over veth with GSO it may run the receiver's
// softirq inline (tens of µs, during which a GC stop-the-world waits).
func (c *Conn) sendmmsg(fd uintptr) bool {
	b := &c.wr
	for b.done < b.count {
		n, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, fd,
			uintptr(unsafe.Pointer(&b.hdrs[b.done])), uintptr(b.count-b.done), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			for _, r := range b.runs[b.done : b.done+int(n)] {
				b.n += r.n
			}
			b.done += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			if b.runs[b.done].n > 1 {
				b.gsoFail, b.gsoErr = b.done, errno
				return true
			}
			if b.err == nil {
				b.err = errno
			}
			b.done++
		}
	}
	return true
}
