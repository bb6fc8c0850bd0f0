package node

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/actors/debug"
	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/test/systest"
	"github.com/cyphonic/cyphonic-go/tun"
)

// startWithPeer starts a node (no cloud) whose data plane gets a path to
// bob at the discard port, where no handshake is ever answered.
func startWithPeer(t *testing.T, tune func(*dataplane.Config)) *Node {
	t.Helper()
	dir := identities(t)
	dev, _ := tun.NewMemPair("mem0", 1280, 8)
	n, err := Start(context.Background(), Config{
		CertDir: filepath.Join(dir, "alice"), Cloud: "127.0.0.1:9", Listen4: "127.0.0.1:0",
		DNS: Off, DebugAddr: "127.0.0.1:0", Device: dev, Logger: quiet(), TuneDataplane: tune,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	if err := n.Dataplane().Open(messages.PathInfo{
		PeerFQDN: "bob.example.cyphonic", PeerVIP4: netip.MustParseAddr("100.64.0.2"), Kind: messages.PathDirect,
		Endpoints: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}, Initiator: true,
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// The node's page, as headless Chromium renders it, names the node and
// shows a peer whose handshake goes unanswered as handshaking, not running.
func TestDebugPageInChromiumShowsHandshakingPeer(t *testing.T) {
	systest.Require(t, systest.Chromium())
	n := startWithPeer(t, func(c *dataplane.Config) { c.HandshakeTimeout = time.Hour })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The peer's actor starts shortly after Open.
	for {
		tree, err := debug.FetchTree(ctx, n.DebugAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		if bob, ok := tree.Find("node/peers/bob.example.cyphonic"); ok && bob.State == supervise.StateRunning && len(bob.Queues) == 2 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("bob's actor never ran: %+v", tree)
		case <-time.After(20 * time.Millisecond):
		}
	}
	dom, err := systest.Headless{
		URL: "http://" + n.DebugAddr().String() + debug.PathActorsHTML, Budget: 2500 * time.Millisecond, ProfileDir: t.TempDir(),
	}.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`<li data-id="node/peers/bob\.example\.cyphonic" data-state="handshaking"`).MatchString(dom) {
		t.Errorf("bob is not shown handshaking:\n%s", dom)
	}
	for _, want := range []string{"<title>node alice.example.cyphonic · actors</title>", "out 0/32", "path=direct", `id="live" class="ok"`} {
		if !strings.Contains(dom, want) {
			t.Errorf("%q not in the DOM:\n%s", want, dom)
		}
	}
}

// A real node's debug tree names the node, shows a peer whose handshake
// gets no answer as "handshaking" (not "running") with its in-flight
// queues, and, once the handshake timeout has failed it, its restart with
// the backoff its supervisor applies.
func TestDebugTreeShowsPeerTunnel(t *testing.T) {
	n := startWithPeer(t, func(c *dataplane.Config) {
		c.HandshakeTimeout, c.HandshakeRetry, c.Tick = 400*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
		c.Backoff = supervise.Backoff{Initial: 200 * time.Millisecond, Max: 400 * time.Millisecond}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const bobID = "node/peers/bob.example.cyphonic"
	// wait polls the served tree until ok accepts bob's node.
	wait := func(what string, ok func(debug.Tree, debug.Node) bool) (debug.Tree, debug.Node) {
		t.Helper()
		for {
			tree, err := debug.FetchTree(ctx, n.DebugAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			if bob, found := tree.Find(bobID); found && ok(tree, bob) {
				return tree, bob
			}
			select {
			case <-ctx.Done():
				t.Fatalf("never saw %s; last tree: %+v", what, tree)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}

	// The peer's handle (its status) comes before its actor has started
	// and built its queues.
	tree, bob := wait("bob handshaking", func(_ debug.Tree, b debug.Node) bool {
		return b.Status == dataplane.StateHandshaking && b.State == supervise.StateRunning && len(b.Queues) == 2
	})
	if tree.Daemon != "node alice.example.cyphonic" || tree.Version == "" {
		t.Errorf("daemon %q version %q, want the node's FQDN and a version", tree.Daemon, tree.Version)
	}
	if bob.State != supervise.StateRunning || bob.Info["path"] != "direct" {
		t.Errorf("bob = %+v, want a running actor on a direct path", bob)
	}
	// The peers actor's backoff policy is on bob from his spawn, before
	// his handshake has had time to fail.
	if sv := bob.Supervision; sv == nil || sv.Strategy != supervise.StrategyBackoff || sv.Initial != 200*time.Millisecond || sv.Max != 400*time.Millisecond {
		t.Errorf("bob's supervision while handshaking = %+v, want the peers actor's backoff policy", sv)
	}
	if len(bob.Queues) != 2 || bob.Queues[0].Name != "out" || bob.Queues[0].Cap == 0 || bob.Queues[1].Name != "in" {
		t.Errorf("bob's queues = %+v, want out and in with their bounds", bob.Queues)
	}
	var sawSocketQueue bool
	tree.Walk(func(nd *debug.Node) { sawSocketQueue = sawSocketQueue || nd.Kind == kindUDP && len(nd.Queues) == 1 })
	if !sawSocketQueue {
		t.Errorf("the socket actor shows no backlog: %+v", tree)
	}

	_, bob = wait("bob restarted after its handshake timeout", func(_ debug.Tree, b debug.Node) bool {
		return b.Restarts >= 1 || b.Supervision != nil && b.Supervision.Failures >= 1
	})
	if bob.Supervision == nil || bob.Supervision.Strategy != supervise.StrategyBackoff || bob.Supervision.Failures < 1 || bob.LastFailure == "" {
		t.Errorf("bob after a failure = %+v (supervision %+v), want the backoff strategy's record", bob, bob.Supervision)
	}

	// CYPHONIC_PAGE_SCREENSHOT=docs/actors-page.png takes the README's
	// picture of this node's page (needs Debian's chromium).
	if out := os.Getenv("CYPHONIC_PAGE_SCREENSHOT"); out != "" {
		abs, err := filepath.Abs(out)
		if err != nil {
			t.Fatal(err)
		}
		shot := systest.Headless{
			URL: "http://" + n.DebugAddr().String() + debug.PathActorsHTML, Budget: 1500 * time.Millisecond,
			ProfileDir: t.TempDir(), Screenshot: abs, Width: 1160, Height: 330,
		}
		if _, err := shot.Run(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
