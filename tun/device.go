// Package tun is the node's virtual network interface: a small batch
// interface over the TUN device (water backend), an in-memory backend for
// tests, and the address/route setup that points the overlay prefixes at it.
package tun

import (
	"errors"
	"fmt"
)

// WriteHeadroom is the headroom (Write's offset) with which the offload
// device hands a packet that heads no GRO run to the kernel without copying
// it: room for its virtio header.
const WriteHeadroom = 10

// Device moves IP packets between the kernel and the node in batches, in the
// style of wireguard-go's tun.Device. Every buffer holds one packet starting at
// offset; the bytes before offset are the caller's headroom (the data header
// can be written there without a copy).
//
// Read and Write are safe to call from one reader and one writer goroutine at
// the same time.
type Device interface {
	// Read blocks until at least one packet is available, then fills as many
	// of bufs as are already queued, without waiting for more. sizes[i] is the
	// length of the packet in bufs[i][offset:]. Each bufs[i][offset:] must be
	// at least MTU() bytes.
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)
	// Write hands bufs[i][offset:] to the kernel in order. It returns how many
	// packets were written; a packet the kernel rejects is skipped and the
	// first such error returned, so one bad packet does not stop the batch.
	Write(bufs [][]byte, offset int) (int, error)
	// Name is the interface name, e.g. "cyph0".
	Name() string
	// MTU is the largest packet the device carries.
	MTU() int
	// Close releases the device and unblocks Read and Write, which then
	// return an error wrapping ErrClosed.
	Close() error
}

var (
	// ErrClosed is returned (wrapped) by operations on a closed Device.
	ErrClosed = errors.New("tun: device closed")
	// ErrShortBuffer means a read buffer cannot hold an MTU-sized packet.
	ErrShortBuffer = errors.New("tun: buffer shorter than MTU")
	// ErrPacketTooBig means a packet exceeds the device MTU.
	ErrPacketTooBig = errors.New("tun: packet larger than MTU")
	// ErrQueueFull is counted when a bounded queue drops a packet.
	ErrQueueFull = errors.New("tun: queue full")
)

// MalformedCounter is implemented by a Device that drops, and counts, what
// the kernel hands it and it cannot parse, rather than failing the read:
// the offload-raw backend's super-packets whose virtio header it cannot
// split. The count only grows; the reader of the device reports it.
type MalformedCounter interface {
	Malformed() uint64
}

// ErrBadPacket is returned (wrapped) by Write for a packet no IP packet can
// be (empty, or longer than 64 KB); the rest of the batch is still written.
var ErrBadPacket = errors.New("tun: not an IP packet")

// Backend names a TUN implementation for OpenBackend.
type Backend string

const (
	// BackendOffload is golang.zx2c4.com/wireguard/tun with IFF_VNET_HDR:
	// TSO super-packets on read, GRO coalescing on write (OpenOffload).
	BackendOffload Backend = "offload"
	// BackendOffloadRaw is BackendOffload with reads, and writes without
	// GRO, as raw syscalls on the descriptor (OpenOffloadRaw).
	BackendOffloadRaw Backend = "offload-raw"
	// BackendWater is songgao/water, one packet per syscall (Open).
	BackendWater Backend = "water"
	// DefaultBackend is what the node uses unless told otherwise: the
	// raw offload path. Any syscall made through the runtime's
	// entersyscall wakes sysmon from its deep sleep, so a node whose TUN
	// I/O went through os.File kept the scheduler busy (futex, context
	// switches) out of proportion to its packets; at ten pushers the raw
	// path moved 24-80 % more at ~35 % less CPU per GB (BENCHMARKS.md,
	// "s10-raw").
	DefaultBackend = BackendOffloadRaw
)

// ErrUnknownBackend is wrapped by ParseBackend for a name it does not know.
var ErrUnknownBackend = errors.New("tun: unknown backend")

// ParseBackend checks a backend name; "" means DefaultBackend.
func ParseBackend(s string) (Backend, error) {
	switch b := Backend(s); b {
	case "":
		return DefaultBackend, nil
	case BackendOffload, BackendOffloadRaw, BackendWater:
		return b, nil
	}
	return "", fmt.Errorf("%w %q (want %q, %q or %q)", ErrUnknownBackend, s, BackendOffload, BackendOffloadRaw, BackendWater)
}
