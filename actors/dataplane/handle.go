package dataplane

import (
	"context"
	"errors"
	"math/big"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/transport/cookie"
	"github.com/cyphonic/cyphonic-go/transport/seal"
)

// Errors WaitUp returns.
var (
	errHandleFailed = errors.New("peer: failed")
	errHandleClosed = errors.New("peer: closed")
)

// peerRoute is where the peer's packets go: a direct endpoint, or TRS with our
// relay token.
type peerRoute struct {
	Addr  netip.AddrPort
	Relay bool
	Token messages.RelayToken
}

// peerPipe is one incarnation of a peer actor's data path: its sequencers and
// queue bounds. A restarted peer gets a new pipe, so batches still in flight
// to the old sequencers (now dead letters) cannot skew the new bounds.
//
// Ownership: the peer actor builds it in start and publishes it through
// peerHandle.pipe; after that every field is read-only except InSeq (the
// socket readers take slots with one atomic add) and the limiters (atomic),
// and the flows belong to the fair queues they are pushed on.
type peerPipe struct {
	Peer   *actor.PID // the peer actor
	SeqOut *actor.PID
	SeqIn  *actor.PID
	Flow   *flowQueue // its queue at the socket writer
	InFlow *flowQueue // its queue at the TUN writer
	// FlowICMP and InFlowICMP are its ICMP lanes at the two writers
	// (pushLanes): a flow of their own, so that a ping never waits
	// behind, nor is dropped for, the peer's own bulk backlog.
	FlowICMP   *flowQueue
	InFlowICMP *flowQueue
	SealWork   *flowQueue // its outbound batches waiting for a crypto worker
	OpenWork   *flowQueue // its inbound batches waiting for a crypto worker
	// OutInflight bounds the outbound batches between the TUN reader and
	// the socket writer, InInflight the inbound ones between the socket
	// reader and the TUN writer: a batch takes a slot where it enters and
	// gives it back in Release, wherever it ends.
	OutInflight *supervise.Limiter
	InInflight  *supervise.Limiter
	// OutShare and InShare are the peer's parts of the node's budgets of
	// packets in flight (budget.go), taken and given back with the slots.
	OutShare, InShare *share
	InSeq             atomic.Uint64
	// Probes counts the probes handed to the peer actor and not yet
	// handled (ping.go).
	Probes atomic.Int32
}

// peerHandle is a peer's identity and shared state. It outlives restarts of the
// peer actor; every method is safe for concurrent use.
//
// Ownership: FQDN, the VIPs and cookies are fixed by newHandle. Stats, pipe,
// route, lostQueued and upNow are atomics: the peer actor writes pipe and
// route, upNow changes with the state (under mu), every stage adds to
// Stats. mu guards the fields below it; the peer actor and the manager
// write them, the control plane reads them (Status, WaitUp). mu is a leaf
// lock (see Dataplane).
type peerHandle struct {
	FQDN  string
	Stats peerStats

	// vip4 and vip6 are the peer's virtual addresses: the only sources its
	// inner packets may carry. NMS never changes a node's VIPs, so they are
	// fixed for the handle's life and read without the lock.
	vip4, vip6 netip.Addr

	pipe  atomic.Pointer[peerPipe]
	route atomic.Pointer[peerRoute]
	// cookies adds the MACs to our inits to the peer and keeps the cookie
	// a busy peer gave us (transport/cookie).
	cookies *cookie.Generator
	// lostQueued: an unknown-index answer waits in the actor's mailbox
	// (lost sends at most one at a time).
	lostQueued atomic.Bool
	// tunQueue is the TUN queue its inbound batches other than ICMP are
	// written on (tunqueues.go), for the handle's life: set by the manager
	// before the handle is published, read-only after.
	tunQueue int
	// seq is the latest Open this peer has taken (openPeer.Seq). A handle
	// below the data plane's latest Open for the peer is a closed peer's,
	// or has not yet taken that Open: WaitUp waits past it.
	seq atomic.Uint64

	mu   sync.Mutex // guards info through changed
	info messages.PathInfo
	// prevRelay is the relay ticket info held before the last one that
	// replaced it. When both nodes ask for each other at once, NMS
	// allocates two relay sessions and each node gets both tickets, in
	// either order, so the two may end up sending on different sessions;
	// binding both (see peerActor.bindRelay) keeps every frame of either
	// session deliverable.
	prevRelay *messages.RelayTicket
	// initiator: some path given for this peer told us to send the init.
	// It sticks: when both nodes ask for each other at once, each gets its
	// own Path and the other's Direction, in either order and possibly
	// both before the peer actor starts, and a direct path with one
	// initiator names opposite sides in the two; following only the latest
	// could leave neither side initiating. Both initiating is harmless
	// (the smaller FQDN's init wins).
	initiator     bool
	state         string
	lastHandshake time.Time
	handshakes    uint64 // completed, rekeys included
	hsTimeouts    uint64 // attempts that gave up (HandshakeTimeout)
	suite         seal.Suite
	incarnations  int
	lastFailure   string
	up, dead      bool
	closed        bool
	// upNow mirrors up for the TUN reader, which checks it once per batch
	// without the lock: packets for a peer that is not up wait in the
	// data plane's hold queue instead of being dropped.
	upNow   atomic.Bool
	changed chan struct{} // closed and replaced on every state change
	// ready are told (once) when an actor of this peer has published its
	// pipe, so that an init reaching respond now finds it, or that the
	// peer is dead. See whenReady.
	ready []func(error)
	// answerAt: when the last path we asked NMS for came (punch.go).
	answerAt time.Time
}

// newHandle makes the handle for the tunnel info describes.
func newHandle(info messages.PathInfo) *peerHandle {
	info.Endpoints = unmapAll(info.Endpoints)
	return &peerHandle{
		FQDN: info.PeerFQDN, vip4: info.PeerVIP4.Unmap(), vip6: info.PeerVIP6,
		info: info, initiator: info.Initiator, state: StateHandshaking, changed: make(chan struct{}),
		cookies: cookie.NewGenerator(info.PeerFQDN),
	}
}

// SourceAllowed reports whether an inner IP packet from this peer carries
// one of the peer's VIPs as its source. Like WireGuard's allowed IPs, it
// stops a peer that holds valid keys from injecting packets that claim to
// come from another peer (or from anywhere else). An empty packet is a
// keepalive and carries no address.
func (h *peerHandle) SourceAllowed(p []byte) bool {
	if len(p) == 0 {
		return true
	}
	switch p[0] >> 4 {
	case 4:
		return len(p) >= 20 && h.vip4.IsValid() && netip.AddrFrom4([4]byte(p[12:16])) == h.vip4
	case 6:
		return len(p) >= 40 && h.vip6.IsValid() && netip.AddrFrom16([16]byte(p[8:24])) == h.vip6
	}
	return false
}

func unmapAll(eps []netip.AddrPort) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(eps))
	for _, ep := range eps {
		out = append(out, netip.AddrPortFrom(ep.Addr().Unmap(), ep.Port()))
	}
	return out
}

// Pipe returns the live incarnation's pipe, nil while the actor is down.
func (h *peerHandle) Pipe() *peerPipe { return h.pipe.Load() }

// Info returns the path NMS gave (a copy).
func (h *peerHandle) Info() messages.PathInfo {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := h.info
	i.Endpoints = slices.Clone(i.Endpoints)
	return i
}

func (h *peerHandle) setInfo(info messages.PathInfo) {
	info.Endpoints = unmapAll(info.Endpoints)
	h.mu.Lock()
	if old := h.info.Relay; old != nil && (info.Relay == nil || info.Relay.Token != old.Token) {
		h.prevRelay = old
	}
	h.info = info
	h.initiator = h.initiator || info.Initiator
	h.mu.Unlock()
}

// answered notes that NMS answered our own request for this peer with
// a path (see punch.go: the peer has primed its mapping toward us).
func (h *peerHandle) answered(now time.Time) {
	h.mu.Lock()
	h.answerAt = now
	h.mu.Unlock()
}

// answeredAt is when NMS last answered our request (zero: never).
func (h *peerHandle) answeredAt() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.answerAt
}

// initiates reports whether we send the handshake init to this peer.
func (h *peerHandle) initiates() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.initiator
}

// prevTicket is the relay ticket the current one replaced (nil if none).
func (h *peerHandle) prevTicket() *messages.RelayTicket {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.prevRelay
}

func (h *peerHandle) notifyLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

func (h *peerHandle) setUp(now time.Time, suite seal.Suite) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.up, h.state, h.lastHandshake, h.suite = true, StateUp, now, suite
	h.handshakes++
	h.upNow.Store(true)
	h.notifyLocked()
}

func (h *peerHandle) setDown(state string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.up = false
	h.upNow.Store(false)
	if !h.dead {
		h.state = state
	}
	h.notifyLocked()
}

// started counts an incarnation and returns how many came before it.
func (h *peerHandle) started() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.incarnations++
	h.dead = false
	return h.incarnations - 1
}

func (h *peerHandle) setFailure(reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastFailure = reason
	h.state = StateBackoff
	if reason == reasonHandshakeTimeout {
		h.hsTimeouts++
	}
}

// whenReady calls f (never under h.mu) once the peer can take a handshake
// init: at once if its actor's pipe is published, else when the next
// incarnation publishes it (readied), or with an error when the peer dies
// first. The responder's control plane acknowledges NMS's Direction only
// then: acknowledged earlier, the initiator's first inits would find no
// pipe and be dropped, costing a retry (HandshakeRetry) on first contact.
func (h *peerHandle) whenReady(f func(error)) {
	h.mu.Lock()
	var err error
	switch {
	case h.dead && h.closed:
		err = errHandleClosed
	case h.dead:
		err = errHandleFailed
	case h.pipe.Load() == nil:
		h.ready = append(h.ready, f)
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()
	f(err)
}

// readied tells the waiters of whenReady; the peer actor calls it after
// publishing its pipe (which whenReady reads under h.mu, so no waiter is
// missed).
func (h *peerHandle) readied() {
	h.mu.Lock()
	fs := h.ready
	h.ready = nil
	h.mu.Unlock()
	for _, f := range fs {
		f(nil)
	}
}

// gaveUp marks the peer dead: its supervisor stopped it, or it was closed.
func (h *peerHandle) gaveUp(closed bool) {
	h.mu.Lock()
	fs := h.ready
	h.ready = nil
	defer func() {
		err := errHandleFailed
		if closed {
			err = errHandleClosed
		}
		for _, f := range fs {
			f(err)
		}
	}()
	defer h.mu.Unlock()
	h.up, h.dead, h.closed = false, true, closed
	h.upNow.Store(false)
	switch {
	case closed:
		h.state = StateFailed + ": closed"
	case h.lastFailure != "":
		h.state = StateFailed + ": " + h.lastFailure
	default:
		h.state = StateFailed
	}
	h.notifyLocked()
}

// Up reports whether the peer has a confirmed session data can go out on.
// One atomic load: the TUN reader calls it per batch.
func (h *peerHandle) Up() bool { return h.upNow.Load() }

// VIPs returns the peer's virtual addresses (fixed for the handle's life).
func (h *peerHandle) VIPs() (vip6, vip4 netip.Addr) { return h.vip6, h.vip4 }

// Dead reports whether the peer's actor is gone for good.
func (h *peerHandle) Dead() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dead
}

// took records that the peer has taken the Open numbered seq. Only the
// manager writes seq, in the order of the Opens it takes.
func (h *peerHandle) took(seq uint64) {
	if seq > h.seq.Load() {
		h.seq.Store(seq)
	}
}

// WaitUp blocks until the peer has a confirmed session, the peer is dead
// (ErrFailed, ErrClosed), or ctx ends. It never touches an actor.
func (h *peerHandle) WaitUp(ctx context.Context) error {
	for {
		h.mu.Lock()
		up, dead, closed, ch := h.up, h.dead, h.closed, h.changed
		h.mu.Unlock()
		switch {
		case up:
			return nil
		case closed:
			return errHandleClosed
		case dead:
			return errHandleFailed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Status returns a snapshot.
func (h *peerHandle) Status() PeerStatus {
	h.mu.Lock()
	s := PeerStatus{
		FQDN: h.FQDN, VIP6: h.info.PeerVIP6, VIP4: h.info.PeerVIP4, Path: h.info.Kind,
		LastHandshake: h.lastHandshake, Restarts: max(h.incarnations-1, 0), State: h.state,
		Handshakes: h.handshakes, HandshakeTimeouts: h.hsTimeouts, Primers: h.Stats.Primers.Load(),
	}
	if h.suite != 0 {
		s.Cipher = h.suite.String()
	}
	h.mu.Unlock()
	if r := h.route.Load(); r != nil {
		s.Endpoint = r.Addr
		switch {
		case r.Relay:
			s.Path = messages.PathRelay
		case s.Path == messages.PathRelay:
			s.Path = messages.PathDirect // a relayed tunnel that upgraded itself
		}
	}
	s.TxBytes, s.TxPackets = h.Stats.TxBytes.Load(), h.Stats.TxPackets.Load()
	s.RxBytes, s.RxPackets = h.Stats.RxBytes.Load(), h.Stats.RxPackets.Load()
	s.Drops = h.Stats.Drops.Snapshot()
	s.Lost, s.Unopened = h.Stats.Lost.Load(), h.Stats.Unopened.Load()
	if p := h.Pipe(); p != nil {
		s.Queues = []supervise.Queue{p.OutInflight.Queue("out"), p.InInflight.Queue("in")}
	}
	return s
}

// certBinding checks the peer's certificate (already verified by the
// handshake) against its path: the VIPs we route to this peer and accept
// as its sources came from NMS, the certificate's were signed by the
// offline CA, and they must be the same, or a compromised NMS could name
// bob's VIPs for mallory and have mallory's packets arrive as bob's. It
// returns the certificate's serial, for the deny list. The VIPs never
// change after newHandle, so handshake workers may call it.
func (h *peerHandle) certBinding(certDER []byte) (*big.Int, bool) {
	serial, vip6, vip4, err := pki.NodeBinding(certDER)
	// A path may leave a family out (then it is neither routed nor
	// accepted); every VIP it does name must be the certificate's.
	if err != nil || h.vip6.IsValid() && vip6 != h.vip6 || h.vip4.IsValid() && vip4 != h.vip4 {
		h.Stats.Drops.Add(WrongVIPs, 1)
		return nil, false
	}
	return serial, true
}
