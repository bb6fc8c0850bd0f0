package signaling

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/cookie"
	"github.com/cyphonic/cyphonic-go/transport/handshake"
)

// Errors of the login, for errors.Is.
var (
	// ErrNotLogin: the handshake payload is not the envelope login expects.
	ErrNotLogin = errors.New("signaling: not a login message")
	// ErrLoginState: a login step called out of order (Finish before the
	// challenge was answered, a second challenge).
	ErrLoginState = errors.New("signaling: login step out of order")
)

// Login is the node's side of one login attempt. Resend Packet until the
// next step arrives: first the login packet (msg1; TakeCookie gives it a
// mac2 when a loaded AS asks for one), and once Confirm has read the
// challenge, the confirmation. The AS answers a
// retransmission with the reply it already gave and never starts a second
// transaction for it.
type Login struct {
	init    *handshake.Initiator
	id      messages.MsgID
	fqdn    string
	packet  []byte
	sess    *Session // set by Confirm
	keys    Keys
	confirm []byte

	// The AS's cookie (transport/cookie): gen fills the trailer; packet is
	// the login with a zero mac2, cookied the one with the latest cookie's.
	gen     *cookie.Generator
	cookied []byte
}

// StartLogin builds the login packet (TypeLogin | Noise msg1) for the node
// fqdn, padded to messages.LoginMinLen. asIdentity is the name the AS's
// certificate must carry (pki.RoleAS.ServiceFQDN()). cfg.Prologue is forced
// to PrologueLogin.
func StartLogin(cfg handshake.Config, asIdentity, fqdn string, req messages.LoginRequest, now time.Time) (*Login, error) {
	cfg.Prologue = handshake.PrologueLogin
	if len(req.CertDER) == 0 {
		req.CertDER = cfg.CertDER
	}
	id := messages.NewMsgID()
	// msg1 is the handshake payload in clear plus a fixed overhead: measure
	// it once without padding, then pad the request by what is missing.
	req.Pad = nil
	app, err := loginApp(id, fqdn, now, req)
	if err != nil {
		return nil, err
	}
	probe, err := handshake.NewInitiator(cfg, asIdentity, 0)
	if err != nil {
		return nil, fmt.Errorf("signaling: login %s: %w", fqdn, err)
	}
	m, err := probe.Start(app, now)
	if err != nil {
		return nil, fmt.Errorf("signaling: login %s: %w", fqdn, err)
	}
	if need := messages.LoginMinLen - (messages.LoginHeaderLen + len(m)); need > 0 {
		req.Pad = make([]byte, padFor(need))
		if app, err = loginApp(id, fqdn, now, req); err != nil {
			return nil, err
		}
	}
	init, err := handshake.NewInitiator(cfg, asIdentity, 0)
	if err != nil {
		return nil, fmt.Errorf("signaling: login %s: %w", fqdn, err)
	}
	msg1, err := init.Start(app, now)
	if err != nil {
		return nil, fmt.Errorf("signaling: login %s: %w", fqdn, err)
	}
	pkt := make([]byte, 0, messages.LoginHeaderLen+len(msg1)+messages.LoginTrailerLen)
	pkt = append(append(pkt, byte(messages.TypeLogin)), msg1...)
	pkt = append(pkt, make([]byte, messages.LoginTrailerLen)...)
	gen := cookie.NewGenerator(asIdentity)
	if err := gen.AddMACs(pkt, now); err != nil {
		return nil, fmt.Errorf("signaling: login %s: %w", fqdn, err)
	}
	return &Login{init: init, id: id, fqdn: fqdn, packet: pkt, gen: gen}, nil
}

func loginApp(id messages.MsgID, fqdn string, now time.Time, req messages.LoginRequest) ([]byte, error) {
	env, err := messages.NewEnvelope(id, fqdn, now, req)
	if err != nil {
		return nil, fmt.Errorf("signaling: login %s: %w", fqdn, err)
	}
	app, err := messages.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("signaling: login %s: %w", fqdn, err)
	}
	return app, nil
}

// padFor is the length of a pad field that grows an encoding whose pad is
// empty (a 2-byte msgpack bin header) by at least need bytes: past 255 the
// bin header takes one byte more.
func padFor(need int) int {
	if need > 255 {
		need--
	}
	return min(need, messages.MaxPadLen)
}

// ID is the login's message ID; every step of it carries it.
func (l *Login) ID() messages.MsgID { return l.id }

// Packet is the packet to send now and to resend: the login packet (with
// a mac2 from the AS's cookie while one is fresh), or the confirmation once
// Confirm has succeeded. A slice it returned is never written again.
func (l *Login) Packet() []byte {
	if l.confirm != nil {
		return l.confirm
	}
	if l.cookied != nil && l.gen.HasCookie(time.Now()) {
		return l.cookied
	}
	return l.packet
}

// TakeCookie reads a loaded AS's answer to the login packet
// (TypeLoginCookie) and keeps its cookie, so that Packet carries a mac2
// from now on. It reports whether this was the login's first cookie: the
// caller then resends at once rather than waiting out the retransmission
// timer. Later cookies (the AS replaced its secret, or an on-path attacker
// replays one) only replace the cookie, so a replayed cookie can never make
// the node send the AS more than it would anyway.
func (l *Login) TakeCookie(packet []byte, now time.Time) (first bool, err error) {
	if l.confirm != nil {
		return false, fmt.Errorf("signaling: login cookie: %w", ErrLoginState)
	}
	body, err := messages.ParseLoginCookie(packet)
	if err != nil {
		return false, fmt.Errorf("signaling: login cookie: %w", err)
	}
	if err := l.gen.ConsumeReply(body, now); err != nil {
		return false, fmt.Errorf("signaling: login cookie: %w", err)
	}
	pkt := bytes.Clone(l.packet)
	if err := l.gen.AddMACs(pkt, now); err != nil {
		return false, fmt.Errorf("signaling: login cookie: %w", err)
	}
	first = l.cookied == nil
	l.cookied = pkt
	return first, nil
}

// Confirmed reports whether the challenge has been answered (Packet is the
// confirmation and Finish expects the sealed reply).
func (l *Login) Confirmed() bool { return l.confirm != nil }

// Confirm reads the AS's challenge (TypeLoginReply | Noise msg2) and
// returns the confirmation to send (TypeSignaling, a LoginConfirm sealed on
// the new session under the login's ID, padded to messages.LoginMinLen),
// which Packet returns from now on. A refusal is returned as a
// *messages.Error (use errors.As). A msg2 that does not authenticate leaves
// the Login waiting for the genuine one.
func (l *Login) Confirm(packet []byte, now time.Time) ([]byte, error) {
	if l.confirm != nil {
		return nil, fmt.Errorf("signaling: login challenge: %w", ErrLoginState)
	}
	msg2, err := messages.ParseLoginReply(packet)
	if err != nil {
		return nil, fmt.Errorf("signaling: login challenge: %w", err)
	}
	res, err := l.init.Finish(msg2)
	if err != nil {
		return nil, fmt.Errorf("signaling: login challenge: %w", err)
	}
	keys := Keys{NodeToCloud: res.SendKey, CloudToNode: res.RecvKey}
	res.Wipe()
	env, err := messages.Unmarshal(res.PeerPayload)
	if err != nil {
		return nil, fmt.Errorf("signaling: login challenge: %w: %w", ErrNotLogin, err)
	}
	if env.ID != l.id {
		return nil, fmt.Errorf("signaling: login challenge %s for request %s: %w", env.ID, l.id, ErrWrongReply)
	}
	switch env.Type {
	case messages.MsgError:
		return nil, decodeError(env)
	case messages.MsgLoginChallenge:
	default:
		return nil, fmt.Errorf("signaling: login challenge of type %s: %w", env.Type, ErrNotLogin)
	}
	c, err := messages.DecodeBody[messages.LoginChallenge](env)
	if err != nil {
		return nil, fmt.Errorf("signaling: login challenge: %w", err)
	}
	if c.SessionID != res.PeerIndex {
		return nil, fmt.Errorf("signaling: login challenge names session %d, handshake %d: %w", c.SessionID, res.PeerIndex, ErrNotLogin)
	}
	s, err := NewNodeSession(c.SessionID, keys)
	if err != nil {
		return nil, err
	}
	confirm, err := sealPadded(s, l.id, l.fqdn, now)
	if err != nil {
		return nil, err
	}
	l.sess, l.keys, l.confirm = s, keys, confirm
	return confirm, nil
}

// sealPadded seals a LoginConfirm padded so that the packet is at least
// messages.LoginMinLen long.
func sealPadded(s *Session, id messages.MsgID, fqdn string, now time.Time) ([]byte, error) {
	enc := messages.NewEncoder()
	var c messages.LoginConfirm
	pkt, err := s.SealMessage(nil, enc, id, fqdn, now, c)
	if err != nil {
		return nil, err
	}
	if need := messages.LoginMinLen - len(pkt); need > 0 {
		c.Pad = make([]byte, padFor(need))
		if pkt, err = s.SealMessage(nil, enc, id, fqdn, now, c); err != nil {
			return nil, err
		}
	}
	return pkt, nil
}

// LoginResult is an accepted login.
type LoginResult struct {
	Reply   messages.LoginReply
	Session *Session // the node's end of the signaling session
	Keys    Keys     // the raw keys, for a node that restarts its session actor
}

// Finish reads the AS's answer to the confirmation: a sealed LoginReply
// under the login's ID. A refusal is returned as a *messages.Error (use
// errors.As). A packet that does not open, or answers something else, is an
// error that leaves the Login waiting for the genuine answer.
func (l *Login) Finish(packet []byte, now time.Time) (*LoginResult, error) {
	if l.sess == nil {
		return nil, fmt.Errorf("signaling: login reply: %w", ErrLoginState)
	}
	env, err := l.sess.OpenEnvelope(nil, packet, now)
	if err != nil {
		return nil, fmt.Errorf("signaling: login reply: %w", err)
	}
	if env.ID != l.id {
		return nil, fmt.Errorf("signaling: login reply %s for request %s: %w", env.ID, l.id, ErrWrongReply)
	}
	switch env.Type {
	case messages.MsgError:
		return nil, decodeError(env)
	case messages.MsgLoginReply:
	default:
		return nil, fmt.Errorf("signaling: login reply of type %s: %w", env.Type, ErrNotLogin)
	}
	reply, err := messages.DecodeBody[messages.LoginReply](env)
	if err != nil {
		return nil, fmt.Errorf("signaling: login reply: %w", err)
	}
	if reply.SessionID != l.sess.ID() {
		return nil, fmt.Errorf("signaling: login reply names session %d, challenge %d: %w", reply.SessionID, l.sess.ID(), ErrNotLogin)
	}
	return &LoginResult{Reply: reply, Session: l.sess, Keys: l.keys}, nil
}

func decodeError(env messages.Envelope) error {
	e, err := messages.DecodeBody[messages.Error](env)
	if err != nil {
		return fmt.Errorf("signaling: login error reply: %w", err)
	}
	return &e
}

// LoginAttempt is the AS's view of a login packet, between reading it and
// answering. Nothing in it is proven except that the certificate binds the
// static key the packet names: anyone who has seen the certificate can
// build one. Commit nothing for it; Challenge, and commit only once
// OpenConfirm has opened the node's confirmation.
type LoginAttempt struct {
	Envelope messages.Envelope     // its ID keys the transaction; Sender is the claimed FQDN
	Request  messages.LoginRequest //
	Identity string                // what cfg.Verify extracted from the handshake certificate
	CertDER  []byte                // the certificate of the handshake (the one to check)
	Sent     time.Time             // the handshake timestamp

	resp *handshake.Responder
}

// ReadLogin parses a login packet (TypeLogin | msg1). It does no
// Diffie-Hellman (IX's msg1 carries the keys in clear). cfg.Prologue is
// forced to PrologueLogin.
func ReadLogin(cfg handshake.Config, packet []byte) (*LoginAttempt, error) {
	cfg.Prologue = handshake.PrologueLogin
	msg1, err := messages.ParseLogin(packet)
	if err != nil {
		return nil, fmt.Errorf("signaling: login: %w", err)
	}
	r, err := handshake.ReadInit(cfg, msg1)
	if err != nil {
		return nil, fmt.Errorf("signaling: login: %w", err)
	}
	env, err := messages.Unmarshal(r.PeerPayload)
	if err != nil {
		return nil, fmt.Errorf("signaling: login from %q: %w: %w", r.PeerIdentity, ErrNotLogin, err)
	}
	req, err := messages.DecodeBody[messages.LoginRequest](env)
	if err != nil {
		return nil, fmt.Errorf("signaling: login from %q: %w: %w", r.PeerIdentity, ErrNotLogin, err)
	}
	return &LoginAttempt{
		Envelope: env, Request: req, Identity: r.PeerIdentity,
		CertDER: r.PeerCertDER, Sent: r.PeerTimestamp, resp: r,
	}, nil
}

// Challenge answers with a LoginChallenge naming sessionID and returns the
// packet (TypeLoginReply | msg2) and the pending session's keys. Only the
// holder of the node's static key can read msg2, so a LoginConfirm that
// opens under these keys (OpenConfirm) proves the node. An attempt can be
// answered once.
func (a *LoginAttempt) Challenge(sessionID uint32, sender string, now time.Time) ([]byte, Keys, error) {
	if sessionID == 0 {
		return nil, Keys{}, errors.New("signaling: login challenge: session ID 0 is reserved")
	}
	pkt, res, err := a.answer(sessionID, sender, now, messages.LoginChallenge{SessionID: sessionID})
	if err != nil {
		return nil, Keys{}, err
	}
	keys := Keys{NodeToCloud: res.RecvKey, CloudToNode: res.SendKey}
	res.Wipe()
	return pkt, keys, nil
}

// Refuse answers with an Error body.
func (a *LoginAttempt) Refuse(e messages.Error, sender string, now time.Time) ([]byte, error) {
	pkt, res, err := a.answer(0, sender, now, e)
	if err != nil {
		return nil, err
	}
	res.Wipe()
	return pkt, nil
}

func (a *LoginAttempt) answer(index uint32, sender string, now time.Time, body messages.Body) ([]byte, *handshake.Result, error) {
	env, err := a.Envelope.Reply(sender, now, body)
	if err != nil {
		return nil, nil, fmt.Errorf("signaling: login reply to %q: %w", a.Identity, err)
	}
	app, err := messages.Marshal(env)
	if err != nil {
		return nil, nil, fmt.Errorf("signaling: login reply to %q: %w", a.Identity, err)
	}
	msg2, res, err := a.resp.Reply(index, app, now)
	if err != nil {
		return nil, nil, fmt.Errorf("signaling: login reply to %q: %w", a.Identity, err)
	}
	pkt := make([]byte, 0, messages.LoginHeaderLen+len(msg2))
	return append(append(pkt, byte(messages.TypeLoginReply)), msg2...), res, nil
}

// OpenConfirm opens a node's confirmation (TypeSignaling) with the cloud's
// end of the pending session s, and checks that it is the LoginConfirm of
// login loginID and fresh. Once it returns nil the node has proven its key.
func OpenConfirm(s *Session, scratch, packet []byte, loginID messages.MsgID, now time.Time) error {
	env, err := s.OpenEnvelope(scratch, packet, now)
	if err != nil {
		return fmt.Errorf("signaling: login confirm: %w", err)
	}
	if env.Type != messages.MsgLoginConfirm || env.ID != loginID {
		return fmt.Errorf("signaling: login confirm: %s %s on the session of login %s: %w", env.Type, env.ID, loginID, ErrNotLogin)
	}
	if _, err := messages.DecodeBody[messages.LoginConfirm](env); err != nil {
		return fmt.Errorf("signaling: login confirm: %w", err)
	}
	return nil
}
