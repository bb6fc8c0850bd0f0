package dataplane

import (
	"errors"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/handshake"
	"github.com/cyphonic/cyphonic-go/transport/seal"
)

// The expensive half of every handshake runs here, on the data plane's
// handshake workers (goroutines fed by a bounded queue), never on a peer
// actor: the peer actor also stamps its outbound data, and three X25519 and
// a certificate check per init there would stall the tunnel for as long as
// a flood of inits naming the peer lasted. A worker hands the peer actor
// only the result, and only for a handshake that got this far; the actor
// decides, cheaply, whether to use it.

// errWrongVIPs: the peer's certificate binds other VIPs than its path.
var errWrongVIPs = errors.New("peer: certificate VIPs differ from the path's")

// respond reads an init, checks the initiator's certificate and replay
// timestamp, runs the responder's Diffie-Hellman and passes the answer to
// the peer actor the certificate names. Only peers NMS told us about are
// answered. It reports whether the handshake ran (the DH and certificate
// check), for the data plane's counters.
func (d *Dataplane) respond(m *rawInit) bool {
	// Our response is the same size every time (our certificate does not
	// change): once one was built, an init too small to be answered is
	// dropped before the certificate check and the DH it would cost.
	if n := d.respLen.Load(); n > 0 && m.WireLen > 0 && int(n) > m.WireLen {
		d.global.Add(Handshake, 1)
		return false
	}
	r, err := handshake.ReadInit(d.handshake, m.Msg)
	if errors.Is(err, seal.ErrNoCommonSuite) {
		// A certified peer we cannot talk to: configuration, not an
		// attack, so say so (err names the peer). The initiator learns
		// nothing (IX has no way to refuse) and fails on its timeout.
		d.global.Add(NoCommonSuite, 1)
		d.log.Warn("peer: handshake refused: no common cipher suite", "from", m.From, "err", err)
		return true
	}
	if err != nil {
		d.global.Add(Handshake, 1)
		if !errors.Is(err, handshake.ErrDecrypt) && !errors.Is(err, handshake.ErrMalformed) {
			d.log.Debug("peer: handshake init rejected", "from", m.From, "err", err)
		}
		return true
	}
	h := d.set.Get(r.PeerIdentity)
	var pipe *peerPipe
	if h != nil {
		pipe = h.Pipe()
	}
	if pipe == nil {
		d.global.Add(Handshake, 1)
		d.log.Debug("peer: handshake init from unknown peer", "peer", r.PeerIdentity, "from", m.From)
		return true
	}
	// Before any DH of ours: the certificate must bind the VIPs the path
	// routes to this peer (msg1 is unauthenticated, so only count it).
	serial, ok := h.certBinding(r.PeerCertDER)
	if !ok {
		d.log.Debug("peer: handshake init refused: certificate VIPs differ from the path's", "peer", h.FQDN, "from", m.From)
		return true
	}
	if err := d.guard.Check(r.PeerIdentity, r.PeerTimestamp); err != nil {
		h.Stats.Drops.Add(Handshake, 1)
		return true
	}
	now := time.Now()
	s := &peerSession{Peer: h, Pipe: pipe, msg1Time: r.PeerTimestamp.UnixNano(), serial: serial}
	idx := d.tables.Reserve(&peerSession{Peer: h, Pipe: pipe})
	msg2, res, err := r.Reply(idx, nil, now)
	if err == nil {
		s.Key, err = res.Keypair(now)
		res.Wipe()
	}
	if err != nil {
		d.tables.Remove(idx)
		h.Stats.Drops.Add(Handshake, 1)
		return true
	}
	hdr := messages.HandshakeHeader{Type: messages.TypeHandshakeResp, Sender: idx, Receiver: r.PeerIndex}
	d.respLen.Store(int64(hdr.Len() + len(msg2)))
	if m.WireLen > 0 && hdr.Len()+len(msg2) > m.WireLen {
		// No reply larger than the request: a spoofed small init must
		// not make us an amplifier (initiators pad, see initPadTo).
		// Counted, not logged: it is what a flood looks like.
		d.tables.Remove(idx)
		h.Stats.Drops.Add(Handshake, 1)
		return true
	}
	d.tables.Set(idx, s)
	resp := make([]byte, hdr.Len()+len(msg2))
	copy(resp[hdr.Put(resp):], msg2)
	d.sys.Root().Send(pipe.Peer, &answeredInit{Session: s, Index: idx, Resp: resp, PeerIndex: r.PeerIndex,
		From: m.From, Relayed: m.Relayed, SourceProven: m.SourceProven})
	if h.Pipe() != pipe {
		// The peer restarted meanwhile: the init went to a dead actor,
		// which will never free its index.
		d.tables.Remove(idx)
	}
	return true
}

// finish processes a handshake response for the pending initiator it names
// and passes an authenticated result to the peer actor.
func (d *Dataplane) finish(m *rawResponse) {
	s := d.tables.Session(m.Header.Receiver)
	if s == nil || s.ini == nil {
		d.global.Add(UnknownIndex, 1)
		return
	}
	h := s.Peer
	s.iniMu.Lock()
	res, err := s.ini.Finish(m.Msg)
	s.iniMu.Unlock()
	if err != nil {
		h.Stats.Drops.Add(Handshake, 1)
		if errors.Is(err, handshake.ErrDecrypt) || errors.Is(err, handshake.ErrMalformed) {
			return // garbage: the initiator stays ready for the genuine answer
		}
		// Authenticated but unacceptable: this attempt is spent.
		d.log.Warn("peer: handshake response rejected", "peer", h.FQDN, "err", err)
		d.sys.Root().Send(s.Pipe.Peer, &finished{pending: s, err: err})
		return
	}
	serial, ok := h.certBinding(res.PeerCertDER)
	if !ok {
		// Authenticated, but the peer's certificate binds other VIPs than
		// the path routes to it: NMS (or whoever wrote the path) lied.
		res.Wipe()
		d.log.Warn("peer: handshake refused: certificate VIPs differ from the path's", "peer", h.FQDN)
		d.sys.Root().Send(s.Pipe.Peer, &finished{pending: s, err: errWrongVIPs})
		return
	}
	now := time.Now()
	kp, err := res.Keypair(now)
	res.Wipe()
	if err != nil {
		h.Stats.Drops.Add(Handshake, 1)
		d.sys.Root().Send(s.Pipe.Peer, &finished{pending: s, err: err})
		return
	}
	d.sys.Root().Send(s.Pipe.Peer, &finished{pending: s, key: kp, serial: serial, from: m.From, relayed: m.Relayed})
}

// takeCookie opens a busy responder's cookie reply to our pending init. The
// peer actor hears of it (to resend the init with the cookie at once) only
// when it opens: once per init we sent, so forged replies cost one AEAD
// open here and nothing more.
func (d *Dataplane) takeCookie(receiver uint32, body []byte) {
	s := d.tables.Session(receiver)
	if s == nil || s.ini == nil {
		d.global.Add(UnknownIndex, 1)
		return
	}
	if err := s.Peer.cookies.ConsumeReply(body, time.Now()); err != nil {
		s.Peer.Stats.Drops.Add(Handshake, 1)
		return
	}
	d.sys.Root().Send(s.Pipe.Peer, cookieTaken{pending: s})
}
