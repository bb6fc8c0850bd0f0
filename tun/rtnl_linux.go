package tun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// The few rtnetlink requests Configure and the water backend make, written
// out here rather than through vishvananda/netlink: that package's LinkByName
// decodes every link type the kernel knows, its route and address code every
// attribute, and all of it is linked into the node, about 0.3 MB of a binary
// that the node maps nearly whole at rest (issue 12). Each request is one
// message on a socket of its own, answered by the kernel's ack.

// rtnlDo sends one rtnetlink request (typ, with flags beside NLM_F_REQUEST
// and NLM_F_ACK) whose body is msg followed by attrs, and returns the data
// of the first answer that is not the ack (a GET's reply), if any.
func rtnlDo(typ, flags uint16, msg []byte, attrs ...rtattr) ([]byte, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	const seq = 1
	b := make([]byte, unix.SizeofNlMsghdr, 128)
	b = append(b, msg...)
	for _, a := range attrs {
		b = a.append(b)
	}
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], typ)
	ne.PutUint16(b[6:], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	ne.PutUint32(b[8:], seq)
	ne.PutUint32(b[12:], 0) // the kernel fills in our port
	if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("netlink send: %w", err)
	}
	var reply []byte
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("netlink receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("netlink receive: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return nil, fmt.Errorf("netlink: short error message")
				}
				if errno := int32(ne.Uint32(m.Data)); errno != 0 {
					return nil, unix.Errno(-errno)
				}
				return reply, nil // the ack
			case unix.NLMSG_DONE:
				return reply, nil
			default:
				if reply == nil {
					reply = append([]byte(nil), m.Data...)
				}
			}
		}
	}
}

// rtattr is one route attribute.
type rtattr struct {
	typ  uint16
	data []byte
}

func (a rtattr) append(b []byte) []byte {
	l := unix.SizeofRtAttr + len(a.data)
	b = binary.NativeEndian.AppendUint16(b, uint16(l))
	b = binary.NativeEndian.AppendUint16(b, a.typ)
	b = append(b, a.data...)
	for ; l%unix.RTA_ALIGNTO != 0; l++ {
		b = append(b, 0)
	}
	return b
}

func attrU32(typ uint16, v uint32) rtattr {
	return rtattr{typ, binary.NativeEndian.AppendUint32(nil, v)}
}

func attrAddr(typ uint16, a netip.Addr) rtattr { return rtattr{typ, a.AsSlice()} }

func family(a netip.Addr) uint8 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// ErrLinkNotFound means no interface has the name Configure was given.
var ErrLinkNotFound = errors.New("tun: link not found")

// linkIndex is the interface index of name.
func linkIndex(name string) (int, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %w", ErrLinkNotFound, name, err)
	}
	return ifi.Index, nil
}

// ifinfomsg is struct ifinfomsg: family, pad, type, index, flags, change.
func ifinfomsg(index int, flags, change uint32) []byte {
	b := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	binary.NativeEndian.PutUint32(b[8:], flags)
	binary.NativeEndian.PutUint32(b[12:], change)
	return b
}

// linkSetMTU sets the link's MTU.
func linkSetMTU(index, mtu int) error {
	_, err := rtnlDo(unix.RTM_NEWLINK, 0, ifinfomsg(index, 0, 0), attrU32(unix.IFLA_MTU, uint32(mtu)))
	return err
}

// linkSetUp brings the link up.
func linkSetUp(index int) error {
	_, err := rtnlDo(unix.RTM_NEWLINK, 0, ifinfomsg(index, unix.IFF_UP, unix.IFF_UP))
	return err
}

// addrReplace gives the link the host address a (a /32 or /128, scope
// universe), replacing it if present.
func addrReplace(index int, a netip.Addr, ifaFlags uint8) error {
	// struct ifaddrmsg: family, prefixlen, flags, scope, index.
	m := []byte{family(a), uint8(a.BitLen()), ifaFlags, unix.RT_SCOPE_UNIVERSE, 0, 0, 0, 0}
	binary.NativeEndian.PutUint32(m[4:], uint32(index))
	attrs := []rtattr{attrAddr(unix.IFA_ADDRESS, a)}
	if a.Is4() {
		attrs = append(attrs, attrAddr(unix.IFA_LOCAL, a))
	}
	_, err := rtnlDo(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, m, attrs...)
	return err
}

// rtmsg is struct rtmsg: family, dst_len, src_len, tos, table, protocol,
// scope, type, flags.
func rtmsg(fam, dstLen, table, protocol, scope, typ uint8) []byte {
	return []byte{fam, dstLen, 0, 0, table, protocol, scope, typ, 0, 0, 0, 0}
}

// routeReplace routes dst to the link with src as preferred source, in the
// main table, replacing any route to dst there.
func routeReplace(index int, dst netip.Prefix, src netip.Addr, scope uint8) error {
	m := rtmsg(family(src), uint8(dst.Bits()), unix.RT_TABLE_MAIN, unix.RTPROT_BOOT, scope, unix.RTN_UNICAST)
	_, err := rtnlDo(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, m,
		attrAddr(unix.RTA_DST, dst.Addr()), attrAddr(unix.RTA_PREFSRC, src), attrU32(unix.RTA_OIF, uint32(index)))
	return err
}

// routeType is the type (unix.RTN_*) of the route the kernel would take to
// a (ip route get).
func routeType(a netip.Addr) (uint8, error) {
	reply, err := rtnlDo(unix.RTM_GETROUTE, 0, rtmsg(family(a), uint8(a.BitLen()), 0, 0, 0, 0), attrAddr(unix.RTA_DST, a))
	if err != nil {
		return 0, err
	}
	if len(reply) < unix.SizeofRtMsg {
		return 0, fmt.Errorf("netlink: route reply of %d bytes", len(reply))
	}
	return reply[7], nil
}
