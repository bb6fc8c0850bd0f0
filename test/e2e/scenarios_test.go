package e2e

import (
	"net/netip"
	"testing"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/test/testbed"
)

// size is what each scenario moves over TCP.
const size = 4 << 20

// a. Two global IPv4 nodes talk directly.
func TestGlobalIPv4(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	alice := w.addNode(w.bed.AddHost("alice", testbed.HostOpts{IPv4: true}))
	bob := w.addNode(w.bed.AddHost("bob", testbed.HostOpts{IPv4: true}))
	talk(t, alice, bob, size)
	assertPath(t, alice, bob, messages.PathDirect, netip.AddrPortFrom(bob.host.IPv4(), 0))
	assertNotRelayed(t, w)
	alice.cyPing(bob, "via "+bob.host.IPv4().String()+":")
}

// b. Two global IPv6 nodes talk directly.
func TestGlobalIPv6(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	alice := w.addNode(w.bed.AddHost("alice", testbed.HostOpts{IPv6: true}))
	bob := w.addNode(w.bed.AddHost("bob", testbed.HostOpts{IPv6: true}))
	talk(t, alice, bob, size)
	assertPath(t, alice, bob, messages.PathDirect, netip.AddrPortFrom(bob.host.IPv6(), 0))
	assertNotRelayed(t, w)
}

// c. Both behind plain masquerade (no input firewall, as on Docker hosts
// and many Linux gateways), both asking for the other by name at the same
// moment: the crossing punch packets may take each other's mappings
// (issue 10), so the pair punches a hole or, when that fails, falls back
// to the relay within seconds. Either way the name answers and data flows.
// TestHolePunchCone is the same through routers with an input firewall,
// where the punch must work.
func TestHolePunch(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	siteA := w.bed.AddSite("sitea", testbed.SiteOpts{NAT: testbed.NATMasquerade, IPv4: true})
	siteB := w.bed.AddSite("siteb", testbed.SiteOpts{NAT: testbed.NATMasquerade, IPv4: true})
	alice := w.addNode(siteA.AddHost("alice"))
	bob := w.addNode(siteB.AddHost("bob"))
	resolveBoth(t, alice, bob)
	talk(t, alice, bob, size)
	p := mustPeer(t, alice, bob)
	switch p.Path {
	case messages.PathHolePunch:
		assertPath(t, alice, bob, messages.PathHolePunch, netip.AddrPortFrom(siteB.PublicIPv4(), 0))
	case messages.PathRelay:
		assertPath(t, alice, bob, messages.PathRelay, netip.AddrPortFrom(w.cloudHost.IPv4(), 0))
		t.Logf("the punch failed through plain masquerade; the relay caught it")
	default:
		t.Errorf("%s -> %s: path %v, want hole-punch or relay", alice.fqdn, bob.fqdn, p.Path)
	}
}

// c'. Both behind NAPT with an input firewall: hole punching gives a
// direct path between the public mappings, and the TRS relays no data.
func TestHolePunchCone(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	siteA := w.bed.AddSite("sitea", testbed.SiteOpts{NAT: testbed.NATCone, IPv4: true})
	siteB := w.bed.AddSite("siteb", testbed.SiteOpts{NAT: testbed.NATCone, IPv4: true})
	alice := w.addNode(siteA.AddHost("alice"))
	bob := w.addNode(siteB.AddHost("bob"))
	talk(t, alice, bob, size)
	assertPath(t, alice, bob, messages.PathHolePunch, netip.AddrPortFrom(siteB.PublicIPv4(), 0))
	assertPath(t, bob, alice, messages.PathHolePunch, netip.AddrPortFrom(siteA.PublicIPv4(), 0))
	relayed := w.relayedBytes()
	startTransfer(t, bob, alice, size, 0).wait()
	if n := w.relayedBytes(); n != relayed {
		t.Errorf("the TRS relayed %d bytes of a transfer over a punched path", n-relayed)
	}
}

// d. One node behind symmetric NAPT, the other behind NAPT too: no
// direct path can exist, so the TRS relays, and data flows through it.
func TestSymmetricRelay(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	sym := w.bed.AddSite("sym", testbed.SiteOpts{NAT: testbed.NATSymmetric, IPv4: true})
	cone := w.bed.AddSite("cone", testbed.SiteOpts{NAT: testbed.NATCone, IPv4: true})
	alice := w.addNode(sym.AddHost("alice"))
	bob := w.addNode(cone.AddHost("bob"))
	talk(t, alice, bob, size)
	trs := netip.AddrPortFrom(w.cloudHost.IPv4(), 0)
	assertPath(t, alice, bob, messages.PathRelay, trs)
	assertPath(t, bob, alice, messages.PathRelay, trs)
	assertRelayed(t, w, size)
	alice.cyPing(bob, "via TRS "+w.cloudHost.IPv4().String()+":")
}

// e. An IPv4-only node and an IPv6-only node share no IP version: the
// dual-stack TRS bridges them.
func TestCrossFamilyRelay(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	alice := w.addNode(w.bed.AddHost("alice", testbed.HostOpts{IPv4: true}))
	bob := w.addNode(w.bed.AddHost("bob", testbed.HostOpts{IPv6: true}))
	talk(t, alice, bob, size)
	assertPath(t, alice, bob, messages.PathRelay, netip.AddrPortFrom(w.cloudHost.IPv4(), 0))
	assertPath(t, bob, alice, messages.PathRelay, netip.AddrPortFrom(w.cloudHost.IPv6(), 0))
	assertRelayed(t, w, size)
}

// f. Two nodes behind the same NAPT reach each other on their local
// addresses. NMS hands them a fallback relay ticket too (a shared public
// address may be a carrier-grade NAT), so copies of the handshake may pass
// the TRS; the data must not.
func TestSameSite(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	site := w.bed.AddSite("home", testbed.SiteOpts{NAT: testbed.NATCone, IPv4: true})
	alice := w.addNode(site.AddHost("alice"))
	bob := w.addNode(site.AddHost("bob"))
	talk(t, alice, bob, size)
	assertPath(t, alice, bob, messages.PathDirect, netip.AddrPortFrom(bob.host.IPv4(), 0))
	assertPath(t, bob, alice, messages.PathDirect, netip.AddrPortFrom(alice.host.IPv4(), 0))
	relayed := w.relayedBytes()
	startTransfer(t, bob, alice, size, 0).wait()
	if n := w.relayedBytes(); n != relayed {
		t.Errorf("the TRS relayed %d bytes of a transfer between local addresses", n-relayed)
	}
}
