package nms

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/cloud/path"
	"github.com/cyphonic/cyphonic-go/cloud/server/svc"
	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/messages"
)

// Registrations and keepalives run on the worker holding the session,
// without an actor of their own (the cloud paper's worker continues the
// transaction; its state is the reply cache entry under the message ID).
// A keepalive from the mapping the store already holds is answered at
// once: the worker is the only writer of its sessions' mappings, so it
// remembers the observed mapping it last wrote or read (session.obs4/6)
// and a steady-state keepalive makes no store call at all. Anything that
// writes (a register, a keepalive from a new mapping) runs its store part
// on the store workers; the result comes back to the worker as a
// locatorStored, and the worker seals and sends the answer (and caches it
// in the request's replyState, for a register's retransmissions).

// stored is the store part of a register or keepalive: the answer is
// body. moved lists, after a keepalive from a new mapping, the records of
// the peers to send PeerUpdate; loc is the node's locator as the store
// now holds it (homed here).
type stored struct {
	body     messages.Body
	moved    []store.Node
	upgrades []upgrade
	changed  bool // keepalive: the observed mapping differs from the record
	loc      store.Locator
	err      error
}

// locatorStored is a register's or keepalive's store result, back on the
// worker that submitted it.
type locatorStored struct {
	se   *session
	id   messages.MsgID
	typ  messages.MsgType
	st   *replyState // nil for a keepalive: never cached
	from netip.AddrPort
	conn *net.UDPConn
	recv int64 // the request's kernel receive stamp (svc.Packet.Recv)
	r    stored
	// epoch is Service.leaseEpoch when the job was queued: a mapping
	// learnt across a lapse of the lease may be another NMS's by now.
	epoch uint64
}

// knownMapping reports whether the store holds from as se's observed
// mapping of from's family, and this NMS as its home, as far as this
// worker knows: what it wrote or read since this NMS's lease last may
// have lapsed (epoch; another NMS may have made itself the node's home
// then, home.go), and the sweep has not found the record homed elsewhere.
func (se *session) knownMapping(from netip.AddrPort, epoch uint64) bool {
	if !se.locKnown || se.locEpoch != epoch {
		return false
	}
	if from.Addr().Is4() {
		return se.obs4 == from
	}
	return se.obs6 == from
}

// jobQueued and jobDone keep the known mapping across a session's store
// jobs (ka.go's comment at the top): a job that succeeded alone teaches it
// what the store holds (loc, as of epoch). Results of overlapping jobs may
// arrive out of the order their writes happened in, and a failed job may
// have written or not: then the mapping is forgotten, so the next
// keepalive reads the store once and learns it again.
func (se *session) jobQueued() {
	if se.locJobs > 0 {
		se.locOverlap = true
	}
	se.locJobs++
}

func (se *session) jobDone(loc store.Locator, ok bool, epoch uint64) {
	se.locJobs--
	if !ok || se.locJobs > 0 || se.locOverlap {
		se.locKnown = false
		se.locOverlap = se.locJobs > 0
		return
	}
	se.obs4, se.obs6, se.locKnown, se.locEpoch = loc.Observed4, loc.Observed6, true, epoch
}

// onLocatorRequest runs a register or a keepalive that passed the guard
// (st: a register's claimed reply cache entry). local: a keepalive whose
// mapping the store already holds.
func (w *worker) onLocatorRequest(ctx actor.Context, p *svc.Packet, se *session, env messages.Envelope, st *replyState, local bool) {
	if env.Type == messages.MsgKeepalive {
		w.s.Counters.Keepalives.Add(1)
		if local {
			// Sealed into the worker's buffer: a keepalive's ack is
			// never cached (a retransmission is answered afresh), so
			// it needs no slice of its own.
			pkt, err := se.sess.SealMessage(w.ackBuf[:0], &w.enc, env.ID, "nms", time.Now(), messages.KeepaliveAck{Observed: p.From})
			if err != nil {
				w.s.log.Warn("nms: seal reply", "err", err)
				return
			}
			w.ackBuf = pkt
			_, _ = p.Conn.WriteToUDPAddrPort(pkt, p.From)
			w.s.keepaliveAnswered(p.Recv)
			return
		}
	}
	// The job captures what it needs by value: it runs on another
	// goroutine and must not read the session. The peer lists are not
	// read here: the job copies them from the tunnels map only when it
	// needs them (after a move, or a changed locator: peers.go), so a
	// keepalive neither copies a peer set nor takes the map's lock.
	stor, fqdn, sid, from, home, tunnels := w.s.cfg.Store, se.fqdn, se.id, p.From, w.s.cfg.Home, w.s.tunnels
	var job func(context.Context) stored
	switch env.Type {
	case messages.MsgRegister:
		reg, err := messages.DecodeBody[messages.Register](env)
		if err != nil {
			w.reply(se, env.ID, st, p.Conn, from, messages.Error{Code: messages.CodeBadRequest, Message: err.Error()})
			return
		}
		job = func(bg context.Context) stored {
			r := register(bg, stor, fqdn, sid, home, from, reg)
			if r.err == nil {
				r.upgrades = upgrades(bg, stor, fqdn, tunnels.relayedOf(fqdn))
			}
			return r
		}
	default:
		peers := func() []string { return tunnels.peersOf(fqdn) }
		job = func(bg context.Context) stored {
			r := keepalive(bg, stor, fqdn, sid, home, from, peers)
			if r.err == nil && r.changed {
				r.upgrades = upgrades(bg, stor, fqdn, tunnels.relayedOf(fqdn))
			}
			return r
		}
	}
	m := locatorStored{se: se, id: env.ID, typ: env.Type, st: st, from: from, conn: p.Conn, recv: p.Recv, epoch: w.s.leaseEpoch.Load()}
	if err := w.s.workers.Do(ctx.Self(), func(bg context.Context) any {
		m.r = job(bg)
		return m
	}); err != nil {
		// Dropped unanswered, its message ID forgotten, so the node's
		// retransmission starts it afresh.
		w.s.Counters.Busy.Add(1)
		w.s.log.Debug("nms: store busy, dropping request", "type", env.Type, "fqdn", se.fqdn, "err", err)
		if st != nil {
			w.s.replies.Delete(env.ID)
		}
		return
	}
	se.jobQueued()
}

// onLocatorStored answers a register or keepalive whose store part is done.
func (w *worker) onLocatorStored(m locatorStored) {
	se := m.se
	mine := w.sessions[se.id] == se
	if mine {
		se.jobDone(m.r.loc, m.r.err == nil, m.epoch)
	}
	if errors.Is(m.r.err, store.ErrSessionChanged) {
		// The node logged in again while this request, on its old
		// session, was in flight: it has moved on (and would not open a
		// reply sealed for the old session), and its next request on the
		// new session records its locator. Drop this one unanswered.
		w.s.Counters.Stale.Add(1)
		w.s.log.Debug("nms: request on a replaced session dropped", "type", m.typ, "fqdn", se.fqdn, "session", se.id)
		if m.st != nil {
			w.s.replies.Delete(m.id)
		}
		return
	}
	if m.typ == messages.MsgKeepalive {
		defer w.s.keepaliveAnswered(m.recv) // after the reply's send
	}
	if m.r.err != nil {
		w.s.log.Warn("nms: request failed", "type", m.typ, "fqdn", se.fqdn, "err", m.r.err)
		w.reply(se, m.id, m.st, m.conn, m.from, messages.Error{Code: messages.CodeInternal, Retry: true})
		return
	}
	if m.typ == messages.MsgRegister {
		w.s.Counters.Registered.Add(1)
	}
	if len(m.r.moved) > 0 {
		w.s.log.Info("nms: node moved", "fqdn", se.fqdn, "observed", m.from, "peers", len(m.r.moved))
		w.s.tellPeers(se.fqdn, m.from, m.r.moved)
	}
	for _, u := range m.r.upgrades {
		w.s.upgrade(se.fqdn, u)
	}
	w.reply(se, m.id, m.st, m.conn, m.from, m.r.body)
}

// reply seals body as the answer to request id on se, caches it in st
// (nil: not cached) for retransmissions, and sends it.
func (w *worker) reply(se *session, id messages.MsgID, st *replyState, conn *net.UDPConn, to netip.AddrPort, body messages.Body) {
	pkt, err := se.sess.SealMessage(nil, &w.enc, id, "nms", time.Now(), body)
	if err != nil {
		w.s.log.Warn("nms: seal reply", "err", err)
		if st != nil {
			w.s.replies.Delete(id)
		}
		return
	}
	if st != nil {
		st.reply.Store(&pkt)
	}
	_, _ = conn.WriteToUDPAddrPort(pkt, to)
}

// register records the node's locator: its declared addresses, the
// observed mapping and the NAT type classified from both observations;
// the reply tells the node what NMS saw. It writes only while the node
// still holds session sid; if the node has logged in again since, it fails with
// store.ErrSessionChanged and writes nothing.
func register(bg context.Context, st store.Store, fqdn string, sid store.SessionID, home string, from netip.AddrPort, reg messages.Register) stored {
	n, err := st.GetNode(bg, fqdn)
	if err != nil {
		return stored{err: err}
	}
	if n.Session.ID != sid {
		return stored{err: fmt.Errorf("nms: register %s: %w", fqdn, store.ErrSessionChanged)}
	}
	var alt netip.AddrPort
	for _, o := range reg.ProbeObserved {
		if o.Addr().Unmap().Is4() == from.Addr().Is4() {
			alt = o
			break
		}
	}
	nat := path.Classify(reg.Locals, from, alt)
	n.Locator.Locals = reg.Locals
	n.Locator.HasIPv4, n.Locator.HasIPv6 = reg.IPv4, reg.IPv6
	if from.Addr().Is4() {
		n.Locator.Observed4, n.Locator.NAT4 = from, nat
		n.Locator.HasIPv4 = true
	} else {
		n.Locator.Observed6, n.Locator.NAT6 = from, nat
		n.Locator.HasIPv6 = true
	}
	if err := st.UpdateLocator(bg, fqdn, sid, store.LocatorUpdate{Locator: n.Locator, HomeNMS: home, Updated: time.Now()}); err != nil {
		return stored{err: err}
	}
	return stored{body: messages.RegisterReply{Observed: from, NAT: nat, VIP6: n.VIP6, VIP4: n.VIP4}, loc: n.Locator}
}

// keepalive refreshes the node's observed mapping. The worker runs it only
// when it does not know the store to hold from already (a new mapping, or
// one it has not learnt since the session came here); the record is
// written only when something changed; after a move, the peers with a
// tunnel (peers, called only then: nil for none) are looked up to be told.
// Like register, it writes only while the node still holds session sid.
func keepalive(bg context.Context, st store.Store, fqdn string, sid store.SessionID, home string, from netip.AddrPort, peers func() []string) stored {
	n, err := st.GetNode(bg, fqdn)
	if err != nil {
		return stored{err: err}
	}
	r := stored{body: messages.KeepaliveAck{Observed: from}}
	obs := &n.Locator.Observed6
	if from.Addr().Is4() {
		obs = &n.Locator.Observed4
	}
	if *obs == from && n.HomeNMS == home {
		r.loc = n.Locator
		return r
	}
	r.changed = *obs != from
	moved := obs.IsValid() && *obs != from
	*obs = from
	if err := st.UpdateLocator(bg, fqdn, sid, store.LocatorUpdate{Locator: n.Locator, HomeNMS: home, Updated: time.Now()}); err != nil {
		return stored{err: err}
	}
	r.loc = n.Locator
	if moved && peers != nil {
		for _, p := range peers() {
			if pn, err := st.GetNode(bg, p); err == nil && pn.HomeNMS != "" {
				r.moved = append(r.moved, pn)
			}
		}
	}
	return r
}

// tellPeers sends PeerUpdate (fqdn is now at from) to every peer with a
// tunnel, through its home NMS, whose delivery actor retransmits it until
// the peer acknowledges (a peer that still misses it roams on our first
// packet).
func (s *Service) tellPeers(fqdn string, from netip.AddrPort, peers []store.Node) {
	for _, p := range peers {
		f, err := svc.NewFrame(p.FQDN, messages.NewMsgID(), "nms", time.Now(), messages.PeerUpdate{PeerFQDN: fqdn, Endpoints: []netip.AddrPort{from}})
		if err == nil {
			if err := s.cfg.Link.Send(svc.RootOf(p.HomeNMS, svc.NMS), f); err != nil {
				s.log.Debug("nms: peer update", "peer", p.FQDN, "home", p.HomeNMS, "err", err)
			}
		}
	}
}
