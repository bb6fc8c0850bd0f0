package tun

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/songgao/water"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// waterDevice is a TUN opened with songgao/water (IFF_TUN|IFF_NO_PI).
//
// water opens /dev/net/tun non-blocking and wraps it in an *os.File, so the
// fd sits in Go's netpoller. Rather than water's one-packet Read, we read
// through the file's RawConn: the goroutine parks until the fd is readable,
// then drains every packet already queued (up to the batch) with plain
// read(2)s before returning. A busy device thus yields full batches for one
// wake-up, an idle one still returns its single packet immediately.
type waterDevice struct {
	ifce   *water.Interface
	file   *os.File
	rc     syscall.RawConn
	name   string
	mtu    int
	closed atomic.Bool

	rmu    sync.Mutex
	rd     ioBatch
	readFn func(fd uintptr) bool // bound once: RawConn.Read must not allocate

	wmu     sync.Mutex
	wr      ioBatch
	writeFn func(fd uintptr) bool
}

// ioBatch carries one call's arguments into the RawConn callback.
type ioBatch struct {
	bufs   [][]byte
	sizes  []int
	offset int
	next   int // next buffer to handle
	n      int // packets moved
	err    error
}

func (b *ioBatch) reset(bufs [][]byte, sizes []int, offset int) {
	*b = ioBatch{bufs: bufs, sizes: sizes, offset: offset}
}

var _ Device = (*waterDevice)(nil)

// Open creates (or attaches to) the TUN interface name with the given MTU.
// It needs CAP_NET_ADMIN and /dev/net/tun. The link is left down: Configure
// adds addresses and routes and brings it up.
func Open(name string, mtu int) (Device, error) {
	ifce, err := water.New(water.Config{
		DeviceType:             water.TUN,
		PlatformSpecificParams: water.PlatformSpecificParams{Name: name},
	})
	if err != nil {
		return nil, fmt.Errorf("tun: open %s: %w", name, err)
	}
	d, err := newWaterDevice(ifce, mtu)
	if err != nil {
		ifce.Close()
		return nil, fmt.Errorf("tun: open %s: %w", name, err)
	}
	return d, nil
}

func newWaterDevice(ifce *water.Interface, mtu int) (*waterDevice, error) {
	file, ok := ifce.ReadWriteCloser.(*os.File)
	if !ok {
		return nil, fmt.Errorf("water returned %T, want *os.File", ifce.ReadWriteCloser)
	}
	rc, err := file.SyscallConn()
	if err != nil {
		return nil, err
	}
	link, err := netlink.LinkByName(ifce.Name())
	if err != nil {
		return nil, fmt.Errorf("find link: %w", err)
	}
	if err := netlink.LinkSetMTU(link, mtu); err != nil {
		return nil, fmt.Errorf("set mtu %d: %w", mtu, err)
	}
	d := &waterDevice{ifce: ifce, file: file, rc: rc, name: ifce.Name(), mtu: mtu}
	d.readFn = d.readMany
	d.writeFn = d.writeMany
	return d, nil
}

// Name implements Device.
func (d *waterDevice) Name() string { return d.name }

// MTU implements Device.
func (d *waterDevice) MTU() int { return d.mtu }

// Close implements Device.
func (d *waterDevice) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	if err := d.ifce.Close(); err != nil {
		return fmt.Errorf("tun: close %s: %w", d.name, err)
	}
	return nil
}

func (d *waterDevice) ioErr(op string, err error) error {
	return deviceErr(d.name, op, d.closed.Load(), err)
}

// Read implements Device.
func (d *waterDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	count, err := readCount(d.name, d.mtu, bufs, sizes, offset)
	if count == 0 || err != nil {
		return 0, err
	}
	d.rmu.Lock()
	defer d.rmu.Unlock()
	b := &d.rd
	b.reset(bufs[:count], sizes, offset)
	err = d.rc.Read(d.readFn)
	n := b.n
	if err == nil && n == 0 {
		err = b.err
	}
	b.reset(nil, nil, 0) // do not pin the caller's buffers
	if err != nil {
		return 0, d.ioErr("read", err)
	}
	return n, nil
}

// readMany runs under RawConn.Read. Returning false parks until readable; it
// does so only while nothing has been read, so Read never waits for a batch
// to fill. An error after some packets is dropped: those packets are returned
// and the error recurs on the next call.
func (d *waterDevice) readMany(fd uintptr) bool {
	b := &d.rd
	for b.next < len(b.bufs) {
		n, err := unix.Read(int(fd), b.bufs[b.next][b.offset:])
		switch {
		case err == nil && n > 0:
			b.sizes[b.next] = n
			b.next++
			b.n++
		case err == nil: // zero-length read: nothing more is coming now
			if b.n == 0 {
				b.err = io.EOF
			}
			return true
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			return b.n > 0
		default:
			b.err = err
			return true
		}
	}
	return true
}

// Write implements Device.
func (d *waterDevice) Write(bufs [][]byte, offset int) (int, error) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	b := &d.wr
	b.reset(bufs, nil, offset)
	err := d.rc.Write(d.writeFn)
	n, perr := b.n, b.err
	b.reset(nil, nil, 0)
	if err != nil {
		return n, d.ioErr("write", err)
	}
	if perr != nil {
		return n, d.ioErr("write", perr)
	}
	return n, nil
}

// writeMany runs under RawConn.Write. A packet the kernel rejects (EINVAL for
// a malformed header, say) is skipped; EAGAIN parks until writable.
func (d *waterDevice) writeMany(fd uintptr) bool {
	b := &d.wr
	for b.next < len(b.bufs) {
		_, err := unix.Write(int(fd), b.bufs[b.next][b.offset:])
		switch err {
		case nil:
			b.n++
			b.next++
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			if b.err == nil {
				b.err = err
			}
			b.next++
		}
	}
	return true
}
