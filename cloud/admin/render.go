package admin

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"
)

// RenderNodes writes nodes as a table, one line each, as `headscale nodes
// list` does.
func RenderNodes(w io.Writer, nodes []Node, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FQDN\tVIP4\tVIP6\tMAPPING\tNAT\tONLINE\tLAST SEEN\tSERIAL\tCERT EXPIRES")
	for _, n := range nodes {
		online := "no"
		if n.Online {
			online = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.FQDN, addr(n.VIP4), addr(n.VIP6), mapping(n), nat(n),
			online, ago(n.LastSeen, now), dash(n.CertSerial), expiry(n.CertNotAfter, now))
	}
	return tw.Flush()
}

// RenderNode writes one node, a field a line.
func RenderNode(w io.Writer, n Node, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(k, f string, a ...any) { fmt.Fprintf(tw, "%s:\t"+f+"\n", append([]any{k}, a...)...) }
	line("FQDN", "%s", n.FQDN)
	line("VIPs", "%s %s", addr(n.VIP6), addr(n.VIP4))
	switch {
	case n.Live:
		line("Online", "yes (session %d at this cloud's NMS, until %s)", n.Session, stamp(n.SessionExpires))
	case n.Online:
		line("Online", "yes, by the registry (session %d until %s, held by NMS %s)", n.Session, stamp(n.SessionExpires), dash(n.HomeNMS))
	default:
		line("Online", "no")
	}
	line("Last seen", "%s", ago(n.LastSeen, now))
	if n.From.IsValid() {
		line("Signaling from", "%s", n.From)
	}
	line("Mapping (IPv4)", "%s (NAT %s)", addrPort(n.Observed4), n.NAT4)
	line("Mapping (IPv6)", "%s (NAT %s)", addrPort(n.Observed6), n.NAT6)
	var locals []string
	for _, l := range n.Locals {
		locals = append(locals, l.String())
	}
	line("Local addresses", "%s", dash(strings.Join(locals, " ")))
	line("Certificate", "serial %s, %s", dash(n.CertSerial), expiry(n.CertNotAfter, now))
	return tw.Flush()
}

func addr(a netip.Addr) string {
	if !a.IsValid() {
		return "-"
	}
	return a.String()
}

func addrPort(a netip.AddrPort) string {
	if !a.IsValid() {
		return "-"
	}
	return a.String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// mapping is the public mapping NMS saw, IPv4 first.
func mapping(n Node) string {
	var m []string
	for _, a := range []netip.AddrPort{n.Observed4, n.Observed6} {
		if a.IsValid() {
			m = append(m, a.String())
		}
	}
	return dash(strings.Join(m, ","))
}

func nat(n Node) string {
	switch {
	case n.Observed4.IsValid() && n.Observed6.IsValid():
		return n.NAT4 + "/" + n.NAT6
	case n.Observed6.IsValid():
		return n.NAT6
	}
	return n.NAT4
}

func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t).Round(time.Second)
	if d < time.Second {
		return "just now"
	}
	return d.String() + " ago"
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// expiry says when a certificate expires and how far that is.
func expiry(t, now time.Time) string {
	if t.IsZero() {
		return "expiry unknown"
	}
	d := t.Sub(now)
	if d <= 0 {
		return "EXPIRED " + stamp(t)
	}
	left := d.Round(time.Minute).String()
	if d > 48*time.Hour {
		left = fmt.Sprintf("%dd", int(d.Hours()/24))
	}
	return fmt.Sprintf("%s (in %s)", stamp(t), left)
}
