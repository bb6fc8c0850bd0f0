package udp

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"golang.org/x/sys/unix"
)

// sockaddrLen is large enough for both sockaddr_in (16) and sockaddr_in6 (28).
const sockaddrLen = unix.SizeofSockaddrInet6

// sockaddr is kernel-format address storage. It is a plain byte array so one
// slot can hold either family and be decoded without unsafe casts.
type sockaddr [sockaddrLen]byte

// putSockaddr encodes ep into sa for a socket of the given family and returns
// the sockaddr length the kernel expects. An IPv4 endpoint written through an
// AF_INET6 socket is sent as an IPv4-mapped address, which a dual-stack socket
// delivers over IPv4.
func putSockaddr(sa *sockaddr, ep netip.AddrPort, family int) (uint32, error) {
	addr := ep.Addr()
	if !addr.IsValid() {
		return 0, ErrInvalidEndpoint
	}
	switch family {
	case unix.AF_INET:
		addr = addr.Unmap()
		if !addr.Is4() {
			return 0, ErrFamily
		}
		*sa = sockaddr{}
		binary.NativeEndian.PutUint16(sa[0:2], unix.AF_INET)
		binary.BigEndian.PutUint16(sa[2:4], ep.Port())
		a4 := addr.As4()
		copy(sa[4:8], a4[:])
		return unix.SizeofSockaddrInet4, nil
	case unix.AF_INET6:
		*sa = sockaddr{}
		binary.NativeEndian.PutUint16(sa[0:2], unix.AF_INET6)
		binary.BigEndian.PutUint16(sa[2:4], ep.Port())
		a16 := addr.As16() // maps IPv4 to ::ffff:a.b.c.d
		copy(sa[8:24], a16[:])
		if z := addr.Zone(); z != "" {
			id, err := zoneIndex(z)
			if err != nil {
				return 0, err
			}
			binary.NativeEndian.PutUint32(sa[24:28], id)
		}
		return unix.SizeofSockaddrInet6, nil
	default:
		return 0, ErrFamily
	}
}

// parseSockaddr decodes a kernel sockaddr. IPv4-mapped IPv6 sources (seen on
// dual-stack sockets) are unmapped so that one peer has one endpoint form.
func parseSockaddr(b []byte) (netip.AddrPort, bool) {
	if len(b) < 2 {
		return netip.AddrPort{}, false
	}
	switch binary.NativeEndian.Uint16(b[0:2]) {
	case unix.AF_INET:
		if len(b) < unix.SizeofSockaddrInet4 {
			return netip.AddrPort{}, false
		}
		addr := netip.AddrFrom4([4]byte(b[4:8]))
		return netip.AddrPortFrom(addr, binary.BigEndian.Uint16(b[2:4])), true
	case unix.AF_INET6:
		if len(b) < unix.SizeofSockaddrInet6 {
			return netip.AddrPort{}, false
		}
		addr := netip.AddrFrom16([16]byte(b[8:24]))
		if addr.Is4In6() {
			addr = addr.Unmap()
		} else if id := binary.NativeEndian.Uint32(b[24:28]); id != 0 {
			// Only link-local peers carry a scope; this allocation is off the
			// common path.
			addr = addr.WithZone(strconv.FormatUint(uint64(id), 10))
		}
		return netip.AddrPortFrom(addr, binary.BigEndian.Uint16(b[2:4])), true
	default:
		return netip.AddrPort{}, false
	}
}

// zoneIndex turns an IPv6 zone (numeric or interface name) into a scope ID.
func zoneIndex(zone string) (uint32, error) {
	if id, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(id), nil
	}
	ifi, err := net.InterfaceByName(zone)
	if err != nil {
		return 0, fmt.Errorf("udp: zone %q: %w", zone, err)
	}
	return uint32(ifi.Index), nil
}
