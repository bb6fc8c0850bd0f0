package hops

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ICMP types the error queue reports.
const (
	icmpTimeExceeded  = 11 // ICMPv4
	icmpUnreachable   = 3
	icmp6TimeExceeded = 3 // ICMPv6
	icmp6Unreachable  = 1
)

// Probe sends one empty UDP datagram toward dst for each TTL (IPv6: hop
// limit) 1..maxTTL, each from a socket of its own so each answer is known
// by its socket (and those still unanswered once more halfway through), and returns what came back within wait (or until ctx
// ends, or every probe was answered). The sockets ask for IP_RECVERR:
// routers' ICMP errors land on their error queues, each with the
// router's address (the offender). A probe that reaches dst may arrive
// there, so point it at a host that ignores junk (the cloud's own port).
//
// It blocks the caller for up to wait: run it off any actor. maxTTL is
// capped at 32. The source address is the one the kernel picks toward
// dst, the one a data socket bound to the wildcard sends from.
func Probe(ctx context.Context, dst netip.AddrPort, maxTTL int, wait time.Duration) ([]Hop, error) {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if !dst.IsValid() || maxTTL < 1 {
		return nil, fmt.Errorf("hops: probe %s to TTL %d: bad arguments", dst, maxTTL)
	}
	maxTTL = min(maxTTL, 32)
	v6 := dst.Addr().Is6()
	fds := make([]int, 0, maxTTL)
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for ttl := 1; ttl <= maxTTL; ttl++ {
		fd, err := probeSocket(dst, v6, ttl)
		if err != nil {
			return nil, fmt.Errorf("hops: probe %s TTL %d: %w", dst, ttl, err)
		}
		fds = append(fds, fd)
	}
	hops := make([]Hop, maxTTL)
	for i := range hops {
		hops[i].TTL = i + 1
	}
	deadline := time.Now().Add(wait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	pfds := make([]unix.PollFd, len(fds))
	for i, fd := range fds {
		pfds[i] = unix.PollFd{Fd: int32(fd)}
	}
	// Silent probes are sent once more halfway: a router's ICMP rate
	// limit (about one a second per destination on Linux) may have
	// swallowed the first answer.
	resendAt := time.Now().Add(wait / 2)
	resent := false
	for open := len(fds); open > 0; {
		if !resent && time.Now().After(resendAt) {
			resent = true
			for i := range pfds {
				if pfds[i].Fd >= 0 {
					_, _ = unix.Write(fds[i], nil)
				}
			}
		}
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			break
		}
		// Poll in slices of 50 ms so a cancelled ctx ends it soon.
		n, err := unix.Poll(pfds, int(min(left, 50*time.Millisecond)/time.Millisecond)+1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return nil, fmt.Errorf("hops: probe %s: poll: %w", dst, err)
		}
		if n <= 0 {
			continue
		}
		for i := range pfds {
			if pfds[i].Fd < 0 || pfds[i].Revents&unix.POLLERR == 0 {
				continue
			}
			if from, reached, ok := readErr(fds[i], v6); ok {
				hops[i].From, hops[i].Reached = from, reached
				pfds[i].Fd = -1 // answered: poll ignores it
				open--
			}
		}
		if _, learnt := Choose(hops); learnt && answeredBelowPublic(hops) {
			break
		}
	}
	return hops, nil
}

// answeredBelowPublic reports whether every probe up to the first public
// hop has its answer: nothing later can change Choose's result.
func answeredBelowPublic(hops []Hop) bool {
	for _, h := range hops {
		if !h.From.IsValid() {
			return false
		}
		if !Private(h.From) {
			return true
		}
	}
	return false
}

// probeSocket opens a non-blocking UDP socket with IP_RECVERR and the TTL,
// connects it to dst and sends one empty datagram.
func probeSocket(dst netip.AddrPort, v6 bool, ttl int) (int, error) {
	family, level, recverr, hopOpt := unix.AF_INET, unix.IPPROTO_IP, unix.IP_RECVERR, unix.IP_TTL
	if v6 {
		family, level, recverr, hopOpt = unix.AF_INET6, unix.IPPROTO_IPV6, unix.IPV6_RECVERR, unix.IPV6_UNICAST_HOPS
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	var sa unix.Sockaddr
	if v6 {
		sa = &unix.SockaddrInet6{Port: int(dst.Port()), Addr: dst.Addr().As16()}
	} else {
		sa = &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	}
	for _, step := range []func() error{
		func() error { return unix.SetsockoptInt(fd, level, recverr, 1) },
		func() error { return unix.SetsockoptInt(fd, level, hopOpt, ttl) },
		func() error { return unix.Connect(fd, sa) },
		func() error { _, err := unix.Write(fd, nil); return err },
	} {
		if err := step(); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	return fd, nil
}

// readErr takes the ICMP errors off fd's error queue and reports the one
// that answers the probe: time exceeded from a router, or unreachable
// from the destination. Anything else (a local error) is no answer.
func readErr(fd int, v6 bool) (from netip.Addr, reached, ok bool) {
	var buf [64]byte
	oob := make([]byte, 512)
	for {
		_, oobn, _, _, err := unix.Recvmsg(fd, buf[:], oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if err != nil {
			return from, reached, ok
		}
		cms, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			continue
		}
		for _, cm := range cms {
			a, r, good := parseErr(cm, v6)
			if good && !ok {
				from, reached, ok = a, r, true
			}
		}
	}
}

// parseErr reads one IP_RECVERR / IPV6_RECVERR control message: a struct
// sock_extended_err and the offender's sockaddr right after it.
func parseErr(cm unix.SocketControlMessage, v6 bool) (from netip.Addr, reached, ok bool) {
	const eeLen = int(unsafe.Sizeof(unix.SockExtendedErr{}))
	level, typ, origin := int32(unix.IPPROTO_IP), int32(unix.IP_RECVERR), uint8(unix.SO_EE_ORIGIN_ICMP)
	if v6 {
		level, typ, origin = unix.IPPROTO_IPV6, unix.IPV6_RECVERR, unix.SO_EE_ORIGIN_ICMP6
	}
	if cm.Header.Level != level || cm.Header.Type != typ || len(cm.Data) < eeLen {
		return from, false, false
	}
	ee := (*unix.SockExtendedErr)(unsafe.Pointer(&cm.Data[0]))
	if ee.Origin != origin {
		return from, false, false
	}
	sa := cm.Data[eeLen:]
	switch {
	case !v6 && len(sa) >= unix.SizeofSockaddrInet4 &&
		binary.NativeEndian.Uint16(sa) == unix.AF_INET:
		from = netip.AddrFrom4([4]byte(sa[4:8]))
	case v6 && len(sa) >= unix.SizeofSockaddrInet6 &&
		binary.NativeEndian.Uint16(sa) == unix.AF_INET6:
		from = netip.AddrFrom16([16]byte(sa[8:24]))
	default:
		return from, false, false
	}
	switch {
	case !v6 && ee.Type == icmpTimeExceeded, v6 && ee.Type == icmp6TimeExceeded:
		return from, false, true
	case !v6 && ee.Type == icmpUnreachable, v6 && ee.Type == icmp6Unreachable:
		return from, true, true
	}
	return from, false, false
}
