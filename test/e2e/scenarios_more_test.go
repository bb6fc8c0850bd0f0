package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/test/testbed"
)

// g. Mobility: a node moves to another network (behind another NAPT) in
// the middle of a TCP transfer. The transfer completes on the same
// connection, and the VIPs never change.
func TestMobility(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	home := w.bed.AddSite("home", testbed.SiteOpts{NAT: testbed.NATCone, IPv4: true})
	cafe := w.bed.AddSite("cafe", testbed.SiteOpts{NAT: testbed.NATCone, IPv4: true})
	alice := w.addNode(home.AddHost("alice"))
	bob := w.addNode(w.bed.AddHost("bob", testbed.HostOpts{IPv4: true}))
	talk(t, alice, bob, size)
	vips := alice.mustStatus().Session

	base := bob.waitPeerUp(alice.fqdn, "tunnel up").RxBytes
	// Paced over about 8 s so the move lands in the middle of it.
	x := startTransfer(t, alice, bob, size, size/8)
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
	w.bed.Move(alice.host, cafe)
	t.Logf("moved alice from %s to %s (%v)", home.Name(), cafe.Name(), alice.host.IPv4())
	sent, _ := x.wait() // fails if the connection broke
	if !strings.HasPrefix(sent.Local, vips.VIP4.String()+":") && !strings.Contains(sent.Local, vips.VIP6.String()) {
		t.Errorf("the transfer ran from %s, not from alice's VIPs %v %v", sent.Local, vips.VIP4, vips.VIP6)
	}

	w.eventually("alice registered from the cafe", tunnelTimeout, func() error {
		st, err := alice.status()
		if err != nil {
			return err
		}
		if st.Session.Observed.Addr() != cafe.PublicIPv4() {
			return fmt.Errorf("NMS sees alice at %v, want %v", st.Session.Observed, cafe.PublicIPv4())
		}
		return nil
	})
	after := alice.mustStatus().Session
	if after.VIP4 != vips.VIP4 || after.VIP6 != vips.VIP6 {
		t.Errorf("alice's VIPs changed with the move: %v %v -> %v %v", vips.VIP4, vips.VIP6, after.VIP4, after.VIP6)
	}
	p, err := bob.peer(alice.fqdn)
	if err != nil {
		t.Fatal(err)
	}
	if p.VIP4 != vips.VIP4 || p.VIP6 != vips.VIP6 {
		t.Errorf("bob knows alice as %v %v, want %v %v", p.VIP4, p.VIP6, vips.VIP4, vips.VIP6)
	}
	assertPath(t, bob, alice, messages.PathDirect, netip.AddrPortFrom(cafe.PublicIPv4(), 0))
	talk(t, alice, bob, size)
}

// h. Tunnel supervision: a node's process is killed and started again;
// its peer's tunnel comes back with nobody acting (no lookup, no traffic
// from the test), and the peer actor's restart shows in /debug/actors.
func TestSupervision(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	alice := w.addNode(w.bed.AddHost("alice", testbed.HostOpts{IPv4: true}))
	bob := w.addNode(w.bed.AddHost("bob", testbed.HostOpts{IPv4: true}))
	talk(t, alice, bob, size)
	before := peerActor(t, alice, bob.fqdn)

	// Bob stays down past alice's peer-dead-after: a peer restarted
	// sooner is recovered without a failure (TestPeerRestartRecovery).
	bob.kill()
	time.Sleep(deadAfter + 2*time.Second)
	bob.start()
	w.eventually("alice's peer actor for bob restarted and up again", tunnelTimeout, func() error {
		tree, err := alice.actors()
		if err != nil {
			return err
		}
		a, ok := findPeerActor(tree, bob.fqdn)
		if !ok {
			return fmt.Errorf("no peer actor for %s in alice's tree", bob.fqdn)
		}
		if a.Restarts <= before.Restarts {
			return fmt.Errorf("peer actor %s: %d restarts", a.ID, a.Restarts)
		}
		p, err := alice.peer(bob.fqdn)
		if err != nil {
			return err
		}
		if p.State != "up" {
			return fmt.Errorf("tunnel is %s", p.State)
		}
		return nil
	})
	after := peerActor(t, alice, bob.fqdn)
	t.Logf("alice's %s: restarts %d -> %d, last failure %q", after.ID, before.Restarts, after.Restarts, after.LastFailure)
	talk(t, alice, bob, size)
}

// i. Cloud restart: the nodes carry on with the restarted cloud by
// themselves, and a tunnel already up carries a transfer across the outage
// without being re-established. The cloud keeps sessions and locators in
// its bbolt store, so a node whose keepalives are answered again needs no
// new login; the test asks that each node is served by the new process
// (a keepalive acknowledged after it started) and that the new process
// knows them well enough to set up a new tunnel to each.
func TestCloudRestart(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	alice := w.addNode(w.bed.AddHost("alice", testbed.HostOpts{IPv4: true}))
	bob := w.addNode(w.bed.AddHost("bob", testbed.HostOpts{IPv4: true}))
	talk(t, alice, bob, size)
	before := alice.waitPeerUp(bob.fqdn, "tunnel up")

	// Paced over about 12 s: the cloud goes down and comes back while
	// it runs.
	x := startTransfer(t, alice, bob, size, size/12)
	w.stopCloud()
	w.startCloud()
	restarted := time.Now()
	for _, n := range []*node{alice, bob} {
		w.eventually(n.fqdn+" served by the restarted cloud", tunnelTimeout, func() error {
			st, err := n.status()
			if err != nil {
				return err
			}
			if st.Session.State != "online" || !st.Session.LastAck.After(restarted) {
				return fmt.Errorf("session %s, last keepalive ack %v (cloud restarted %v)", st.Session.State, st.Session.LastAck, restarted)
			}
			return nil
		})
	}
	x.wait()
	after, err := alice.peer(bob.fqdn)
	if err != nil {
		t.Fatal(err)
	}
	if after.Restarts != before.Restarts || after.State != "up" {
		t.Errorf("the tunnel was disturbed by the cloud restart: restarts %d -> %d, state %s", before.Restarts, after.Restarts, after.State)
	}
	// The restarted cloud knows both nodes: a newcomer reaches each.
	carol := w.addNode(w.bed.AddHost("carol", testbed.HostOpts{IPv4: true}))
	talk(t, carol, alice, size)
	talk(t, carol, bob, size)
}

// j. A relayed tunnel upgrades to a direct one when the symmetric NAPT in
// the way is replaced by a cone one.
func TestRelayUpgrade(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	office := w.bed.AddSite("office", testbed.SiteOpts{NAT: testbed.NATSymmetric, IPv4: true})
	home := w.bed.AddSite("home", testbed.SiteOpts{NAT: testbed.NATCone, IPv4: true})
	alice := w.addNode(office.AddHost("alice"))
	bob := w.addNode(home.AddHost("bob"))
	talk(t, alice, bob, size)
	assertPath(t, alice, bob, messages.PathRelay, netip.AddrPortFrom(w.cloudHost.IPv4(), 0))

	replaceWithCone(t, w.bed, office)
	w.eventually("the tunnel leaves the relay", tunnelTimeout, func() error {
		for _, pair := range [][2]*node{{alice, bob}, {bob, alice}} {
			p, err := pair[0].peer(pair[1].fqdn)
			if err != nil {
				return err
			}
			if p.Path == messages.PathRelay || p.State != "up" {
				return fmt.Errorf("%s -> %s: path %v, %s", pair[0].fqdn, pair[1].fqdn, p.Path, p.State)
			}
		}
		return nil
	})
	relayed := w.relayedBytes()
	talk(t, alice, bob, size)
	if n := w.relayedBytes(); n != relayed {
		t.Errorf("the TRS relayed %d more bytes after the upgrade", n-relayed)
	}
	// Off the relay means straight to the peer's public mapping (the one
	// the cloud now observes), not merely "not the TRS".
	for _, pair := range [][2]*node{{alice, bob}, {bob, alice}} {
		p, err := pair[0].peer(pair[1].fqdn)
		if err != nil {
			t.Fatal(err)
		}
		if p.Path != messages.PathDirect && p.Path != messages.PathHolePunch {
			t.Errorf("%s -> %s: path %v after the upgrade", pair[0].fqdn, pair[1].fqdn, p.Path)
		}
		assertPath(t, pair[0], pair[1], p.Path, pair[1].mustStatus().Session.Observed)
	}
}

// replaceWithCone swaps site's symmetric NAPT for an endpoint-independent
// one, as if the router were replaced: the masquerade rule loses
// fully-random and the connection-tracking state (every mapping) goes.
// The table and chain mirror test/testbed's natRuleset, which has no
// exported way to change a site's NAT.
func replaceWithCone(t *testing.T, bed *testbed.Bed, site *testbed.Site) {
	t.Helper()
	script := `add table ip cytb_nat
delete table ip cytb_nat
table ip cytb_nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan0" masquerade
	}
	chain input {
		type filter hook input priority filter; policy accept;
		iifname "wan0" meta l4proto udp ct state new drop
	}
}
`
	if out, err := bed.Exec(site.NS(), "sh", "-c", "printf '%s' \"$0\" | nft -f -", script); err != nil {
		t.Fatalf("replace %s's NAT: %v\n%s", site.Name(), err, out)
	}
	if err := bed.Do(site.NS(), func() error { return netlink.ConntrackTableFlush(netlink.ConntrackTable) }); err != nil {
		t.Fatalf("flush %s's connection tracking: %v", site.Name(), err)
	}
}

// findPeerActor finds the peer actor for fqdn in a node's actor tree.
func findPeerActor(tree supervise.Tree, fqdn string) (supervise.Node, bool) {
	var walk func([]supervise.Node) (supervise.Node, bool)
	walk = func(ns []supervise.Node) (supervise.Node, bool) {
		for _, n := range ns {
			if n.Kind == "peer" && strings.HasSuffix(n.ID, "/"+fqdn) {
				return n, true
			}
			if found, ok := walk(n.Children); ok {
				return found, true
			}
		}
		return supervise.Node{}, false
	}
	return walk(tree.Actors)
}

// peerActor is findPeerActor or a fatal error.
func peerActor(t *testing.T, n *node, fqdn string) supervise.Node {
	t.Helper()
	tree, err := n.actors()
	if err != nil {
		t.Fatal(err)
	}
	a, ok := findPeerActor(tree, fqdn)
	if !ok {
		t.Fatalf("no peer actor for %s in %s's actor tree", fqdn, n.fqdn)
	}
	return a
}

// The node's clean shutdown (issue 4): SIGTERM makes it log out of the cloud
// (NMS drops its session at once, which a crash would not do) and remove its
// TUN device, and it exits 0.
func TestCleanShutdown(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	alice := w.addNode(w.bed.AddHost("alice", testbed.HostOpts{IPv4: true}))
	bob := w.addNode(w.bed.AddHost("bob", testbed.HostOpts{IPv4: true}))
	talk(t, bob, alice, 256<<10)

	sessions := func() float64 {
		body, err := httpGet(w.cloudHost, cloudDebugAddr, "/metrics")
		if err != nil {
			t.Fatalf("cloud metrics: %v", err)
		}
		v, ok := metricValue(body, "cyphonic_nms_sessions")
		if !ok {
			t.Fatalf("cloud metrics have no cyphonic_nms_sessions:\n%s", body)
		}
		return v
	}
	if got := sessions(); got != 2 {
		t.Fatalf("NMS has %v sessions with both nodes online, want 2", got)
	}
	if out, err := alice.host.Exec("ip", "link", "show", "cyph0"); err != nil {
		t.Fatalf("alice has no TUN device while running: %v\n%s", err, out)
	}

	if err := alice.proc.Stop(); err != nil {
		t.Fatalf("alice did not exit cleanly on SIGTERM: %v\n%s", err, tail(alice.proc.Output(), 30))
	}
	if out, err := alice.host.Exec("ip", "link", "show", "cyph0"); err == nil {
		t.Fatalf("alice's TUN device outlived the daemon:\n%s", out)
	}
	w.eventually("NMS drops alice's session", 10*time.Second, func() error {
		if got := sessions(); got != 1 {
			return fmt.Errorf("NMS has %v sessions, want 1 (bob's)", got)
		}
		return nil
	})
}
