package dataplane_test

import (
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
)

// waitSockets waits until n's peer sockets satisfy ok.
func waitSockets(t *testing.T, n *node, what string, ok func(open, readers int, full uint64) bool) {
	t.Helper()
	deadline := time.Now().Add(failsafe)
	for {
		open, readers, full := n.dp.PeerSockets()
		if ok(open, readers, full) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d peer sockets, %d readers, %d left to the shared sockets", what, open, readers, full)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPeerSockets: with a cap of one, the first of two sparse direct peers
// gets a receive socket of its own (once a tick has judged it sparse) and
// every packet it sends arrives through it, in order; the second peer's
// still arrive, through the shared socket. Closing the first peer closes
// its socket and ends its reader; Stop (the cleanup) waits for every
// reader (leaktest checks).
func TestPeerSockets(t *testing.T) {
	f := newPKI(t)
	b := newNode(t, f, "bob", 2, func(c *dataplane.Config) { c.PeerSockets = 1 })
	a := newNode(t, f, "alice", 1, nil)
	connect(t, a, b, b.addr, a.addr)
	waitSockets(t, b, "after one peer, want 1 socket and its reader", func(open, readers int, _ uint64) bool {
		return open == 1 && readers == 1
	})
	c := newNode(t, f, "carol", 3, nil)
	connect(t, c, b, b.addr, c.addr)
	waitSockets(t, b, "after two peers with a cap of 1, want 1 socket and 1 left out", func(open, _ int, full uint64) bool {
		return open == 1 && full > 0
	})
	before, ok := b.dp.PeerSocketRead(a.fqdn)
	if !ok {
		t.Fatalf("%s has no socket of its own on %s", a.fqdn, b.fqdn)
	}
	if _, ok := b.dp.PeerSocketRead(c.fqdn); ok {
		t.Fatalf("%s got a socket past the cap", c.fqdn)
	}
	const n = 40 // sparse: fewer than a tick's sparseLeave
	stream(t, a, b, 0, n, 16)
	stream(t, c, b, 0, n, 16)
	if got, _ := b.dp.PeerSocketRead(a.fqdn); got-before < n {
		t.Errorf("%s's socket read %d datagrams of its stream of %d", a.fqdn, got-before, n)
	}

	if err := b.dp.Close(a.fqdn); err != nil {
		t.Fatal(err)
	}
	waitSockets(t, b, "after closing the peer, want none", func(open, readers int, _ uint64) bool {
		return open == 0 && readers == 0
	})
}
