package tun

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrAddrNotInPrefix means a VIP lies outside the overlay prefix it is
// routed by.
var ErrAddrNotInPrefix = errors.New("tun: address not in overlay prefix")

// ErrAddrNotReady means the kernel did not start delivering to a VIP within
// addrReadyTimeout of Configure adding it.
var ErrAddrNotReady = errors.New("tun: address not ready")

// addrReadyTimeout bounds the wait for IPv6 address activation (below).
const addrReadyTimeout = 2 * time.Second

// Configure prepares the interface name for the overlay: sets its MTU, assigns
// the node's VIPs as host addresses, brings it up and routes the overlay
// prefixes to it with the VIP as preferred source. A zero (invalid) VIP skips
// that family. It is idempotent (addresses and routes are replaced), and
// returns once the kernel delivers packets addressed to the VIPs.
//
// VIPs are added as /32 and /128 rather than with the prefix length so that
// the prefix route is ours (explicit source, replaceable), not the kernel's.
func Configure(name string, vip6 netip.Addr, prefix6 netip.Prefix, vip4 netip.Addr, prefix4 netip.Prefix, mtu int) error {
	fams := []struct {
		vip    netip.Addr
		prefix netip.Prefix
		want4  bool
	}{{vip6, prefix6, false}, {vip4, prefix4, true}}
	for _, f := range fams {
		if !f.vip.IsValid() {
			continue
		}
		if f.vip.Is4() != f.want4 || !f.prefix.IsValid() || !f.prefix.Contains(f.vip) {
			return fmt.Errorf("tun: configure %s: %s in %s: %w", name, f.vip, f.prefix, ErrAddrNotInPrefix)
		}
	}

	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("tun: configure %s: %w", name, err)
	}
	if mtu > 0 {
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("tun: configure %s: set mtu %d: %w", name, mtu, err)
		}
	}
	if vip6.IsValid() {
		if err := enableIPv6(name); err != nil {
			return fmt.Errorf("tun: configure %s: %w", name, err)
		}
	}
	for _, f := range fams {
		if !f.vip.IsValid() {
			continue
		}
		addr := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(f.vip, f.vip.BitLen()))}
		if !f.want4 {
			// A TUN is IFF_NOARP, so the kernel skips DAD anyway; saying so
			// keeps the address usable the moment the link is up.
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrReplace(link, addr); err != nil {
			return fmt.Errorf("tun: configure %s: add address %s: %w", name, f.vip, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("tun: configure %s: set up: %w", name, err)
	}
	for _, f := range fams {
		if !f.vip.IsValid() {
			continue
		}
		route := &netlink.Route{
			LinkIndex: link.Attrs().Index,
			Dst:       ipNet(f.prefix.Masked()),
			Src:       net.IP(f.vip.AsSlice()),
		}
		if f.want4 {
			route.Scope = netlink.SCOPE_LINK
		}
		if err := netlink.RouteReplace(route); err != nil {
			return fmt.Errorf("tun: configure %s: route %s: %w", name, f.prefix, err)
		}
	}
	if vip6.IsValid() {
		if err := waitLocal(vip6); err != nil {
			return fmt.Errorf("tun: configure %s: %w", name, err)
		}
	}
	return nil
}

// enableIPv6 turns IPv6 on for the device alone. The overlay is dual-stack
// whatever the underlay is: on an IPv4-only host (IPv6 disabled by sysctl,
// so new devices start with disable_ipv6=1) adding the VIPv6 would fail
// with EACCES, and the node would be left without either VIP. Enabling it
// on our own device changes nothing for the host's other interfaces.
func enableIPv6(name string) error {
	path := "/proc/sys/net/ipv6/conf/" + name + "/disable_ipv6"
	cur, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // no IPv6 in this kernel: AddrReplace will say so
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if len(cur) > 0 && cur[0] == '0' {
		return nil
	}
	if err := os.WriteFile(path, []byte("0"), 0); err != nil {
		return fmt.Errorf("enable IPv6: %w", err)
	}
	return nil
}

// waitLocal waits until the kernel routes vip as a local address.
//
// IPv6 activates a new address from a workqueue (DAD, skipped with NODAD but
// still asynchronous): until then its local route is missing and packets to
// it arriving on the TUN are dropped as Ip6InAddrErrors, though the socket
// bind already succeeds. Measured here: a few milliseconds, usually less.
// IPv4 addresses are active synchronously.
func waitLocal(vip netip.Addr) error {
	deadline := time.Now().Add(addrReadyTimeout)
	for {
		routes, err := netlink.RouteGet(net.IP(vip.AsSlice()))
		if err != nil {
			return fmt.Errorf("route get %s: %w", vip, err)
		}
		if len(routes) > 0 && routes[0].Type == unix.RTN_LOCAL {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s after %v: %w", vip, addrReadyTimeout, ErrAddrNotReady)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{
		IP:   net.IP(p.Addr().AsSlice()),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}
}
