package node

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/actors/debug"
	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/tun"
)

// A real node's debug tree names the node, shows a peer whose handshake
// gets no answer as "handshaking" (not "running") with its in-flight
// queues, and, once the handshake timeout has failed it, its restart with
// the backoff its supervisor applies.
func TestDebugTreeShowsPeerTunnel(t *testing.T) {
	dir := identities(t)
	dev, _ := tun.NewMemPair("mem0", 1280, 8)
	n, err := Start(context.Background(), Config{
		CertDir: filepath.Join(dir, "alice"), Cloud: "127.0.0.1:9", Listen4: "127.0.0.1:0",
		DNS: Off, DebugAddr: "127.0.0.1:0", Device: dev, Logger: quiet(),
		TuneDataplane: func(c *dataplane.Config) {
			c.HandshakeTimeout, c.HandshakeRetry, c.Tick = 400*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
			c.Backoff = supervise.Backoff{Initial: 200 * time.Millisecond, Max: 400 * time.Millisecond}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := n.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	// Nothing listens on the discard port: the handshake never completes.
	if err := n.Dataplane().Open(messages.PathInfo{
		PeerFQDN: "bob.example.cyphonic", PeerVIP4: netip.MustParseAddr("100.64.0.2"), Kind: messages.PathDirect,
		Endpoints: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}, Initiator: true,
	}); err != nil {
		t.Fatal(err)
	}

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
	if len(bob.Queues) != 2 || bob.Queues[0].Name != "out" || bob.Queues[0].Cap == 0 || bob.Queues[1].Name != "in" {
		t.Errorf("bob's queues = %+v, want out and in with their bounds", bob.Queues)
	}
	var sawSocketQueue bool
	tree.Walk(func(nd *debug.Node) { sawSocketQueue = sawSocketQueue || nd.Kind == kindUDP && len(nd.Queues) == 1 })
	if !sawSocketQueue {
		t.Errorf("the socket actor shows no backlog: %+v", tree)
	}

	_, bob = wait("bob restarted after its handshake timeout", func(_ debug.Tree, b debug.Node) bool {
		return b.Restarts >= 1 || b.Supervision != nil
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
		cmd := exec.CommandContext(ctx, "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
			"--user-data-dir="+t.TempDir(), "--window-size=1160,330", "--virtual-time-budget=1500", "--screenshot="+abs,
			"http://"+n.DebugAddr().String()+debug.PathActorsHTML)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("chromium: %v\n%s", err, b)
		}
	}
}
