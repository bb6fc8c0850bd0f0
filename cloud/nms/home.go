package nms

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

// An active-active cloud: several processes share one store (Redis), and
// each node's record names the NMS it registered with (HomeNMS), through
// which every other NMS directs it. A process that dies (kill -9) leaves
// its nodes' records naming it until the nodes notice and log in at
// another process. Meanwhile a tunnel request for such a node would wait
// for a gateway that is gone; instead, each NMS holds a lease in the store
// (store.Leases) and renews it every homeLeaseRenew, and an NMS about to
// direct a node through another one checks that one's lease first, and
// again while it waits for its answer. A lapsed lease makes the asking NMS
// the node's home: it takes the node's session from the store (keys and
// all, as it does for a node that simply writes to it: onSessionFound),
// records itself as HomeNMS (only while the record holds that session),
// and delivers the Direction itself, from its own socket to the node's
// observed mapping. The node opens it with the session key it has and
// answers where it came from.
//
// The times bound how long a node whose process died cannot be reached
// for a new tunnel: the lease lapses homeLeaseTTL after the last renewal
// and a waiting request looks every homeCheckEvery, so within
// homeLeaseTTL+homeCheckEvery (2.5 s) of the kill, under the 5 s the
// issue allows with room for the Direction's round trip. Renewing four
// times per TTL rides out a store hiccup of a second without another NMS
// taking this one's nodes (were it to happen, both would serve them, and
// the node's next keepalive moves its home back).
const (
	homeLeaseTTL   = 1500 * time.Millisecond
	homeLeaseRenew = homeLeaseTTL / 3
	homeCheckEvery = time.Second
	// sessionCheckEvery: how often a request waiting for a peer homed
	// here looks whether the peer has a new session (watchHome). An
	// index read, no store call: it can be often.
	sessionCheckEvery = 250 * time.Millisecond
)

// renewLease keeps this NMS's lease in the store until Close, off the
// actors (a store round trip each time).
func (s *Service) renewLease(l store.Leases) {
	defer close(s.leaseDone)
	t := time.NewTicker(homeLeaseRenew)
	defer t.Stop()
	failing, lastOK := false, time.Now()
	dir, _ := l.(store.LeaseDirectory)
	// The first few addresses will do (an NMS listening on more than
	// MaxLeaseAddrs still holds its lease).
	info := store.LeaseInfo{NMS: s.addrs[:min(len(s.addrs), store.MaxLeaseAddrs)], Probe: s.altAddrs[:min(len(s.altAddrs), store.MaxLeaseAddrs)]}
	for n := 0; ; n++ {
		ctx, cancel := context.WithTimeout(context.Background(), homeLeaseRenew)
		var err error
		if dir != nil {
			err = dir.PublishLease(ctx, s.cfg.Home, info, homeLeaseTTL)
			if err == nil && n%directoryEvery == 0 {
				s.readDirectory(ctx, dir)
			}
		} else {
			err = l.RenewLease(ctx, s.cfg.Home, homeLeaseTTL)
		}
		cancel()
		if err != nil || time.Since(lastOK) > homeLeaseTTL {
			// Another NMS may take (or have taken) this one's nodes as
			// their home while the lease was not held: the workers
			// forget the mappings they know the store to hold (ka.go),
			// so each node's next keepalive reads its record and makes
			// this NMS its home again.
			s.leaseEpoch.Add(1)
		}
		if err == nil {
			lastOK = time.Now()
		}
		switch {
		case err != nil && !failing:
			s.log.Warn("nms: lease not renewed: other cloud processes may take this one's nodes", "home", s.cfg.Home, "err", err)
		case err == nil && failing:
			s.log.Info("nms: lease renewed again", "home", s.cfg.Home)
		}
		failing = err != nil
		select {
		case <-t.C:
		case <-s.leaseStop:
			return
		}
	}
}

// directoryEvery: the other processes' addresses are read every this
// many renewals (1 s): they change when a process starts or dies, and a
// dead one left in the list costs a node that tries it one failed
// registration before it tries the next.
const directoryEvery = 2

// readDirectory keeps the other live processes' addresses for OtherClouds.
func (s *Service) readDirectory(ctx context.Context, dir store.LeaseDirectory) {
	live, err := dir.LiveLeases(ctx)
	if err != nil {
		s.log.Debug("nms: read the other processes' leases", "err", err)
		return
	}
	holders := make([]string, 0, len(live))
	for h := range live {
		if h != s.cfg.Home {
			holders = append(holders, h)
		}
	}
	slices.Sort(holders)
	others := make([]store.LeaseInfo, 0, len(holders))
	for _, h := range holders {
		others = append(others, live[h])
	}
	s.others.Store(&others)
}

// OtherClouds is where the other live cloud processes sharing the store
// take signaling and probes (as their leases said at the last read, at
// most maxOtherClouds of them): the AS lists them in LoginReply after its
// own process's, so a node whose process dies moves its session to one of
// them with a registration instead of a new login.
func (s *Service) OtherClouds() []store.LeaseInfo {
	p := s.others.Load()
	if p == nil {
		return nil
	}
	return (*p)[:min(len(*p), maxOtherClouds)]
}

// maxOtherClouds bounds the processes listed: each adds up to four
// addresses to every LoginReply.
const maxOtherClouds = 7

// homeDown reports whether n's home is another NMS whose lease has lapsed.
// Without leases (bbolt: one process), or when the store does not answer,
// the home is taken to be up: the old behaviour. Safe on any goroutine
// (the store workers call it).
func (s *Service) homeDown(bg context.Context, n store.Node) bool {
	l, ok := s.cfg.Store.(store.Leases)
	if !ok || n.HomeNMS == "" || n.HomeNMS == s.cfg.Home {
		return false
	}
	if held, ok := s.leases.get(n.HomeNMS, time.Now()); ok {
		return !held
	}
	held, err := l.LeaseHeld(bg, n.HomeNMS)
	if err != nil {
		return false
	}
	s.leases.put(n.HomeNMS, held, time.Now())
	return !held
}

// leaseView keeps the store's last word on other NMSes' leases for
// leaseCacheFor, so that a burst of tunnel requests to nodes of another
// process costs the store one lease lookup, not one each. It delays
// seeing a lapse by as much, well inside the times above.
type leaseView struct {
	mu   sync.Mutex
	seen map[string]leaseSeen
}

type leaseSeen struct {
	held bool
	at   int64 // Unix ns
}

const (
	leaseCacheFor = 250 * time.Millisecond
	// maxLeaseViews bounds the map: homes are cloud processes (a few),
	// but they come from store records, so a corrupt one must not grow it.
	maxLeaseViews = 1024
)

func (v *leaseView) get(home string, now time.Time) (held, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.seen[home]
	if !ok || now.UnixNano()-e.at > int64(leaseCacheFor) {
		return false, false
	}
	return e.held, true
}

func (v *leaseView) put(home string, held bool, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.seen == nil || len(v.seen) >= maxLeaseViews {
		v.seen = make(map[string]leaseSeen)
	}
	v.seen[home] = leaseSeen{held: held, at: now.UnixNano()}
}

// Messages of a tunnel request waiting for a peer's home (tx.go).
type (
	// homeCheck: time to look at the peer's home's lease again.
	homeCheck struct{ stage int }
	// homeChecked: the answer; down if it lapsed.
	homeChecked struct {
		stage int
		down  bool
	}
	// adopted: the peer's record after this NMS made itself its home
	// (err: it could not; moved: the record names another live home now,
	// which is asked instead).
	adopted struct {
		node  store.Node
		moved bool
		err   error
	}
	// adoptSession asks the root to serve node's session (from its store
	// record) as one of its own.
	adoptSession struct{ node store.Node }
	// readopt: time to read the peer's record again (onAdopted).
	readopt struct{}
)

// adoptRetries bounds how often a request reads the record of a peer whose
// home is gone and who has no live session, sessionCheckEvery apart (2 s):
// long enough for a peer that lost the same process to log in again.
const adoptRetries = 8

// Neither check resets the request's overall timeout.
func (homeCheck) NotInfluenceReceiveTimeout()   {}
func (homeChecked) NotInfluenceReceiveTimeout() {}
func (readopt) NotInfluenceReceiveTimeout()     {}

// watchHome arms the next look at the peer's home while the request waits
// for it. When the home is this NMS, the look is at the peer's session
// instead: a peer that logs in again while its Direction is being
// delivered (a failover, where the asker's NMS adopted the peer's old
// session a moment before the peer's new login reached it) never
// answers a Direction sealed under the old key, so the request follows
// the peer to its new session rather than waiting out the delivery.
func (t *requestTx) watchHome(ctx actor.Context) {
	every := homeCheckEvery
	if t.peer.HomeNMS == t.s.cfg.Home {
		if t.deliveredTo == 0 {
			return
		}
		every = sessionCheckEvery
	} else if _, ok := t.s.cfg.Store.(store.Leases); !ok {
		return
	}
	t.homeStage++
	root, self, m := ctx.ActorSystem().Root, ctx.Self(), homeCheck{stage: t.homeStage}
	if t.homeTimer != nil {
		t.homeTimer.Stop()
	}
	t.homeTimer = time.AfterFunc(every, func() { root.Send(self, m) })
}

func (t *requestTx) onHomeCheck(ctx actor.Context, m homeCheck) {
	if m.stage != t.homeStage || t.stage != stagePeer {
		return
	}
	if t.peer.HomeNMS == t.s.cfg.Home {
		if id, ok := t.s.index.get(t.peer.FQDN); ok && id != t.deliveredTo {
			t.s.log.Debug("nms: peer has a new session, directing it there", "peer", t.peer.FQDN, "old", t.deliveredTo, "new", id)
			t.adoptedID = 0
			t.direct(ctx)
			return
		}
		t.watchHome(ctx)
		return
	}
	s, peer, stage := t.s, t.peer, m.stage
	if err := t.s.workers.Do(ctx.Self(), func(bg context.Context) any {
		return homeChecked{stage: stage, down: s.homeDown(bg, peer)}
	}); err != nil {
		t.watchHome(ctx) // busy: look again later
	}
}

func (t *requestTx) onHomeChecked(ctx actor.Context, m homeChecked) {
	if m.stage != t.homeStage || t.stage != stagePeer {
		return
	}
	if !m.down {
		t.watchHome(ctx)
		return
	}
	t.s.log.Info("nms: peer's home NMS is gone, serving the peer here", "peer", t.peer.FQDN, "home", t.peer.HomeNMS)
	t.adopt(ctx)
}

// adopt makes this NMS the peer's home (its home's lease lapsed), then
// directs it from here. The Direction already sent to the old home is
// dropped with it; the answer this waits for comes from the new one.
func (t *requestTx) adopt(ctx actor.Context) {
	t.homeStage++ // a check in flight is stale now
	t.stage = stageAdopting
	if t.adoptTries == 0 { // once per request, not per re-read
		t.s.Counters.Adopted.Add(1)
	}
	s, peer := t.s, t.peer
	t.offload(ctx, func(bg context.Context) any {
		return s.adoptNode(bg, peer)
	})
}

// adoptNode re-reads the peer's record: a peer that logged in and
// registered elsewhere meanwhile (a live home, or this one) is directed
// there; otherwise this NMS becomes its home, if the record still holds
// the session read.
func (s *Service) adoptNode(bg context.Context, peer store.Node) adopted {
	st, self := s.cfg.Store, s.cfg.Home
	n, err := st.GetNode(bg, peer.FQDN)
	if err != nil {
		return adopted{err: err}
	}
	if n.HomeNMS != peer.HomeNMS && (n.HomeNMS == self || !s.homeDown(bg, n)) {
		return adopted{node: n, moved: true}
	}
	if n.Session.ID == 0 || time.Now().After(n.Session.Expires) {
		return adopted{err: store.ErrNotFound}
	}
	if n.HomeNMS != self {
		err = st.UpdateLocator(bg, n.FQDN, n.Session.ID, store.LocatorUpdate{Locator: n.Locator, HomeNMS: self, Updated: time.Now()})
	}
	n.HomeNMS = self
	return adopted{node: n, err: err}
}

func (t *requestTx) onAdopted(ctx actor.Context, m adopted) {
	if t.stage != stageAdopting {
		return
	}
	if errors.Is(m.err, store.ErrNotFound) && t.adoptTries < adoptRetries {
		// No live session in the peer's record: it may be logging in
		// again elsewhere this very moment (it lost the same process we
		// lost). Read it again shortly rather than call it offline.
		t.adoptTries++
		root, self := ctx.ActorSystem().Root, ctx.Self()
		if t.homeTimer != nil {
			t.homeTimer.Stop()
		}
		t.homeTimer = time.AfterFunc(sessionCheckEvery, func() { root.Send(self, readopt{}) })
		return
	}
	if m.err != nil {
		t.s.log.Debug("nms: peer not adopted", "peer", t.peer.FQDN, "err", m.err)
		t.fail(ctx, messages.Error{Code: messages.CodePeerUnreachable, Message: "peer's NMS is gone and the peer offline", Retry: true})
		return
	}
	if !m.moved {
		// The peer's worker serves its session from now on: the
		// Direction below, and the peer's answer, find it there.
		t.adoptedID = m.node.Session.ID
		ctx.Send(t.s.shard(t.adoptedID), adoptSession{node: m.node})
	}
	t.peer = m.node
	t.peerHomeDown = false
	t.direct(ctx)
}

// adoptSession makes n's session one of this NMS's, on the worker its
// session ID shards to, from its store record, reached at the mapping NMS
// last observed for it. A session the worker already holds under that ID
// is kept (it knows where the node is).
func (w *worker) adoptSession(n store.Node) {
	if se := w.sessions[n.Session.ID]; se != nil && se.fqdn == n.FQDN {
		if se.conn == nil { // handed over by the AS, no packet yet: where NMS saw it last
			w.reachAt(se, n)
		}
		return
	}
	if _, ended := w.deletes[n.Session.ID]; ended {
		return
	}
	se, err := newSession(n.FQDN, n.CertSerial, n.Session.ID, signaling.Keys{NodeToCloud: n.Session.NodeToCloud, CloudToNode: n.Session.CloudToNode}, n.Session.Expires)
	if err != nil || w.isRevoked(se) {
		return
	}
	w.reachAt(se, n)
	se.lastSeen = time.Now().UnixNano()
	w.addSession(se)
}

// reachAt points se at the mapping an NMS last observed for n, from this
// NMS's socket of its family.
func (w *worker) reachAt(se *session, n store.Node) {
	for _, obs := range []netip.AddrPort{n.Locator.Observed4, n.Locator.Observed6} {
		if c := w.s.connFor(obs); c != nil {
			se.from, se.conn = obs, c
			return
		}
	}
}
