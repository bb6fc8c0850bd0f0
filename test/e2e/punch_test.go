package e2e

import (
	"slices"
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

// TestPunchLateAnswer: the two sides of a punch hear of the path far
// apart. Alice asks for bob, both behind plain masquerade; NMS directs bob
// (who primes his mapping and acknowledges) and answers alice, but alice's
// router drops what the cloud sends her for lateBy, so she hears her
// answer only from a retransmission, a second or more after bob heard of
// the path. A directed side that sent full inits after a fixed wait
// (300 ms) reached alice's router before her primer had opened her
// mapping: the router kept an UNREPLIED entry for bob's init, remapped
// alice's punch, and the pair fell back to the relay every run. Bob now
// holds his full inits until alice's init comes through his primed
// mapping, priming again on each retry, so every run must punch.
// CYPHONIC_PUNCH_RUNS sets the number of runs (default 4).
func TestPunchLateAnswer(t *testing.T) {
	t.Parallel()
	const lateBy = 1200 * time.Millisecond
	runs := envRuns(t, "CYPHONIC_PUNCH_RUNS", 4)
	w := newWorld(t)
	siteA := w.bed.AddSite("latea", testbed.SiteOpts{NAT: testbed.NATMasquerade, IPv4: true})
	siteB := w.bed.AddSite("lateb", testbed.SiteOpts{NAT: testbed.NATMasquerade, IPv4: true})
	alice := w.addNode(siteA.AddHost("alice"))
	bob := w.addNode(siteB.AddHost("bob"))
	nft := func(args ...string) {
		t.Helper()
		if out, err := w.bed.Exec(siteA.NS(), append([]string{"nft"}, args...)...); err != nil {
			t.Fatalf("nft %v on alice's router: %v\n%s", args, err, out)
		}
	}
	counts := map[messages.PathKind]int{}
	var times []time.Duration
	for i := range runs {
		if i > 0 {
			for _, n := range []*node{alice, bob} {
				n.kill()
				n.forgetPort()
			}
			for _, n := range []*node{alice, bob} {
				n.start()
			}
		}
		nft("add", "table", "ip", "cylate")
		nft("add", "chain", "ip", "cylate", "late", "{ type filter hook forward priority filter; policy accept; }")
		nft("add", "rule", "ip", "cylate", "late", "ip", "saddr", w.cloudHost.IPv4().String(),
			"ip", "daddr", alice.host.IPv4().String(), "drop")
		start := time.Now()
		lifted := time.AfterFunc(lateBy, func() {
			if out, err := w.bed.Exec(siteA.NS(), "nft", "delete", "table", "ip", "cylate"); err != nil {
				t.Errorf("lift the drop: %v\n%s", err, out)
			}
		})
		var d time.Duration
		for {
			out, err := alice.host.Exec("ping", "-4", "-n", "-c", "1", "-W", "1", bob.fqdn)
			if err == nil {
				d = time.Since(start)
				break
			}
			if err := exited(alice.proc); err != nil {
				t.Fatal(err)
			}
			if time.Since(start) > tunnelTimeout {
				t.Fatalf("run %d: no echo reply from bob within %v: %v\n%s", i+1, tunnelTimeout, err, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if lifted.Stop() {
			t.Fatalf("run %d: the tunnel came up in %v, before alice could hear her answer (%v): the test did not delay her", i+1, d, lateBy)
		}
		kind := waitPathIn(t, alice, bob, allPaths)
		counts[kind]++
		if kind != messages.PathHolePunch {
			t.Errorf("run %d: path %v, want %v", i+1, kind, messages.PathHolePunch)
			logConntrack(t, alice, bob)
		}
		times = append(times, d)
		t.Logf("late-answer run %d: path %v, first echo reply %v", i+1, kind, d.Round(time.Millisecond))
	}
	slices.Sort(times)
	t.Logf("late-answer: %d runs, %d hole-punched, %d relayed; first echo reply median %v max %v (the answer held back %v)",
		runs, counts[messages.PathHolePunch], counts[messages.PathRelay],
		times[len(times)/2].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond), lateBy)
	talk(t, alice, bob, matrixSize)
}
