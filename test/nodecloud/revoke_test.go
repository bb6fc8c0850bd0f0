package nodecloud

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/node"
	"github.com/cyphonic/cyphonic-go/actors/peer"
	"github.com/cyphonic/cyphonic-go/messages"
)

// revocationDeadline is the promise: a revoked node's tunnels and
// session end within one keepalive period (10 s).
const revocationDeadline = 10 * time.Second

// TestRevocationReachesNodes: alice and bob have a running tunnel; the CA
// revokes bob (`cyphonic ca revoke` in the cloud's CA directory). Within
// 10 s, with the nodes' own keepalives at their 15 s default so that only
// the cloud's push can tell them: NMS has ended bob's session, alice has
// closed her tunnel to bob, and nothing bob sends reaches alice. Alice's
// new tunnel requests to bob, and bob's logins, are refused.
func TestRevocationReachesNodes(t *testing.T) {
	c := startCloud(t, t.TempDir(), nil)
	defer c.close(t)
	slow := func(cfg *node.Config) { cfg.Keepalive = 15 * time.Second }
	alice := startNodeWith(t, c, "alice.example.cyphonic", slow)
	bob := startNodeWith(t, c, "bob.example.cyphonic", slow)
	eventually(t, "alice online", online(alice))
	eventually(t, "bob online", online(bob))
	if r := resolveA(t, alice, bob.FQDN()); len(r.Answer) != 1 {
		t.Fatalf("resolve bob: %v", r)
	}
	roundTrip(t, alice, bob, 1)
	roundTrip(t, bob, alice, 2)
	if n := c.srv.NMS.Sessions(); n != 2 {
		t.Fatalf("NMS holds %d sessions, want 2", n)
	}

	if err := c.srv.CA.Revoke(bob.serial); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(revocationDeadline)
	within := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s of the revocation", what, revocationDeadline)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	within("NMS ends bob's session", func() bool {
		return c.srv.NMS.Sessions() == 1 && c.srv.NMS.Counters.Revoked.Load() == 1
	})
	within("alice closes her tunnel to bob", func() bool {
		p, ok := peerState(alice, bob.FQDN())
		return !ok || p.State != peer.StateUp
	})

	// Bob's node still has its keys; whatever it sends towards alice is
	// dropped, at bob (his peer lost its session when alice stopped
	// answering, and cannot get another) or at alice (no session has the
	// index any more). Count the drops on both sides: none may arrive.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	arrived := make(chan uint32, 1)
	go func() {
		for {
			pkt, err := alice.app.Recv(ctx)
			if err != nil {
				return
			}
			if len(pkt) == 32 {
				select {
				case arrived <- binary.BigEndian.Uint32(pkt[28:]):
				default:
				}
			}
		}
	}()
	dropped := func() uint64 {
		n := alice.Dataplane().Drops()["unknown-index"] + alice.Dataplane().Drops()["handshake"]
		if p, ok := peerState(bob, alice.FQDN()); ok {
			n += p.Drops["no-session"] + p.Drops["unknown-index"]
		}
		return n
	}
	src, dst := bob.Session().Status().VIP4, alice.Session().Status().VIP4
	before := dropped()
	for seq := uint32(100); dropped() < before+20; seq++ {
		select {
		case got := <-arrived:
			t.Fatalf("packet %d from revoked bob reached alice", got)
		case <-ctx.Done():
			t.Fatalf("bob's packets neither arrived nor were dropped; alice drops %v; bob %+v", alice.Dataplane().Drops(), bob.Dataplane().Status())
		default:
		}
		if err := bob.app.Send(ctx, ipv4UDP(src, dst, seq)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// No new tunnel to bob, and bob cannot log in again.
	_, err := alice.Session().RequestTunnel(ctx, bob.FQDN())
	var e *messages.Error
	if !errors.As(err, &e) || e.Code != messages.CodeCertRevoked {
		t.Fatalf("alice's tunnel request to revoked bob: %v, want %s", err, messages.CodeCertRevoked)
	}
	// Bob's request finds his session ended; he logs in again, is refused,
	// and the request waits in vain.
	bctx, bcancel := context.WithTimeout(ctx, 3*time.Second)
	defer bcancel()
	if _, err := bob.Session().RequestTunnel(bctx, alice.FQDN()); err == nil {
		t.Fatal("revoked bob set up a tunnel")
	}
	eventually(t, "bob's login refused", func() bool {
		st := bob.Session().Status()
		return st.State != "online" && c.srv.AS.Counters.Refused.Load() > 0
	})
	if n := c.srv.NMS.Sessions(); n != 1 {
		t.Fatalf("NMS holds %d sessions after bob's retries, want 1 (alice)", n)
	}
}
