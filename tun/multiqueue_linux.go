package tun

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// OpenOffloadQueues opens the TUN interface name with queues queues
// (IFF_MULTI_QUEUE), each an offload device of its own (as OpenOffload's:
// TSO super-packets on read, GRO on write), so that each can have a reader
// and a writer goroutine and the device stops being one serial stage.
//
// wireguard-go's CreateTUN opens a single queue without IFF_MULTI_QUEUE,
// and the kernel refuses a second queue on such an interface, so every
// queue is opened here and handed to wireguard-go's CreateTUNFromFile.
//
// Which queue a packet the host sends leaves on is the kernel's choice: a
// flow goes to the queue the last packet of that flow was written on
// (tun's flow steering, the flow hash of both directions), else by its hash.
// So a writer per queue that writes a peer's packets always on the same
// queue gets that peer's answers back on the same queue's reader, and a
// flow's packets leave on one queue, in order.
func OpenOffloadQueues(name string, mtu, queues int) ([]Device, error) {
	return openQueues(name, mtu, queues, false)
}

// OpenBackendQueues is OpenOffloadQueues for backend b (the offload
// backends; "" is DefaultBackend): with BackendOffloadRaw each queue does
// its own raw I/O, as OpenOffloadRaw's device does. The water backend
// opens one queue only.
func OpenBackendQueues(b Backend, name string, mtu, queues int) ([]Device, error) {
	b, err := ParseBackend(string(b))
	if err != nil {
		return nil, err
	}
	switch b {
	case BackendOffload:
		return openQueues(name, mtu, queues, false)
	case BackendOffloadRaw:
		return openQueues(name, mtu, queues, true)
	}
	return nil, fmt.Errorf("tun: open %s: the %s backend opens one queue, not %d", name, b, queues)
}

func openQueues(name string, mtu, queues int, raw bool) ([]Device, error) {
	if queues < 1 {
		return nil, fmt.Errorf("tun: open %s: %d queues", name, queues)
	}
	devs := make([]Device, 0, queues)
	fail := func(err error) ([]Device, error) {
		for _, d := range devs {
			d.Close()
		}
		return nil, fmt.Errorf("tun: open %s (queue %d of %d): %w", name, len(devs), queues, err)
	}
	for q := range queues {
		f, err := openQueue(name, q == 0)
		if err != nil {
			return fail(err)
		}
		wd, err := wgtun.CreateTUNFromFile(f, mtu)
		if err != nil {
			f.Close()
			return fail(err)
		}
		d, err := newOffloadDevice(wd, mtu)
		if err == nil && raw {
			err = d.enableRaw()
		}
		if err != nil {
			wd.Close()
			return fail(err)
		}
		devs = append(devs, d)
	}
	return devs, nil
}

// openQueue attaches one queue of the multi-queue TUN interface name
// (creating the interface with the first), non-blocking as netpoll needs.
//
// The first is opened exclusive (IFF_TUN_EXCL): on an interface of that
// name that exists already, TUNSETIFF of a multi-queue open would attach
// one more queue to it instead of failing, so a second node given the
// same --tun would silently share the first one's interface; exclusive,
// it gets EBUSY, as a single-queue open does.
func openQueue(name string, first bool) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	// IFF_VNET_HDR as wireguard-go's own open: offloads, and its link
	// status check.
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR | unix.IFF_MULTI_QUEUE)
	if first {
		flags |= unix.IFF_TUN_EXCL
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("TUNSETIFF (an interface of that name without IFF_MULTI_QUEUE?): %w", err)
		}
		return nil, fmt.Errorf("TUNSETIFF: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun"), nil
}
