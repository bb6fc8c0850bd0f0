package udp

import (
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// For sockets read with the standard library (the cloud's signaling
// listeners, cloud/server/svc) rather than through Conn: the kernel's
// receive timestamp, so a service can count the time a datagram waited
// in the socket's queue as part of its latency.

// StampCtrlLen is room for the control message StampReceives adds to each
// read: pass an oob buffer this long to (*net.UDPConn).ReadMsgUDPAddrPort.
var StampCtrlLen = unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{})))

// StampReceives asks the kernel to timestamp every datagram pc receives
// (SO_TIMESTAMPNS); ReceiveStamp reads the stamp from a read's control
// messages.
func StampReceives(pc *net.UDPConn) error {
	rc, err := pc.SyscallConn()
	if err != nil {
		return fmt.Errorf("udp: receive timestamps: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return fmt.Errorf("udp: receive timestamps: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("udp: receive timestamps: %w", serr)
	}
	return nil
}

// ReceiveStamp is the kernel's receive time (Unix ns) in one read's
// control messages, 0 if they hold none.
func ReceiveStamp(ctrl []byte) int64 {
	stamp, _ := parseRecvCmsgs(ctrl)
	return stamp
}
