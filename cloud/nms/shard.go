package nms

import (
	"fmt"
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/cloud/relay"
	"github.com/cyphonic/cyphonic-go/cloud/server/svc"
	"github.com/cyphonic/cyphonic-go/cloud/shrink"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

// Parallel signaling (the cloud paper's multi-threaded NMS, seed 003).
//
// The socket readers hand each packet to one of Config.Workers worker
// actors (nms/worker-<i>), chosen by the session ID in the sealed packet's
// clear header: a node's packets always reach the same worker, in the
// order they arrived on their socket, and that worker alone holds the
// session (its key, guard, address) and opens them. So the per-node state
// is partitioned, not locked: a worker touches only its own sessions. What
// a transaction shares with other nodes lives where every worker can reach
// it: the reply cache (txstore, by message ID, concurrent), the store, the
// fqdn index below (which worker holds a node's current session: a
// delivery for a node, a new login replacing a session held by another
// worker) and the tunnels map (a tunnel links two nodes on any workers).
//
// A tunnel request runs on the requester's worker; it hands the
// Direction to the peer's worker (a peer homed here), or directs the peer
// through the peer's home NMS root (svc.RootOf: another process), which
// finds the peer's worker in the index and forwards the delivery to it;
// the peer's ack, sealed on its own session, arrives at the peer's worker,
// which finds the delivery, and with it the request, by message ID (the
// delivers txstore) and finishes it (tunnel.go). No worker ever reads
// another's sessions.
//
// The root actor (nms) keeps what is not per node: the frames other
// services address to "nms" (key handovers, deliveries), routed on to the
// workers, and the periodic sweep's store read, whose result each worker
// judges for its own sessions.

// shardOf is the worker that holds session id. Session IDs are random
// (cloud/as), so the low bits spread them evenly.
func shardOf(id uint32, n int) int { return int(id % uint32(n)) }

// route is the listeners' svc.Route: sealed packets by their session ID;
// probes (stateless, answered at once) and garbage by source port, so
// that no worker takes them all.
func route(data []byte, from netip.AddrPort, n int) int {
	if t, _ := messages.PeekType(data); t == messages.TypeSignaling {
		if id, err := signaling.PeekSession(data); err == nil {
			return shardOf(id, n)
		}
	}
	return int(from.Port()) % n
}

// fqdnIndex maps a node's FQDN to the ID of its current session, hence to
// the worker holding it. Striped locks: every worker adds and removes
// entries, the root reads them for each delivery. Keys are the sessions'
// own fqdn strings (no copy).
type fqdnIndex struct {
	seed    maphash.Seed
	stripes [64]indexStripe
}

type indexStripe struct {
	mu   sync.Mutex
	m    map[string]uint32
	peak shrink.Peak // m is rebuilt once far below it (remove)
}

func newFQDNIndex() *fqdnIndex {
	x := &fqdnIndex{seed: maphash.MakeSeed()}
	for i := range x.stripes {
		x.stripes[i].m = map[string]uint32{}
	}
	return x
}

func (x *fqdnIndex) stripe(fqdn string) *indexStripe {
	return &x.stripes[maphash.String(x.seed, fqdn)%uint64(len(x.stripes))]
}

// swap makes id fqdn's current session and returns the one it replaces.
func (x *fqdnIndex) swap(fqdn string, id uint32) (old uint32, had bool) {
	s := x.stripe(fqdn)
	s.mu.Lock()
	old, had = s.m[fqdn]
	s.m[fqdn] = id
	s.mu.Unlock()
	return old, had
}

func (x *fqdnIndex) get(fqdn string) (uint32, bool) {
	s := x.stripe(fqdn)
	s.mu.Lock()
	id, ok := s.m[fqdn]
	s.mu.Unlock()
	return id, ok
}

func (x *fqdnIndex) has(fqdn string) bool {
	_, ok := x.get(fqdn)
	return ok
}

// remove deletes fqdn's entry if it still names session id (a newer
// session that replaced it stays), and reports whether it did.
func (x *fqdnIndex) remove(fqdn string, id uint32) bool {
	s := x.stripe(fqdn)
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.m[fqdn]; ok && cur == id {
		delete(s.m, fqdn)
		s.m = shrink.Map(s.m, &s.peak)
		return true
	}
	return false
}

// Messages to the workers from the root and from each other.
type (
	// handover is a KeyHandover the root decoded, for the worker that
	// will hold the session.
	handover struct {
		f  svc.Frame
		kh messages.KeyHandover
	}
	// deliverReq is a delivery to node f.To, whose session (id) the
	// worker holds, as the index said when the root routed it.
	deliverReq struct {
		f  svc.Frame
		id uint32
	}
)

// root is the NMS's root actor: it spawns the workers and routes the
// service frames to them; see the comment at the top of this file.
type root struct {
	s         *Service
	ready     chan struct{}
	readyOnce *sync.Once
	cancel    func()
	cancelKey func() // the RelayKey ticker, with the TRS elsewhere
	sweeping  bool
	lastSweep time.Time
}

func (r *root) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		// A restart stops the workers with the root and spawns them
		// again under the same names, so the listeners' PIDs stay good.
		for i := range r.s.shards {
			i := i
			if _, err := supervise.Spawn(ctx, "nms-worker", fmt.Sprintf("worker-%d", i), actor.PropsFromProducer(func() actor.Actor {
				return newWorker(r.s, i)
			}), svc.ReleaseOnReceipt{}); err != nil {
				r.s.log.Error("nms: spawn worker", "worker", i, "err", err)
			}
		}
		r.readyOnce.Do(func() { close(r.ready) })
		r.cancel = supervise.Every(ctx, tickInterval(r.s.cfg.SessionIdle), tick{})
		if r.s.cfg.RelayTickets == nil && !r.s.cfg.TRS.IsZero() {
			r.askRelayKey(ctx)
			r.cancelKey = supervise.Every(ctx, relayKeyEvery, relayKeyTick{})
		}
	case *actor.Stopping, *actor.Restarting:
		if r.cancel != nil {
			r.cancel()
		}
		if r.cancelKey != nil {
			r.cancelKey()
		}
	case relayKeyTick:
		r.askRelayKey(ctx)
	case tick:
		r.sweep(ctx, time.Now())
	case swept:
		r.onSwept(m)
	default:
		r.onFrame(ctx, m)
	}
}

// tickInterval is how often the workers expire idle sessions and the root
// considers a sweep.
func tickInterval(idle time.Duration) time.Duration { return min(idle/4, 10*time.Second) }

// onFrame routes service messages: a KeyHandover from the AS to the worker
// of its session, a delivery for a node homed here to the worker holding
// the node's session.
func (r *root) onFrame(ctx actor.Context, m any) {
	f, ok, err := svc.DecodeFrame(m)
	if !ok {
		return
	}
	if err != nil {
		r.s.log.Warn("nms: bad service frame", "err", err)
		return
	}
	switch {
	case f.Envelope.Type == messages.MsgRelayKeyReply:
		r.onRelayKey(f.Envelope)
	case f.Envelope.Type == messages.MsgKeyHandover:
		kh, err := messages.DecodeBody[messages.KeyHandover](f.Envelope)
		if err != nil {
			r.s.log.Warn("nms: bad key handover", "err", err)
			return
		}
		ctx.Send(r.s.shard(kh.SessionID), handover{f: f, kh: kh})
	case f.To != "":
		id, ok := r.s.index.get(f.To)
		if !ok {
			r.s.deliverFailed(f)
			return
		}
		ctx.Send(r.s.shard(id), deliverReq{f: f, id: id})
	}
}

// relayKeyEvery is how often an NMS whose TRS runs in another process asks
// it for its ticket key, in case it changed: a TRS keeps its key across
// restarts (trs-ticket.key in its data directory), so tickets minted under
// the last key stay good; one whose key file was lost has a new key, and
// until the NMS has it the tickets it mints are refused there (their
// nodes' relay goes silent and they ask for a new path, as after any relay
// loss).
const relayKeyEvery = 2 * time.Second

// relayKeyTick: the RelayKey ticker.
type relayKeyTick struct{}

// askRelayKey asks the TRS in another process for its ticket key; the
// answer comes back to the root (onRelayKey).
func (r *root) askRelayKey(ctx actor.Context) {
	f, err := svc.NewFrame("", messages.NewMsgID(), "nms", time.Now(), messages.RelayKey{})
	if err != nil {
		return
	}
	if err := r.s.cfg.Link.Request(ctx.Self(), r.s.cfg.TRS, f); err != nil {
		r.s.log.Debug("nms: ask the TRS for its ticket key", "trs", r.s.cfg.TRS.String(), "err", err)
	}
}

// onRelayKey takes the TRS's ticket key: from now on the workers mint
// relay tickets under it instead of allocating sessions.
func (r *root) onRelayKey(env messages.Envelope) {
	rep, err := messages.DecodeBody[messages.RelayKeyReply](env)
	if err != nil {
		r.s.log.Warn("nms: bad relay key", "err", err)
		return
	}
	tk, err := relay.NewTickets(rep.Key[:])
	if err != nil {
		return
	}
	if cur := r.s.relayTickets.Load(); cur != nil && cur.Same(tk) {
		return
	}
	r.s.relayTickets.Store(tk)
	r.s.log.Info("nms: minting relay tickets under the TRS's key", "trs", r.s.cfg.TRS.String())
}

// onSwept hands each worker the stored sessions it would hold.
func (r *root) onSwept(m swept) {
	r.sweeping = false
	if m.err != nil {
		r.s.log.Warn("nms: sweep: list sessions", "err", m.err)
		return
	}
	parts := make([][]storedSession, len(r.s.shards))
	for _, ss := range m.sessions {
		i := shardOf(ss.id, len(parts))
		parts[i] = append(parts[i], ss)
	}
	for i, p := range parts {
		if len(p) > 0 {
			r.s.sys.Root().Send(r.s.shards[i], swept{sessions: p})
		}
	}
}

// shard is the worker holding session id.
func (s *Service) shard(id uint32) *actor.PID { return s.shards[shardOf(id, len(s.shards))] }

// deliverFailed answers a delivery for a node with no session here.
func (s *Service) deliverFailed(f svc.Frame) {
	s.Counters.DeliverFailed.Add(1)
	if e, err := svc.NewFrame("", f.Envelope.ID, "nms", time.Now(), messages.Error{Code: messages.CodePeerUnreachable, Message: "peer has no session here", Retry: true}); err == nil {
		_ = s.cfg.Link.Reply(f, e) // unreachable asker: its own timeout answers
	}
}

// WorkerQueue is one worker's packet queue: the packets waiting in its
// mailbox (a slot is given back when the mailbox hands the packet on, to
// the worker or, stopped, to nobody, and when one goes to dead letters:
// svc.ReleaseOnReceipt, ServeSharded), its bound, and the packets dropped
// because it was full. Packets waiting for a store lookup of their
// session are bounded by the store queue instead.
type WorkerQueue struct {
	Worker       int
	Depth, Bound int
	Dropped      uint64
}

// WorkerQueues reports every worker's packet queue.
func (s *Service) WorkerQueues() []WorkerQueue {
	out := make([]WorkerQueue, len(s.shardSlots))
	for i, l := range s.shardSlots {
		q := l.Queue("")
		out[i] = WorkerQueue{Worker: i, Depth: q.Len, Bound: q.Cap, Dropped: q.Dropped}
	}
	return out
}

// tunnelUp records that a and b have a tunnel; relay when NMS put it on
// the TRS (such a pair is re-evaluated when either node's locator
// changes). Only while one side still has a session here (tunnelMap.up).
func (s *Service) tunnelUp(a, b string, relay bool) { s.tunnels.up(a, b, relay, s.index.has) }
