package dataplane

import "sync/atomic"

// Reason says why a packet was dropped. Every drop is counted under one.
type Reason uint8

const (
	OK             Reason = iota // not dropped
	NoRoute                      // no peer has the destination VIP
	NoSession                    // the peer has no confirmed session yet
	QueueFull                    // a bounded queue was full
	QueueDelay                   // the batch waited too long (CoDel-style early drop)
	Truncated                    // shorter than its header says, or larger than the buffer
	Malformed                    // unknown type or bad header
	UnknownIndex                 // no session has the receiver index
	Auth                         // the AEAD tag did not verify
	Replay                       // counter already seen or too old
	CounterLimit                 // the session ran out of counters
	SendError                    // the socket refused it
	TunError                     // the TUN device refused it
	Handshake                    // a handshake message was rejected
	NoCommonSuite                // a handshake init offered no data cipher we accept
	SpoofedSource                // an authenticated inner packet whose source is not the peer's VIP
	HandshakeMAC                 // a handshake init without a valid mac1 (not made for us)
	HandshakeBusy                // an init without a cookie while busy: answered with a cookie reply, not run
	HandshakeQueue               // the handshake ingress queue was full
	HandshakeRate                // over a handshake rate limit (per source, or cookie replies)
	WrongVIPs                    // a handshake whose certificate binds other VIPs than the path routes to the peer
	Revoked                      // a session with a peer whose certificate was revoked
	// BadUnknownIndex: an unknown-index answer that echoes no packet we
	// sent on a live session from where it came (forged or stale), or that
	// we are over the rate of (sending or taking them).
	BadUnknownIndex
	HoldFull     // no tunnel yet, and the hold queue (per destination or destinations) was full
	HoldExpired  // held for a tunnel longer than the hold queue keeps packets
	UnknownVIP   // no tunnel, and NMS said no node holds the destination VIP
	LookupRate   // no tunnel, and the rate of lookups to NMS was used up
	TunMalformed // read from the TUN and dropped by the device: nothing it could split (tun.MalformedCounter)
	NumReasons
)

var reasonNames = [NumReasons]string{
	OK: "ok", NoRoute: "no-route", NoSession: "no-session", QueueFull: "queue-full",
	QueueDelay: "queue-delay", Truncated: "truncated", Malformed: "malformed",
	UnknownIndex: "unknown-index", Auth: "auth", Replay: "replay",
	CounterLimit: "counter-limit", SendError: "send-error", TunError: "tun-error",
	Handshake: "handshake", NoCommonSuite: "no-common-suite", SpoofedSource: "spoofed-source",
	HandshakeMAC: "handshake-mac", HandshakeBusy: "handshake-busy", HandshakeQueue: "handshake-queue-full",
	HandshakeRate: "handshake-rate", WrongVIPs: "wrong-vips", Revoked: "revoked",
	BadUnknownIndex: "bad-unknown-index",
	HoldFull:        "hold-full", HoldExpired: "hold-expired", UnknownVIP: "unknown-vip",
	LookupRate: "lookup-rate", TunMalformed: "tun-malformed",
}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// dropCounters counts drops by reason. Safe for concurrent use.
type dropCounters [NumReasons]atomic.Uint64

// Add counts n drops for r.
func (c *dropCounters) Add(r Reason, n uint64) {
	if r < NumReasons && n > 0 {
		c[r].Add(n)
	}
}

// Get returns the count for r.
func (c *dropCounters) Get(r Reason) uint64 {
	if r >= NumReasons {
		return 0
	}
	return c[r].Load()
}

// Snapshot returns the non-zero counts by reason name.
func (c *dropCounters) Snapshot() map[string]uint64 {
	m := make(map[string]uint64)
	for r := Reason(1); r < NumReasons; r++ {
		if v := c[r].Load(); v > 0 {
			m[r.String()] = v
		}
	}
	return m
}

// peerStats are one peer's traffic counters, updated by every stage.
type peerStats struct {
	TxPackets, TxBytes atomic.Uint64
	RxPackets, RxBytes atomic.Uint64
	LastSent, LastRecv atomic.Int64  // Unix nanoseconds of the last datagram out / authenticated in
	Primers            atomic.Uint64 // low-TTL punch primers sent (punch.go)
	Drops              dropCounters
	// Lost counts packets the peer sent that never arrived: counters that
	// left a session's replay window unseen (replay.Window.Lost).
	Lost atomic.Uint64
	// Unopened counts the peer's data packets this node shed before
	// opening them (the budget or the in-flight bound at the socket
	// reader, a full crypto queue), also counted as drops. Their counters
	// never reach the replay window, so Lost counts them as well: what
	// was lost on the way, at the sender, on the wire or in the kernel, is
	// Lost - Unopened. At ten pushers the two were all but equal, and
	// their sum was read as twice the loss there was.
	Unopened atomic.Uint64
}
