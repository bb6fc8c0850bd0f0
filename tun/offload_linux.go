package tun

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

const (
	// virtioNetHdrLen is the size of struct virtio_net_hdr, which an
	// IFF_VNET_HDR device puts in front of every packet. wireguard-go's Write
	// writes it into the bytes just before the packet, so its offset must
	// leave at least this much room (the constant is unexported there).
	virtioNetHdrLen = WriteHeadroom

	// maxIPPacket is the largest IP packet (and GSO super-packet) there is.
	maxIPPacket = 65535

	// stageSize is one staging buffer for Write. wireguard-go coalesces a
	// TCP/UDP flow's segments (GRO) by appending them into the spare capacity
	// of the flow's first packet, and only while
	// cap(buf) - 2*offset >= coalesced length; with offset virtioNetHdrLen
	// this bounds a super-packet to maxIPPacket-virtioNetHdrLen bytes, safely
	// under the 16-bit IP length it is stamped with.
	stageSize = maxIPPacket + virtioNetHdrLen

	// stageCount is how many packets one underlying Write handles; larger
	// batches go in chunks. Every packet is copied into a stage of its own
	// size, made the first time a Write needs it; only the packets
	// planHeads predicts to be GRO heads with followers get one of the
	// full-capacity stages (stageSize, 64 KB), of which there are only as
	// many as the most heads one write had: under bulk load a write of 64
	// packets of a flow needs two (128 KB) where every packet had one
	// before (4 MiB).
	stageCount = 64
)

// smallStage is the size of a stage for a packet that is not a head: the
// packet and the virtio header, for packets up to 1500 bytes or the MTU;
// a larger one takes a full stage.
func smallStage(mtu int) int { return virtioNetHdrLen + max(mtu, 1500) }

// offloadDevice is a TUN opened by wireguard-go's tun package, which sets
// IFF_VNET_HDR and TSO/USO offloads when the kernel supports them: one read(2)
// returns a GSO super-packet of up to 64 KB that it splits into MTU-sized
// packets, and Write coalesces a batch's consecutive segments of a flow (GRO)
// into one super-packet per write(2). On a kernel without IFF_VNET_HDR it
// degrades to one packet per syscall, like the water backend.
//
// Why copy on Write: GRO needs up to 64 KB of capacity behind the flow's
// first packet. Giving every pooled data-plane buffer that capacity (as
// wireguard-go does) costs 64 KB per in-flight packet, hundreds of MiB under
// load; copying each packet (~1.4 KB, tens of ns) into this device's
// staging buffers costs a small stage per packet of the largest write and
// a full one per GRO head (groplan.go), and the caller's buffers keep
// their size.
type offloadDevice struct {
	dev    wgtun.Device
	rc     syscall.RawConn // the device file, for a readiness poll that does not block
	name   string
	mtu    int
	closed atomic.Bool
	events sync.WaitGroup // the goroutine draining dev.Events

	rmu     sync.Mutex
	reserve int // free buffers a further read needs: the most segments of one super-packet
	poll    [1]unix.PollFd
	nowait  unix.Timespec // zero: ppoll returns at once
	ready   bool
	pollFn  func(fd uintptr) // bound once: RawConn.Control must not allocate

	// raw: reads, and writes GRO would not coalesce, are RawSyscalls on
	// the descriptor (rawio_linux.go), only on an IFF_VNET_HDR device.
	raw        bool
	readBuf    []byte   // raw: one super-packet and its virtio header (under rmu)
	rb         rawBatch // a raw read's state (under rmu)
	wb         rawBatch // a raw write's state (under wmu)
	rawReadFn  func(fd uintptr) bool
	rawWriteFn func(fd uintptr) bool
	malformed  atomic.Uint64 // raw: super-packets read and dropped as unsplittable (MalformedCounter)

	wmu   sync.Mutex
	chunk int               // packets per underlying Write: stageCount (a benchmark compares fewer)
	full  bool              // every packet in a full stage, as before planHeads (a benchmark compares it)
	small [maxStages][]byte // a packet's own stage (smallStage), packet at virtioNetHdrLen; nil until first used
	heads [maxStages][]byte // full-capacity stages (stageSize) for predicted GRO heads, the k-th head of a write in heads[k]
	out   [maxStages][]byte // the slices handed to dev.Write
}

// maxStages bounds chunk.
const maxStages = 64

// stage returns the staging buffer for the n-th packet of a write, the
// k-th head of it if full; size is what it must hold.
func (d *offloadDevice) stage(n, k int, full bool) []byte {
	if full {
		if d.heads[k] == nil {
			d.heads[k] = make([]byte, stageSize) // once per head slot and device
		}
		return d.heads[k]
	}
	if d.small[n] == nil {
		d.small[n] = make([]byte, smallStage(d.mtu)) // once per slot and device
	}
	return d.small[n]
}

var _ Device = (*offloadDevice)(nil)

// OpenOffload creates (or attaches to) the TUN interface name with the given
// MTU through golang.zx2c4.com/wireguard/tun, with TSO/GRO offloads where the
// kernel has them. Like Open, it needs CAP_NET_ADMIN and leaves the link down
// for Configure.
func OpenOffload(name string, mtu int) (Device, error) {
	return openOffload(name, mtu, false)
}

// OpenOffloadRaw is OpenOffload with the raw I/O of rawio_linux.go: the
// read path and the writes GRO would not coalesce bypass wireguard-go's
// os.File, so they do not wake the Go scheduler's sysmon. On a device
// without IFF_VNET_HDR it is OpenOffload.
func OpenOffloadRaw(name string, mtu int) (Device, error) {
	return openOffload(name, mtu, true)
}

func openOffload(name string, mtu int, raw bool) (Device, error) {
	dev, err := wgtun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("tun: open %s (offload): %w", name, err)
	}
	d, err := newOffloadDevice(dev, mtu)
	if err == nil && raw {
		err = d.enableRaw()
	}
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("tun: open %s (offload): %w", name, err)
	}
	return d, nil
}

// enableRaw turns on the raw I/O if the device carries virtio headers
// (the kernel gave wireguard-go IFF_VNET_HDR); without them it stays off.
func (d *offloadDevice) enableRaw() error {
	var flags uint16
	var ierr error
	err := d.rc.Control(func(fd uintptr) {
		ifr, e := unix.NewIfreq(d.name)
		if e != nil {
			ierr = e
			return
		}
		if ierr = unix.IoctlIfreq(int(fd), unix.TUNGETIFF, ifr); ierr == nil {
			flags = ifr.Uint16()
		}
	})
	if err == nil {
		err = ierr
	}
	if err != nil {
		return fmt.Errorf("TUNGETIFF: %w", err)
	}
	if flags&unix.IFF_VNET_HDR == 0 {
		return nil
	}
	d.raw = true
	d.readBuf = make([]byte, virtioNetHdrLen+maxIPPacket)
	d.rawReadFn = d.rawRead
	d.rawWriteFn = d.rawWrite
	return nil
}

func newOffloadDevice(dev wgtun.Device, mtu int) (*offloadDevice, error) {
	name, err := dev.Name()
	if err != nil {
		return nil, err
	}
	rc, err := dev.File().SyscallConn()
	if err != nil {
		return nil, err
	}
	d := &offloadDevice{dev: dev, rc: rc, name: name, mtu: mtu, chunk: stageCount}
	d.reserve = maxSegments(mtu)
	d.pollFn = d.pollReadable
	// wireguard-go's link listeners block sending on a 5-slot event channel
	// until someone reads it, and close it when they exit after Close: drain
	// it here, so they never stall and Close can wait for them.
	d.events.Add(1)
	go func() {
		defer d.events.Done()
		for range dev.Events() {
		}
	}()
	return d, nil
}

// maxSegments bounds how many packets one super-packet splits into: the
// kernel segments at the MSS, at least mtu minus the largest IPv6+TCP
// headers.
func maxSegments(mtu int) int {
	seg := max(mtu-40-60, 1)
	return (maxIPPacket + seg - 1) / seg
}

// Name implements Device.
func (d *offloadDevice) Name() string { return d.name }

// MTU implements Device.
func (d *offloadDevice) MTU() int { return d.mtu }

// Close implements Device.
func (d *offloadDevice) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	err := d.dev.Close()
	d.events.Wait()
	if err != nil {
		return fmt.Errorf("tun: close %s: %w", d.name, err)
	}
	return nil
}

func (d *offloadDevice) ioErr(op string, err error) error {
	return deviceErr(d.name, op, d.closed.Load(), err)
}

// Read implements Device. The first read blocks; while the device has more
// queued and the remaining buffers can take a whole super-packet, it reads
// again, so small packets (no GSO) still arrive in batches.
func (d *offloadDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	count, err := readCount(d.name, d.mtu, bufs, sizes, offset)
	if count == 0 || err != nil {
		return 0, err
	}
	d.rmu.Lock()
	defer d.rmu.Unlock()
	if d.raw {
		return d.readRaw(bufs[:count], sizes[:count], offset)
	}
	n := 0
	for {
		m, err := d.dev.Read(bufs[n:count], sizes[n:count], offset)
		if errors.Is(err, wgtun.ErrTooManySegments) {
			// The packets that fit are good; the rest of the super-packet
			// is lost (TCP retransmits it). Not a device failure.
			err = nil
		}
		if err != nil {
			if n > 0 {
				break // return what we have; the error recurs next call
			}
			return 0, d.ioErr("read", err)
		}
		m = max(m, 0)
		for i := n; i < n+m; i++ {
			// Never trust a length past the buffer: the caller slices by it.
			if sizes[i] > len(bufs[i])-offset || sizes[i] < 0 {
				sizes[i] = 0
			}
		}
		n += m
		if count-n < d.reserve || !d.readable() {
			break
		}
	}
	return n, nil
}

// readRaw is Read with the raw I/O.
func (d *offloadDevice) readRaw(bufs [][]byte, sizes []int, offset int) (int, error) {
	b := &d.rb
	*b = rawBatch{bufs: bufs, sizes: sizes, offset: offset}
	err := d.rc.Read(d.rawReadFn)
	n := b.n
	if err == nil && n == 0 {
		err = b.err
	}
	*b = rawBatch{} // do not pin the caller's buffers
	if err != nil {
		return 0, d.ioErr("read", err)
	}
	return n, nil
}

// Malformed implements MalformedCounter: the super-packets the raw reader
// dropped because it could not split them (0 without the raw path, whose
// reader returns such a packet's error instead).
func (d *offloadDevice) Malformed() uint64 { return d.malformed.Load() }

// readable polls the device without blocking.
func (d *offloadDevice) readable() bool {
	d.ready = false
	if d.rc.Control(d.pollFn) != nil {
		return false
	}
	return d.ready
}

// pollReadable is ppoll(2) with a zero timeout. It never blocks, so it is
// a raw syscall: going through the scheduler's entersyscall would wake
// sysmon from its deep sleep on every batch of an otherwise idle process,
// and a woken sysmon polls every 20 µs for a while (BENCHMARKS.md, s9-push).
func (d *offloadDevice) pollReadable(fd uintptr) {
	d.poll[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&d.poll[0])), 1,
			uintptr(unsafe.Pointer(&d.nowait)), 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		d.ready = errno == 0 && n > 0 && d.poll[0].Revents&unix.POLLIN != 0
		return
	}
}

// Write implements Device. The packets predicted to be GRO heads are
// copied into staging buffers with the room GRO needs, then the batch is
// handed to wireguard-go in chunks of stageCount. The others go as they
// are when the caller leaves virtioNetHdrLen bytes of headroom (offset),
// where wireguard-go writes the virtio header of a packet sent alone; with
// less, each is copied into a stage of its own size. As coalesced packets
// share one write(2), a rejected write is counted as one rejected packet.
func (d *offloadDevice) Write(bufs [][]byte, offset int) (int, error) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	written := 0
	var firstErr error
	for len(bufs) > 0 {
		chunk := bufs[:min(len(bufs), d.chunk)]
		bufs = bufs[len(chunk):]
		for i, b := range chunk {
			d.out[i] = b[min(offset, len(b)):] // the packets, for the plan
		}
		heads := planHeads(d.out[:len(chunk)])
		n, k := 0, 0
		for i := range chunk {
			pkt := d.out[i]
			if len(pkt) == 0 || len(pkt) > maxIPPacket {
				// wireguard-go would fail the whole batch on an empty one.
				if firstErr == nil {
					firstErr = fmt.Errorf("tun: write %s: %d-byte packet: %w", d.name, len(pkt), ErrBadPacket)
				}
				continue
			}
			full := d.full || heads&(1<<i) != 0 || virtioNetHdrLen+len(pkt) > smallStage(d.mtu)
			if !full && offset >= virtioNetHdrLen {
				// Not a head: GRO only reads it (into its head) or, alone,
				// writes it with the virtio header in the caller's
				// headroom. No copy; the capacity is cut at the packet,
				// so GRO never appends into the caller's buffer.
				b := chunk[i][offset-virtioNetHdrLen:]
				d.out[n] = b[:len(b):len(b)]
				n++
				continue
			}
			st := d.stage(n, k, full)
			if full {
				k++
			}
			d.out[n] = st[:virtioNetHdrLen+copy(st[virtioNetHdrLen:], pkt)]
			n++
		}
		clear(d.out[n:len(chunk)])
		if n == 0 {
			continue
		}
		if d.raw && heads == 0 {
			// Nothing to coalesce: each packet goes alone with a zeroed
			// virtio header, as wireguard-go would write it, but raw.
			if err := d.writeRaw(d.out[:n]); err != nil {
				clear(d.out[:n])
				return written, err
			}
			written += d.wb.n
			if d.wb.err != nil && firstErr == nil {
				firstErr = d.ioErr("write", d.wb.err)
			}
			d.wb = rawBatch{}
			clear(d.out[:n])
			continue
		}
		_, err := d.dev.Write(d.out[:n], virtioNetHdrLen)
		clear(d.out[:n])
		if err == nil {
			written += n
			continue
		}
		if d.closed.Load() || errors.Is(err, os.ErrClosed) {
			return written, d.ioErr("write", err)
		}
		written += n - countErrs(err)
		if firstErr == nil {
			firstErr = d.ioErr("write", err)
		}
	}
	return written, firstErr
}

// writeRaw writes pkts (each with its virtio header's room in front) with
// the raw I/O; the result is in d.wb. The error is the device's (closed).
func (d *offloadDevice) writeRaw(pkts [][]byte) error {
	for _, p := range pkts {
		clear(p[:virtioNetHdrLen])
	}
	d.wb = rawBatch{pkts: pkts}
	if err := d.rc.Write(d.rawWriteFn); err != nil {
		d.wb = rawBatch{}
		return d.ioErr("write", err)
	}
	return nil
}

// countErrs counts the errors joined in err (wireguard-go joins one per
// failed write(2)).
func countErrs(err error) int {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return len(j.Unwrap())
	}
	return 1
}

// OpenBackend opens the TUN interface name with backend b ("" is
// DefaultBackend).
func OpenBackend(b Backend, name string, mtu int) (Device, error) {
	b, err := ParseBackend(string(b))
	if err != nil {
		return nil, err
	}
	switch b {
	case BackendWater:
		return Open(name, mtu)
	case BackendOffloadRaw:
		return OpenOffloadRaw(name, mtu)
	}
	return OpenOffload(name, mtu)
}
