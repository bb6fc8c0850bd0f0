package cloudsim

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/server"
	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/messages"
)

// deadHomeStore is a bbolt store with leases: every holder's is held but
// deadHome's (a cloud process that was killed). Armed for a node, it
// plays the failover race on that node's record: the first read of it
// (a tunnel request's) returns the record and then ends its session, as
// if the node's process died and its session went with it; the second (the
// adoption's re-read, which finds no live session) is reported on
// adoptRead.
type deadHomeStore struct {
	store.Store
	mu        sync.Mutex
	armed     string
	reads     int
	adoptRead chan struct{}
}

const deadHome = "dead-process:7410"

func (s *deadHomeStore) RenewLease(context.Context, string, time.Duration) error { return nil }
func (s *deadHomeStore) LeaseHeld(_ context.Context, h string) (bool, error) {
	return h != deadHome, nil
}

func (s *deadHomeStore) GetNode(ctx context.Context, fqdn string) (store.Node, error) {
	n, err := s.Store.GetNode(ctx, fqdn)
	s.mu.Lock()
	defer s.mu.Unlock()
	if fqdn != s.armed || err != nil {
		return n, err
	}
	switch s.reads++; s.reads {
	case 1:
		if err := s.Store.DeleteSession(ctx, n.Session.ID); err != nil {
			return store.Node{}, err
		}
	case 2:
		close(s.adoptRead)
	}
	return n, err
}

// TestAdoptionWaitsForLogin: the failover race adoptRetries is for (cloud/nms
// home.go). Bob's record names a home process whose lease has lapsed;
// alice asks for a tunnel to him; her NMS finds his home gone and adopts
// him, but the record it re-reads holds no live session: bob lost that
// process too and has not logged in again yet. Only then does bob log in
// (here) and register. The request reads the record again a little later,
// finds bob there, and alice gets her path and bob his Direction. With
// adoptRetries at 0 the request is answered "peer's NMS is gone and the
// peer offline" at once.
func TestAdoptionWaitsForLogin(t *testing.T) {
	bolt, err := store.OpenBolt(filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	st := &deadHomeStore{Store: bolt, adoptRead: make(chan struct{})}
	s := startCloudWith(t, server.Config{Store: st})
	alice, bob := nodeAt(t, s, "alice.example.cyphonic", 2), nodeAt(t, s, "bob.example.cyphonic", 3)
	online(t, s, alice, messages.NATNone)
	online(t, s, bob, messages.NATNone)
	// Bob's home is the dead process now.
	bg := context.Background()
	rec, err := bolt.GetNode(bg, bob.FQDN)
	if err != nil {
		t.Fatal(err)
	}
	if err := bolt.UpdateLocator(bg, bob.FQDN, rec.Session.ID, store.LocatorUpdate{Locator: rec.Locator, HomeNMS: deadHome, Updated: time.Now()}); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	st.armed = bob.FQDN
	st.mu.Unlock()

	type result struct {
		p   messages.Path
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := alice.Tunnel(bob.FQDN, false)
		done <- result{p, err}
	}()
	select {
	case <-st.adoptRead:
	case r := <-done:
		t.Fatalf("tunnel answered before the adoption's read: %+v %v", r.p, r.err)
	case <-time.After(10 * time.Second):
		t.Fatal("the request never re-read bob's record to adopt him")
	}
	if s.NMS.Counters.Adopted.Load() != 1 {
		t.Fatalf("adopted %d, want 1", s.NMS.Counters.Adopted.Load())
	}
	// The adoption found no live session. Bob logs in again now.
	if _, err := bob.Login(s.AS.Addrs()[0], false); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Register(false); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("tunnel request never answered")
	}
	if r.err != nil {
		t.Fatalf("tunnel to bob after his new login: %v", r.err)
	}
	if r.p.PeerFQDN != bob.FQDN {
		t.Fatalf("path %+v", r.p)
	}
	if d := bob.Directions(); len(d) != 1 || d[0].PeerFQDN != alice.FQDN || d[0].TunnelID != r.p.TunnelID {
		t.Fatalf("bob's directions %+v", d)
	}
	if n := s.NMS.Counters.Adopted.Load(); n != 1 {
		t.Fatalf("adopted %d times, want once per request", n)
	}
}
