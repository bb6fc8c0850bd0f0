package cloudsim

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/rootca"
	"github.com/cyphonic/cyphonic-go/cloud/server"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
)

func startCloud(t testing.TB, dir string) *server.Server {
	t.Helper()
	s, err := server.Start(context.Background(), server.Config{
		DataDir: dir, Ephemeral: true, Listen: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newNode(t testing.TB, s *server.Server, fqdn string) *Node {
	t.Helper()
	n, err := NewNode(s.CA, fqdn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

func TestLoginRegisterTunnel(t *testing.T) {
	s := startCloud(t, t.TempDir())
	defer s.Close(context.Background())
	asAddr := s.AS.Addrs()[0]

	alice, bob := newNode(t, s, "alice.example.cyphonic"), newNode(t, s, "bob.example.cyphonic")
	for _, n := range []*Node{alice, bob} {
		rep, err := n.Login(asAddr, false)
		if err != nil {
			t.Fatalf("login %s: %v", n.FQDN, err)
		}
		if rep.FQDN != n.FQDN || !rep.VIP4.IsValid() || !rep.VIP6.IsValid() || len(rep.NMS) == 0 {
			t.Fatalf("login reply %+v", rep)
		}
		reg, err := n.Register(false)
		if err != nil {
			t.Fatalf("register %s: %v", n.FQDN, err)
		}
		if reg.Observed != n.Addr() || reg.NAT != messages.NATNone || reg.VIP4 != rep.VIP4 {
			t.Fatalf("register reply %+v, node at %v", reg, n.Addr())
		}
	}
	p, err := alice.Tunnel(bob.FQDN, false)
	if err != nil {
		t.Fatal(err)
	}
	if p.PeerFQDN != bob.FQDN || p.Kind != messages.PathDirect || len(p.Endpoints) == 0 || p.Endpoints[0] != bob.Addr() {
		t.Fatalf("path %+v", p)
	}
	ds := bob.Directions()
	if len(ds) != 1 || ds[0].PeerFQDN != alice.FQDN || ds[0].TunnelID != p.TunnelID {
		t.Fatalf("bob's directions %+v", ds)
	}
	if _, err := alice.Tunnel("nobody.example.cyphonic", false); !isCode(err, messages.CodeUnknownFQDN) {
		t.Fatalf("tunnel to unknown FQDN: %v", err)
	}
	env, err := alice.Request(alice.Reply.NMS[0], messages.Keepalive{}, false)
	if err != nil || env.Type != messages.MsgKeepaliveAck {
		t.Fatalf("keepalive: %v %v", env.Type, err)
	}
	if env, err := alice.Request(alice.Reply.NMS[0], messages.Logout{}, false); err != nil || env.Type != messages.MsgLogoutAck {
		t.Fatalf("logout: %v %v", env.Type, err)
	}
	if _, err := bob.Tunnel(alice.FQDN, false); !isCode(err, messages.CodePeerUnreachable) {
		t.Fatalf("tunnel to logged-out peer: %v", err)
	}
}

func isCode(err error, c messages.ErrorCode) bool {
	var e *messages.Error
	return errors.As(err, &e) && e.Code == c
}

// TestLoginRefusals drives each certificate failure through the real login path.
func TestLoginRefusals(t *testing.T) {
	dir := t.TempDir()
	s := startCloud(t, dir)
	defer s.Close(context.Background())
	asAddr := s.AS.Addrs()[0]
	now := time.Now()

	other, err := rootca.Init(t.TempDir(), "other CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expired, _ := s.CA.IssueAt(pki.RoleNode, "old.example.cyphonic", now.Add(-2*time.Hour), now.Add(-time.Hour))
	early, _ := s.CA.IssueAt(pki.RoleNode, "early.example.cyphonic", now.Add(time.Hour), now.Add(2*time.Hour))
	foreign, _ := other.Issue(pki.RoleNode, "foreign.example.cyphonic", time.Hour)
	revoked, _ := s.CA.Issue(pki.RoleNode, "revoked.example.cyphonic", time.Hour)
	if err := s.CA.Revoke(revoked.Cert.SerialNumber); err != nil {
		t.Fatal(err)
	}
	mismatch, _ := s.CA.Issue(pki.RoleNode, "mallory.example.cyphonic", time.Hour)

	tests := []struct {
		name  string
		id    *pki.Identity
		claim string // FQDN the node claims in the envelope
		want  messages.ErrorCode
	}{
		{"expired", expired, "", messages.CodeCertExpired},
		{"not yet valid", early, "", messages.CodeCertNotYetValid},
		{"other CA", foreign, "", messages.CodeCertUnknownCA},
		{"revoked", revoked, "", messages.CodeCertRevoked},
		{"FQDN mismatch", mismatch, "alice.example.cyphonic", messages.CodeCertFQDNMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := NewNodeWithIdentity(s.CA, tt.id)
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			if tt.claim != "" {
				n.FQDN = tt.claim
			}
			_, err = n.Login(asAddr, false)
			if !isCode(err, tt.want) {
				t.Fatalf("login = %v, want %s", err, tt.want)
			}
		})
	}
}

// TestVIPsStableAcrossRestart restarts the cloud on the same data directory.
func TestVIPsStableAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	var first messages.LoginReply
	var ca *rootca.CA // the first start's: a restart holds no CA key
	for i := range 2 {
		s := startCloud(t, dir)
		if i == 0 {
			ca = s.CA
		}
		n, err := NewNode(ca, "stable.example.cyphonic")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Close)
		rep, err := n.Login(s.AS.Addrs()[0], false)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = *rep
		} else if rep.VIP4 != first.VIP4 || rep.VIP6 != first.VIP6 {
			t.Fatalf("VIPs changed across restart: %v %v -> %v %v", first.VIP4, first.VIP6, rep.VIP4, rep.VIP6)
		}
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestManyNodes logs in, registers and connects many nodes concurrently,
// with every packet duplicated and garbage mixed in, and checks that each
// transaction happened exactly once.
func TestManyNodes(t *testing.T) {
	s := startCloud(t, t.TempDir())
	defer s.Close(context.Background())
	asAddr := s.AS.Addrs()[0]
	const N = 40
	nodes := make([]*Node, N)
	for i := range nodes {
		nodes[i] = newNode(t, s, fmt.Sprintf("n%d.example.cyphonic", i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*N)
	for _, n := range nodes {
		wg.Go(func() {
			n.Send(asAddr, []byte{byte(messages.TypeLogin), 1, 2, 3}) // garbage
			if _, err := n.Login(asAddr, true); err != nil {
				errs <- err
				return
			}
			n.Send(n.Reply.NMS[0], []byte{byte(messages.TypeSignaling), 0, 0, 0, 1, 9, 9})
			if _, err := n.Register(true); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	for i := range N / 2 {
		a, b := nodes[i], nodes[N-1-i]
		wg.Go(func() {
			if _, err := a.Tunnel(b.FQDN, true); err != nil {
				errs <- fmt.Errorf("%s -> %s: %w", a.FQDN, b.FQDN, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	c := &s.AS.Counters
	if got := c.Accepted.Load(); got != N {
		t.Errorf("AS accepted %d logins, want %d (duplicates %d)", got, N, c.Duplicates.Load())
	}
	if got := s.NMS.Counters.Registered.Load(); got != N {
		t.Errorf("NMS registered %d, want %d", got, N)
	}
	if got := s.NMS.Counters.Tunnels.Load(); got != N/2 {
		t.Errorf("NMS set up %d tunnels, want %d", got, N/2)
	}
	for i := N / 2; i < N; i++ {
		if d := nodes[i].Directions(); len(d) != 1 {
			t.Errorf("%s got %d directions, want 1", nodes[i].FQDN, len(d))
		}
	}
}
