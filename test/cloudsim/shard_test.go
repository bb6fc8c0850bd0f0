package cloudsim

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/cyphonic/cyphonic-go/cloud/server"
	"github.com/cyphonic/cyphonic-go/messages"
)

// TestShardedSignaling: NMS opens packets on four workers, by session ID
// (AS logs in on four too). Many nodes, homed on different workers, run
// transactions at once: logins and registrations with every copy sent
// twice, bursts of keepalives sent back to back, and tunnel requests (each
// copy twice) to peers held by another worker, whose Directions NMS must
// retransmit because each peer ignores its first copies. Every request
// gets its correct reply; each message ID ran exactly one transaction (the
// counters match the requests exactly and every peer was directed once per
// tunnel asked of it); and no node's packets were reordered on their way
// to its worker (a keepalive overtaken by a newer one of the same node is
// refused as a replay and never answered).
func TestShardedSignaling(t *testing.T) {
	const workers, N, burst = 4, 24, 8
	s := startCloudWith(t, server.Config{SignalWorkers: workers})
	if q := s.NMS.WorkerQueues(); len(q) != workers {
		t.Fatalf("%d NMS workers, want %d", len(q), workers)
	}
	asAddr := s.AS.Addrs()[0]
	nodes := make([]*Node, N)
	for i := range nodes {
		nodes[i] = newNode(t, s, fmt.Sprintf("s%d.example.cyphonic", i))
	}
	each := func(f func(i int, n *Node) error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, N)
		for i, n := range nodes {
			wg.Go(func() { errs[i] = f(i, n) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("%s: %v", nodes[i].FQDN, err)
			}
		}
	}
	each(func(_ int, n *Node) error {
		if _, err := n.Login(asAddr, true); err != nil {
			return err
		}
		rep, err := n.Register(true)
		if err == nil && (rep.VIP6 != n.Reply.VIP6 || rep.Observed != n.Addr()) {
			err = fmt.Errorf("register reply %+v, want VIP %v observed %v", rep, n.Reply.VIP6, n.Addr())
		}
		return err
	})
	shardOf := func(n *Node) uint32 { return n.Reply.SessionID % workers }
	spread := map[uint32]int{}
	for _, n := range nodes {
		spread[shardOf(n)]++
	}
	if len(spread) < 3 {
		t.Fatalf("sessions on %d workers only (%v): the test needs them spread", len(spread), spread)
	}
	// Each node asks for tunnels to the next two nodes held by other
	// workers than its own.
	peersOf := make([][]int, N)
	asked := make([]int, N) // tunnels asked of each node
	for i, n := range nodes {
		for j := (i + 1) % N; len(peersOf[i]) < 2; j = (j + 1) % N {
			if shardOf(nodes[j]) != shardOf(n) {
				peersOf[i] = append(peersOf[i], j)
				asked[j]++
			}
		}
	}
	const ignored = 2
	for _, n := range nodes {
		n.Ignore(messages.MsgDirection, ignored) // NMS retransmits them
	}
	kas := make([]messages.Body, burst)
	for i := range kas {
		kas[i] = messages.Keepalive{}
	}
	each(func(i int, n *Node) error {
		for _, j := range peersOf[i] {
			replies, err := n.RequestBurst(n.Reply.NMS[0], kas)
			if err != nil {
				return fmt.Errorf("keepalive burst: %w", err)
			}
			for k, env := range replies {
				ack, err := messages.DecodeBody[messages.KeepaliveAck](env)
				if err != nil || ack.Observed != n.Addr() {
					return fmt.Errorf("keepalive %d: %+v %v", k, ack, err)
				}
			}
			p, err := n.Tunnel(nodes[j].FQDN, true)
			if err != nil {
				return fmt.Errorf("tunnel to %s: %w", nodes[j].FQDN, err)
			}
			if p.PeerFQDN != nodes[j].FQDN || p.PeerVIP6 != nodes[j].Reply.VIP6 {
				return fmt.Errorf("tunnel to %s: path names %s %v", nodes[j].FQDN, p.PeerFQDN, p.PeerVIP6)
			}
		}
		return nil
	})

	c := &s.NMS.Counters
	for _, v := range []struct {
		what      string
		got, want uint64
	}{
		{"registrations", c.Registered.Load(), N},
		{"keepalives run", c.Keepalives.Load(), N * 2 * burst},
		{"tunnels", c.Tunnels.Load(), N * 2},
		{"tunnel errors", c.TunnelErrors.Load(), 0},
		{"accepted logins", s.AS.Counters.Accepted.Load(), N},
	} {
		if v.got != v.want {
			t.Errorf("%s: %d, want %d", v.what, v.got, v.want)
		}
	}
	// A keepalive overtaken by a newer one of its burst is refused as a
	// replay. Only the test's own retransmissions may be (a reply slower
	// than the 200 ms retry delay on a loaded machine): any more were
	// reordered between NMS's reader and the session's worker.
	var resent uint64
	for _, n := range nodes {
		resent += n.BurstResent()
	}
	if r := c.Replayed.Load(); r > resent {
		t.Errorf("replayed (reordered) requests: %d, more than the %d keepalives the nodes resent", r, resent)
	} else if r > 0 {
		t.Logf("%d resent keepalives refused as replays (%d resent)", r, resent)
	}
	if c.Duplicates.Load() == 0 {
		t.Error("no duplicate answered from the cache: the copies did not reach NMS")
	}
	for j, n := range nodes {
		ds := n.DirectionDeliveries()
		ids := map[messages.MsgID]bool{}
		for _, d := range ds {
			ids[d.ID] = true
			from := slices.IndexFunc(nodes, func(m *Node) bool { return m.FQDN == d.Body.PeerFQDN })
			if from < 0 || !slices.Contains(peersOf[from], j) {
				t.Errorf("%s directed to %s, which asked for no tunnel to it", n.FQDN, d.Body.PeerFQDN)
			}
		}
		if len(ds) != asked[j] || len(ids) != asked[j] {
			t.Errorf("%s directed %d times (%d IDs), want once per tunnel asked of it (%d)", n.FQDN, len(ds), len(ids), asked[j])
		}
		if asked[j] > 0 && n.Copies(messages.MsgDirection) < asked[j]+ignored {
			t.Errorf("%s got %d Direction copies, want the ignored ones retransmitted (>= %d)", n.FQDN, n.Copies(messages.MsgDirection), asked[j]+ignored)
		}
	}
	for _, q := range s.NMS.WorkerQueues() {
		if q.Dropped != 0 {
			t.Errorf("NMS worker %d dropped %d packets", q.Worker, q.Dropped)
		}
	}
}
