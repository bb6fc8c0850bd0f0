package cloudsim

import (
	"context"
	"net/netip"
	"testing"

	"github.com/cyphonic/cyphonic-go/cloud/server"
	"github.com/cyphonic/cyphonic-go/cloud/store/storetest"
	"github.com/cyphonic/cyphonic-go/messages"
)

// TestTwoCloudsShareRedis runs two cloud processes sharing one Redis: node X
// is served by process A (this one), node Y by process B (a child), and Y
// sets up a tunnel to X. NMS-B finds X homed at NMS-A in the store and asks
// NMS-A, over protoactor remote, to deliver the Direction.
func TestTwoCloudsShareRedis(t *testing.T) {
	a, bAS := twoClouds(t)

	x, y := newNode(t, a, "x.example.cyphonic"), newNode(t, a, "y.example.cyphonic")
	if _, err := x.Login(a.AS.Addrs()[0], false); err != nil {
		t.Fatal(err)
	}
	if _, err := y.Login(bAS, false); err != nil {
		t.Fatal(err)
	}
	if x.Reply.NMS[0] == y.Reply.NMS[0] {
		t.Fatalf("both nodes on one NMS %v", x.Reply.NMS[0])
	}
	for _, n := range []*Node{x, y} {
		if _, err := n.Register(false); err != nil {
			t.Fatal(err)
		}
	}
	p, err := y.Tunnel(x.FQDN, false)
	if err != nil {
		t.Fatal(err)
	}
	if p.PeerFQDN != x.FQDN || p.Kind != messages.PathDirect {
		t.Fatalf("path %+v", p)
	}
	if d := x.Directions(); len(d) != 1 || d[0].PeerFQDN != y.FQDN || d[0].TunnelID != p.TunnelID {
		t.Fatalf("x's directions %+v", d)
	}
}

// twoClouds starts cloud A in this process and cloud B as a child process,
// sharing one CA and one Redis store (under a key prefix of the test's own,
// deleted at the end). It returns A and B's AS address.
func twoClouds(t *testing.T) (*server.Server, netip.AddrPort) {
	t.Helper()
	prefix := "cloudsim-" + t.Name() + ":"
	redisURL := storetest.WithPrefix(t, storetest.RedisURL(t), prefix)
	t.Cleanup(func() { storetest.DeletePrefix(t, redisURL, prefix) })
	dir := t.TempDir()
	a, err := server.Start(context.Background(), server.Config{
		DataDir: dir, StoreURL: redisURL, Ephemeral: true, Listen: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(context.Background()) })
	return a, startChildCloud(t, dir, redisURL)
}

// startChildCloud starts a second cloud process sharing dir's CA and the
// store at storeURL (nothing else), stopped when t ends, and returns its
// AS address.
func startChildCloud(t *testing.T, dir, storeURL string) netip.AddrPort {
	t.Helper()
	_, as := startCloudProc(t, dir, storeURL)
	return as
}
