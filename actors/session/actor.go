package session

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/transport/handshake"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

// Messages to the session actor from outside (see Session's methods) and
// from its own timers.
type (
	inbound struct {
		pkt  []byte
		from netip.AddrPort
	}
	requestTunnel struct {
		fqdn  string
		reply chan<- tunnelResult // nil: nobody waits (NeedPath)
	}
	tunnelResult struct {
		path Tunnel
		err  error
	}
	addrsChanged  struct{}
	keepaliveTick struct{ epoch int }
	probeTimeout  struct{ epoch int }
	loginTick     struct{ epoch int }
	// cloudWatch: time to check whether the cloud still answers (see
	// watchCloud).
	cloudWatch struct{ epoch int }
	// directionOpened: the data plane can take the initiator's init now
	// (err nil), or will not; the DirectionAck for request id goes out.
	directionOpened struct {
		epoch  int
		id     messages.MsgID
		tunnel messages.MsgID
		from   netip.AddrPort
		err    error
	}
)

// inflight is the session's record of a transaction it started and waits
// on, to act on its result. The session keeps them in one map by message
// ID beside the transaction store (which holds what the transaction actor
// needs); a new login cancels them all, so every one belongs to the
// current login.
type inflight struct {
	kind messages.MsgType
	key  string    // what it is for: a tunnel request's peer FQDN, a TunnelByVIP's or VIPLookup's VIP
	sent time.Time // when it started, for the failover watch
	// probed: the watch sent a keepalive to see whether the cloud still
	// answers while this request waits (watchTimes).
	probed bool
}

type sessionActor struct {
	s   *Session
	cfg Config
	log *slog.Logger

	epoch int // bumped on every (re)login: results and ticks of older ones are stale
	state string
	sess  *signaling.Session
	login messages.LoginReply
	nms   netip.AddrPort
	open  map[messages.MsgID]inflight

	// The cloud logged in to: as, Clouds[cloud]. heard is when the last
	// authenticated packet from it arrived; watch the pending failover
	// check (watchCloud), failovers how often the cloud was given up.
	as        netip.AddrPort
	cloud     int
	heard     time.Time
	watch     *time.Timer
	watchAt   time.Time // when watch fires
	failovers int
	// probe is the NAT probe address of the NMS moved to (moveNMS; zero:
	// the login's own); moves counts the NMSes moved to since the last
	// login or registration that went through.
	probe netip.AddrPort
	moves int

	loginFailures int
	probeID       uint64
	probeSeen     []netip.AddrPort
	probing       bool             // a NAT probe is out; registration waits for it
	registering   []netip.AddrPort // locators in the registration in flight
	registered    []netip.AddrPort
	observed      netip.AddrPort
	nat           messages.NATType

	waiters map[string][]chan<- tunnelResult // tunnel requests by peer, in flight or queued
	wanted  map[string]bool                  // peers with a request queued or in flight
	pending int

	// Tunnels asked for by VIP (NeedVIP): queued until online, or in flight.
	wantedVIP map[netip.Addr]bool
	// Who holds a VIP (LookupVIP): waiters by VIP, queued or in flight.
	lookups map[netip.Addr][]chan<- lookupResult

	timer     *time.Timer // the one pending tick (keepalive, probe wait or login backoff)
	logins    int
	lastLogin time.Time
	lastAck   time.Time
	lastErr   string

	enc      *messages.Encoder
	scratch  []byte
	crlParts *pki.CRLAssembly // the deny list whose chunks are arriving
	// directing: Directions whose ack waits for the data plane's peer
	// (directionOpened); a retransmission meanwhile is not opened again.
	directing map[messages.MsgID]bool
}

func newSessionActor(s *Session) *sessionActor {
	// A random first cloud spreads the nodes over the cloud processes;
	// from there on they are tried in order.
	cfg := s.cfg
	if c := s.clouds.Load(); c != nil {
		cfg.Clouds = *c
	}
	first := 0
	if !cfg.InOrder {
		first = rand.IntN(len(cfg.Clouds))
	}
	return &sessionActor{
		cloud:     first,
		as:        cfg.Clouds[first],
		s:         s,
		cfg:       cfg,
		log:       s.cfg.Logger.With("actor", "session", "fqdn", s.cfg.Identity.FQDN),
		state:     StateIdle,
		open:      make(map[messages.MsgID]inflight),
		waiters:   make(map[string][]chan<- tunnelResult),
		wanted:    make(map[string]bool),
		wantedVIP: make(map[netip.Addr]bool),
		lookups:   make(map[netip.Addr][]chan<- lookupResult),
		enc:       messages.NewEncoder(),
		scratch:   make([]byte, 0, messages.MaxEnvelopeLen),
		crlParts:  pki.NewCRLAssembly(messages.DenyListChunk),
		directing: make(map[messages.MsgID]bool),
	}
}

func (a *sessionActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.startLogin(ctx)
	case *actor.Stopping:
		a.stop()
	case *actor.Restarting:
		a.stopTimer()
		a.stopWatch()
		a.failWaiters(ErrStopped)
		a.failVIPs()
	case *inbound:
		a.s.inbound.Release()
		a.inbound(ctx, m)
	case *txDone:
		a.txDone(ctx, m)
	case *directionOpened:
		a.directionOpened(m)
	case *requestTunnel:
		a.requestTunnel(ctx, m)
	case *requestVIP:
		a.requestVIP(ctx, m.vip)
	case *lookupVIP:
		a.lookupVIP(ctx, m)
	case cloudsChanged:
		a.setClouds(ctx, m.clouds)
	case addrsChanged:
		if a.state == StateOnline && !slices.Equal(a.locators(), a.registered) {
			a.moved()
			a.probeThenRegister(ctx)
		}
	case keepaliveTick:
		if m.epoch == a.epoch {
			a.keepalive(ctx)
		}
	case probeTimeout:
		if m.epoch == a.epoch && a.probing {
			a.probed(ctx)
		}
	case cloudWatch:
		if m.epoch == a.epoch {
			a.watch, a.watchAt = nil, time.Time{}
			a.checkCloud(ctx)
		}
	case loginTick:
		if _, busy := a.inFlight(messages.MsgLoginRequest, ""); m.epoch == a.epoch && !busy {
			a.startLogin(ctx)
		}
	default:
		return
	}
	a.publish()
}

func (a *sessionActor) publish() {
	st := &Status{
		FQDN:      a.cfg.Identity.FQDN,
		State:     a.state,
		AS:        a.as,
		Failovers: a.failovers,
		NMS:       a.nms,
		Locals:    a.registered,
		Observed:  a.observed,
		Logins:    a.logins,
		LastLogin: a.lastLogin,
		LastAck:   a.lastAck,
		LastError: a.lastErr,
		Pending:   len(a.open),
		Waiting:   a.pending,
	}
	// The VIPs are the node's for good (the TUN keeps them while the cloud
	// is away), so status shows them from the first login on.
	st.VIP6, st.VIP4 = a.login.VIP6, a.login.VIP4
	if a.sess != nil {
		st.SessionID = a.login.SessionID
		st.NAT = natString(a.nat)
	}
	a.s.status.Store(st)
}

// after arms the actor's single timer to deliver msg.
func (a *sessionActor) after(ctx actor.Context, d time.Duration, msg any) {
	a.stopTimer()
	root, self := ctx.ActorSystem().Root, ctx.Self()
	a.timer = time.AfterFunc(d, func() { root.Send(self, msg) })
}

func (a *sessionActor) stopTimer() {
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
}

// startLogin begins a login, dropping any session state and transactions
// of the previous one. Tunnel requests in flight are queued again.
func (a *sessionActor) startLogin(ctx actor.Context) {
	a.epoch++
	a.stopTimer()
	a.stopWatch()
	for id := range a.open {
		a.cancelTx(ctx, id)
	}
	// wanted and wantedVIP stay: asked again once registered.
	a.state, a.sess, a.probing = StateLoggingIn, nil, false

	hs := handshake.Config{
		Static:  handshake.StaticKey(a.cfg.Identity.NoiseStatic),
		CertDER: a.cfg.Identity.CertDER,
		Verify:  a.cfg.VerifyAS,
	}
	l, err := signaling.StartLogin(hs, pki.RoleAS.ServiceFQDN(), a.cfg.Identity.FQDN,
		messages.LoginRequest{Software: a.cfg.Software}, time.Now())
	if err != nil {
		a.loginFailed(ctx, err)
		return
	}
	a.startTx(ctx, l.ID(), &txState{kind: messages.MsgLoginRequest, to: a.as, packet: l.Packet(), login: l}, "")
}

func (a *sessionActor) loginFailed(ctx actor.Context, err error) {
	a.loginFailures++
	a.lastErr = err.Error()
	b := a.cfg.ReLogin
	if b.Multiplier < 1 {
		b.Multiplier = 2
	}
	d := b.Delay(a.loginFailures, rand.Float64())
	code, why, permanent := permanentRefusal(err)
	tried := a.as
	if n := len(a.cfg.Clouds); n > 1 && !permanent {
		// The next cloud at once; the backoff only once every one of them
		// has failed in a row.
		a.nextCloud()
		if a.loginFailures%n != 0 {
			d = 0
		} else {
			d = b.Delay(a.loginFailures/n, rand.Float64())
		}
	}
	if permanent {
		// Asking again at once gets the same answer: wait minutes, and
		// say what the operator must change.
		d = max(d, a.cfg.RefusedRetry)
		a.log.Error("login refused by the cloud", "code", code, "why", why, "attempt", a.loginFailures, "retry_in", d, "err", err)
	} else if errors.Is(err, ErrTimeout) && !errors.Is(err, ErrUnverified) {
		a.log.Warn("login failed", "err", err, "why", fmt.Sprintf("no answer from the AS at %s: is the cloud running, and listening "+
			"where this node reaches it (cyphonic cloud --listen; a firewall)?", tried), "attempt", a.loginFailures, "retry_in", d, "next", a.as)
	} else {
		a.log.Warn("login failed", "err", err, "attempt", a.loginFailures, "retry_in", d)
	}
	a.after(ctx, d, loginTick{epoch: a.epoch})
}

// permanentRefusal reports whether err is the cloud refusing a login in a
// way that repeating it cannot change, and what to do about it.
func permanentRefusal(err error) (code, why string, ok bool) {
	var refused *messages.Error
	if !errors.As(err, &refused) || refused.Retry {
		return "", "", false
	}
	switch refused.Code {
	case messages.CodeInternal, messages.CodeRateLimited, messages.CodeSessionExpired:
		return "", "", false // transient whatever the flag says
	case messages.CodeCertExpired:
		why = "the node's certificate (--cert) has expired: issue a new one with 'cyphonic ca issue'"
	case messages.CodeCertRevoked:
		why = "the node's certificate (--cert) is revoked: issue a new one with 'cyphonic ca issue'"
	case messages.CodeCertUnknownCA:
		why = "the cloud does not trust the CA that issued the node's certificate (--cert): the cloud and the node come from different CAs"
	case messages.CodeCertNotYetValid:
		why = "the cloud finds the node's certificate not yet valid: check the clocks of this host and the cloud"
	case messages.CodeCertFQDNMismatch:
		why = "the cloud refused the name in the node's certificate (--cert)"
	case messages.CodeBadRequest:
		why = "the cloud refused the login as malformed (" + refused.Message + "): check this host's clock and that node and cloud versions match"
	default:
		why = "the cloud refused the login permanently (" + refused.Code.String() + ")"
	}
	return refused.Code.String(), why, true
}

// startTx stores the transaction's state, spawns its actor and records
// it in flight. A transaction that cannot start ends at once with the
// error (as a txDone), so its caller handles both the same way.
func (a *sessionActor) startTx(ctx actor.Context, id messages.MsgID, st *txState, key string) {
	a.open[id] = inflight{kind: st.kind, key: key, sent: time.Now()}
	a.watchCloud(ctx)
	st.pid = ctx.ActorSystem().NewLocalPID(ctx.Self().Id + "/tx-" + id.String())
	ttl := txTTL(a.cfg.Retry)
	if st.login != nil {
		ttl *= 2 // the login packet's schedule, then the confirmation's
	}
	if err := a.s.store.Put(id, entry{out: st}, ttl); err != nil {
		a.log.Warn("transaction not stored", "type", st.kind.String(), "err", err)
		ctx.Send(ctx.Self(), &txDone{id: id, err: err})
		return
	}
	if _, err := supervise.Spawn(ctx, "tx", "tx-"+id.String(), txProps(a.s, id)); err != nil {
		a.s.store.Delete(id)
		a.log.Warn("transaction not started", "type", st.kind.String(), "err", err)
		ctx.Send(ctx.Self(), &txDone{id: id, err: err})
	}
}

// inFlight finds the transaction of kind for key the session waits on.
// The map holds a few entries per peer being asked for at most (bounded
// by MaxPending), so a scan is cheaper than an index to keep in step.
func (a *sessionActor) inFlight(kind messages.MsgType, key string) (messages.MsgID, bool) {
	for id, o := range a.open {
		if o.kind == kind && o.key == key {
			return id, true
		}
	}
	return messages.MsgID{}, false
}

// toLogin hands a packet to the login transaction, if one is in flight.
func (a *sessionActor) toLogin(ctx actor.Context, pkt []byte) {
	if id, ok := a.inFlight(messages.MsgLoginRequest, ""); ok {
		if e, ok := a.s.store.Get(id); ok && e.out != nil {
			ctx.Send(e.out.pid, &txReply{pkt: pkt})
		}
	}
}

func (a *sessionActor) cancelTx(ctx actor.Context, id messages.MsgID) {
	if e, ok := a.s.store.Get(id); ok && e.out != nil {
		ctx.Stop(e.out.pid)
	}
	a.s.store.Delete(id)
	delete(a.open, id)
}

// request seals body as a new request to NMS and starts its transaction
// for key (see inflight). It reports false if nothing could be sealed.
func (a *sessionActor) request(ctx actor.Context, body messages.Body, key string) bool {
	id := messages.NewMsgID()
	pkt, err := a.sess.SealMessage(nil, a.enc, id, a.cfg.Identity.FQDN, time.Now(), body)
	if err != nil {
		a.log.Error("seal request", "type", body.MsgType().String(), "err", err)
		return false
	}
	a.startTx(ctx, id, &txState{kind: body.MsgType(), to: a.nms, packet: pkt}, key)
	return true
}

func (a *sessionActor) inbound(ctx actor.Context, m *inbound) {
	t, err := messages.PeekType(m.pkt)
	if err != nil {
		return
	}
	switch t {
	case messages.TypeLoginReply, messages.TypeLoginCookie:
		a.toLogin(ctx, m.pkt)
	case messages.TypeProbeReply:
		r, err := messages.ParseProbeReply(m.pkt)
		if err != nil || r.ID != a.probeID || !a.probing {
			return
		}
		a.probeSeen = []netip.AddrPort{r.Observed}
		a.probed(ctx)
	case messages.TypeSignaling:
		a.signaling(ctx, m)
	}
}

func (a *sessionActor) signaling(ctx actor.Context, m *inbound) {
	if a.sess == nil {
		// Logging in: the sealed answer to our confirmation is the login
		// transaction's to open (on the session it has not handed over yet).
		a.toLogin(ctx, m.pkt)
		return
	}
	env, err := a.sess.OpenEnvelope(a.scratch, m.pkt, time.Now())
	if err != nil {
		a.log.Debug("signaling packet dropped", "from", m.from, "err", err)
		return
	}
	a.heard = time.Now() // the cloud answers: see checkCloud
	switch env.Type {
	case messages.MsgDirection, messages.MsgPeerUpdate, messages.MsgDenyList:
		a.answer(ctx, env, m.from)
		return
	}
	// A reply: route it to its transaction; a reply to a finished or
	// unknown one (a duplicate) is dropped.
	if e, ok := a.s.store.Get(env.ID); ok && e.out != nil {
		ctx.Send(e.out.pid, &txReply{env: env})
	}
}

// answer handles a request from NMS once per message ID; a retransmitted
// request gets the cached answer.
func (a *sessionActor) answer(ctx actor.Context, env messages.Envelope, from netip.AddrPort) {
	if e, ok := a.s.store.Get(env.ID); ok && e.answer != nil {
		a.sendControl(e.answer, from)
		return
	}
	var reply messages.Body
	switch env.Type {
	case messages.MsgDirection:
		d, err := messages.DecodeBody[messages.Direction](env)
		if err != nil {
			a.log.Info("bad direction", "err", err)
			return
		}
		if a.directing[env.ID] {
			return // the ack follows once the peer runs
		}
		// Ack only once the data plane can take the initiator's init:
		// NMS hands the initiator its Path on our ack, and an init that
		// finds no peer actor yet is dropped (a retry later).
		root, self, epoch, id := ctx.ActorSystem().Root, ctx.Self(), a.epoch, env.ID
		err = a.cfg.Dataplane.OpenThen(messages.PathInfo(d), func(err error) {
			root.Send(self, &directionOpened{epoch: epoch, id: id, tunnel: d.TunnelID, from: from, err: err})
		})
		if err == nil {
			a.directing[env.ID] = true
			return
		}
		a.log.Warn("direction: open tunnel", "peer", d.PeerFQDN, "err", err)
		reply = messages.DirectionAck{TunnelID: d.TunnelID, OK: false, Endpoints: a.registered}
	case messages.MsgPeerUpdate:
		u, err := messages.DecodeBody[messages.PeerUpdate](env)
		if err != nil {
			a.log.Info("bad peer update", "err", err)
			return
		}
		if err := a.cfg.Dataplane.PeerUpdate(u.PeerFQDN, u.Endpoints); err != nil {
			a.log.Info("peer update", "peer", u.PeerFQDN, "err", err)
		}
		reply = messages.PeerUpdateAck{}
	case messages.MsgDenyList:
		dl, err := messages.DecodeBody[messages.DenyList](env)
		if err != nil {
			a.log.Info("bad deny list", "err", err)
			return
		}
		// The chunks of a newer list are put together; the node then
		// verifies the CA's signature and keeps the list only if it is
		// newer. Every chunk's ack tells NMS which list the node holds.
		var held uint64
		if a.cfg.DenyList != nil {
			held = a.cfg.DenyList(nil)
			if dl.Number > held {
				der, err := a.crlParts.Add(dl.Number, int(dl.Offset), int(dl.Total), dl.Chunk)
				switch {
				case err != nil:
					a.log.Info("bad deny list chunk", "number", dl.Number, "err", err)
				case der != nil:
					held = a.cfg.DenyList(der)
				}
			}
		}
		reply = messages.DenyListAck{Number: held}
	}
	a.sendAnswer(env.ID, reply, from)
}

// directionOpened sends the DirectionAck a Direction waited for.
func (a *sessionActor) directionOpened(m *directionOpened) {
	delete(a.directing, m.id)
	if m.epoch != a.epoch || a.sess == nil {
		return // a new login since: NMS sends that Direction again if it still stands
	}
	if m.err != nil {
		a.log.Warn("direction: open tunnel", "err", m.err)
	}
	a.sendAnswer(m.id, messages.DirectionAck{TunnelID: m.tunnel, OK: m.err == nil, Endpoints: a.registered}, m.from)
}

// sendAnswer seals reply to NMS's request id, caches it for the request's
// retransmissions and sends it.
func (a *sessionActor) sendAnswer(id messages.MsgID, reply messages.Body, from netip.AddrPort) {
	pkt, err := a.sess.SealMessage(nil, a.enc, id, a.cfg.Identity.FQDN, time.Now(), reply)
	if err != nil {
		a.log.Error("seal answer", "err", err)
		return
	}
	// Remember the answer as long as the request could be replayed.
	if err := a.s.store.Put(id, entry{answer: pkt}, 2*signaling.MaxClockSkew); err != nil {
		a.log.Debug("answer not cached", "err", err)
	}
	a.sendControl(pkt, from)
}

func (a *sessionActor) sendControl(pkt []byte, to netip.AddrPort) {
	if err := a.cfg.Dataplane.SendControl(pkt, to); err != nil {
		a.log.Debug("send control", "to", to, "err", err)
	}
}

func (a *sessionActor) txDone(ctx actor.Context, d *txDone) {
	o, ok := a.open[d.id]
	if !ok {
		return // cancelled by a new login
	}
	delete(a.open, d.id)
	switch o.kind {
	case messages.MsgLoginRequest:
		a.loginDone(ctx, d)
	case messages.MsgRegister:
		a.registerDone(ctx, d)
	case messages.MsgKeepalive:
		a.keepaliveDone(ctx, d)
	case messages.MsgTunnelRequest:
		a.tunnelDone(ctx, o.key, d)
	case messages.MsgTunnelByVIP:
		a.vipDone(ctx, o.key, d)
	case messages.MsgVIPLookup:
		a.lookupDone(ctx, o.key, d)
	}
}

// lostCloud reports whether err means the cloud no longer knows our
// session, so that only a new login helps.
func lostCloud(err error) bool {
	var e *messages.Error
	if errors.As(err, &e) {
		return e.Code == messages.CodeSessionExpired || e.Code == messages.CodeNotAuthenticated
	}
	return errors.Is(err, ErrTimeout)
}

func (a *sessionActor) relogin(ctx actor.Context, why error) {
	a.lastErr = why.Error()
	if len(a.cfg.Clouds) > 1 && errors.Is(why, ErrTimeout) {
		// No answer at all (a schedule shorter than FailoverAfter ran out
		// first): this cloud is lost, not just our session with it.
		from := a.as
		a.failovers++
		a.nextCloud()
		if a.moveNMS(ctx, why) {
			return
		}
		a.log.Warn("cloud lost, logging in at the next one", "err", why, "cloud", from, "next", a.as)
	} else {
		a.log.Warn("cloud session lost, logging in again", "err", why)
	}
	a.startLogin(ctx)
}

func (a *sessionActor) loginDone(ctx actor.Context, d *txDone) {
	if d.err != nil {
		a.loginFailed(ctx, fmt.Errorf("login to %s: %w", a.as, d.err))
		return
	}
	a.loginFailures = 0
	a.sess, a.login = d.login.Session, d.login.Reply
	a.logins++
	a.lastLogin = time.Now()
	a.heard = time.Now()
	a.nms = pickAddr(a.login.NMS, a.cfg.Dataplane.LocalAddrs(), a.as, a.as)
	a.probe, a.moves = netip.AddrPort{}, 0
	a.log.Info("logged in", "as", a.as, "session", a.login.SessionID, "vip6", a.login.VIP6, "vip4", a.login.VIP4, "nms", a.nms)
	if a.cfg.OnLogin != nil {
		a.cfg.OnLogin(a.login)
	}
	a.state = StateRegistering
	a.probing = false
	a.probeThenRegister(ctx)
}

// probeThenRegister asks the cloud's second observation point for our
// mapping, then registers (on the reply, or after ProbeWait without one).
// Every registration carries a fresh observation: NMS classifies our NAT
// from it, and a stale one (from before a move, or from the NAT we had
// before the router was replaced) would keep a cone NAT reading as
// symmetric and the tunnels through it on the relay.
func (a *sessionActor) probeThenRegister(ctx actor.Context) {
	if _, busy := a.inFlight(messages.MsgRegister, ""); a.probing || busy || a.sess == nil {
		return // the probe or registration in flight will do
	}
	a.probeSeen = nil
	probe := a.probe
	if !probe.IsValid() {
		probe = pickAddr(a.login.NATProbe, a.cfg.Dataplane.LocalAddrs(), a.as, netip.AddrPort{})
	}
	if !probe.IsValid() {
		a.register(ctx)
		return
	}
	a.probing = true
	a.probeID = rand.Uint64()
	buf := make([]byte, messages.ProbeLen)
	messages.Probe{ID: a.probeID}.Put(buf)
	a.sendControl(buf, probe)
	// The single timer now waits for the probe; registerDone re-arms the
	// keepalive.
	a.after(ctx, a.cfg.ProbeWait, probeTimeout{epoch: a.epoch})
}

// probed registers once the probe is answered or given up on.
func (a *sessionActor) probed(ctx actor.Context) {
	a.probing = false
	a.register(ctx)
	if _, sent := a.inFlight(messages.MsgRegister, ""); !sent {
		// Not sent (nothing to seal with): retry at keepalive pace rather
		// than leave the session without a timer.
		a.after(ctx, a.cfg.Keepalive, keepaliveTick{epoch: a.epoch})
	}
}

// pickAddr returns the first of addrs in the family we reached the AS over
// (as), else the first whose family one of our sockets has, or fallback.
// The AS's family comes first because a socket proves little: a wildcard
// IPv4 socket binds fine on an IPv6-only host, and the NMS's IPv4 address
// would then swallow every registration, while the login just showed the
// cloud answers us over as's family.
func pickAddr(addrs, locals []netip.AddrPort, as, fallback netip.AddrPort) netip.AddrPort {
	if as.IsValid() {
		for _, a := range addrs {
			if a.Addr().Unmap().Is4() == as.Addr().Unmap().Is4() {
				return a
			}
		}
	}
	var has4, has6 bool
	for _, l := range locals {
		if l.Addr().Unmap().Is4() {
			has4 = true
		} else {
			has6 = true
		}
	}
	for _, a := range addrs {
		if a.Addr().Unmap().Is4() && has4 || !a.Addr().Unmap().Is4() && has6 {
			return a
		}
	}
	return fallback
}

func (a *sessionActor) locators() []netip.AddrPort {
	return withoutOverlay(Locators(a.cfg.Dataplane.LocalAddrs(), a.cfg.Interfaces()), a.login.Prefix4, a.login.Prefix6)
}

// withoutOverlay drops addresses inside the overlay prefixes: our own TUN
// carries the VIPs, and a VIP registered as a locator would have peers
// send tunnel packets into the tunnel itself.
func withoutOverlay(locs []netip.AddrPort, overlay ...netip.Prefix) []netip.AddrPort {
	out := locs[:0]
	for _, l := range locs {
		inside := false
		for _, p := range overlay {
			if p.IsValid() && p.Contains(l.Addr().Unmap()) {
				inside = true
			}
		}
		if !inside {
			out = append(out, l)
		}
	}
	return out
}

func (a *sessionActor) register(ctx actor.Context) {
	if _, busy := a.inFlight(messages.MsgRegister, ""); busy || a.probing || a.sess == nil {
		return
	}
	locals := a.cfg.Dataplane.LocalAddrs()
	reg := messages.Register{Locals: a.locators(), ProbeObserved: a.probeSeen}
	for _, l := range locals {
		if l.Addr().Unmap().Is4() {
			reg.IPv4 = true
		} else {
			reg.IPv6 = true
		}
		if reg.Port == 0 {
			reg.Port = l.Port()
		}
	}
	if a.request(ctx, reg, "") {
		a.registering = reg.Locals
	}
}

func (a *sessionActor) registerDone(ctx actor.Context, d *txDone) {
	if d.err != nil {
		if lostCloud(d.err) {
			a.relogin(ctx, fmt.Errorf("register: %w", d.err))
			return
		}
		a.lastErr = d.err.Error()
		a.log.Warn("register refused", "err", d.err)
		a.after(ctx, a.cfg.Keepalive, keepaliveTick{epoch: a.epoch})
		return
	}
	r, err := messages.DecodeBody[messages.RegisterReply](d.env)
	if err != nil {
		a.log.Warn("bad register reply", "err", err)
		a.after(ctx, a.cfg.Keepalive, keepaliveTick{epoch: a.epoch})
		return
	}
	a.registered, a.observed, a.nat = a.registering, r.Observed, r.NAT
	a.state, a.moves = StateOnline, 0
	a.log.Info("registered", "observed", r.Observed, "nat", r.NAT.String(), "locals", len(a.registered))
	// Always re-arm: a re-registration's probe wait took the timer, and a
	// registration refreshes the NAT mapping as well as a keepalive would.
	a.after(ctx, a.cfg.Keepalive, keepaliveTick{epoch: a.epoch})
	a.primeOtherNMS()
	for fqdn := range a.wanted {
		a.sendTunnelRequest(ctx, fqdn)
	}
	a.sendVIPRequests(ctx)
}

// primeOtherNMS keeps our NAT open toward every other NMS of the login's
// list in our NMS's family (the other processes of an active-active
// cloud), at registration and every keepalive: should our process die,
// the one that adopts us directs us from there (cloud/nms/home.go), and a
// NAT that filters by address would drop that Direction until our own next
// keepalive noticed the loss, up to a period (15 s) later: past the 5 s a
// dead process may cost a node. The keepalive period is what holds our
// mapping toward our own NMS, so it holds these as well.
func (a *sessionActor) primeOtherNMS() {
	if !a.nms.IsValid() {
		return
	}
	is4 := a.nms.Addr().Unmap().Is4()
	for _, to := range a.login.NMS {
		if to == a.nms || to.Addr().Unmap().Is4() != is4 {
			continue
		}
		if err := a.cfg.Dataplane.PrimeNAT(to); err != nil {
			a.log.Debug("prime NAT toward another NMS", "to", to, "err", err)
		}
	}
}

func (a *sessionActor) keepalive(ctx actor.Context) {
	a.after(ctx, a.cfg.Keepalive, keepaliveTick{epoch: a.epoch})
	if a.state != StateOnline {
		a.register(ctx) // a refused registration is retried at keepalive pace
		return
	}
	if !slices.Equal(a.locators(), a.registered) {
		a.log.Info("local addresses changed, registering again")
		a.moved()
		a.probeThenRegister(ctx)
		return
	}
	if _, busy := a.inFlight(messages.MsgKeepalive, ""); !busy {
		a.request(ctx, messages.Keepalive{}, "")
	}
	a.primeOtherNMS()
}

func (a *sessionActor) keepaliveDone(ctx actor.Context, d *txDone) {
	if d.err != nil {
		if lostCloud(d.err) {
			a.relogin(ctx, fmt.Errorf("keepalive: %w", d.err))
		}
		return
	}
	ack, err := messages.DecodeBody[messages.KeepaliveAck](d.env)
	if err != nil {
		return
	}
	a.lastAck = time.Now()
	if ack.Observed.IsValid() && a.observed.IsValid() && ack.Observed != a.observed {
		a.log.Info("public mapping moved, probing the NAT again", "was", a.observed, "now", ack.Observed)
		a.moved()
		a.probeThenRegister(ctx)
	}
}

// moved tells the data plane our address moved, so relayed tunnels bind
// their TRS side from the new one at once (the TRS follows a side only on
// an authenticated bind). Peers on direct paths follow by themselves, on
// our first authenticated packet.
func (a *sessionActor) moved() {
	if err := a.cfg.Dataplane.Rebind(); err != nil {
		a.log.Debug("relay rebind", "err", err)
	}
}

func (a *sessionActor) requestTunnel(ctx actor.Context, m *requestTunnel) {
	if a.pending >= a.cfg.MaxPending {
		reply(m.reply, tunnelResult{err: ErrBusy})
		return
	}
	if m.reply != nil {
		a.waiters[m.fqdn] = append(a.waiters[m.fqdn], m.reply)
		a.pending++
	}
	if !a.wanted[m.fqdn] {
		if len(a.wanted) >= a.cfg.MaxPending {
			a.fail(m.fqdn, ErrBusy)
			return
		}
		a.wanted[m.fqdn] = true
	}
	if a.state == StateOnline {
		a.sendTunnelRequest(ctx, m.fqdn)
	}
}

func (a *sessionActor) sendTunnelRequest(ctx actor.Context, fqdn string) {
	if _, busy := a.inFlight(messages.MsgTunnelRequest, fqdn); busy {
		return
	}
	if !a.request(ctx, messages.TunnelRequest{PeerFQDN: fqdn}, fqdn) {
		a.fail(fqdn, fmt.Errorf("session: tunnel request to %s not sent", fqdn))
	}
}

func (a *sessionActor) tunnelDone(ctx actor.Context, fqdn string, d *txDone) {
	var e *messages.Error
	switch {
	case errors.As(d.err, &e) && e.Code == messages.CodeUnknownFQDN:
		a.fail(fqdn, fmt.Errorf("session: %s: %w", fqdn, ErrUnknownPeer))
		return
	case lostCloud(d.err):
		// Keep the request queued: it goes out again once logged in.
		a.relogin(ctx, fmt.Errorf("tunnel request %s: %w", fqdn, d.err))
		return
	case d.err != nil:
		a.fail(fqdn, fmt.Errorf("session: tunnel to %s: %w", fqdn, d.err))
		return
	}
	p, err := messages.DecodeBody[messages.Path](d.env)
	if err != nil {
		a.fail(fqdn, fmt.Errorf("session: tunnel to %s: %w", fqdn, err))
		return
	}
	info := messages.PathInfo(p)
	// The path must be to the peer we asked for: a compromised NMS must
	// not be able to hand us a tunnel to someone else under this name.
	// (The handshake then checks the peer's certificate names it, and
	// that its VIPs are the ones the path routes to it.)
	if want, err := pki.CanonicalFQDN(fqdn); err != nil || info.PeerFQDN != want {
		a.log.Warn("path names another peer than asked: refused", "asked", fqdn, "path", info.PeerFQDN)
		a.fail(fqdn, fmt.Errorf("session: tunnel to %s: %w: NMS named %q", fqdn, ErrWrongPeer, info.PeerFQDN))
		return
	}
	if err := a.cfg.Dataplane.Open(info); err != nil {
		a.fail(fqdn, fmt.Errorf("session: open tunnel to %s: %w", fqdn, err))
		return
	}
	a.log.Info("tunnel opened", "peer", fqdn, "path", info.Kind.String(), "initiator", info.Initiator)
	a.done(fqdn, tunnelResult{path: info})
}

func (a *sessionActor) fail(fqdn string, err error) { a.done(fqdn, tunnelResult{err: err}) }

func (a *sessionActor) done(fqdn string, r tunnelResult) {
	for _, w := range a.waiters[fqdn] {
		reply(w, r)
	}
	a.pending -= len(a.waiters[fqdn])
	delete(a.waiters, fqdn)
	delete(a.wanted, fqdn)
}

func (a *sessionActor) failWaiters(err error) {
	for fqdn := range a.wanted {
		a.fail(fqdn, err)
	}
}

// reply never blocks: every reply channel has room for its one answer.
func reply(ch chan<- tunnelResult, r tunnelResult) {
	if ch == nil {
		return
	}
	select {
	case ch <- r:
	default:
	}
}

func (a *sessionActor) stop() {
	a.stopTimer()
	a.stopWatch()
	a.failWaiters(ErrStopped)
	a.failVIPs()
	if a.sess != nil {
		// Best effort: the cloud would expire the session anyway.
		pkt, err := a.sess.SealMessage(nil, a.enc, messages.NewMsgID(), a.cfg.Identity.FQDN, time.Now(), messages.Logout{})
		if err == nil {
			a.sendControl(pkt, a.nms)
		}
	}
	a.state, a.sess = StateStopped, nil
	a.publish()
}

// moveNMS keeps the session and moves it to the next cloud process's NMS
// the login listed, registering there after a fresh probe: the session
// and its keys are in the store the processes share, so any of them
// serves it, and a registration costs the cloud a store lookup and a
// write where a new login costs the AS a certificate check and three
// X25519 operations. False when there is no other NMS to try (the login
// listed none, or each was tried since the last registration): then only
// a new login helps. The caller has moved the AS address on already (the
// one logged in at is likely the lost process's), for a login should
// this registration fail too.
func (a *sessionActor) moveNMS(ctx actor.Context, why error) bool {
	next, probe, ok := a.nextNMS()
	if !ok || a.sess == nil {
		return false
	}
	from := a.nms
	a.epoch++ // what the old NMS owed us is stale
	a.stopTimer()
	a.stopWatch()
	for id := range a.open {
		a.cancelTx(ctx, id) // wanted and wantedVIP stay: asked again once registered
	}
	a.moves++
	a.nms, a.probe = next, probe
	a.state, a.probing = StateRegistering, false
	a.log.Warn("cloud lost, moving the session to another NMS", "err", why, "from", from, "to", next)
	a.probeThenRegister(ctx)
	return true
}

// nextNMS is the NMS address after a.nms among the login's of a.nms's
// family (the AS lists its own process's first, then one per other
// process), and the probe address at the same place among the probes of
// that family (each process lists one of each per family).
func (a *sessionActor) nextNMS() (nms, probe netip.AddrPort, ok bool) {
	is4 := a.nms.Addr().Unmap().Is4()
	family := func(list []netip.AddrPort) []netip.AddrPort {
		var out []netip.AddrPort
		for _, x := range list {
			if x.Addr().Unmap().Is4() == is4 {
				out = append(out, x)
			}
		}
		return out
	}
	nmses, probes := family(a.login.NMS), family(a.login.NATProbe)
	i := slices.Index(nmses, a.nms)
	if i < 0 || a.moves >= len(nmses)-1 {
		return netip.AddrPort{}, netip.AddrPort{}, false
	}
	j := (i + 1) % len(nmses)
	if j < len(probes) {
		probe = probes[j]
	}
	return nmses[j], probe, true
}

// nextCloud moves to the next cloud address.
func (a *sessionActor) nextCloud() {
	a.cloud = (a.cloud + 1) % len(a.cfg.Clouds)
	a.as = a.cfg.Clouds[a.cloud]
	if a.cfg.OnFailover != nil {
		a.cfg.OnFailover()
	}
}

// setClouds takes a new list of cloud addresses (SetClouds). The session
// stays where it is; if that address is no longer listed, the next
// failover goes to the list's first.
func (a *sessionActor) setClouds(ctx actor.Context, clouds []netip.AddrPort) {
	if slices.Equal(clouds, a.cfg.Clouds) {
		return
	}
	a.log.Info("cloud addresses changed", "from", a.cfg.Clouds, "to", clouds, "current", a.as)
	a.cfg.Clouds = clouds
	if i := slices.Index(clouds, a.as); i >= 0 {
		a.cloud = i
	} else {
		a.cloud = len(clouds) - 1
	}
	a.watchCloud(ctx) // with a second address, the watch has somewhere to go
}

// watchTimes is when the watch acts on request o, and whether it does:
// nothing once an authenticated packet from the cloud came after o was
// sent. A request to NMS unanswered after the schedule's first wait
// (probe) sends a keepalive, so that a cloud that is only slow with this
// request (a tunnel to a peer whose own cloud process just died, say)
// shows it is alive by answering that; with nothing at all heard by
// FailoverAfter (fail) the cloud is lost. A login fails after twice
// FailoverAfter: two round trips and the AS's Diffie-Hellman, more under
// load.
func (a *sessionActor) watchTimes(o inflight) (probe, fail time.Time, ok bool) {
	switch {
	case o.kind == messages.MsgLoginRequest:
		return time.Time{}, o.sent.Add(2 * a.cfg.FailoverAfter), true
	case a.heard.After(o.sent):
		return time.Time{}, time.Time{}, false
	case o.kind != messages.MsgKeepalive && !o.probed && a.cfg.Retry.Initial < a.cfg.FailoverAfter:
		probe = o.sent.Add(a.cfg.Retry.Initial)
	}
	return probe, o.sent.Add(a.cfg.FailoverAfter), true
}

// watchCloud arms the failover check for the earliest time the watch acts
// on a request in flight, unless it is armed for as early or there is no
// other cloud to go to.
func (a *sessionActor) watchCloud(ctx actor.Context) {
	if len(a.cfg.Clouds) < 2 {
		return
	}
	var next time.Time
	for _, o := range a.open {
		probe, fail, ok := a.watchTimes(o)
		if !ok {
			continue
		}
		for _, t := range []time.Time{probe, fail} {
			if !t.IsZero() && (next.IsZero() || t.Before(next)) {
				next = t
			}
		}
	}
	if next.IsZero() || a.watch != nil && !next.Before(a.watchAt) {
		return
	}
	a.stopWatch()
	root, self, msg := ctx.ActorSystem().Root, ctx.Self(), cloudWatch{epoch: a.epoch}
	a.watch, a.watchAt = time.AfterFunc(max(time.Until(next), 0), func() { root.Send(self, msg) }), next
}

// checkCloud fails over to the next cloud if a request has gone
// unanswered past its deadline, or probes the cloud with a keepalive for
// one past its first wait; then it watches the rest. The tunnels are not
// touched (their data path is the peers' own), and the requests waiting go
// out again once the new login registered.
func (a *sessionActor) checkCloud(ctx actor.Context) {
	now := time.Now()
	probe := false
	for id, o := range a.open {
		p, fail, ok := a.watchTimes(o)
		if !ok {
			continue
		}
		if !now.Before(fail) {
			from := a.as
			a.failovers++
			if o.kind == messages.MsgLoginRequest {
				// As a login that timed out: the next cloud, and the
				// backoff once all of them failed in a row.
				a.cancelTx(ctx, id)
				a.loginFailed(ctx, fmt.Errorf("login to %s: %w (after %v; trying the next cloud)", from, ErrTimeout, now.Sub(o.sent).Round(time.Millisecond)))
				return
			}
			a.nextCloud()
			why := fmt.Errorf("%s unanswered for %v from the cloud at %s", o.kind, now.Sub(o.sent).Round(time.Millisecond), from)
			a.lastErr = why.Error()
			if a.moveNMS(ctx, why) {
				return
			}
			a.log.Warn("cloud lost, logging in at the next one", "err", why, "next", a.as)
			a.loginFailures = 0
			a.startLogin(ctx)
			return
		}
		if !p.IsZero() && !now.Before(p) {
			o.probed = true
			a.open[id] = o
			probe = true
		}
	}
	if _, busy := a.inFlight(messages.MsgKeepalive, ""); probe && !busy && a.sess != nil {
		a.request(ctx, messages.Keepalive{}, "")
	}
	a.watchCloud(ctx)
}

func (a *sessionActor) stopWatch() {
	if a.watch != nil {
		a.watch.Stop()
		a.watch, a.watchAt = nil, time.Time{}
	}
}
