package tun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SteerToFirst has the host's packets to the multi-queue TUN whose queues
// are devs (OpenBackendQueues) leave on its first n queues only, spread by
// their flow hash, instead of on the queue each flow was last written on
// (the kernel's own steering): the other queues are then for writing only.
//
// Why: the data plane writes ICMP alone on the last queue, so that a ping
// never waits behind bulk writes; with the kernel's steering the host's echo
// reply then comes out on that queue too, whose reader sleeps in the
// netpoller while the bulk readers are awake under load, and waiting for it
// to be woken took back a third to a half of what the queue saved
// (BENCHMARKS.md, s10-tunq). Steered, the reply is read by a busy reader.
//
// The steering is a three-instruction socket filter program
// (TUNSETSTEERINGEBPF: its return value, modulo the queues, is the queue):
// loading it needs CAP_BPF or CAP_SYS_ADMIN (or unprivileged BPF). Without
// them it fails and the kernel's steering stays.
func SteerToFirst(devs []Device, n int) error {
	if len(devs) == 0 || n < 1 || n > len(devs) {
		return fmt.Errorf("tun: steer to %d of %d queues", n, len(devs))
	}
	d, ok := devs[0].(*offloadDevice)
	if !ok {
		return errors.New("tun: steer: not a queue of OpenOffloadQueues")
	}
	fd, err := loadSteering(n)
	if err != nil {
		return fmt.Errorf("tun: steer %s: %w", d.name, err)
	}
	defer unix.Close(fd) // the device holds its own reference
	prog := int32(fd)
	var ioctlErr error
	if err := d.rc.Control(func(qfd uintptr) {
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, qfd, unix.TUNSETSTEERINGEBPF, uintptr(unsafe.Pointer(&prog))); e != 0 {
			ioctlErr = e
		}
	}); err != nil {
		return fmt.Errorf("tun: steer %s: %w", d.name, err)
	}
	if ioctlErr != nil {
		return fmt.Errorf("tun: steer %s: TUNSETSTEERINGEBPF: %w", d.name, ioctlErr)
	}
	return nil
}

// CanSteer reports whether this process may load SteerToFirst's program
// (nil), or why not: so that a node can choose its queues before opening
// them.
func CanSteer() error {
	fd, err := loadSteering(1)
	if err != nil {
		return err
	}
	unix.Close(fd)
	return nil
}

// loadSteering loads the steering program for n queues and returns its
// descriptor.
func loadSteering(n int) (int, error) {
	// r0 = skb->hash; r0 %= n (32-bit); return r0.
	var insns [3 * 8]byte
	insns[0], insns[1] = unix.BPF_LDX|unix.BPF_MEM|unix.BPF_W, 1<<4 // dst r0, src r1 (the __sk_buff)
	binary.LittleEndian.PutUint16(insns[2:], skbHashOffset)
	insns[8] = unix.BPF_ALU | unix.BPF_MOD | unix.BPF_K
	binary.LittleEndian.PutUint32(insns[12:], uint32(n))
	insns[16] = unix.BPF_JMP | unix.BPF_EXIT
	license := [4]byte{'G', 'P', 'L', 0}
	// union bpf_attr, BPF_PROG_LOAD: prog_type, insn_cnt, insns, license;
	// the rest zero.
	var attr [128]byte
	binary.NativeEndian.PutUint32(attr[0:], unix.BPF_PROG_TYPE_SOCKET_FILTER)
	binary.NativeEndian.PutUint32(attr[4:], uint32(len(insns)/8))
	binary.NativeEndian.PutUint64(attr[8:], uint64(uintptr(unsafe.Pointer(&insns[0]))))
	binary.NativeEndian.PutUint64(attr[16:], uint64(uintptr(unsafe.Pointer(&license[0]))))
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr[0])), unsafe.Sizeof(attr))
	runtime.KeepAlive(&insns)
	runtime.KeepAlive(&license)
	if errno != 0 {
		return -1, fmt.Errorf("load the steering program (needs CAP_BPF): %w", errno)
	}
	return int(fd), nil
}

// skbHashOffset is offsetof(struct __sk_buff, hash): after len, pkt_type,
// mark, queue_mapping, protocol, vlan_present, vlan_tci, vlan_proto,
// priority, ingress_ifindex, ifindex, tc_index (12 u32) and cb[5].
const skbHashOffset = (12 + 5) * 4
