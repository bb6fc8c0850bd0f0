package as

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/runtime"
	"github.com/cyphonic/cyphonic-go/actors/txstore"
	"github.com/cyphonic/cyphonic-go/cloud/pki"
	"github.com/cyphonic/cyphonic-go/cloud/server/svc"
	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/handshake"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
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
	Logger                   *slog.Logger
}

// Counters are the AS's outcome counts.
type Counters struct {
	Accepted, Refused, Duplicates, Garbage, Failed atomic.Uint64
	// Busy counts logins dropped because the store workers were saturated.
	Busy atomic.Uint64
}

// Service is a running AS.
type Service struct {
	cfg      Config
	sys      *runtime.System
	txs      *txstore.Store[*loginState]
	workers  *svc.Workers // store I/O, off the actors' run loops
	listener *svc.Listener
	pid      *actor.PID
	addrs    []netip.AddrPort
	log      *slog.Logger
	prefix6  netip.Prefix
	prefix4  netip.Prefix
	Counters Counters
}

// loginState is a login transaction's state under its message ID: pending
// until the reply is known, then the reply bytes to resend to duplicates.
type loginState struct {
	reply atomic.Pointer[[]byte]
}

const dedupTTL = 2*signaling.MaxClockSkew + time.Minute

// Start opens the sockets and spawns the root actor in sys.
func Start(sys *runtime.System, cfg Config) (*Service, error) {
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
	txs, err := txstore.New[*loginState](txstore.Config{})
	if err != nil {
		return nil, err
	}
	conns, err := svc.ListenUDP(cfg.Listen)
	if err != nil {
		txs.Close()
		return nil, fmt.Errorf("as: listen: %w", err)
	}
	s := &Service{cfg: cfg, sys: sys, txs: txs, log: cfg.Logger.With("service", "as"), addrs: svc.LocalAddrs(conns),
		prefix6: store.DefaultVIP6, prefix4: store.DefaultVIP4}
	s.workers = svc.NewWorkers(sys.Root(), cfg.StoreWorkers, cfg.StoreQueue)
	pid, err := sys.Spawn(nil, "as", "as", actor.PropsFromProducer(func() actor.Actor { return &root{s: s} }))
	if err != nil {
		for _, c := range conns {
			c.Close()
		}
		s.workers.Close()
		txs.Close()
		return nil, err
	}
	s.pid = pid
	s.listener = svc.Serve(sys.Root(), pid, conns, 4096, s.log)
	return s, nil
}

// Addrs are the bound UDP addresses.
func (s *Service) Addrs() []netip.AddrPort { return s.addrs }

// PID is the root actor.
func (s *Service) PID() *actor.PID { return s.pid }

// Close stops reading packets, waits for the store calls in flight and
// drops the transaction store. Stop the actor system afterwards (or
// before: both orders are safe).
func (s *Service) Close() {
	s.listener.Close()
	s.sys.Root().Stop(s.pid)
	s.workers.Close()
	s.txs.Close()
}

// handshakeConfig extracts the identity and Noise key from the node's
// certificate without judging it, so that policy failures become typed
// Error replies inside msg2 (see transport/signaling).
func (s *Service) handshakeConfig() handshake.Config {
	id := s.cfg.Identity
	return handshake.Config{
		Static:  handshake.StaticKey{Private: id.NoiseStatic.Private, Public: id.NoiseStatic.Public},
		CertDER: id.CertDER,
		Verify:  extractIdentity,
	}
}

func extractIdentity(der []byte) (string, [32]byte, error) {
	var k [32]byte
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return "", k, fmt.Errorf("as: certificate: %w", err)
	}
	for _, e := range c.Extensions {
		if e.Id.Equal(pki.OIDNoiseStatic) {
			// DER OCTET STRING of 32 bytes: tag, length, key.
			if len(e.Value) != 34 || e.Value[0] != 0x04 || e.Value[1] != 32 {
				return "", k, errors.New("as: malformed Noise key extension")
			}
			copy(k[:], e.Value[2:])
			return c.Subject.CommonName, k, nil
		}
	}
	return "", k, errors.New("as: certificate has no Noise key")
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
	case errors.Is(err, store.ErrVIPExhausted):
		code = messages.CodeVIPExhausted
	}
	return messages.Error{Code: code, Message: code.String()}
}

type root struct{ s *Service }

func (r *root) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *svc.Packet:
		r.onPacket(ctx, m)
	}
}

func (r *root) onPacket(ctx actor.Context, p *svc.Packet) {
	defer p.Done()
	s := r.s
	a, err := signaling.ReadLogin(s.handshakeConfig(), p.Data)
	if err != nil {
		s.Counters.Garbage.Add(1)
		s.log.Debug("as: dropped packet", "from", p.From, "err", err)
		return
	}
	st := &loginState{}
	cur, loaded, err := s.txs.PutIfAbsent(a.Envelope.ID, st, dedupTTL)
	if err != nil {
		s.log.Warn("as: transaction store full, dropping login", "id", a.Envelope.ID, "err", err)
		return
	}
	if loaded {
		s.Counters.Duplicates.Add(1)
		if reply := cur.reply.Load(); reply != nil {
			_, _ = p.Conn.WriteToUDPAddrPort(*reply, p.From)
		}
		return // still running: its reply will answer this copy too
	}
	tx := &loginTx{s: s, st: st, attempt: a, from: p.From, conn: p.Conn}
	if _, err := runtime.Spawn(ctx, "login", "tx-"+a.Envelope.ID.String(), actor.PropsFromProducer(func() actor.Actor { return tx })); err != nil {
		s.txs.Delete(a.Envelope.ID)
		s.log.Warn("as: spawn login transaction", "err", err)
	}
}

// loginTx is one login transaction: verify the certificate, read and
// write the registry on the store workers (never on the actor's run loop),
// hand the session key to NMS and answer the node once NMS has it.
type loginTx struct {
	s       *Service
	st      *loginState
	attempt *signaling.LoginAttempt
	from    netip.AddrPort
	conn    *net.UDPConn

	fqdn    string // verified
	serial  string
	now     time.Time
	reply   []byte
	keys    signaling.Keys
	expires time.Time
	session uint32
}

// Results of the transaction's store jobs.
type (
	// loginLoaded: the node's VIPs (allocated on first login) and record.
	loginLoaded struct {
		vip6, vip4 netip.Addr
		node       store.Node
		err        error // refusal(err) for the node
	}
	// loginSaved: the record with the new session is stored.
	loginSaved struct {
		node store.Node
		err  error
	}
)

func (t *loginTx) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		t.start(ctx)
	case loginLoaded:
		t.onLoaded(ctx, m)
	case loginSaved:
		t.onSaved(ctx, m)
	case *actor.ReceiveTimeout:
		t.s.Counters.Failed.Add(1)
		t.s.log.Warn("as: NMS did not acknowledge the key handover", "fqdn", t.attempt.Envelope.Sender, "session", t.session)
		t.refuse(ctx, messages.Error{Code: messages.CodeInternal, Message: "NMS unavailable", Retry: true}, nil)
	default:
		f, ok, err := svc.DecodeFrame(m)
		if !ok {
			return
		}
		if err != nil || f.Envelope.Type != messages.MsgKeyHandoverAck || f.Envelope.ID != t.attempt.Envelope.ID {
			t.s.log.Warn("as: unexpected message from NMS", "type", f.Envelope.Type, "err", err)
			return
		}
		ctx.SetReceiveTimeout(0)
		t.finish(ctx, t.reply)
		t.s.Counters.Accepted.Add(1)
		t.s.log.Info("as: login accepted", "fqdn", t.attempt.Envelope.Sender, "session", t.session, "from", t.from)
	}
}

func (t *loginTx) start(ctx actor.Context) {
	s, a := t.s, t.attempt
	t.now = time.Now()
	fqdn := a.Envelope.Sender
	peer, err := s.cfg.Verifier.Verify(a.CertDER, fqdn, t.now)
	if err == nil && peer.FQDN != a.Identity {
		err = &pki.VerifyError{FQDN: a.Identity, Err: pki.ErrFQDNMismatch}
	}
	if err != nil {
		t.refuse(ctx, refusal(err), err)
		return
	}
	if err := signaling.CheckFresh(a.Envelope, t.now); err != nil {
		t.refuse(ctx, messages.Error{Code: messages.CodeBadRequest, Message: "clock skew"}, err)
		return
	}
	t.fqdn, t.serial = peer.FQDN, pki.FormatSerial(peer.Serial)
	st, name := s.cfg.Store, t.fqdn
	t.offload(ctx, func(bg context.Context) any {
		// The VIPs are the certificate's: the offline CA allocated them and
		// signed the binding, which peers check at the handshake.
		r := loginLoaded{vip6: peer.VIP6, vip4: peer.VIP4}
		r.node, r.err = st.GetNode(bg, name)
		if errors.Is(r.err, store.ErrNotFound) {
			r.node, r.err = store.Node{}, nil
		}
		return r
	})
}

// offload runs job on the store workers. When they are saturated the login
// is dropped without an answer, its message ID forgotten, so the node's
// retransmission starts it afresh.
func (t *loginTx) offload(ctx actor.Context, job svc.Job) {
	if err := t.s.workers.Do(ctx.Self(), job); err != nil {
		t.s.Counters.Busy.Add(1)
		t.s.log.Debug("as: store busy, dropping login", "fqdn", t.attempt.Envelope.Sender, "err", err)
		t.finish(ctx, nil)
	}
}

func (t *loginTx) onLoaded(ctx actor.Context, m loginLoaded) {
	if m.err != nil {
		if errors.Is(m.err, store.ErrVIPExhausted) {
			t.refuse(ctx, refusal(m.err), m.err)
		} else {
			t.refuse(ctx, messages.Error{Code: messages.CodeInternal, Retry: true}, m.err)
		}
		return
	}
	s := t.s
	t.expires = t.now.Add(s.cfg.SessionTTL)
	reply := messages.LoginReply{
		FQDN: t.fqdn, VIP6: m.vip6, VIP4: m.vip4, Prefix6: s.prefix6, Prefix4: s.prefix4,
		NMS: s.cfg.NMSAddrs, NATProbe: s.cfg.NATProbe, SessionTTL: uint32(s.cfg.SessionTTL / time.Second),
		// Session IDs are random; PutNode refuses one another node holds.
		SessionID: randomSessionID(),
	}
	var err error
	t.reply, t.keys, err = t.attempt.Accept(reply, "as", t.now)
	if err != nil {
		t.refuse(ctx, messages.Error{Code: messages.CodeInternal}, err)
		return
	}
	// Accept fixed the session ID inside msg2; claim it in the store. The
	// record's old session, if any, loses its index in the same write (a
	// new login replaces the old session).
	node := m.node
	node.FQDN, node.VIP6, node.VIP4 = t.fqdn, m.vip6, m.vip4
	node.CertSerial = t.serial
	node.Session = store.Session{ID: reply.SessionID, NodeToCloud: t.keys.NodeToCloud, CloudToNode: t.keys.CloudToNode, Expires: t.expires}
	node.Updated = t.now
	st := s.cfg.Store
	t.offload(ctx, func(bg context.Context) any {
		return loginSaved{node: node, err: st.PutNode(bg, node)}
	})
}

func (t *loginTx) onSaved(ctx actor.Context, m loginSaved) {
	if m.err != nil {
		// A taken ID (one in 4 billion per live session) fails this login;
		// the node's retry with a new message ID gets a fresh one.
		t.refuse(ctx, messages.Error{Code: messages.CodeInternal, Retry: true}, m.err)
		return
	}
	t.session = m.node.Session.ID
	frame, err := svc.NewFrame("", t.attempt.Envelope.ID, "as", t.now, messages.KeyHandover{
		SessionID: t.session, FQDN: t.fqdn, CertSerial: t.serial,
		NodeToCloud: t.keys.NodeToCloud, CloudToNode: t.keys.CloudToNode, Expires: t.expires.UnixNano(),
	})
	if err != nil {
		t.refuse(ctx, messages.Error{Code: messages.CodeInternal}, err)
		return
	}
	if err := t.s.cfg.Link.Request(ctx.Self(), t.s.cfg.NMS, frame); err != nil {
		// The same answer as an NMS that never acknowledges, without the wait.
		t.s.Counters.Failed.Add(1)
		t.refuse(ctx, messages.Error{Code: messages.CodeInternal, Message: "NMS unavailable", Retry: true}, err)
		return
	}
	ctx.SetReceiveTimeout(t.s.cfg.HandoverTimeout)
}

// refuse answers with e, logs why and ends the transaction.
func (t *loginTx) refuse(ctx actor.Context, e messages.Error, why error) {
	t.s.Counters.Refused.Add(1)
	t.s.log.Warn("as: login refused", "fqdn", t.attempt.Envelope.Sender, "code", e.Code.String(), "from", t.from, "err", why)
	var pkt []byte
	if t.reply == nil {
		var err error
		pkt, err = t.attempt.Refuse(e, "as", time.Now())
		if err != nil {
			t.s.log.Warn("as: build refusal", "err", err)
		}
	}
	// After Accept the handshake is spent: the node's retransmission will
	// find no cached reply and time out, and log in again.
	t.finish(ctx, pkt)
}

func (t *loginTx) finish(ctx actor.Context, pkt []byte) {
	if pkt != nil {
		t.st.reply.Store(&pkt)
		_, _ = t.conn.WriteToUDPAddrPort(pkt, t.from)
	} else {
		t.s.txs.Delete(t.attempt.Envelope.ID)
	}
	ctx.Stop(ctx.Self())
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
