package dataplane_test

import (
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
)

// TestPeerSockets: with a cap of one, the first of two direct peers gets a
// receive socket of its own and every packet it streams arrives through
// it, in order; the second peer's stream still arrives, through the
// shared socket. Closing the first peer closes its socket and ends its
// reader; Stop (the cleanup) waits for every reader (leaktest checks).
func TestPeerSockets(t *testing.T) {
	f := newPKI(t)
	b := newNode(t, f, "bob", 2, func(c *dataplane.Config) { c.PeerSockets = 1 })
	a := newNode(t, f, "alice", 1, nil)
	connect(t, a, b, b.addr, a.addr)
	if open, readers, _ := b.dp.PeerSockets(); open != 1 || readers != 1 {
		t.Fatalf("after one peer: %d peer sockets, %d readers; want 1, 1", open, readers)
	}
	c := newNode(t, f, "carol", 3, nil)
	connect(t, c, b, b.addr, c.addr)
	if open, _, full := b.dp.PeerSockets(); open != 1 || full == 0 {
		t.Fatalf("after two peers with a cap of 1: %d peer sockets, %d left to the shared ones; want 1, > 0", open, full)
	}
	before, ok := b.dp.PeerSocketRead(a.fqdn)
	if !ok {
		t.Fatalf("%s has no socket of its own on %s", a.fqdn, b.fqdn)
	}
	if _, ok := b.dp.PeerSocketRead(c.fqdn); ok {
		t.Fatalf("%s got a socket past the cap", c.fqdn)
	}
	const n = 2000
	stream(t, a, b, 0, n, 16)
	stream(t, c, b, 0, n, 16)
	if got, _ := b.dp.PeerSocketRead(a.fqdn); got-before < n {
		t.Errorf("%s's socket read %d datagrams of its stream of %d", a.fqdn, got-before, n)
	}

	if err := b.dp.Close(a.fqdn); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(failsafe)
	for {
		open, readers, _ := b.dp.PeerSockets()
		if open == 0 && readers == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after closing the peer: %d peer sockets, %d readers; want 0, 0", open, readers)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
