package cloudsim

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/server"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/test/attack"
	"github.com/cyphonic/cyphonic-go/test/systest"
)

// TestLoadEndsUnderCookieTrickle: once a burst has put the AS under load,
// a trickle of new logins without a mac2 - far below the login budget, as
// any busy cloud sees from nodes logging in - is answered with cookies,
// but must not keep the AS under load by itself. Before, every cookie it
// asked for counted as a sign of load, so a steady stream of ordinary
// logins kept the AS under load for as long as it lasted, and with it the
// per-source limits that throttle sites with many nodes behind one
// address (the load tool's first 10k-node churn run lost 1,761 logins that
// way). Load is what the login budget and the pending challenges say.
func TestLoadEndsUnderCookieTrickle(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for ~12 s")
	}
	systest.Require(t, systest.Root()) // a raw socket
	s := startCloudWith(t, server.Config{})
	asAddr := s.AS.Addrs()[0]
	alice := newNode(t, s, "alice.example.cyphonic")
	online(t, s, alice, messages.NATNone)

	pkts := make([][]byte, 1024) // distinct: each is a new login to the AS
	for i := range pkts {
		pkts[i] = forgedLogin(t, alice, false).Packet()
	}
	spoof, err := attack.NewSpoofer()
	if err != nil {
		t.Fatal(err)
	}
	defer spoof.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// A burst past the budget's half: the AS is under load.
	spoof.FloodSpoofed(ctx, asAddr, pkts[:512], attack.LoopbackSource, 512, time.Second, 0)
	for deadline := time.Now().Add(5 * time.Second); !s.AS.UnderLoad(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the AS is not under load after a burst of 512 logins: the test tests nothing")
		}
	}
	loaded := time.Now()
	cookies0 := s.AS.Counters.Cookies.Load()

	// Then a trickle of 20 new logins a second, each from a source of its
	// own (so no per-source bucket refuses it before the cookie).
	const trickle = 14 * time.Second
	var wg sync.WaitGroup
	wg.Go(func() {
		src := func(i uint64) netip.AddrPort { return attack.LoopbackSource(1<<20 + i) }
		spoof.FloodSpoofed(ctx, asAddr, pkts[512:], src, uint64(trickle/(50*time.Millisecond)), trickle, 50*time.Millisecond)
	})
	defer wg.Wait()
	var ended time.Duration
	for time.Since(loaded) < trickle {
		if !s.AS.UnderLoad() {
			ended = time.Since(loaded)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cookies := s.AS.Counters.Cookies.Load() - cookies0
	cancel()
	t.Logf("load ended %v after the burst; the trickle got %d cookies meanwhile", ended.Round(time.Millisecond), cookies)
	if cookies == 0 {
		t.Fatal("the trickle got no cookies while the AS was under load: the test tests nothing")
	}
	if ended == 0 {
		t.Fatalf("the AS was still under load %v after the burst, kept there by a trickle of cookie answers alone", trickle)
	}
}
