package nodecloud

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/actors/node"
	"github.com/cyphonic/cyphonic-go/cloud/rootca"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

// revocationDeadline is the issue's promise: a revoked node's tunnels and
// session end within one keepalive period (10 s).
const revocationDeadline = 10 * time.Second

// TestRevocationReachesNodes: alice and bob have a running tunnel; the CA
// revokes bob (`cyphonic ca revoke` in the cloud's CA directory). Within
// 10 s, with the nodes' own keepalives at their 15 s default so that only
// the cloud's push can tell them: NMS has ended bob's session, alice has
// closed her tunnel to bob, and nothing bob sends reaches alice. Alice's
// new tunnel requests to bob, and bob's logins, are refused.
//
// Twice: revoked through the cloud's own CA object (a bootstrapped cloud:
// rootca's OnCRL refreshes its deny list at once), and by another CA
// object on the same directory, as `cyphonic ca revoke` run beside the
// cloud does: only the cloud's poll of the file sees that one.
func TestRevocationReachesNodes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		outside bool
	}{{"own-ca", false}, {"ca-revoke-elsewhere", true}} {
		t.Run(tc.name, func(t *testing.T) { revocationReachesNodes(t, tc.outside) })
	}
}

func revocationReachesNodes(t *testing.T, outside bool) {
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

	ca := c.srv.CA
	if outside {
		var err error
		if ca, err = rootca.Load(c.srv.CreatedCA); err != nil {
			t.Fatal(err)
		}
	}
	if err := ca.Revoke(bob.serial); err != nil {
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
		return !ok || p.State != dataplane.StateUp
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
			// Without a session his packets wait in the hold queue
			// until it is full (a tunnel on the first packet).
			n += p.Drops["no-session"] + p.Drops["unknown-index"] + p.Drops["hold-full"] + p.Drops["hold-expired"]
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

// TestCompromisedNMSCannotRollBackDenyList: an attacker holding alice's
// signaling keys (a compromised NMS: they are in the shared store) pushes
// her deny lists: an older genuine one that does not name bob, and a newer
// one signed by an impostor CA of the same name that names nobody. Alice
// refuses both and says she still holds the newest genuine list.
func TestCompromisedNMSCannotRollBackDenyList(t *testing.T) {
	c := startCloud(t, t.TempDir(), nil)
	defer c.close(t)
	alice := startNode(t, c, "alice.example.cyphonic")
	eventually(t, "alice online", online(alice))

	carol, err := c.srv.CA.Issue(pki.RoleNode, "carol.example.cyphonic", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := c.srv.CA.Issue(pki.RoleNode, "bob.example.cyphonic", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	crl := func(ca *rootca.CA) *pki.CRL {
		t.Helper()
		l, err := pki.LoadCRL(ca.Dir(), ca.Cert)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	if err := c.srv.CA.Revoke(carol.Cert.SerialNumber); err != nil {
		t.Fatal(err)
	}
	old := crl(c.srv.CA) // carol only
	if err := c.srv.CA.Revoke(bob.Cert.SerialNumber); err != nil {
		t.Fatal(err)
	}
	cur := crl(c.srv.CA) // carol and bob: the newest
	impostor, err := rootca.Init(t.TempDir(), c.srv.CA.Cert.Subject.CommonName, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(1); i <= 5; i++ {
		if err := impostor.Revoke(big.NewInt(i)); err != nil {
			t.Fatal(err)
		}
	}
	forged := crl(impostor) // signed by another key
	if forged.Number <= cur.Number {
		t.Fatalf("the forged list (%d) must claim to be newer than the genuine one (%d)", forged.Number, cur.Number)
	}

	rec, err := c.srv.Store().GetNode(context.Background(), alice.FQDN())
	if err != nil {
		t.Fatal(err)
	}
	nms, err := signaling.NewCloudSession(rec.Session.ID, signaling.Keys{NodeToCloud: rec.Session.NodeToCloud, CloudToNode: rec.Session.CloudToNode})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	to := net.UDPAddrFromAddrPort(alice.Dataplane().LocalAddrs()[0])
	push := func(l *pki.CRL) uint64 {
		t.Helper()
		id := messages.NewMsgID()
		pkt, err := nms.SealMessage(nil, messages.NewEncoder(), id, "nms", time.Now(), messages.DenyListChunks(l.Number, l.DER)[0])
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		for try := 0; try < 50; try++ {
			if _, err := conn.WriteToUDP(pkt, to); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, _, err := conn.ReadFromUDP(buf)
			if err != nil {
				continue
			}
			env, err := nms.OpenEnvelope(nil, buf[:n], time.Now())
			if err != nil || env.ID != id {
				continue
			}
			ack, err := messages.DecodeBody[messages.DenyListAck](env)
			if err != nil {
				t.Fatal(err)
			}
			return ack.Number
		}
		t.Fatal("alice never acknowledged")
		return 0
	}
	if got := push(cur); got != cur.Number {
		t.Fatalf("alice holds list %d after the genuine list %d", got, cur.Number)
	}
	if got := push(old); got != cur.Number {
		t.Fatalf("older list %d: alice holds %d, want %d (she must never go back)", old.Number, got, cur.Number)
	}
	if got := push(forged); got != cur.Number {
		t.Fatalf("forged list %d: alice holds %d, want %d", forged.Number, got, cur.Number)
	}
}

// TestLargeDenyListReachesNodes: an overlay that has revoked 1,000
// certificates before (a deny list of ~35 KB: several chunks, and more
// than one sealed packet could ever hold) still revokes: alice and bob
// have a tunnel, the CA revokes bob, and alice closes her tunnel to him
// within the deadline, having put the whole list together.
func TestLargeDenyListReachesNodes(t *testing.T) {
	c := startCloud(t, t.TempDir(), nil)
	defer c.close(t)
	// Serials as the CA makes them: 128 random bits.
	old := make([]*big.Int, 1000)
	for i := range old {
		b := make([]byte, 16)
		rand.Read(b)
		old[i] = new(big.Int).SetBytes(append([]byte{1}, b...))
	}
	if err := c.srv.CA.Revoke(old...); err != nil {
		t.Fatal(err)
	}
	slow := func(cfg *node.Config) { cfg.Keepalive = 15 * time.Second }
	alice := startNodeWith(t, c, "alice.example.cyphonic", slow)
	bob := startNodeWith(t, c, "bob.example.cyphonic", slow)
	eventually(t, "alice online", online(alice))
	eventually(t, "bob online", online(bob))
	if r := resolveA(t, alice, bob.FQDN()); len(r.Answer) != 1 {
		t.Fatalf("resolve bob: %v", r)
	}
	roundTrip(t, alice, bob, 1)

	if err := c.srv.CA.Revoke(bob.serial); err != nil {
		t.Fatal(err)
	}
	der, err := os.ReadFile(filepath.Join(c.srv.CA.Dir(), pki.CRLFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(der) <= 2*messages.DenyListChunk {
		t.Fatalf("deny list of %d bytes: want more than two chunks", len(der))
	}
	deadline := time.Now().Add(revocationDeadline)
	for {
		p, ok := peerState(alice, bob.FQDN())
		if !ok || p.State != dataplane.StateUp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice still has her tunnel to bob %v after his revocation (a %d-byte deny list)", revocationDeadline, len(der))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := c.srv.NMS.Counters.Revoked.Load(); got != 1 {
		t.Fatalf("NMS ended %d revoked sessions, want bob's", got)
	}
}
