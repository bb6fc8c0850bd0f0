package testbed

import (
	"fmt"
	"strings"
)

// NAT is how a site's router maps its LAN onto its public address.
type NAT int

const (
	// NATNone routes the LAN's addresses unchanged (global addresses).
	NATNone NAT = iota
	// NATCone is nftables "masquerade": Linux keeps a socket's mapping for
	// every destination (endpoint-independent mapping) while the port is
	// free, so hole punching works. Filtering is still address-and-port
	// dependent, as conntrack admits only replies.
	NATCone
	// NATSymmetric is nftables "masquerade fully-random": every new
	// destination gets a fresh random port (endpoint-dependent mapping).
	NATSymmetric
)

func (n NAT) String() string {
	switch n {
	case NATNone:
		return "none"
	case NATCone:
		return "cone"
	case NATSymmetric:
		return "symmetric"
	}
	return fmt.Sprintf("NAT(%d)", int(n))
}

// Table names this package owns inside a router namespace.
const (
	natTable    = "cytb_nat"
	impairTable = "cytb_impair"
)

// natRuleset is the nft script for a router whose uplink is wan. It is
// empty when nothing is translated. IPv6 is translated only with nat66;
// otherwise a site's IPv6 LAN is routed, as most real IPv6 sites are.
func natRuleset(wan string, nat NAT, ipv4, ipv6, nat66 bool) string {
	var verb string
	switch nat {
	case NATCone:
		verb = "masquerade"
	case NATSymmetric:
		verb = "masquerade fully-random"
	default:
		return ""
	}
	var b strings.Builder
	family := func(f string) {
		fmt.Fprintf(&b, "table %s %s {\n", f, natTable)
		b.WriteString("\tchain postrouting {\n")
		b.WriteString("\t\ttype nat hook postrouting priority srcnat; policy accept;\n")
		fmt.Fprintf(&b, "\t\toifname %q %s\n", wan, verb)
		b.WriteString("\t}\n")
		// Unsolicited UDP to the router itself is dropped before conntrack
		// confirms it, as a home router's firewall does. Without this, a
		// peer's hole-punching packet that arrives before our own first
		// packet leaves a confirmed inbound entry whose tuple is the reply
		// tuple our mapping needs; masquerade then picks another port for
		// our packet, and hole punching can never succeed.
		b.WriteString("\tchain input {\n")
		b.WriteString("\t\ttype filter hook input priority filter; policy accept;\n")
		fmt.Fprintf(&b, "\t\tiifname %q meta l4proto udp ct state new drop\n", wan)
		b.WriteString("\t}\n}\n")
	}
	if ipv4 {
		family("ip")
	}
	if ipv6 && nat66 {
		family("ip6")
	}
	return b.String()
}

// impairRuleset replaces the router's impairment table with one dropping
// lossPercent of forwarded packets at random (this machine has no netem).
// The add/delete pair makes the replacement work whether or not the table
// exists, in one atomic nft transaction.
func impairRuleset(lossPercent int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "add table inet %s\ndelete table inet %s\n", impairTable, impairTable)
	if lossPercent <= 0 {
		return b.String()
	}
	fmt.Fprintf(&b, "table inet %s {\n", impairTable)
	b.WriteString("\tchain forward {\n")
	b.WriteString("\t\ttype filter hook forward priority filter; policy accept;\n")
	if lossPercent >= 100 {
		b.WriteString("\t\tdrop\n") // numgen's values stop at 99
	} else {
		fmt.Fprintf(&b, "\t\tnumgen random mod 100 < %d drop\n", lossPercent)
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}
