package nodecmd

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/node"
	"github.com/cyphonic/cyphonic-go/actors/session"
	"github.com/cyphonic/cyphonic-go/cloud/server"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
	"github.com/cyphonic/cyphonic-go/tun"
)

// memNode starts a node of srv's CA in-process, on an in-memory TUN device
// (no root), with its debug endpoint on a free loopback port.
func memNode(t *testing.T, srv *server.Server, fqdn string) *node.Node {
	t.Helper()
	id, err := srv.CA.Issue(pki.RoleNode, fqdn, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), fqdn)
	if err := pki.WriteIdentity(dir, id); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteRoot(dir, srv.CA.Cert); err != nil {
		t.Fatal(err)
	}
	dev, _ := tun.NewMemPair("mem-"+fqdn[:3], 1280, 64)
	n, err := node.Start(context.Background(), node.Config{
		CertDir: dir, Cloud: srv.AS.Addrs()[0].String(), Listen4: "127.0.0.1:0", DNS: "127.0.0.1:0",
		Upstream: "127.0.0.1:1", DebugAddr: "127.0.0.1:0", Device: dev, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Keepalive: 200 * time.Millisecond, Retry: signaling.Retry{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond, Attempts: 4},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := n.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for n.Session().Status().State != session.StateOnline {
		if time.Now().After(deadline) {
			t.Fatalf("%s never came online: %+v", fqdn, n.Session().Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return n
}

// TestPingCLI runs `cyphonic ping` against a running node (in-process, on
// a memory TUN) with a peer: replies with the RTT and the direct path,
// then each error case with its exit code and cause.
func TestPingCLI(t *testing.T) {
	srv, err := server.Start(context.Background(), server.Config{DataDir: t.TempDir(), Ephemeral: true,
		Listen: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	alice := memNode(t, srv, "alice.example.cyphonic")
	memNode(t, srv, "bob.example.cyphonic")
	dbg := alice.DebugAddr().String()

	code, stdout, stderr := runCmd(t, "ping", "-c", "3", "-i", "10ms", "--debug-addr", dbg, "bob")
	if code != 0 || strings.Count(stdout, "pong from bob.example.cyphonic via 127.0.0.1:") != 3 ||
		!strings.Contains(stdout, "(direct) in ") || !strings.Contains(stdout, "3 sent, 3 received, 0 lost; rtt min/avg/max") {
		t.Errorf("ping bob: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, c := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"ping", "--debug-addr", dbg, "carol"}, 1, `unknown peer "carol": the cloud knows no node carol.example.cyphonic`},
		{[]string{"ping", "--debug-addr", "127.0.0.1:1", "bob"}, 1, "is the node running with --debug-addr 127.0.0.1:1?"},
		{[]string{"ping", "--debug-addr", dbg}, 2, "ping whom?"},
		{[]string{"ping", "-c", "0", "bob"}, 2, "-c 0 outside 1..1000"},
		{[]string{"ping", "-i", "1ms", "bob"}, 2, "below 10ms"},
		{[]string{"ping", "--timeout", "1m", "bob"}, 2, "outside (0, 30s]"},
		{[]string{"ping", "bob", "extra"}, 2, `unexpected argument "extra"`},
	} {
		code, _, stderr := runCmd(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.stderr) {
			t.Errorf("%v: exit %d (want %d), stderr %q (want %q)", c.args, code, c.code, stderr, c.stderr)
		}
	}
}
