package node

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Split DNS with systemd-resolved: the node asks resolved to send queries
// for the overlay domain (and only those) to the node's resolver, on the
// node's TUN link, so every other name resolves as before. resolved drops
// the setting when the link goes away with the node. CAP_NET_ADMIN is
// enough for resolved to accept it.

// Values of Config.SplitDNS.
const (
	SplitDNSAuto = "auto" // when systemd-resolved runs and the node is in the host's network namespace
	SplitDNSOn   = "on"   // always try, warn if it fails
	SplitDNSOff  = "off"
)

// resolvedRunning reports whether systemd-resolved serves this network
// namespace: its runtime directory exists and we are in the namespace of
// PID 1 (a node in another namespace, as in the tests' testbeds, must not
// configure the host's resolver with its own link index).
func resolvedRunning() bool {
	if _, err := exec.LookPath("resolvectl"); err != nil {
		return false
	}
	if _, err := os.Stat("/run/systemd/resolve/stub-resolv.conf"); err != nil {
		return false
	}
	self, err1 := os.Readlink("/proc/self/ns/net")
	init, err2 := os.Readlink("/proc/1/ns/net")
	return err1 == nil && err2 == nil && self == init
}

// splitDNSCommands are the resolvectl invocations that route domain, the
// reverse zones of the overlay prefixes (PTR for VIPs) and search (the
// node's own domain, for short names) to the resolver at addr on link dev.
func splitDNSCommands(dev, addr, domain, search string, prefixes ...netip.Prefix) [][]string {
	domains := []string{"domain", dev, "~" + strings.Trim(domain, ".")}
	for _, p := range prefixes {
		for _, z := range reverseZones(p) {
			domains = append(domains, "~"+z)
		}
	}
	if search != "" {
		domains = append(domains, search)
	}
	return [][]string{{"dns", dev, addr}, domains}
}

// maxReverseZones bounds the zones one prefix may need (a /10 needs 64):
// past it the prefix is too odd to route, and PTR for it is not routed.
const maxReverseZones = 256

// reverseZones are the in-addr.arpa or ip6.arpa zones that together cover
// exactly p: a prefix off a label boundary (an octet, a nibble) takes one
// zone per value of the bits up to the next boundary (100.64.0.0/10 is
// 64.100.in-addr.arpa … 127.100.in-addr.arpa). Nothing for an invalid
// prefix, a /0, or one that would take more than maxReverseZones.
func reverseZones(p netip.Prefix) []string {
	if !p.IsValid() || p.Bits() == 0 {
		return nil
	}
	p = p.Masked()
	labelBits, suffix := 8, "in-addr.arpa"
	if p.Addr().Is6() {
		labelBits, suffix = 4, "ip6.arpa"
	}
	labels := (p.Bits() + labelBits - 1) / labelBits // labels the zones name
	spread := labels*labelBits - p.Bits()            // free bits in the last one
	if 1<<spread > maxReverseZones {
		return nil
	}
	b := p.Addr().AsSlice()
	label := func(i int) int { // the i-th label's value, most significant first
		if labelBits == 8 {
			return int(b[i])
		}
		return int(b[i/2]>>(4*(1-i%2))) & 0xf
	}
	var tail strings.Builder // the labels before the last, reversed
	for i := labels - 2; i >= 0; i-- {
		if labelBits == 8 {
			fmt.Fprintf(&tail, ".%d", label(i))
		} else {
			fmt.Fprintf(&tail, ".%x", label(i))
		}
	}
	zones := make([]string, 0, 1<<spread)
	for v := range 1 << spread {
		last := label(labels-1) | v
		if labelBits == 8 {
			zones = append(zones, fmt.Sprintf("%d%s.%s", last, tail.String(), suffix))
		} else {
			zones = append(zones, fmt.Sprintf("%x%s.%s", last, tail.String(), suffix))
		}
	}
	return zones
}

// registerSplitDNS runs splitDNSCommands, saying what it did or why not.
func (n *Node) registerSplitDNS(ctx context.Context, dev string, prefixes ...netip.Prefix) {
	mode := n.cfg.SplitDNS
	if n.dns == nil || mode == SplitDNSOff || mode == SplitDNSAuto && !resolvedRunning() {
		return
	}
	search := n.dns.Config().Search
	for _, args := range splitDNSCommands(dev, n.dns.Addr().String(), n.cfg.Domain, search, prefixes...) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		out, err := exec.CommandContext(cctx, "resolvectl", args...).CombinedOutput()
		cancel()
		if err != nil {
			n.log.Warn("split DNS: resolvectl failed: point the overlay domain at the resolver by hand (README)", "cmd",
				"resolvectl "+strings.Join(args, " "), "err", fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out))))
			return
		}
	}
	n.log.Info("split DNS: systemd-resolved sends the overlay domain to the resolver", "dev", dev, "domain", n.cfg.Domain,
		"search", search, "resolver", n.dns.Addr())
}
