package dataplane

import (
	"net/netip"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/dataplane/fairq"
	"github.com/cyphonic/cyphonic-go/actors/dataplane/fallback"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/seal"
)

// peerTiming holds the peer's timers and queue bounds.
type peerTiming struct {
	Tick             time.Duration // how often a peer checks its timers
	HandshakeTimeout time.Duration // no session after this long: fail
	HandshakeRetry   time.Duration // resend msg1 (a fresh one) this often
	// FallbackAfter is how long a direct or punched path is tried alone
	// before inits also go over the relay (see package fallback).
	FallbackAfter time.Duration
	// PrimeWait: inits to a hole-punched endpoint wait this long behind
	// a low-TTL primer that opens our NAT mapping (punch.go); 0 sends
	// them at once, unprimed.
	PrimeWait time.Duration
	Keepalive time.Duration // send a keepalive after this much send silence
	DeadAfter time.Duration // fail after this much receive silence
	// PassiveKeepalive: having received since we last sent, send a
	// keepalive once our last send is this old, so a peer that sends
	// always hears from us this often (SilenceAfter relies on it).
	PassiveKeepalive time.Duration
	// SilenceAfter: having sent for this long with nothing authenticated
	// back, suspect the peer lost our session (it restarted, perhaps on
	// another port) and set up a new one beside it (recovery.go).
	SilenceAfter  time.Duration
	MaxQueueDelay time.Duration // drop whole batches that waited longer (a hard bound)
	CoDelTarget   time.Duration // per-peer queues drop early (CoDel) above this sojourn
	CoDelInterval time.Duration // ... once it has lasted this long
	OutInflight   int           // outbound batches in flight per peer
	InInflight    int           // inbound batches in flight per peer
	FlowDepth     int           // batches queued per peer at the socket writer
	InBudget      int           // inbound packets in flight over all peers (budget.go)
	OutBudget     int           // outbound packets in flight over all peers
	SeqWindow     int           // sequencer window (batches); > in-flight bounds
	GapTimeout    time.Duration // a lost batch is given up after this long
	// AuthFailLimit is how many authentication failures in one tick fail
	// the peer, and only while the peer is overdue (nothing authenticated
	// for longer than Keepalive): forgeries can hasten a failure keepalive
	// silence would cause anyway, never tear down a session that works.
	AuthFailLimit uint64
	// A session is replaced by a new handshake once it has sent
	// RekeyAfterMessages packets, or (on the side that initiated it) once it
	// is RekeyAfterTime old. The defaults are seal's (WireGuard's) limits;
	// tests shorten them.
	RekeyAfterTime     time.Duration
	RekeyAfterMessages uint64
}

// Defaults of the connectivity timers the node's flags set (Config).
const (
	DefaultPassiveKeepalive = 500 * time.Millisecond
	DefaultSilenceAfter     = 2 * time.Second
	DefaultDeadAfter        = 35 * time.Second
)

// defaultTiming returns the production timers.
func defaultTiming() peerTiming {
	return peerTiming{
		Tick:             250 * time.Millisecond,
		HandshakeTimeout: 10 * time.Second,
		HandshakeRetry:   time.Second,
		FallbackAfter:    fallback.DefaultAfter,
		PrimeWait:        DefaultPrimeWait,
		Keepalive:        10 * time.Second,
		DeadAfter:        DefaultDeadAfter,
		PassiveKeepalive: DefaultPassiveKeepalive,
		SilenceAfter:     DefaultSilenceAfter,
		MaxQueueDelay:    50 * time.Millisecond,
		CoDelTarget:      fairq.DefaultCoDelTarget,
		CoDelInterval:    fairq.DefaultCoDelInterval,
		// Batches in flight per peer bound its queues; the delay bound
		// is CoDel's and MaxQueueDelay's.
		OutInflight: 32,
		InInflight:  32,
		FlowDepth:   32,
		// The budgets bound all peers' in-flight packets together, and
		// so the memory (3 MB of buffers at MTU 1420; budget.go): at
		// ten pushers the responder's heap stays at half the soft
		// memory limit, and one flow keeps less than this in flight.
		// 1536 gave the same RSS at ten pushers in test/perf and 6 %
		// less throughput at three, 3072 2-4 MiB more RSS
		// (BENCHMARKS.md, s8-mem).
		InBudget:      2048,
		OutBudget:     2048,
		SeqWindow:     256,
		GapTimeout:    200 * time.Millisecond,
		AuthFailLimit: 1000,

		RekeyAfterTime:     seal.RekeyAfterTime,
		RekeyAfterMessages: seal.RekeyAfterMessages,
	}
}

// relayRoute picks the TRS address of a family we can send on.
func (d *Dataplane) relayRoute(t *messages.RelayTicket) (peerRoute, bool) {
	if t == nil {
		return peerRoute{}, false
	}
	for _, a := range []netip.AddrPort{t.TRS4, t.TRS6} {
		a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		if a.IsValid() && d.canSend(a) {
			return peerRoute{Addr: a, Relay: true, Token: t.Token}, true
		}
	}
	return peerRoute{}, false
}

// sendFramed queues pkt for route, wrapping it in a relay frame if needed.
// pkt must have RelayHeaderLen bytes of headroom in front of pkt[hr:].
func (d *Dataplane) sendFramed(buf []byte, r peerRoute) bool {
	pkt := buf[messages.RelayHeaderLen:]
	if r.Relay {
		messages.PutRelayHeader(buf, r.Token)
		pkt = buf
	}
	return d.out.PushControl(controlPkt{Pkt: pkt, To: r.Addr})
}
