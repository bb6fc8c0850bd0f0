package tun

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// memLink is the state a MemDevice and its MemApp share: one bounded queue per
// direction, closed together.
type memLink struct {
	name    string
	mtu     int
	toDev   chan []byte // packets the "kernel" routes into the device
	toApp   chan []byte // packets the device delivers to the "kernel"
	done    chan struct{}
	once    sync.Once
	dropped atomic.Uint64
}

// MemDevice is an in-memory Device for tests that cannot create a real TUN.
type MemDevice struct{ l *memLink }

// MemApp is the kernel/application side of a MemDevice: what it Sends the
// device Reads, and what the device Writes it Receives.
type MemApp struct{ l *memLink }

var _ Device = (*MemDevice)(nil)

// NewMemPair returns a device and its application side joined by two queues
// of depth packets each. Like a real TUN, a Write that finds the application
// queue full drops the packet (counted by MemApp.Dropped) instead of blocking.
func NewMemPair(name string, mtu, depth int) (*MemDevice, *MemApp) {
	l := &memLink{
		name:  name,
		mtu:   mtu,
		toDev: make(chan []byte, max(depth, 1)),
		toApp: make(chan []byte, max(depth, 1)),
		done:  make(chan struct{}),
	}
	return &MemDevice{l}, &MemApp{l}
}

func (l *memLink) closed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// Name implements Device.
func (d *MemDevice) Name() string { return d.l.name }

// MTU implements Device.
func (d *MemDevice) MTU() int { return d.l.mtu }

// Close implements Device; it also ends the application side.
func (d *MemDevice) Close() error {
	d.l.once.Do(func() { close(d.l.done) })
	return nil
}

// Read implements Device.
func (d *MemDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	count := min(len(bufs), len(sizes))
	if count == 0 {
		return 0, nil
	}
	for i := range count {
		if len(bufs[i])-offset < d.l.mtu {
			return 0, fmt.Errorf("tun: read %s: buffer %d: %w", d.l.name, i, ErrShortBuffer)
		}
	}
	if d.l.closed() {
		return 0, fmt.Errorf("tun: read %s: %w", d.l.name, ErrClosed)
	}
	var p []byte
	select {
	case p = <-d.l.toDev:
	case <-d.l.done:
		return 0, fmt.Errorf("tun: read %s: %w", d.l.name, ErrClosed)
	}
	n := 0
	for {
		sizes[n] = copy(bufs[n][offset:], p)
		n++
		if n == count {
			return n, nil
		}
		select {
		case p = <-d.l.toDev:
		default:
			return n, nil
		}
	}
}

// Write implements Device. Packets are copied, so the caller may reuse bufs.
func (d *MemDevice) Write(bufs [][]byte, offset int) (int, error) {
	var firstErr error
	n := 0
	for i, b := range bufs {
		if d.l.closed() {
			return n, fmt.Errorf("tun: write %s: %w", d.l.name, ErrClosed)
		}
		pkt := b[offset:]
		if len(pkt) > d.l.mtu {
			if firstErr == nil {
				firstErr = fmt.Errorf("tun: write %s: packet %d (%d bytes): %w", d.l.name, i, len(pkt), ErrPacketTooBig)
			}
			continue
		}
		select {
		case d.l.toApp <- append([]byte(nil), pkt...):
		default:
			d.l.dropped.Add(1)
		}
		n++
	}
	return n, firstErr
}

// Send queues pkt (copied) for the device to Read, waiting while the queue is
// full until ctx ends or the device is closed.
func (a *MemApp) Send(ctx context.Context, pkt []byte) error {
	if len(pkt) > a.l.mtu {
		return fmt.Errorf("tun: send %s (%d bytes): %w", a.l.name, len(pkt), ErrPacketTooBig)
	}
	if a.l.closed() {
		return fmt.Errorf("tun: send %s: %w", a.l.name, ErrClosed)
	}
	select {
	case a.l.toDev <- append([]byte(nil), pkt...):
		return nil
	case <-a.l.done:
		return fmt.Errorf("tun: send %s: %w", a.l.name, ErrClosed)
	case <-ctx.Done():
		return fmt.Errorf("tun: send %s: %w", a.l.name, ctx.Err())
	}
}

// Recv returns the next packet the device wrote, waiting until ctx ends or the
// device is closed.
func (a *MemApp) Recv(ctx context.Context) ([]byte, error) {
	if a.l.closed() {
		return nil, fmt.Errorf("tun: recv %s: %w", a.l.name, ErrClosed)
	}
	select {
	case p := <-a.l.toApp:
		return p, nil
	case <-a.l.done:
		return nil, fmt.Errorf("tun: recv %s: %w", a.l.name, ErrClosed)
	case <-ctx.Done():
		return nil, fmt.Errorf("tun: recv %s: %w", a.l.name, ctx.Err())
	}
}

// Dropped counts packets the device wrote while the application queue was
// full.
func (a *MemApp) Dropped() uint64 { return a.l.dropped.Load() }
