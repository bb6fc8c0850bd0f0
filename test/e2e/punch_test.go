package e2e

import (
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/test/testbed"
)

// TestGlobalAsksMasquerade: a global node looks up a node behind plain
// masquerade, which does not look back. NMS gives them a direct path
// with the global node as the only initiator, so its init reaches the
// masquerade router before the other node has sent anything there: it
// gets through only because the directed node primed its mapping toward
// the global node (a low-TTL empty datagram) before acknowledging its
// Direction. Without the primer the init dies at the router and the pair
// falls back to the TRS after the fallback deadline, so every run here
// checks that the TRS forwarded nothing while the tunnel came up, and that
// the path is direct. Fresh processes on fresh ports each run.
func TestGlobalAsksMasquerade(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	g := w.addNode(w.bed.AddHost("glob", testbed.HostOpts{IPv4: true}))
	n := w.addNode(w.bed.AddSite("smq", testbed.SiteOpts{NAT: testbed.NATMasquerade, IPv4: true}).AddHost("mq"))
	for i := range 3 {
		if i > 0 {
			for _, nd := range []*node{g, n} {
				nd.kill()
				nd.forgetPort()
			}
			for _, nd := range []*node{g, n} {
				nd.start()
			}
		}
		relayed := w.relayedBytes()
		deadline := time.Now().Add(tunnelTimeout)
		for {
			out, err := g.host.Exec("ping", "-4", "-n", "-c", "1", "-W", "1", n.fqdn)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %d: no echo reply from %s: %v\n%s", i+1, n.fqdn, err, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if got := w.relayedBytes() - relayed; got > 0 {
			t.Errorf("run %d: the TRS relayed %d bytes while the tunnel came up: the direct init did not get through", i+1, got)
		}
		if kind := waitPathIn(t, g, n, allPaths); kind != messages.PathDirect {
			t.Errorf("run %d: path %v, want %v", i+1, kind, messages.PathDirect)
		}
	}
}
