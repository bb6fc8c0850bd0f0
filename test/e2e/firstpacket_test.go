package e2e

import (
	"regexp"
	"testing"

	"github.com/cyphonic/cyphonic-go/test/testbed"
)

var rttRE = regexp.MustCompile(`time=([0-9.]+) ms`)

// TestFirstPacketByVIP: real node processes, each behind an endpoint-
// independent NAPT. Alice's host pings bob's VIPs with no name resolution
// (an address from a config, a cached answer): the first echo request
// finds no tunnel, alice asks NMS who holds the VIP, holds the packet
// while the tunnel is punched, then sends it. A single ping per family
// must be answered: the first packet itself gets through.
func TestFirstPacketByVIP(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	siteA := w.bed.AddSite("sitea", testbed.SiteOpts{NAT: testbed.NATCone, IPv4: true})
	siteB := w.bed.AddSite("siteb", testbed.SiteOpts{NAT: testbed.NATCone, IPv4: true})
	alice := w.addNode(siteA.AddHost("alice"))
	bob := w.addNode(siteB.AddHost("bob"))
	vips := bob.mustStatus().Session
	if _, err := alice.peer(bob.fqdn); err == nil {
		t.Fatal("alice has a tunnel to bob before any packet")
	}
	for _, c := range []struct{ fam, addr string }{{"-4", vips.VIP4.String()}, {"-6", vips.VIP6.String()}} {
		out, err := alice.host.Exec("ping", c.fam, "-n", "-c", "1", "-W", "5", c.addr)
		if err != nil {
			t.Fatalf("first ping %s %s from alice (no DNS): %v\n%s\nalice: %+v", c.fam, c.addr, err, out, alice.mustStatus())
		}
		// ping's own measure of the first echo: first packet to first reply.
		if m := rttRE.FindSubmatch(out); m != nil {
			t.Logf("first packet to %s -> first reply: %s ms", c.addr, m[1])
		}
	}
	st := alice.mustStatus()
	if st.Hold.Lookups != 1 || st.Hold.Delivered < 1 {
		t.Fatalf("alice's hold queue %+v: want one lookup and the first packet delivered", st.Hold)
	}
}
