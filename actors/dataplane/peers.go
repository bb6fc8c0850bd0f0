package dataplane

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/messages"
)

// peerSet is the thread-safe directory of peers the control plane reads
// (Status, WaitUp) without asking an actor. The manager writes it.
type peerSet struct {
	mu sync.Mutex
	m  map[string]*peerHandle
}

// newSet makes an empty set.
func newSet() *peerSet { return &peerSet{m: make(map[string]*peerHandle)} }

// Get returns the peer named fqdn, or nil.
func (s *peerSet) Get(fqdn string) *peerHandle {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[fqdn]
}

// All returns every peer, sorted by FQDN.
func (s *peerSet) All() []*peerHandle {
	s.mu.Lock()
	hs := make([]*peerHandle, 0, len(s.m))
	for _, h := range s.m {
		hs = append(hs, h)
	}
	s.mu.Unlock()
	slices.SortFunc(hs, func(a, b *peerHandle) int { return strings.Compare(a.FQDN, b.FQDN) })
	return hs
}

func (s *peerSet) put(h *peerHandle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[h.FQDN] = h
}

func (s *peerSet) remove(h *peerHandle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[h.FQDN] == h {
		delete(s.m, h.FQDN)
	}
}

// managerProps returns the props of the "peers" actor: it creates, updates
// and closes peer actors, supervises them with exponential backoff and a
// retry limit (d.cfg.Backoff). Handshake inits never come here: the data
// plane's handshake workers read them (respond) and pass them to their peer.
func managerProps(d *Dataplane) (*actor.Props, error) {
	st, err := d.sys.NewBackoffStrategy(d.cfg.Backoff, nil)
	if err != nil {
		return nil, fmt.Errorf("peer: manager: %w", err)
	}
	return actor.PropsFromProducer(func() actor.Actor {
		return &manager{d: d, st: st, set: d.set, byPID: make(map[string]*peerHandle), reopen: make(map[string][]*openPeer)}
	}, supervise.WithBackoff(st)), nil
}

type manager struct {
	d     *Dataplane
	st    *supervise.BackoffStrategy // the peers' supervisor
	set   *peerSet
	byPID map[string]*peerHandle // live children by PID ID
	pins  uint32                 // handles made so far: the next one's TUN queue (tunQueues.bulk)
	// reopen holds opens of a peer whose closed actor is still stopping:
	// its name is taken until it has, so they are replayed, in order, on
	// its Terminated. Only the control plane opens (for NMS's paths).
	reopen map[string][]*openPeer
}

func (m *manager) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *openPeer:
		m.open(ctx, msg)
	case *closePeer:
		// Opens waiting for an earlier closed peer to stop are closed too:
		// kept, they would open the peer after this Close.
		waiting := m.reopen[msg.FQDN]
		delete(m.reopen, msg.FQDN)
		for _, o := range waiting {
			if o.Ready != nil {
				o.Ready(errHandleClosed)
			}
		}
		h := m.set.Get(msg.FQDN)
		if h == nil {
			return
		}
		m.set.remove(h)
		m.d.tables.RemoveRoutes(h)
		h.gaveUp(true)
		if pid := m.pidOf(h); pid != nil {
			ctx.Stop(pid)
		}
	case *updateEndpoints:
		h := m.set.Get(msg.FQDN)
		if h == nil {
			return
		}
		info := h.Info()
		info.Endpoints = msg.Endpoints
		h.setInfo(info)
		if pid := m.pidOf(h); pid != nil {
			ctx.Send(pid, &updatePath{Info: info})
		}
	case *rebindRelays:
		for id := range m.byPID {
			ctx.Send(actor.NewPID(m.d.sys.Root().ActorSystem().Address(), id), msg)
		}
	case *actor.Terminated:
		h := m.byPID[msg.Who.Id]
		delete(m.byPID, msg.Who.Id)
		if h != nil && !h.Dead() {
			// Stopped by its supervisor: it failed too often.
			m.d.tables.RemoveRoutes(h)
			h.gaveUp(false)
		}
		if h != nil {
			waiting := m.reopen[h.FQDN]
			delete(m.reopen, h.FQDN)
			for _, o := range waiting {
				m.open(ctx, o)
			}
		}
	}
}

// stopping reports whether an actor of a dead (closed or given up) peer
// named fqdn has not terminated yet: a new one cannot take its name.
func (m *manager) stopping(fqdn string) bool {
	for _, h := range m.byPID {
		if h.FQDN == fqdn && h.Dead() {
			return true
		}
	}
	return false
}

func (m *manager) pidOf(h *peerHandle) *actor.PID {
	for id, x := range m.byPID {
		if x == h {
			return actor.NewPID(m.d.sys.Root().ActorSystem().Address(), id)
		}
	}
	return nil
}

func (m *manager) open(ctx actor.Context, msg *openPeer) {
	info := msg.Info
	ready := msg.Ready
	if ready == nil {
		ready = func(error) {}
	}
	h := m.set.Get(info.PeerFQDN)
	if !m.vipsFree(h, info) {
		if h != nil {
			h.took(msg.Seq) // and refused it: WaitUp need not wait
		}
		ready(errWrongVIPs)
		return
	}
	if h != nil && !h.Dead() {
		h.took(msg.Seq)
		if msg.Answer {
			h.answered(time.Now())
		}
		h.setInfo(info)
		m.d.tables.SetRoutes(h, info.PeerVIP6, info.PeerVIP4)
		if pid := m.pidOf(h); pid != nil {
			// A peer waiting out its restart backoff (its last path
			// failed) restarts now: a path from NMS is news, and the
			// asker's NMS waits for our ack only so long (the ack
			// waits for the peer to take the path).
			if m.st.RestartNow(pid) {
				m.d.log.Info("peer: restarting at once for a new path from NMS, not after its backoff", "peer", info.PeerFQDN)
			}
			// The peer calls ready once it has taken the path (and bound
			// a new relay ticket it brings).
			ctx.Send(pid, &updatePath{Info: info, Ready: ready})
		} else {
			h.whenReady(ready)
		}
		return
	}
	if h != nil {
		m.set.remove(h) // a failed peer is replaced by a fresh one
	}
	if m.stopping(info.PeerFQDN) {
		m.reopen[info.PeerFQDN] = append(m.reopen[info.PeerFQDN], msg)
		return
	}
	h = newHandle(info)
	h.tunQueue = m.d.nq.bulk(m.pins) // peers take the bulk TUN queues in turn
	m.pins++
	h.took(msg.Seq)
	if msg.Answer {
		h.answered(time.Now())
	}
	h.whenReady(ready) // the new actor's start (or gaveUp below) calls it
	// In the set before the actor can start: its start tells the waiters
	// an init will find it, and respond looks it up there.
	m.set.put(h)
	pid, err := supervise.Spawn(ctx, "peer", info.PeerFQDN, peerProps(m.d, h))
	if err != nil {
		m.d.log.Warn("peer: spawn", "peer", info.PeerFQDN, "err", err)
		m.set.remove(h)
		h.gaveUp(false)
		return
	}
	m.byPID[pid.Id] = h
	m.d.tables.SetRoutes(h, info.PeerVIP6, info.PeerVIP4)
}

// vipsFree refuses a path that would move a VIP: to another VIP for a live
// peer (VIPs are bound to certificates and never change), or to a peer
// other than the one already routed there. Only a compromised NMS asks for
// either; obeying would divert traffic for one peer to another (the
// handshake's certificate check would then stop it, but the first peer's
// tunnel would be lost).
func (m *manager) vipsFree(h *peerHandle, info messages.PathInfo) bool {
	v6, v4 := info.PeerVIP6, info.PeerVIP4.Unmap()
	if h != nil && !h.Dead() && (v6 != h.vip6 || v4 != h.vip4) {
		m.d.log.Warn("peer: path moves a peer's VIPs: refused", "peer", info.PeerFQDN, "vip6", v6, "vip4", v4)
		m.d.global.Add(WrongVIPs, 1)
		return false
	}
	for _, a := range []netip.Addr{v6, v4} {
		if o := m.d.tables.Route(a); a.IsValid() && o != nil && o != h && !o.Dead() {
			m.d.log.Warn("peer: path gives another peer's VIP: refused", "peer", info.PeerFQDN, "vip", a, "owner", o.FQDN)
			m.d.global.Add(WrongVIPs, 1)
			return false
		}
	}
	return true
}
