package nms

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/cyphonic/cyphonic-go/cloud/path"
	"github.com/cyphonic/cyphonic-go/cloud/store"
)

func TestPlanUpgrade(t *testing.T) {
	office := netip.MustParseAddrPort("198.51.100.10:30001")
	home := netip.MustParseAddrPort("203.0.113.20:41641")
	global := netip.MustParseAddrPort("192.0.2.30:41641")
	node := func(fqdn string, obs netip.AddrPort, nat path.NATType, local string) store.Node {
		var n store.Node
		n.FQDN = fqdn
		n.Locator.Observed4, n.Locator.NAT4, n.Locator.HasIPv4 = obs, nat, true
		n.Locator.Locals = []netip.AddrPort{netip.MustParseAddrPort(local)}
		return n
	}
	for _, tt := range []struct {
		name         string
		me, peer     store.Node
		ok           bool
		kind         path.Kind
		toPeer, toMe []netip.AddrPort
	}{
		{
			name: "still symmetric behind NAT",
			me:   node("a", office, path.EndpointDependent, "10.0.0.2:41641"),
			peer: node("b", home, path.EndpointIndependent, "10.1.0.2:41641"),
		},
		{
			name: "symmetric NAT replaced by a cone one",
			me:   node("a", office, path.EndpointIndependent, "10.0.0.2:41641"),
			peer: node("b", home, path.EndpointIndependent, "10.1.0.2:41641"),
			ok:   true, kind: path.HolePunch,
			toPeer: []netip.AddrPort{home}, toMe: []netip.AddrPort{office},
		},
		{
			// The global side cannot predict the symmetric mapping: it
			// is told nothing and answers the first packet.
			name: "moved to a global address, peer symmetric",
			me:   node("a", global, path.None, global.String()),
			peer: node("b", office, path.EndpointDependent, "10.0.0.2:41641"),
			ok:   true, kind: path.Direct,
			toPeer: nil, toMe: []netip.AddrPort{global},
		},
		{
			name: "no common IP version stays relayed",
			me:   node("a", office, path.EndpointIndependent, "10.0.0.2:41641"),
			peer: func() store.Node {
				var n store.Node
				n.FQDN = "b"
				n.Locator.Observed6, n.Locator.HasIPv6 = netip.MustParseAddrPort("[2001:db8::2]:41641"), true
				return n
			}(),
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u, ok := planUpgrade(tt.me, tt.peer)
			if ok != tt.ok {
				t.Fatalf("upgrade %v, want %v (%s)", ok, tt.ok, u.decision.Reason)
			}
			if !ok {
				return
			}
			if u.decision.Kind != tt.kind || u.peer.FQDN != tt.peer.FQDN {
				t.Fatalf("decision %v for %s, want %v for %s", u.decision.Kind, u.peer.FQDN, tt.kind, tt.peer.FQDN)
			}
			if !slices.Equal(u.toPeer, tt.toPeer) || !slices.Equal(u.toMe, tt.toMe) {
				t.Fatalf("toPeer %v toMe %v, want %v %v", u.toPeer, u.toMe, tt.toPeer, tt.toMe)
			}
		})
	}
}
