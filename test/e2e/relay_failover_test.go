package e2e

import (
	"strings"
	"testing"
	"time"

	nodepkg "github.com/cyphonic/cyphonic-go/actors/node"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/test/testbed"
)

// relayRecoverWithin bounds how long a relayed tunnel through a killed
// process's TRS carries nothing: the nodes notice the silence after
// --peer-silence-after (2 s), ask their NMS for a new path (failing over
// to another process when theirs was the one killed: 1.5 s unanswered),
// and hand-shake over the relay that process's NMS minted tickets for.
const relayRecoverWithin = 10 * time.Second

// TestRelayThroughDeadTRS (issue 14): three `cyphonic cloud` processes on
// one redis-server; alice behind symmetric NAT and bob behind a cone NAT,
// so their tunnel can only be relayed. The process whose TRS relays it is
// killed with SIGKILL; the tunnel carries traffic again, relayed by
// another process's TRS, within relayRecoverWithin. The nodes run with the
// production keepalive (15 s) and peer-dead-after (35 s), so neither is
// what recovers the tunnel.
func TestRelayThroughDeadTRS(t *testing.T) {
	w := &world{t: t, bed: testbed.New(t), dir: t.TempDir()}
	w.cloudHost = w.bed.AddHost("cloud", testbed.HostOpts{})
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, n := range w.nodes {
			body, err := httpGet(n.host, nodeDebugAddr, nodepkg.PathStatus)
			t.Logf("status of %s (%v):\n%s", n.fqdn, err, body)
		}
	})
	clouds := w.startClouds(3)
	var all []string
	for _, c := range clouds {
		all = append(all, c.as.String())
	}
	sym := w.bed.AddSite("sym", testbed.SiteOpts{NAT: testbed.NATSymmetric, IPv4: true})
	cone := w.bed.AddSite("cone", testbed.SiteOpts{NAT: testbed.NATCone, IPv4: true})
	var nodes []*node
	for _, h := range []*testbed.Host{sym.AddHost("alice"), cone.AddHost("bob")} {
		n := w.addNode(h) // online at process 0
		n.kill()
		n.extra = []string{"--cloud", strings.Join(all, ","), "--keepalive", "15s", "--peer-dead-after", "35s"}
		n.start()
		nodes = append(nodes, n)
	}
	alice, bob := nodes[0], nodes[1]
	talk(t, alice, bob, 1<<20)
	p := mustPeer(t, alice, bob)
	if p.Path != messages.PathRelay {
		t.Fatalf("alice -> bob: path %v via %v, want a relay", p.Path, p.Endpoint)
	}
	victim := -1
	for i := range clouds {
		if p.Endpoint.Port() == uint16(7403+10*i) {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatalf("alice's relay %v is none of the processes' TRS", p.Endpoint)
	}
	for _, n := range nodes {
		st := n.mustStatus().Session
		t.Logf("%s logged in at %v, NMS %v", n.fqdn, st.AS, st.NMS)
	}
	t.Logf("the tunnel is relayed by process %d's TRS (%v): killing it", victim, p.Endpoint)
	if err := clouds[victim].proc.Signal(9); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-clouds[victim].proc.Done()

	for {
		out, err := alice.host.Exec("ping", "-4", "-n", "-c", "1", "-W", "0.25", bob.fqdn)
		if err == nil {
			break
		}
		if time.Since(killed) > relayRecoverWithin {
			pa, _ := alice.peer(bob.fqdn)
			t.Fatalf("alice's tunnel to bob carries nothing %v after the kill: %v\n%s\npeer %+v",
				time.Since(killed).Round(time.Millisecond), err, out, pa)
		}
	}
	recovered := time.Since(killed)
	t.Logf("alice reached bob again %v after the kill", recovered.Round(time.Millisecond))
	for _, ab := range [][2]*node{{alice, bob}, {bob, alice}} {
		p := mustPeer(t, ab[0], ab[1])
		if p.Path != messages.PathRelay || p.Endpoint.Port() == uint16(7403+10*victim) {
			t.Errorf("%s -> %s after the kill: path %v via %v, want a relay at another process", ab[0].fqdn, ab[1].fqdn, p.Path, p.Endpoint)
		}
	}
	talk(t, alice, bob, 1<<20)
	talk(t, bob, alice, 1<<20)
}
