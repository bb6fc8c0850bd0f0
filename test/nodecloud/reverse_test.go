package nodecloud

import (
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// ptr asks via's resolver for the PTR record of addr.
func ptr(t *testing.T, via *testNode, addr netip.Addr) *dns.Msg {
	t.Helper()
	name, err := dns.ReverseAddr(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypePTR)
	r, _, err := (&dns.Client{Timeout: 30 * time.Second}).Exchange(m, via.DNSAddr().String())
	if err != nil {
		t.Fatalf("PTR %s: %v", addr, err)
	}
	return r
}

// TestReverseLookupWithoutTunnel: a PTR query for the VIP of a node alice
// has no tunnel with is answered from NMS (a lookup, which opens no
// tunnel), for both of its VIPs; a VIP of the overlay nobody holds is
// NXDOMAIN, and asked about again it is answered from memory, not NMS.
func TestReverseLookupWithoutTunnel(t *testing.T) {
	c := startCloud(t, t.TempDir(), nil)
	defer c.close(t)
	alice := startNode(t, c, "alice.example.cyphonic")
	bob := startNode(t, c, "bob.example.cyphonic")
	eventually(t, "alice online", online(alice))
	eventually(t, "bob online", online(bob))

	st := bob.Session().Status()
	for _, vip := range []netip.Addr{st.VIP4, st.VIP6} {
		r := ptr(t, alice, vip)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("PTR for bob's %s: %v", vip, r)
		}
		if p, ok := r.Answer[0].(*dns.PTR); !ok || p.Ptr != "bob.example.cyphonic." {
			t.Fatalf("PTR for bob's %s = %v, want bob.example.cyphonic.", vip, r.Answer[0])
		}
	}
	if got := c.srv.NMS.Counters.ReverseLookups.Load(); got != 2 {
		t.Errorf("%d reverse lookups at NMS, want 2", got)
	}
	if _, ok := peerState(alice, bob.FQDN()); ok {
		t.Errorf("a PTR query opened a tunnel to bob: %+v", alice.Dataplane().Status())
	}
	if n := c.srv.NMS.Counters.Tunnels.Load(); n != 0 {
		t.Errorf("NMS set up %d tunnels for PTR queries", n)
	}

	nobody := netip.AddrFrom4([4]byte{100, 127, 1, 2}) // inside the overlay's 100.64.0.0/10
	for i := range 3 {
		if r := ptr(t, alice, nobody); r.Rcode != dns.RcodeNameError || len(r.Answer) != 0 {
			t.Fatalf("PTR %d for %s nobody holds: %v, want NXDOMAIN", i, nobody, r)
		}
	}
	if got := c.srv.NMS.Counters.ReverseLookups.Load(); got != 3 {
		t.Errorf("%d reverse lookups at NMS after asking thrice about an address nobody holds, want 3 (2 + 1)", got)
	}
}
