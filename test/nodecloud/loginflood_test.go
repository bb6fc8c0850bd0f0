package nodecloud

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/test/attack"
	"github.com/cyphonic/cyphonic-go/test/systest"
	"github.com/cyphonic/cyphonic-go/transport/handshake"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

// TestNodeLogsInDuringSpoofedFlood: a real node daemon starts while the AS
// is flooded with logins that each claim a source address of their own (a
// raw socket: no answer reaches the attacker), at half as much again as its
// login budget: enough to take all of it, and well within what the
// race-instrumented AS reads without loss on two shared cores. The loaded AS asks every login for a cookie; the node, which
// receives at its address, answers with the mac2 at once and is online
// within 2 s. Without the cookie the flood took the whole budget and the
// node stayed offline for as long as it ran.
func TestNodeLogsInDuringSpoofedFlood(t *testing.T) {
	systest.Require(t, systest.Root()) // a raw socket
	c := startCloud(t, t.TempDir(), nil)
	defer c.close(t)
	asAddr := c.srv.AS.Addrs()[0]

	// Mallory holds a certificate of her own: her logins are genuine
	// Noise msg1s, each one the AS has not seen costing it a DH.
	id, err := c.srv.CA.Issue(pki.RoleNode, "mallory.example.cyphonic", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg := handshake.Config{Static: handshake.StaticKey(id.NoiseStatic), CertDER: id.CertDER,
		Verify: func([]byte) (string, [32]byte, error) { return "", [32]byte{}, nil }}
	pkts := make([][]byte, 512)
	for i := range pkts {
		l, err := signaling.StartLogin(cfg, pki.RoleAS.ServiceFQDN(), id.FQDN, messages.LoginRequest{}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		pkts[i] = l.Packet()
	}
	spoof, err := attack.NewSpoofer()
	if err != nil {
		t.Fatal(err)
	}
	defer spoof.Close()
	const rate, dur = 3000, 5 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sent atomic.Uint64
	var wg sync.WaitGroup
	wg.Go(func() {
		sent.Store(spoof.FloodSpoofed(ctx, asAddr, pkts, attack.LoopbackSource, rate*5, dur, time.Second/rate))
	})
	defer wg.Wait()

	// The flood's first logins reach the DH until the AS sees the load
	// (its budget at half); a second later their challenges are done and
	// the flood is what remains.
	eventually(t, "the AS under load", c.srv.AS.UnderLoad)
	time.Sleep(time.Second)
	t0 := time.Now()
	alice := startNode(t, c, "alice.example.cyphonic")
	deadline := t0.Add(2 * time.Second)
	for !online(alice)() {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("alice not online 2 s into the spoofed flood (state %v, AS cookies %d, limited %d, challenged %d)",
				alice.Session().Status().State, c.srv.AS.Counters.Cookies.Load(), c.srv.AS.Counters.Limited.Load(), c.srv.AS.Counters.Challenged.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("alice online %v after start, during a spoofed flood; AS: cookies %d, challenged %d, limited %d",
		time.Since(t0).Round(time.Millisecond), c.srv.AS.Counters.Cookies.Load(), c.srv.AS.Counters.Challenged.Load(), c.srv.AS.Counters.Limited.Load())
	cancel()
}
