package udp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hopCtrlLen is room for one control message carrying an int: IP_TTL or
// IPV6_HOPLIMIT.
var hopCtrlLen = unix.CmsgSpace(4)

// WriteHopLimited sends one datagram to ep whose IP TTL (IPv4) or hop
// limit (IPv6) is hops, on this socket and so from its port: what a
// low-TTL hole-punch packet needs, since the NAT mapping it opens is the
// socket's. The limit rides in the datagram's own control message
// (sendmsg), so no other datagram the socket sends meanwhile is affected,
// as a setsockopt around the write would risk. hops must be 1..255. Not for
// the data path: it allocates.
func (c *Conn) WriteHopLimited(pkt []byte, ep netip.AddrPort, hops int) error {
	if hops < 1 || hops > 255 {
		return fmt.Errorf("udp: hop limit %d out of range", hops)
	}
	var sa sockaddr
	namelen, err := putSockaddr(&sa, ep, c.family)
	if err != nil {
		return fmt.Errorf("udp: write %s to %s: %w", c.local, ep, err)
	}
	// The destination's family decides the option: an IPv4 endpoint
	// written through a dual-stack AF_INET6 socket leaves as IPv4, whose
	// TTL only an IP-level control message sets.
	level, typ := unix.IPPROTO_IP, unix.IP_TTL
	if !ep.Addr().Unmap().Is4() {
		level, typ = unix.IPPROTO_IPV6, unix.IPV6_HOPLIMIT
	}
	ctrl := make([]byte, hopCtrlLen)
	cm := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[0]))
	cm.Level, cm.Type = int32(level), int32(typ)
	cm.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(ctrl[unix.CmsgLen(0):], uint32(hops))

	var iov unix.Iovec
	if len(pkt) > 0 {
		iov.Base = unsafe.SliceData(pkt)
	}
	iov.SetLen(len(pkt))
	var hdr unix.Msghdr
	hdr.Name, hdr.Namelen = &sa[0], namelen
	hdr.Iov = &iov
	hdr.SetIovlen(1)
	hdr.Control = &ctrl[0]
	hdr.SetControllen(len(ctrl))

	c.wmu.Lock()
	defer c.wmu.Unlock()
	var serr error
	werr := c.rc.Write(func(fd uintptr) bool {
		for {
			_, _, errno := unix.Syscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&hdr)), unix.MSG_DONTWAIT)
			switch errno {
			case 0:
				return true
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			default:
				serr = errno
				return true
			}
		}
	})
	if werr == nil {
		werr = serr
	}
	if werr != nil {
		return fmt.Errorf("udp: write %s to %s (hop limit %d): %w", c.local, ep, hops, werr)
	}
	return nil
}
