package signaling

import (
	"errors"
	"fmt"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/handshake"
)

// ErrNotLogin: the handshake payload is not the envelope login expects.
var ErrNotLogin = errors.New("signaling: not a login message")

// Login is the node's side of one login attempt. Resend Packet unchanged
// until a reply arrives: the AS answers a retransmitted msg1 with the same
// msg2 and never starts a second transaction for it.
type Login struct {
	init   *handshake.Initiator
	id     messages.MsgID
	packet []byte
}

// StartLogin builds the login packet (TypeLogin | Noise msg1) for the node
// fqdn. asIdentity is the name the AS's certificate must carry
// (pki.RoleAS.ServiceFQDN()). cfg.Prologue is forced to PrologueLogin.
func StartLogin(cfg handshake.Config, asIdentity, fqdn string, req messages.LoginRequest, now time.Time) (*Login, error) {
	cfg.Prologue = handshake.PrologueLogin
	if len(req.CertDER) == 0 {
		req.CertDER = cfg.CertDER
	}
	id := messages.NewMsgID()
	env, err := messages.NewEnvelope(id, fqdn, now, req)
	if err != nil {
		return nil, fmt.Errorf("signaling: login %s: %w", fqdn, err)
	}
	app, err := messages.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("signaling: login %s: %w", fqdn, err)
	}
	init, err := handshake.NewInitiator(cfg, asIdentity, 0)
	if err != nil {
		return nil, fmt.Errorf("signaling: login %s: %w", fqdn, err)
	}
	msg1, err := init.Start(app, now)
	if err != nil {
		return nil, fmt.Errorf("signaling: login %s: %w", fqdn, err)
	}
	pkt := make([]byte, 0, messages.LoginHeaderLen+len(msg1))
	pkt = append(append(pkt, byte(messages.TypeLogin)), msg1...)
	return &Login{init: init, id: id, packet: pkt}, nil
}

// ID is the login request's message ID; the reply carries it.
func (l *Login) ID() messages.MsgID { return l.id }

// Packet is the login packet to send (and to resend unchanged).
func (l *Login) Packet() []byte { return l.packet }

// LoginResult is an accepted login.
type LoginResult struct {
	Reply   messages.LoginReply
	Session *Session // the node's end of the signaling session
	Keys    Keys     // the raw keys, for a node that restarts its session actor
}

// Finish reads the AS's reply (TypeLoginReply | Noise msg2). A refusal is
// returned as a *messages.Error (use errors.As). A reply that does not
// authenticate leaves the Login waiting for the genuine one.
func (l *Login) Finish(packet []byte) (*LoginResult, error) {
	msg2, err := messages.ParseLoginReply(packet)
	if err != nil {
		return nil, fmt.Errorf("signaling: login reply: %w", err)
	}
	res, err := l.init.Finish(msg2)
	if err != nil {
		return nil, fmt.Errorf("signaling: login reply: %w", err)
	}
	keys := Keys{NodeToCloud: res.SendKey, CloudToNode: res.RecvKey}
	res.Wipe()
	env, err := messages.Unmarshal(res.PeerPayload)
	if err != nil {
		return nil, fmt.Errorf("signaling: login reply: %w: %w", ErrNotLogin, err)
	}
	if env.ID != l.id {
		return nil, fmt.Errorf("signaling: login reply %s for request %s: %w", env.ID, l.id, ErrWrongReply)
	}
	switch env.Type {
	case messages.MsgError:
		e, err := messages.DecodeBody[messages.Error](env)
		if err != nil {
			return nil, fmt.Errorf("signaling: login error reply: %w", err)
		}
		return nil, &e
	case messages.MsgLoginReply:
	default:
		return nil, fmt.Errorf("signaling: login reply of type %s: %w", env.Type, ErrNotLogin)
	}
	reply, err := messages.DecodeBody[messages.LoginReply](env)
	if err != nil {
		return nil, fmt.Errorf("signaling: login reply: %w", err)
	}
	s, err := NewNodeSession(reply.SessionID, keys)
	if err != nil {
		return nil, err
	}
	return &LoginResult{Reply: reply, Session: s, Keys: keys}, nil
}

// LoginAttempt is the AS's view of a login packet, between reading it and
// answering. Nothing in it is proven yet except that the certificate binds
// the static key the node used (see the package comment).
type LoginAttempt struct {
	Envelope messages.Envelope     // its ID keys the transaction; Sender is the claimed FQDN
	Request  messages.LoginRequest //
	Identity string                // what cfg.Verify extracted from the handshake certificate
	CertDER  []byte                // the certificate of the handshake (the one to check)
	Sent     time.Time             // the handshake timestamp

	resp *handshake.Responder
}

// ReadLogin parses a login packet (TypeLogin | msg1). cfg.Prologue is forced
// to PrologueLogin.
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

// Accept answers with reply (whose SessionID names the new session) and
// returns the packet (TypeLoginReply | msg2) and the session's keys. An
// attempt can be answered once.
func (a *LoginAttempt) Accept(reply messages.LoginReply, sender string, now time.Time) ([]byte, Keys, error) {
	pkt, res, err := a.answer(reply.SessionID, sender, now, reply)
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
