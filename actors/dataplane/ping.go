package dataplane

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/seal"
)

// Overlay ping (`cyphonic ping`, as `tailscale ping`): a probe is a data
// packet on the peer's session, sealed like any other, whose payload is not
// an IP packet: one kind byte (echo or reply) and an 8-byte ID. IP packets
// start with version nibble 4 or 6 and keepalives are empty, so the kind
// bytes (version nibble 0) cannot be mistaken for either. The peer's data
// plane answers an echo at once on its current route; the time to the
// reply is the RTT over the tunnel itself (encryption, the path, the
// peer's data plane), which ICMP through the TUN would also measure but
// the CLI cannot send.
//
// Only an authenticated packet of a live session is a probe, and a reply
// is the echo's size; a peer that floods echoes gets at most
// maxProbesQueued answers queued at its actor (the rest are counted as
// queue-full). Per data packet the receive path pays one length compare.
const (
	probeLen   = 1 + 8
	probeEcho  = 0x01
	probeReply = 0x02
	// maxProbesQueued bounds probes waiting for the peer actor, per
	// incarnation; maxPingsPending the pings a peer actor waits answers for.
	maxProbesQueued = 16
	maxPingsPending = 16
	pingForget      = time.Minute // a ping unanswered this long is forgotten
)

// isProbe reports whether an opened payload is a probe.
func isProbe(p []byte) bool {
	return len(p) == probeLen && (p[0] == probeEcho || p[0] == probeReply)
}

// PingResult is one answered ping.
type PingResult struct {
	FQDN string        `json:"fqdn"`
	RTT  time.Duration `json:"rtt_ns"`
	// Relay: the echo went through TRS; To is where it was sent (the peer's
	// endpoint, or the TRS), From where the reply came from.
	Relay bool           `json:"relay"`
	To    netip.AddrPort `json:"to"`
	From  netip.AddrPort `json:"from"`
	// RelayedReply: the reply came back through TRS.
	RelayedReply bool `json:"relayed_reply"`
}

// ErrNoSession: the peer has no confirmed session to ping on yet.
var ErrNoSession = errors.New("no session with the peer yet")

// Messages of ping, to the peer actor.
type (
	pingReq   struct{}
	pingError struct{ err error }
	// probed: sequencer-in opened a probe of this peer.
	probed struct {
		pipe    *peerPipe // whose Probes slot it holds (a restart keeps the PID, not the pipe)
		kind    byte
		id      uint64
		from    netip.AddrPort
		relayed bool
	}
)

type pendingPing struct {
	sent   time.Time
	route  peerRoute
	caller *actor.PID
}

// Ping sends one probe to fqdn over its tunnel and waits for the reply
// until ctx ends. It blocks the caller: never call it from an actor.
func (d *Dataplane) Ping(ctx context.Context, fqdn string) (PingResult, error) {
	h := d.set.Get(fqdn)
	if h == nil {
		return PingResult{}, fmt.Errorf("dataplane: ping %s: %w", fqdn, ErrUnknownPeer)
	}
	p := h.Pipe()
	if p == nil {
		return PingResult{}, fmt.Errorf("dataplane: ping %s: %w", fqdn, ErrNotStarted)
	}
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	r, err := d.sys.Root().RequestFuture(p.Peer, pingReq{}, timeout).Result()
	if err != nil {
		return PingResult{}, fmt.Errorf("dataplane: ping %s: no reply within %s: %w", fqdn, timeout.Round(time.Millisecond), err)
	}
	switch r := r.(type) {
	case PingResult:
		return r, nil
	case pingError:
		return PingResult{}, fmt.Errorf("dataplane: ping %s: %w", fqdn, r.err)
	}
	return PingResult{}, fmt.Errorf("dataplane: ping %s: answer %T", fqdn, r)
}

// onProbe hands a probe opened in sequencer-in to the peer actor, within
// the pipe's bound.
func (d *Dataplane) onProbe(h *peerHandle, pipe *peerPipe, payload []byte, from netip.AddrPort, relayed bool) {
	if pipe.Probes.Add(1) > maxProbesQueued {
		pipe.Probes.Add(-1)
		h.Stats.Drops.Add(QueueFull, 1)
		return
	}
	d.sys.Root().Send(pipe.Peer, probed{pipe: pipe, kind: payload[0], id: binary.BigEndian.Uint64(payload[1:]), from: from, relayed: relayed})
}

// onPing sends an echo for the caller of Ping.
func (p *peerActor) onPing(ctx actor.Context) {
	now := time.Now()
	for id, pp := range p.pings {
		if now.Sub(pp.sent) > pingForget {
			delete(p.pings, id)
		}
	}
	switch {
	case p.cur == nil:
		ctx.Respond(pingError{ErrNoSession})
		return
	case len(p.pings) >= maxPingsPending:
		ctx.Respond(pingError{errors.New("too many pings waiting for replies")})
		return
	}
	id := rand.Uint64()
	if !p.sendProbe(probeEcho, id, p.route) {
		ctx.Respond(pingError{errors.New("the echo could not be sent (no route, or the session is out of counters)")})
		return
	}
	if p.pings == nil {
		p.pings = map[uint64]pendingPing{}
	}
	p.pings[id] = pendingPing{sent: now, route: p.route, caller: ctx.Sender()}
}

// onProbed answers an echo, or completes the ping a reply answers.
func (p *peerActor) onProbed(ctx actor.Context, m probed) {
	if m.pipe != nil {
		m.pipe.Probes.Add(-1)
	}
	switch m.kind {
	case probeEcho:
		p.sendProbe(probeReply, m.id, p.route)
	case probeReply:
		pp, ok := p.pings[m.id]
		if !ok {
			return // not ours, or forgotten
		}
		delete(p.pings, m.id)
		if pp.caller != nil {
			ctx.Send(pp.caller, PingResult{FQDN: p.h.FQDN, RTT: time.Since(pp.sent), Relay: pp.route.Relay, To: pp.route.Addr,
				From: m.from, RelayedReply: m.relayed})
		}
	}
}

// sendProbe seals a probe on the current session and sends it to r.
func (p *peerActor) sendProbe(kind byte, id uint64, r peerRoute) bool {
	if p.cur == nil || !r.Addr.IsValid() {
		return false
	}
	c, ok := p.cur.Key.NextCounter()
	if !ok {
		return false
	}
	buf := make([]byte, headroom+probeLen+seal.Overhead)
	pt := buf[headroom : headroom+probeLen]
	pt[0] = kind
	binary.BigEndian.PutUint64(pt[1:], id)
	if _, err := p.cur.Key.Seal(buf[messages.RelayHeaderLen:], 0, c, pt); err != nil {
		return false
	}
	if !p.d.sendFramed(buf, r) {
		return false
	}
	p.h.Stats.LastSent.Store(time.Now().UnixNano())
	return true
}
