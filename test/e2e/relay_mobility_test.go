package e2e

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/test/testbed"
)

// Relayed mobility: a node behind symmetric NAPT, so relayed, moves to
// another network behind another symmetric NAPT in the middle of a TCP
// transfer. The TRS follows it only on its authenticated bind from the
// new NAT mapping; the transfer completes on the same connection, still
// through the relay.
func TestRelayMobility(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	home := w.bed.AddSite("home", testbed.SiteOpts{NAT: testbed.NATSymmetric, IPv4: true})
	cafe := w.bed.AddSite("cafe", testbed.SiteOpts{NAT: testbed.NATSymmetric, IPv4: true})
	cone := w.bed.AddSite("cone", testbed.SiteOpts{NAT: testbed.NATCone, IPv4: true})
	alice := w.addNode(home.AddHost("alice"))
	bob := w.addNode(cone.AddHost("bob"))
	talk(t, alice, bob, size)
	trs := netip.AddrPortFrom(w.cloudHost.IPv4(), 0)
	assertPath(t, alice, bob, messages.PathRelay, trs)

	base := bob.waitPeerUp(alice.fqdn, "tunnel up").RxBytes
	x := startTransfer(t, alice, bob, size, size/8) // paced over about 8 s
	w.eventually("transfer under way", transferTimeout, func() error {
		p, err := bob.peer(alice.fqdn)
		if err != nil {
			return err
		}
		if p.RxBytes < base+size/4 {
			return fmt.Errorf("bob has received %d bytes from alice", p.RxBytes-base)
		}
		return nil
	})
	relayed := w.relayedBytes()
	w.bed.Move(alice.host, cafe)
	t.Logf("moved alice from %s to %s (%v)", home.Name(), cafe.Name(), alice.host.IPv4())
	x.wait() // fails if the connection broke
	if n := w.relayedBytes(); n < relayed+uint64(size)/2 {
		t.Errorf("the TRS relayed %d bytes after the move, want at least %d", n-relayed, size/2)
	}
	assertPath(t, alice, bob, messages.PathRelay, trs)
	assertPath(t, bob, alice, messages.PathRelay, trs)
	talk(t, alice, bob, size)
	for _, n := range []*node{alice, bob} {
		other := bob
		if n == bob {
			other = alice
		}
		if p, err := n.peer(other.fqdn); err != nil || p.Restarts != 0 {
			t.Errorf("%s's tunnel to %s: %+v %v, want no restart", n.fqdn, other.fqdn, p, err)
		}
	}
}
