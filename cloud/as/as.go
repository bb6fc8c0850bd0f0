package as

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/netip"
	goruntime "runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/actors/txstore"
	"github.com/cyphonic/cyphonic-go/cloud/server/svc"
	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/transport/cookie"
	"github.com/cyphonic/cyphonic-go/transport/handshake"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
	"github.com/cyphonic/cyphonic-go/transport/udp"
)

// Config is what an AS needs.
type Config struct {
	Identity *pki.Identity // the AS's own service certificate (role as)
	Verifier *pki.Verifier // accepts node certificates (role node), with the deny list
	Store    store.Store
	Listen   []string // UDP addresses, e.g. "127.0.0.1:7401", "[::1]:7401"
	// Link carries the AS's frames to the NMS (and its answers back).
	Link *svc.Link
	// NMS is the NMS root actor that receives KeyHandover, in this process
	// or another.
	NMS svc.Ref
	// NMSAddrs and NATProbe are told to the node in LoginReply.
	NMSAddrs, NATProbe []netip.AddrPort
	SessionTTL         time.Duration // default 1 h
	HandoverTimeout    time.Duration // how long to wait for NMS's ack; default 5 s
	// StoreWorkers bounds the store calls in flight (default 16); logins
	// beyond StoreWorkers+StoreQueue waiting for the store are dropped and
	// the nodes' retransmissions retry them.
	StoreWorkers, StoreQueue int
	// PendingTTL is how long a challenged login waits for the node's
	// confirmation, and how long the answer to a confirmation is kept for
	// its retransmissions (default 15 s: a node's whole retransmission
	// schedule).
	PendingTTL time.Duration
	// MaxPending bounds the logins challenged within PendingTTL, hence the
	// unproven state the AS holds at any time (default 16384).
	MaxPending int
	// Workers is the number of login workers (as/worker-<i>, default
	// GOMAXPROCS): each checks the certificates and runs the DH of the
	// login packets routed to it, so the curve arithmetic of a burst uses
	// every core.
	Workers int
	// MaxChallenging bounds the login packets admitted and waiting for a
	// worker, over all workers (each takes its share); a login packet
	// finding its worker's share full is dropped (counted as queue) and its
	// node's retransmission tries again. It keeps a burst from queueing
	// seconds of DH in front of a real login. Default 32 per CPU.
	MaxChallenging int
	// Limits rate-limits login packets per source and globally, before
	// any work is done for them.
	Limits LimitConfig
	Logger *slog.Logger
	// OtherClouds, if set, returns the other live cloud processes sharing
	// the store (their NMS and probe addresses): LoginReply lists them
	// after NMSAddrs and NATProbe, so a node whose process dies moves its
	// session to another with a registration, without a new login.
	OtherClouds func() []store.LeaseInfo
}

// Counters are the AS's outcome counts.
type Counters struct {
	Accepted, Refused, Duplicates, Garbage, Failed atomic.Uint64
	// Busy counts logins dropped because the store workers were
	// saturated. (A login dropped because the login workers' queues were
	// full is counted by the listener: Dropped.)
	Busy atomic.Uint64
	// Challenged counts logins answered with a challenge: not proven yet,
	// nothing committed for them.
	Challenged atomic.Uint64
	// Limited counts packets refused by the per-source or the global rate
	// limit, before they were parsed.
	Limited atomic.Uint64
	// Short counts login packets below messages.LoginMinLen, dropped
	// unanswered (an answer could be larger than them).
	Short atomic.Uint64
	// Unanswered counts answers not sent because they were larger than the
	// packet they answered.
	Unanswered atomic.Uint64
	// Full counts logins dropped because MaxPending logins were pending.
	Full atomic.Uint64
	// Cookies counts logins answered with a cookie (under load, without a
	// valid mac2): unproven sources, no work done for them.
	Cookies atomic.Uint64
	// IDTaken counts logins refused at commit because their session ID was
	// taken since the challenge chose it (the node logs in again).
	IDTaken atomic.Uint64
	// UncheckedIDs counts challenges that named a session ID the store had
	// not checked (the pool of checked IDs was empty: ids.go).
	UncheckedIDs atomic.Uint64
}

// Service is a running AS.
type Service struct {
	cfg        Config
	sys        *supervise.System
	txs        *txstore.Store[*loginState] // by login packet (loginKey)
	bySession  *txstore.Store[*loginState] // the same logins, by challenged session ID
	pending    *window
	logins     []*actor.PID         // as/worker-<i>: fixed names, good across restarts
	loginSlots []*supervise.Limiter // per worker: login packets waiting for it
	seed       maphash.Seed         // spreads sources over the workers
	limit      *limiter
	cookies    *cookie.Checker // login packets' mac1 and mac2
	workers    *svc.Workers    // store I/O, off the actors' run loops
	listener   *svc.Listener
	ids        *idPool // session IDs the store reported free (ids.go)
	pid        *actor.PID
	addrs      []netip.AddrPort
	log        *slog.Logger
	prefix6    netip.Prefix
	prefix4    netip.Prefix
	Counters   Counters
}

// loginState is one login under its packet's hash (and, once challenged,
// under its session ID). Before the confirmation opens it is all the AS
// holds for the login: no VIP, no record, no key at NMS.
type loginState struct {
	id  messages.MsgID // the login's message ID: the confirmation and the reply carry it
	key txstore.ID     // its login packet's key in txs

	// Set by the challenge before the state is reachable by session ID,
	// read-only afterwards.
	session      uint32
	sess         *signaling.Session // the cloud's end of the pending session
	keys         signaling.Keys
	fqdn, serial string     // from the verified certificate
	notAfter     time.Time  // its expiry
	vip6, vip4   netip.Addr // the VIPs the certificate binds (the CA allocated them)

	msg2       atomic.Pointer[[]byte] // the challenge or refusal, for retransmitted login packets
	final      atomic.Pointer[[]byte] // the sealed answer, for retransmitted confirmations
	committing atomic.Bool            // a commit transaction runs (or has run)
	commit     atomic.Pointer[commit] // the one running, for NMS's ack to find
}

func sessionKey(id uint32) txstore.ID {
	var k txstore.ID
	binary.BigEndian.PutUint32(k[:], id)
	return k
}

// Start opens the sockets and spawns the root actor in sys.
func Start(sys *supervise.System, cfg Config) (*Service, error) {
	if cfg.Identity == nil || cfg.Verifier == nil || cfg.Store == nil || cfg.Link == nil || cfg.NMS.IsZero() {
		return nil, errors.New("as: config needs Identity, Verifier, Store, Link and NMS")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = time.Hour
	}
	if cfg.HandoverTimeout <= 0 {
		cfg.HandoverTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StoreWorkers <= 0 {
		cfg.StoreWorkers = 16
	}
	if cfg.StoreQueue <= 0 {
		cfg.StoreQueue = 1024
	}
	if cfg.PendingTTL <= 0 {
		cfg.PendingTTL = 15 * time.Second
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 16384
	}
	if cfg.MaxChallenging <= 0 {
		cfg.MaxChallenging = 32 * goruntime.GOMAXPROCS(0)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = goruntime.GOMAXPROCS(0)
	}
	// Both stores hold at most MaxPending unproven logins plus the proven
	// ones of the last PendingTTL; far more room keeps Ristretto's
	// admission policy from refusing them.
	txs, err := txstore.New[*loginState](txstore.Config{MaxEntries: int64(8 * cfg.MaxPending)})
	if err != nil {
		return nil, err
	}
	bySession, err := txstore.New[*loginState](txstore.Config{MaxEntries: int64(8 * cfg.MaxPending)})
	if err != nil {
		txs.Close()
		return nil, err
	}
	conns, err := svc.ListenUDP(cfg.Listen)
	if err != nil {
		txs.Close()
		bySession.Close()
		return nil, fmt.Errorf("as: listen: %w", err)
	}
	for _, c := range conns {
		// A deep receive queue rides out the moments the readers are not
		// scheduled (a flood fills the default ~200 KB in a millisecond).
		// Failure (rmem_max) only costs burst capacity.
		_ = c.SetReadBuffer(udp.SocketBufferSize)
	}
	s := &Service{cfg: cfg, sys: sys, txs: txs, bySession: bySession, log: cfg.Logger.With("service", "as"), addrs: svc.LocalAddrs(conns),
		pending: newWindow(cfg.PendingTTL, cfg.MaxPending), limit: newLimiter(cfg.Limits),
		cookies: cookie.NewChecker(pki.RoleAS.ServiceFQDN(), nil),
		prefix6: pki.DefaultVIP6, prefix4: pki.DefaultVIP4, seed: maphash.MakeSeed()}
	share := max(cfg.MaxChallenging/cfg.Workers, 1)
	for i := range cfg.Workers {
		// The IDs supervise.Spawn gives the root's children (a PID
		// resolves by ID, so these reach a restarted worker too).
		s.logins = append(s.logins, sys.Actors().NewLocalPID(fmt.Sprintf("as/worker-%d", i)))
		s.loginSlots = append(s.loginSlots, supervise.NewLimiter(share))
	}
	s.workers = svc.NewWorkers(sys.Root(), cfg.StoreWorkers, cfg.StoreQueue)
	s.ids = &idPool{draw: randomSessionID, filling: true}
	s.refillIDs() // checked IDs on hand for the first logins
	ready, once := make(chan struct{}), new(sync.Once)
	pid, err := sys.Spawn(nil, "as", "as", actor.PropsFromProducer(func() actor.Actor {
		return &root{s: s, scratch: make([]byte, 0, messages.MaxEnvelopeLen), ready: ready, readyOnce: once}
	}), svc.ReleaseOnReceipt{}) // it is done with a packet in its Receive: a stopped one's queue gives its slots back
	if err == nil {
		select { // the workers exist before a packet is sent to them
		case <-ready:
		case <-time.After(10 * time.Second):
			sys.Root().Stop(pid)
			err = errors.New("as: login workers did not start")
		}
	}
	if err != nil {
		for _, c := range conns {
			c.Close()
		}
		s.workers.Close()
		txs.Close()
		bySession.Close()
		return nil, err
	}
	s.pid = pid
	// Login packets go to the workers, everything else (confirmations: one
	// AEAD open each) to the root, each with a bound of its own, so that a
	// burst of logins cannot crowd out the confirmations that finish them.
	targets := append(slices.Clone(s.logins), pid)
	slots := append(slices.Clone(s.loginSlots), supervise.NewLimiter(4096))
	s.listener = svc.ServeSharded(sys.Root(), targets, slots, s.route, conns, s.admit, s.log)
	return s, nil
}

// route sends a login packet (admitted: past the cookie and the rate
// limits) to the login worker with the shortest queue, and anything else
// to the root, the last of the n targets. Logins need no affinity (their
// state is in the txstores, which every worker reads, and PutIfAbsent
// keeps a retransmission racing its first copy to one challenge), and
// with a few sources behind one address a hash of the source would load
// the workers unevenly; ties go by a hash of the source.
func (s *Service) route(b []byte, from netip.AddrPort, n int) int {
	if messages.PacketType(b[0]) != messages.TypeLogin {
		return n - 1
	}
	a := from.Addr().As16()
	best := int((maphash.Bytes(s.seed, a[:]) ^ uint64(from.Port())) % uint64(n-1))
	for i, l := range s.loginSlots {
		if l.Len() < s.loginSlots[best].Len() {
			best = i
		}
	}
	return best
}

// LoginQueues reports each login worker's queue: packets waiting, its
// bound, packets dropped because it was full.
func (s *Service) LoginQueues() []supervise.Queue {
	out := make([]supervise.Queue, len(s.loginSlots))
	for i, l := range s.loginSlots {
		out[i] = l.Queue(fmt.Sprintf("worker-%d", i))
	}
	return out
}

// Addrs are the bound UDP addresses.
func (s *Service) Addrs() []netip.AddrPort { return s.addrs }

// PID is the root actor.
func (s *Service) PID() *actor.PID { return s.pid }

// Pending is how many logins were challenged within the last PendingTTL:
// an upper bound on the unproven logins the AS holds state for.
func (s *Service) Pending() int { return s.pending.count(time.Now()) }

// Sources is the size of the per-source rate-limit table.
func (s *Service) Sources() int { return s.limit.tracked() }

// Dropped counts admitted packets the socket readers dropped because their
// actor's queue was full: a login worker's share of MaxChallenging, or the
// root's 4096 confirmations.
func (s *Service) Dropped() uint64 { return s.listener.Dropped() }

// StoreQueue is the store jobs waiting for a worker, and the queue's size.
func (s *Service) StoreQueue() (queued, capacity int) { return s.workers.Queued(), s.workers.Cap() }

// UnderLoad reports whether the per-source rate limits are enforced now.
func (s *Service) UnderLoad() bool { return s.limit.underLoad(time.Now()) }

// Close stops reading packets, waits for the store calls in flight and
// drops the transaction stores. Stop the actor system afterwards (or
// before: both orders are safe).
func (s *Service) Close() {
	s.listener.Close()
	s.sys.Root().Stop(s.pid)
	s.workers.Close()
	s.txs.Close()
	s.bySession.Close()
}

// admit runs in the socket readers, before a packet is copied or reaches
// an actor: a flood the limits refuse costs a read and a map lookup.
func (s *Service) admit(conn *net.UDPConn, b []byte, from netip.AddrPort) bool {
	switch messages.PacketType(b[0]) {
	case messages.TypeLogin:
		if len(b) < messages.LoginMinLen {
			s.Counters.Short.Add(1)
			return false
		}
		now := time.Now()
		// Full challenge slots are not load by themselves: many nodes behind
		// one address logging in at once fill them too, and must not be held
		// to one source's share for it.
		busy := s.pending.count(now) > s.cfg.MaxPending/2
		if busy || s.limit.underLoad(now) {
			// Under load, as in WireGuard, a login must prove its source
			// with a cookie's mac2 before it is metered against a source
			// table: a flood whose every packet claims a new source then
			// fills no table and takes no budget, and costs at most one MAC
			// and a 60-byte answer a packet (the answer is bound to the
			// packet's mac1, so a packet whose mac1 is wrong gets a cookie
			// no one can open: no need to check it first). A source the
			// table already holds over its share (a flood from addresses
			// the attacker has) is dropped first, for a map lookup.
			if s.limit.overShare(from.Addr(), now) {
				s.Counters.Limited.Add(1)
				return false
			}
			if !s.cookies.CheckMAC2(b, from, now) {
				s.askCookie(conn, b, from, now)
				return false
			}
		}
		if !s.cookies.CheckMAC1(b) {
			s.Counters.Garbage.Add(1)
			return false
		}
		if !s.limit.allow(from.Addr(), true, busy, now) {
			s.Counters.Limited.Add(1)
			return false
		}
	case messages.TypeSignaling: // a confirmation: one AEAD open, no DH
		// Under load its source is held to its share only if the table
		// already holds it: a spoofed flood of these must not fill the
		// table that proven logins are metered in.
		now := time.Now()
		if s.limit.underLoad(now) {
			if s.limit.overShare(from.Addr(), now) {
				s.Counters.Limited.Add(1)
				return false
			}
		} else if !s.limit.allow(from.Addr(), false, false, now) {
			s.Counters.Limited.Add(1)
			return false
		}
	default:
		s.Counters.Garbage.Add(1)
		return false
	}
	return true
}

// askCookie answers a login that lacks a valid mac2 while the AS is under
// load with a cookie for its source, and keeps nothing: only a node that
// receives at that address can prove it with the next copy's mac2.
//
// Asking is not itself counted as load: every node's first login packet
// lacks a mac2, so a steady stream of ordinary logins would otherwise keep
// the AS under load (and sites behind one address held to one source's
// share) for as long as it lasted. Load is what the login budget and the
// pending challenges say (limiter.allow); a flood the cookies hold off
// spends no budget, so the load lapses loadHold after its last sign, the
// flood then reaches the budget until it is at half again (at most its
// burst's worth of Diffie-Hellmans per loadHold), and the AS is under load
// once more.
func (s *Service) askCookie(conn *net.UDPConn, login []byte, to netip.AddrPort, now time.Time) {
	var buf [messages.LoginCookieLen]byte
	b := buf[:messages.PutLoginCookieHeader(buf[:])]
	b, err := s.cookies.Reply(b, login, to, now)
	if err != nil {
		s.log.Warn("as: login cookie", "err", err)
		return
	}
	s.Counters.Cookies.Add(1)
	s.send(conn, b, to, len(login))
}

// send answers a packet of answering bytes with pkt, unless pkt is the
// larger: the source address of a login is unproven, and the AS must not
// be a way to send someone more than was sent to it.
func (s *Service) send(conn *net.UDPConn, pkt []byte, to netip.AddrPort, answering int) {
	if len(pkt) > answering {
		s.Counters.Unanswered.Add(1)
		s.log.Debug("as: answer larger than the packet it answers, not sent", "to", to, "answer", len(pkt), "packet", answering)
		return
	}
	_, _ = conn.WriteToUDPAddrPort(pkt, to)
}

// handshakeConfig extracts the identity and Noise key from the node's
// certificate without judging it, so that policy failures become typed
// Error replies inside msg2 (see transport/signaling).
func (s *Service) handshakeConfig() handshake.Config {
	id := s.cfg.Identity
	return handshake.Config{
		Static:  handshake.StaticKey{Private: id.NoiseStatic.Private, Public: id.NoiseStatic.Public},
		CertDER: id.CertDER,
		Verify:  pki.NoiseBinding,
	}
}

// refusal maps a verification failure onto the error code the node sees.
func refusal(err error) messages.Error {
	code := messages.CodeNotAuthenticated
	switch {
	case errors.Is(err, pki.ErrExpired):
		code = messages.CodeCertExpired
	case errors.Is(err, pki.ErrNotYetValid):
		code = messages.CodeCertNotYetValid
	case errors.Is(err, pki.ErrUnknownCA):
		code = messages.CodeCertUnknownCA
	case errors.Is(err, pki.ErrRevoked):
		code = messages.CodeCertRevoked
	case errors.Is(err, pki.ErrFQDNMismatch):
		code = messages.CodeCertFQDNMismatch
	}
	return messages.Error{Code: code, Message: code.String()}
}

// root is the AS's root actor: it spawns the login workers and takes the
// confirmations (sealed packets), which start the commit transactions, and
// runs those (commit). They run here rather than on the login workers:
// a commit's steps are a few microseconds each, and on a worker each would
// wait behind that worker's queue of Diffie-Hellmans (a share of
// MaxChallenging, ~1 ms each) three times over.
type root struct {
	s         *Service
	scratch   []byte
	ready     chan struct{}
	readyOnce *sync.Once
	stopSweep func()
}

// sweepTick: time to sweep the per-source table (limiter.sweep).
type sweepTick struct{}

func (r *root) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		// A restart stops the workers with the root and spawns them again
		// under the same names.
		for i := range r.s.logins {
			if _, err := supervise.Spawn(ctx, "as-worker", fmt.Sprintf("worker-%d", i), actor.PropsFromProducer(func() actor.Actor {
				return &loginWorker{s: r.s}
			}), svc.ReleaseOnReceipt{}); err != nil {
				r.s.log.Error("as: spawn login worker", "worker", i, "err", err)
			}
		}
		r.readyOnce.Do(func() { close(r.ready) })
		r.stopSweep = supervise.Every(ctx, sweepEvery, sweepTick{})
	case *actor.Stopping, *actor.Restarting:
		if r.stopSweep != nil {
			r.stopSweep()
		}
	case sweepTick:
		r.s.limit.sweep(time.Now())
	case *svc.Packet:
		r.onPacket(ctx, m)
	default:
		if r.s.onCommitStep(ctx, m) {
			return
		}
		if f, ok, err := svc.DecodeFrame(m); ok {
			if err != nil {
				r.s.log.Warn("as: bad frame from NMS", "err", err)
				return
			}
			r.s.onHandoverAck(f)
		}
	}
}

func (r *root) onPacket(ctx actor.Context, p *svc.Packet) {
	defer p.Done()
	switch messages.PacketType(p.Data[0]) {
	case messages.TypeSignaling:
		r.onConfirm(ctx, p)
	default: // logins are routed to the workers
		r.s.Counters.Garbage.Add(1)
	}
}

// loginWorker is one of the AS's login workers (as/worker-<i>). It
// handles login packets (msg1) one after the other, in its own Receive:
// deduplicate (by the packet's hash: a retransmission is the same bytes),
// check the certificate, run the DH, answer with a challenge. It commits
// nothing: a login packet proves nothing about its sender. Its queue is
// bounded at the socket reader (MaxChallenging's share), so a burst never
// queues more DH than a share's worth in front of a real login.
type loginWorker struct{ s *Service }

func (w *loginWorker) Receive(ctx actor.Context) {
	p, ok := ctx.Message().(*svc.Packet)
	if !ok {
		return
	}
	defer p.Done()
	w.s.onLogin(p)
}

func (s *Service) onLogin(p *svc.Packet) {
	if messages.PacketType(p.Data[0]) != messages.TypeLogin {
		s.Counters.Garbage.Add(1)
		return
	}
	if len(p.Data) < messages.LoginMinLen {
		s.Counters.Short.Add(1)
		return
	}
	key := loginKey(p.Data)
	if cur, ok := s.txs.Get(key); ok {
		s.duplicate(cur, p.Conn, p.Data, p.From)
		return
	}
	tx := challengeTx{s: s, key: key, pkt: p.Data, from: p.From, conn: p.Conn}
	tx.run()
}

// loginKey names a login packet in the store: a retransmission is the
// same bytes up to mac2 (which a cookie may have changed), so it finds the
// login and its answer.
func loginKey(pkt []byte) txstore.ID {
	sum := sha256.Sum256(pkt[:len(pkt)-cookie.MACLen])
	return txstore.ID(sum[:16])
}

// duplicate answers a retransmitted login packet with the answer already
// given, never a new one.
func (s *Service) duplicate(cur *loginState, conn *net.UDPConn, pkt []byte, from netip.AddrPort) {
	s.Counters.Duplicates.Add(1)
	if m := cur.msg2.Load(); m != nil {
		s.send(conn, *m, from, len(pkt))
	}
	// Still being challenged: the challenge will answer this copy too.
}

// onConfirm handles a sealed packet: the confirmation of a challenged
// login, which proves the node's key once it opens. Only then does a
// transaction commit anything.
func (r *root) onConfirm(ctx actor.Context, p *svc.Packet) {
	s := r.s
	sid, err := signaling.PeekSession(p.Data)
	if err != nil {
		s.Counters.Garbage.Add(1)
		return
	}
	st, ok := s.bySession.Get(sessionKey(sid))
	if !ok {
		s.Counters.Garbage.Add(1)
		s.log.Debug("as: sealed packet for no pending login", "from", p.From, "session", sid)
		return
	}
	if err := signaling.OpenConfirm(st.sess, r.scratch, p.Data, st.id, time.Now()); err != nil {
		s.Counters.Garbage.Add(1)
		s.log.Debug("as: confirmation does not open", "from", p.From, "session", sid, "err", err)
		return
	}
	if f := st.final.Load(); f != nil {
		s.Counters.Duplicates.Add(1)
		s.send(p.Conn, *f, p.From, len(p.Data))
		return
	}
	if !st.committing.CompareAndSwap(false, true) {
		s.Counters.Duplicates.Add(1) // the commit in flight answers it
		return
	}
	s.startCommit(ctx, &commit{st: st, from: p.From, conn: p.Conn, size: len(p.Data)})
}

// challengeTx checks a login packet's certificate and answers it with a
// challenge (or a refusal), on a login worker: that costs a signature
// check and three X25519. Its only lasting trace is the loginState, which
// expires after PendingTTL unless the node confirms.
type challengeTx struct {
	s    *Service
	key  txstore.ID
	pkt  []byte
	from netip.AddrPort
	conn *net.UDPConn
	st   *loginState
	a    *signaling.LoginAttempt
}

func (t *challengeTx) run() {
	s := t.s
	a, err := signaling.ReadLogin(s.handshakeConfig(), t.pkt)
	if err != nil {
		s.Counters.Garbage.Add(1)
		s.log.Debug("as: dropped packet", "from", t.from, "err", err)
		return
	}
	now := time.Now()
	if !s.pending.admit(now) {
		s.Counters.Full.Add(1)
		s.log.Debug("as: too many pending logins, dropping", "from", t.from)
		return
	}
	st := &loginState{id: a.Envelope.ID, key: t.key}
	cur, loaded, err := s.txs.PutIfAbsent(t.key, st, s.cfg.PendingTTL)
	if err != nil {
		s.log.Warn("as: transaction store full, dropping login", "id", a.Envelope.ID, "err", err)
		return
	}
	if loaded {
		s.duplicate(cur, t.conn, t.pkt, t.from)
		return
	}
	t.st, t.a = st, a
	peer, err := s.cfg.Verifier.Verify(a.CertDER, a.Envelope.Sender, now)
	if err == nil && peer.FQDN != a.Identity {
		err = &pki.VerifyError{FQDN: a.Identity, Err: pki.ErrFQDNMismatch}
	}
	if err != nil {
		t.refuse(refusal(err), err, now)
		return
	}
	if err := signaling.CheckFresh(a.Envelope, now); err != nil {
		t.refuse(messages.Error{Code: messages.CodeBadRequest, Message: "clock skew"}, err, now)
		return
	}
	// A session ID the store reported free and no other pending login
	// holds (ids.go; PutNode refuses one a live session holds, at commit).
	id := s.sessionID()
	msg2, keys, err := a.Challenge(id, "as", now)
	if err != nil {
		s.txs.Delete(t.key)
		s.log.Warn("as: build challenge", "err", err)
		return
	}
	sess, err := signaling.NewCloudSession(id, keys)
	if err != nil {
		s.txs.Delete(t.key)
		s.log.Warn("as: pending session", "err", err)
		return
	}
	st.session, st.sess, st.keys = id, sess, keys
	st.fqdn, st.serial, st.notAfter = peer.FQDN, pki.FormatSerial(peer.Serial), peer.NotAfter
	st.vip6, st.vip4 = peer.VIP6, peer.VIP4
	if _, loaded, err := s.bySession.PutIfAbsent(sessionKey(id), st, s.cfg.PendingTTL); err != nil || loaded {
		// Forget the login: the node's retransmission starts it afresh.
		s.txs.Delete(t.key)
		s.log.Warn("as: pending login not stored", "session", id, "taken", loaded, "err", err)
		return
	}
	st.msg2.Store(&msg2)
	s.Counters.Challenged.Add(1)
	s.send(t.conn, msg2, t.from, len(t.pkt))
}

// refuse answers in msg2 and keeps the refusal for retransmissions.
func (t *challengeTx) refuse(e messages.Error, why error, now time.Time) {
	s := t.s
	s.Counters.Refused.Add(1)
	s.log.Warn("as: login refused", "fqdn", t.a.Envelope.Sender, "code", e.Code.String(), "from", t.from, "err", why)
	pkt, err := t.a.Refuse(e, "as", now)
	if err != nil {
		s.txs.Delete(t.key)
		s.log.Warn("as: build refusal", "err", err)
		return
	}
	t.st.msg2.Store(&pkt)
	s.send(t.conn, pkt, t.from, len(t.pkt))
}

// commit is the transaction that commits a proven login: read and write
// the registry on the store workers (never on an actor's run loop), hand
// the session key to NMS and answer the node, sealed, once NMS has it. It
// is not an actor (one per login grew protoactor's process registry, which
// never shrinks, by a name per login ever made): the actor that opened
// the confirmation runs its steps as messages of its own, the store jobs'
// results carry it, and NMS's acknowledgement finds it through the login's
// state in the bySession cache (the ack names the session) and checks it
// by the login's message ID, which the ack carries: the seeds' rule, a
// transaction's state in the transaction cache, whichever actor continues
// it. One runs per login at a time (loginState.committing).
type commit struct {
	st   *loginState
	from netip.AddrPort // where the confirmation came from
	conn *net.UDPConn
	size int // the confirmation's size

	now     time.Time
	reply   messages.LoginReply
	expires time.Time
	timer   *time.Timer // the handover's timeout, once sent
	done    bool        // finished: a late step or timeout does nothing
}

// Messages of a commit's steps, to the actor running it.
type (
	// loginLoaded: the node's VIPs (allocated on first login) and record.
	loginLoaded struct {
		c          *commit
		vip6, vip4 netip.Addr
		node       store.Node
		err        error // refusal(err) for the node
	}
	// loginSaved: the record with the new session is stored.
	loginSaved struct {
		c    *commit
		node store.Node
		err  error
	}
	// handoverTimeout: NMS did not acknowledge the key handover in time.
	handoverTimeout struct{ c *commit }
)

// onCommitStep runs a commit's step; false if m is not one.
func (s *Service) onCommitStep(ctx actor.Context, m any) bool {
	switch m := m.(type) {
	case loginLoaded:
		if !m.c.done {
			s.onLoaded(ctx, m)
		}
	case loginSaved:
		if !m.c.done {
			s.onSaved(ctx, m)
		}
	case handoverTimeout:
		if !m.c.done {
			s.Counters.Failed.Add(1)
			s.log.Warn("as: NMS did not acknowledge the key handover", "fqdn", m.c.st.fqdn, "session", m.c.st.session)
			s.refuseCommit(m.c, messages.Error{Code: messages.CodeInternal, Message: "NMS unavailable", Retry: true}, nil)
		}
	default:
		return false
	}
	return true
}

// onHandoverAck finishes the commit NMS acknowledged, found by the login's
// message ID.
func (s *Service) onHandoverAck(f svc.Frame) {
	if f.Envelope.Type != messages.MsgKeyHandoverAck {
		s.log.Warn("as: unexpected message from NMS", "type", f.Envelope.Type)
		return
	}
	ack, err := messages.DecodeBody[messages.KeyHandoverAck](f.Envelope)
	if err != nil {
		s.log.Warn("as: bad key handover ack", "err", err)
		return
	}
	st, ok := s.bySession.Get(sessionKey(ack.SessionID))
	if !ok || st.id != f.Envelope.ID {
		return // the login is gone (its pending state expired)
	}
	c := st.commit.Load()
	if c == nil || c.done {
		return // late: the commit timed out (the node's retransmission commits again)
	}
	pkt, err := c.seal(c.reply)
	if err != nil {
		s.log.Warn("as: seal login reply", "err", err)
		s.finish(c, nil)
		return
	}
	s.finish(c, pkt)
	s.Counters.Accepted.Add(1)
	s.log.Info("as: login accepted", "fqdn", c.st.fqdn, "session", c.st.session, "from", c.from)
}

func (c *commit) seal(body messages.Body) ([]byte, error) {
	return c.st.sess.SealMessage(nil, messages.NewEncoder(), c.st.id, "as", time.Now(), body)
}

func (s *Service) startCommit(ctx actor.Context, c *commit) {
	c.now = time.Now()
	st, name := s.cfg.Store, c.st.fqdn
	s.offload(ctx, c, func(bg context.Context) any {
		// The VIPs are the certificate's: the offline CA allocated them and
		// signed the binding, which peers check at the handshake.
		r := loginLoaded{c: c, vip6: c.st.vip6, vip4: c.st.vip4}
		r.node, r.err = st.GetNode(bg, name)
		if errors.Is(r.err, store.ErrNotFound) {
			r.node, r.err = store.Node{}, nil
		}
		return r
	})
}

// offload runs job on the store workers; its result comes back to the
// actor running the commit. When they are saturated the commit is dropped
// without an answer, so the node's retransmitted confirmation starts it
// again.
func (s *Service) offload(ctx actor.Context, c *commit, job svc.Job) {
	if err := s.workers.Do(ctx.Self(), job); err != nil {
		s.Counters.Busy.Add(1)
		s.log.Debug("as: store busy, dropping login", "fqdn", c.st.fqdn, "err", err)
		s.finish(c, nil)
	}
}

func (s *Service) onLoaded(ctx actor.Context, m loginLoaded) {
	c := m.c
	if m.err != nil {
		s.refuseCommit(c, messages.Error{Code: messages.CodeInternal, Retry: true}, m.err)
		return
	}
	c.expires = c.now.Add(s.cfg.SessionTTL)
	c.reply = messages.LoginReply{
		FQDN: c.st.fqdn, VIP6: m.vip6, VIP4: m.vip4, Prefix6: s.prefix6, Prefix4: s.prefix4,
		NMS: s.cfg.NMSAddrs, NATProbe: s.cfg.NATProbe, SessionTTL: uint32(s.cfg.SessionTTL / time.Second),
		SessionID: c.st.session, // named in the challenge; PutNode refuses one another node holds
	}
	if s.cfg.OtherClouds != nil {
		c.reply.NMS, c.reply.NATProbe = withOtherClouds(s.cfg.NMSAddrs, s.cfg.NATProbe, s.cfg.OtherClouds())
	}
	// The record's old session, if any, loses its index in the same write
	// (a new login replaces the old session): only now that the node has
	// proven its key.
	node := m.node
	node.FQDN, node.VIP6, node.VIP4 = c.st.fqdn, m.vip6, m.vip4
	node.CertSerial, node.CertNotAfter = c.st.serial, c.st.notAfter
	keys := c.st.keys
	node.Session = store.Session{ID: c.st.session, NodeToCloud: keys.NodeToCloud, CloudToNode: keys.CloudToNode, Expires: c.expires}
	node.Updated = c.now
	st := s.cfg.Store
	s.offload(ctx, c, func(bg context.Context) any {
		return loginSaved{c: c, node: node, err: st.PutNode(bg, node)}
	})
}

func (s *Service) onSaved(ctx actor.Context, m loginSaved) {
	c := m.c
	if m.err != nil {
		// A taken ID (the challenge chose one the store did not hold, so
		// only a login elsewhere that chose the same ID since) fails this
		// login; the node's next login gets a fresh one.
		if errors.Is(m.err, store.ErrSessionInUse) {
			s.Counters.IDTaken.Add(1)
		}
		s.refuseCommit(c, messages.Error{Code: messages.CodeInternal, Retry: true}, m.err)
		return
	}
	keys := c.st.keys
	frame, err := svc.NewFrame("", c.st.id, "as", c.now, messages.KeyHandover{
		SessionID: c.st.session, FQDN: c.st.fqdn, CertSerial: c.st.serial,
		NodeToCloud: keys.NodeToCloud, CloudToNode: keys.CloudToNode, Expires: c.expires.UnixNano(),
	})
	if err != nil {
		s.refuseCommit(c, messages.Error{Code: messages.CodeInternal}, err)
		return
	}
	c.st.commit.Store(c) // for the ack to find, before it can come
	if err := s.cfg.Link.Request(ctx.Self(), s.cfg.NMS, frame); err != nil {
		// The same answer as an NMS that never acknowledges, without the wait.
		s.Counters.Failed.Add(1)
		s.refuseCommit(c, messages.Error{Code: messages.CodeInternal, Message: "NMS unavailable", Retry: true}, err)
		return
	}
	root, self := ctx.ActorSystem().Root, ctx.Self()
	c.timer = time.AfterFunc(s.cfg.HandoverTimeout, func() { root.Send(self, handoverTimeout{c: c}) })
}

// refuseCommit answers with e (sealed on the session: the node is proven),
// logs why and ends the transaction.
func (s *Service) refuseCommit(c *commit, e messages.Error, why error) {
	s.Counters.Refused.Add(1)
	s.log.Warn("as: login refused", "fqdn", c.st.fqdn, "code", e.Code.String(), "from", c.from, "err", why)
	pkt, err := c.seal(e)
	if err != nil {
		s.log.Warn("as: build refusal", "err", err)
	}
	s.finish(c, pkt)
}

// finish ends commit c: it sends pkt and keeps it for retransmitted
// confirmations; without one, the login is left for the node's
// retransmission to commit again.
func (s *Service) finish(c *commit, pkt []byte) {
	st := c.st
	c.done = true
	if c.timer != nil {
		c.timer.Stop()
	}
	st.commit.CompareAndSwap(c, nil)
	if pkt != nil {
		// The node has moved on from its login packet: only its
		// confirmation's retransmissions still need an answer.
		s.txs.Delete(st.key)
		st.msg2.Store(nil)
		st.final.Store(&pkt)
		s.send(c.conn, pkt, c.from, c.size)
		// Kept for the retransmissions a full PendingTTL from now, off the
		// actor: a Put waits for the cache to apply it, and every login's
		// commit runs here. Refused (the store workers saturated), the
		// entry lives on from its challenge.
		if err := s.workers.Do(nil, func(context.Context) any {
			if err := s.bySession.Put(sessionKey(st.session), st, s.cfg.PendingTTL); err != nil {
				s.log.Debug("as: login answer not kept for retransmissions", "err", err)
			}
			return nil
		}); err != nil {
			s.log.Debug("as: login answer not kept for retransmissions", "err", err)
		}
	} else {
		st.committing.Store(false)
	}
}

func randomSessionID() uint32 {
	var b [4]byte
	for {
		rand.Read(b[:])
		if id := binary.BigEndian.Uint32(b[:]); id != 0 {
			return id
		}
	}
}

// maxAddrsPerCloud bounds the addresses one other process adds to each
// list (one per family): with the lists at messages.MaxAddrs the
// LoginReply stays well under the confirmation it answers (LoginMinLen).
const maxAddrsPerCloud = 2

// withOtherClouds lists this process's NMS and probe addresses first (a
// node prefers the first of its family, so an older node stays on this
// process) and then the other processes', each process's in one run.
func withOtherClouds(nms, probe []netip.AddrPort, others []store.LeaseInfo) (allNMS, allProbe []netip.AddrPort) {
	allNMS, allProbe = slices.Clone(nms), slices.Clone(probe)
	for _, o := range others {
		n, p := o.NMS[:min(len(o.NMS), maxAddrsPerCloud)], o.Probe[:min(len(o.Probe), maxAddrsPerCloud)]
		if len(allNMS)+len(n) > messages.MaxAddrs || len(allProbe)+len(p) > messages.MaxAddrs {
			break // what a node decodes (every address list's bound)
		}
		allNMS, allProbe = append(allNMS, n...), append(allProbe, p...)
	}
	return allNMS, allProbe
}
