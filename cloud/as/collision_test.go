package as_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/as"
	"github.com/cyphonic/cyphonic-go/cloud/server"
	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/cloud/store/storetest"
	"github.com/cyphonic/cyphonic-go/test/cloudsim"
)

// TestSessionIDCollisionRetriedInAS: the AS draws a session ID that a
// live session holds (forced: every candidate but one is alice's ID, the
// last drawn is the one a challenge takes first). The store's check keeps
// it out of the pool, so bob logs in at the first try with another ID and
// alice keeps hers. Before, the challenge named the taken ID, PutNode
// refused it at the commit, and bob's login failed (Retry: log in again).
func TestSessionIDCollisionRetriedInAS(t *testing.T) {
	for _, backend := range []string{"bbolt", "redis"} {
		t.Run(backend, func(t *testing.T) {
			cfg := server.Config{DataDir: t.TempDir(), Ephemeral: true, Listen: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}
			if backend == "redis" {
				url, prefix := storetest.RedisURL(t), fmt.Sprintf("as-collision-%d:", time.Now().UnixNano())
				cfg.StoreURL = storetest.WithPrefix(t, url, prefix)
				t.Cleanup(func() { storetest.DeletePrefix(t, url, prefix) })
			}
			s, err := server.Start(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(context.Background())
			login := func(fqdn string) (uint32, error) {
				n, err := cloudsim.NewNode(s.CA, fqdn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(n.Close)
				r, err := n.Login(s.AS.Addrs()[0], false)
				if err != nil {
					return 0, err
				}
				return r.SessionID, nil
			}
			taken, err := login("alice.example.cyphonic")
			if err != nil {
				t.Fatal(err)
			}
			const other = 0x5eed5eed
			var draws atomic.Int64
			as.ForceSessionIDs(s.AS, func() uint32 {
				if draws.Add(1) == 1 {
					return other
				}
				return taken // every later candidate collides with alice
			})
			got, err := login("bob.example.cyphonic")
			if err != nil {
				t.Fatalf("bob's login: %v (the node saw the collision)", err)
			}
			if got != other {
				t.Fatalf("bob's session %#x, want the one free candidate %#x (alice holds %#x)", got, other, taken)
			}
			if n := s.AS.Counters.IDTaken.Load(); n != 0 {
				t.Fatalf("%d logins refused for a taken ID", n)
			}
			n, err := s.Store().LookupSession(context.Background(), taken)
			if err != nil || n.FQDN != "alice.example.cyphonic" {
				t.Fatalf("session %#x now: %q, %v; want alice's", taken, n.FQDN, err)
			}
			if _, err := s.Store().LookupSession(context.Background(), other); errors.Is(err, store.ErrNotFound) {
				t.Fatalf("bob's session %#x not in the store", other)
			}
		})
	}
}
