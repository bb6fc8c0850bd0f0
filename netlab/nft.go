package netlab

import (
	"fmt"
	"strings"
)

// NAT is how a site's router maps its LAN onto its public address. A test
// names the kind it needs; each is a router found in the wild.
type NAT int

const (
	// NATNone routes the LAN's addresses unchanged (global addresses).
	NATNone NAT = iota
	// NATCone is nftables "masquerade" behind an input firewall that drops
	// unsolicited UDP to the router itself, as a home router does. Linux
	// keeps a socket's mapping for every destination (endpoint-independent
	// mapping) while the port is free, and the firewall keeps a peer's
	// early punch packet from leaving a conntrack entry that takes our
	// mapping's reply tuple, so simultaneous hole punching works.
	// Filtering is address-and-port dependent (conntrack admits replies).
	NATCone
	// NATSymmetric is nftables "masquerade fully-random" with no input
	// rule: every new destination gets a fresh random port
	// (endpoint-dependent mapping).
	NATSymmetric
	// NATMasquerade is plain nftables "masquerade" with no input rule, as
	// on Docker hosts and many Linux gateways. The mapping is endpoint
	// independent while its port is free, but a peer's punch packet that
	// arrives before our first packet leaves an UNREPLIED conntrack entry
	// whose reply tuple is the one our mapping needs; masquerade then
	// picks another source port for us, and both sides aim at ports that
	// lead nowhere. Hole punching through it fails often; the relay must
	// catch it.
	NATMasquerade
)

func (n NAT) String() string {
	switch n {
	case NATNone:
		return "none"
	case NATCone:
		return "cone"
	case NATSymmetric:
		return "symmetric"
	case NATMasquerade:
		return "masquerade"
	}
	return fmt.Sprintf("NAT(%d)", int(n))
}

// Table names this package owns inside a router namespace.
const (
	natTable    = "cytb_nat"
	impairTable = "cytb_impair"
	silentTable = "cytb_silent"
)

// silentRuleset keeps the router from sending ICMP time exceeded, as many
// routers in the wild do (filtered, or rate-limited to nothing): a
// traceroute through it shows a silent hop. Only the router's own ICMP is
// affected (output hook); errors of other routers it forwards pass.
func silentRuleset() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", silentTable)
	b.WriteString("\tchain output {\n")
	b.WriteString("\t\ttype filter hook output priority filter; policy accept;\n")
	b.WriteString("\t\ticmp type time-exceeded drop\n")
	b.WriteString("\t\ticmpv6 type time-exceeded drop\n")
	b.WriteString("\t}\n}\n")
	return b.String()
}

// natRuleset is the nft script for a router whose uplink is wan. It is
// empty when nothing is translated. IPv6 is translated only with nat66;
// otherwise a site's IPv6 LAN is routed, as most real IPv6 sites are.
func natRuleset(wan string, nat NAT, ipv4, ipv6, nat66 bool) string {
	var verb string
	firewall := false
	switch nat {
	case NATCone:
		verb, firewall = "masquerade", true
	case NATMasquerade:
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
		if firewall {
			// Unsolicited UDP to the router itself is dropped before
			// conntrack confirms it, as a home router's firewall does
			// (see NATCone).
			b.WriteString("\tchain input {\n")
			b.WriteString("\t\ttype filter hook input priority filter; policy accept;\n")
			fmt.Fprintf(&b, "\t\tiifname %q meta l4proto udp ct state new drop\n", wan)
			b.WriteString("\t}\n")
		}
		b.WriteString("}\n")
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
