// Package dataplane is the node daemon's data plane: it moves packets between
// the TUN device and the UDP sockets through the actor pipeline of DESIGN.md
// §4 (tun reader → route → peer → crypto workers → sequencer-out → udp
// writer, and the mirror inbound), and runs one supervised peer actor per
// tunnel. send.go and receive.go hold the two directions top to bottom;
// dataplane.go the shared state and its ownership.
//
// The control plane (session, resolver, node) talks to it only through the
// small API in this file. Every method is safe for concurrent use and none
// of them blocks on an actor: they post a message or read thread-safe state.
package dataplane

import (
	"context"
	"errors"
	"log/slog"
	"math/big"
	"net/netip"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/dataplane/hold"
	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/transport/handshake"
	"github.com/cyphonic/cyphonic-go/transport/seal"
	"github.com/cyphonic/cyphonic-go/transport/udp"
	"github.com/cyphonic/cyphonic-go/tun"
)

var (
	// ErrNotStarted: Start has not run (or Stop has).
	ErrNotStarted = errors.New("dataplane: not started")
	// ErrUnknownPeer: no tunnel to that FQDN was opened (or it was closed).
	ErrUnknownPeer = errors.New("dataplane: unknown peer")
	// ErrPeerFailed: the peer's supervisor gave up on it; Open it again
	// (with a fresh path from NMS) to retry.
	ErrPeerFailed = errors.New("dataplane: peer failed")
	// ErrQueueFull: the UDP send queue is full; the packet was dropped.
	ErrQueueFull = errors.New("dataplane: send queue full")
	// ErrBadConfig is wrapped by New for an unusable Config.
	ErrBadConfig = errors.New("dataplane: invalid config")
	// ErrUnknownVIP: a recent answer said no node holds the address.
	ErrUnknownVIP = errors.New("dataplane: no node holds the address")
	// ErrLookupRate: the budget of lookups to NMS is spent for now.
	ErrLookupRate = errors.New("dataplane: too many address lookups")
)

// Config is what the node gives its data plane. The Dataplane takes
// ownership of Device and Bind: Stop closes them (closing is the only way to
// unblock their reader goroutines).
type Config struct {
	Identity *pki.Identity // our certificate and Noise static key (required)
	// Verify checks a peer node's certificate; NodeVerifier(v) builds it
	// from a *pki.Verifier (required).
	Verify handshake.VerifyFunc
	// Revoked reports whether a serial is on the deny list Verify uses;
	// peers whose certificate it names are closed within a tick (Tick).
	// May be nil.
	Revoked func(serial *big.Int) bool
	Device  tun.Device // the TUN device (tun.NewMemPair in tests) (required)
	Bind    *udp.Bind  // one socket per family; the control plane sends on it too (required)
	// No VIPs of our own: the data plane routes by the peers' VIPs (from
	// their paths), and the kernel never hands the TUN a packet for a local
	// address, so ours arrive at login without the data plane caring.
	Logger *slog.Logger // nil: the system's logger
	// Suites are the data ciphers we accept, best first; nil means
	// seal.LocalPreference() (AES-256-GCM first where the CPU has AES).
	Suites []seal.Suite
	// Workers is the number of crypto worker actors; 0 means GOMAXPROCS.
	Workers int
	// Readers is the number of socket readers per socket of Bind; 0
	// means DefaultReaders. Each reader past the first reads its own
	// socket on the same port (udp.Conn.Sibling, SO_REUSEPORT), so a
	// peer's datagrams still reach one reader, in order.
	Readers int

	// OnControl receives packets of cloud types (Signaling, LoginReply,
	// ProbeReply) that arrive on the sockets. pkt is a copy the callee owns.
	// It is called from a socket reader goroutine and must not block.
	OnControl func(pkt []byte, from netip.AddrPort)
	// OnPeerNeedsPath is called when a peer actor restarts after a failure
	// (handshake timeout, keepalive silence, repeated authentication
	// failures): the control plane should ask NMS for a new path and call
	// Open again. Called from an actor: must not block. May be nil.
	OnPeerNeedsPath func(fqdn string)
	// Overlay reports whether an address is one the control plane can
	// look up (inside the overlay's prefixes, not ours). With Overlay and
	// OnNoRoute set, a packet from the TUN to such an address with no
	// tunnel is held (Hold bounds the queue) and OnNoRoute asks for the
	// tunnel; the held packets go out once it is up, or are dropped and
	// counted when LookupFailed says it will not be. Without them such a
	// packet is dropped as no-route. Overlay is called from the TUN
	// reader for packets without a route only: it must be cheap and must
	// not block.
	Overlay func(netip.Addr) bool
	// OnNoRoute starts the lookup of vip: at most once per vip per
	// Hold.Retry, and for at most Hold.MaxDests addresses at a time.
	// Called from the TUN reader goroutine: must not block.
	OnNoRoute func(vip netip.Addr)
	// Hold bounds the packets that wait for a tunnel (zero: hold's
	// defaults).
	Hold hold.Config

	// Tuning; zero values take the defaults below.
	Backoff          supervise.Backoff // supervision of peer actors (supervise.DefaultBackoff)
	HandshakeTimeout time.Duration     // give up one handshake attempt series (default 10s)
	HandshakeRetry   time.Duration     // resend msg1 this often (default 1s)
	Keepalive        time.Duration     // send a keepalive after this much send silence (default 10s)
	DeadAfter        time.Duration     // fail the peer after this much receive silence (default 35s)
	Tick             time.Duration     // how often peers check their timers (default 250ms)
	// FallbackAfter: a direct or punched path is tried alone this long
	// before inits also go over the relay (default fallback.DefaultAfter).
	FallbackAfter time.Duration
	// PassiveKeepalive: having received since it last sent, a peer sends a
	// keepalive once its last send is this old (default 500ms); the other
	// side's SilenceAfter relies on it, so keep it well below that.
	PassiveKeepalive time.Duration
	// SilenceAfter: after sending this long with nothing authenticated
	// back, a peer sets up a new session beside the old one (the other
	// side may have restarted) (default 2s).
	SilenceAfter  time.Duration
	MaxQueueDelay time.Duration // drop batches queued longer than this (default 50ms)
	CoDelTarget   time.Duration // per-peer queues drop early above this sojourn (default fairq.DefaultCoDelTarget)
	GapTimeout    time.Duration // a sequencer gives up a missing batch after this (default 200ms)
	// Rekey limits (defaults seal.RekeyAfterTime, seal.RekeyAfterMessages);
	// they can only shorten seal's own.
	RekeyAfterTime     time.Duration
	RekeyAfterMessages uint64
	// AuthFailLimit: authentication failures per Tick that fail a peer
	// whose keepalive is overdue (default 1000).
	AuthFailLimit uint64
	// HandshakeRate: handshake inits per second run without a cookie
	// before the node counts as busy (default DefaultHandshakeRate).
	HandshakeRate int

	// WorkerHook, if set, is called by a crypto worker before each batch
	// (tests use it to add random sleeps so workers finish out of order).
	WorkerHook func()
}

// NodeVerifier adapts a *pki.Verifier (accepting node certificates) to the
// handshake.VerifyFunc the data plane uses.
func NodeVerifier(v *pki.Verifier) handshake.VerifyFunc {
	return v.HandshakeFunc(pki.RoleNode, "")
}

// The API the control plane codes against. Implementations are in
// dataplane.go; the doc comments here are the contract.
var _ interface {
	// Start spawns the data plane's actors (tun, udp, crypto, peers) as
	// children of parent (the node actor's context, so the IDs read
	// node/peers/<fqdn>), or as top-level actors if parent is nil, and
	// starts the device and socket goroutines.
	Start(parent actor.SpawnerContext) error
	// Stop stops the actors, closes Device and Bind and waits for the
	// goroutines, or for ctx to end.
	Stop(ctx context.Context) error
	// SendControl sends one packet (copied) to a cloud address on the
	// socket of its family, ahead of data. It never blocks: a full queue
	// returns ErrQueueFull.
	SendControl(pkt []byte, to netip.AddrPort) error
	// PrimeNAT keeps our NAT's mapping and filter toward a cloud address
	// we do not talk to (another NMS process of an active-active cloud)
	// open, so that a Direction it sends us from there gets through:
	// from behind a NAT it sends a NAT probe with the primer's TTL
	// (primerttl.go), which opens every mapping of ours on the way and
	// dies before the cloud. From a global address it sends nothing.
	// It never blocks: a full queue returns ErrQueueFull.
	PrimeNAT(to netip.AddrPort) error
	// Open establishes (or redirects) the tunnel NMS described in a Path,
	// its answer to our request (a Direction, which the peer asked for,
	// goes through OpenThen). Initiator decides which side sends the
	// handshake; the initiator tries every endpoint (and the relay, if
	// any) and keeps the first that answers. NMS answers only once the
	// peer has acknowledged its Direction, so on a hole-punched path the
	// peer's NAT mapping toward us is primed already and our full inits
	// need not wait behind our own primer (punch.go).
	Open(info messages.PathInfo) error
	// OpenThen is Open, and calls ready once the peer can take the
	// peer's handshake init (its actor runs), or with the error that it
	// will not (the path was refused, the peer failed or was closed). The
	// responder acknowledges a Direction from ready: NMS gives the
	// initiator its Path only on that ack, so the first init is not
	// dropped for want of a peer actor. ready is called from an actor or
	// the manager and must not block. It is not called when OpenThen
	// returns an error.
	OpenThen(info messages.PathInfo, ready func(error)) error
	// Close tears the tunnel down.
	Close(fqdn string) error
	// PeerUpdate replaces a peer's candidate endpoints (NMS told us it
	// moved); a live session keeps running, new handshakes use them.
	PeerUpdate(fqdn string, endpoints []netip.AddrPort) error
	// Rebind tells every relayed peer to bind its relay side at once: our
	// own address or NAT mapping has moved, and the TRS forwards to us,
	// and accepts from us, only where our last authenticated bind came
	// from.
	Rebind() error
	// Status returns every peer's state, sorted by FQDN.
	Status() []PeerStatus
	// Drops returns drops not attributable to a peer (malformed or
	// truncated datagrams, unknown receiver index, no route), by reason.
	Drops() map[string]uint64
	// WaitUp blocks the caller (never an actor) until the tunnel to fqdn
	// carries data, the peer fails for good (ErrPeerFailed), or ctx ends.
	// It returns ErrUnknownPeer if Open was never called for fqdn.
	WaitUp(ctx context.Context, fqdn string) error
	// LocalAddrs are the sockets' bound addresses, for registration.
	LocalAddrs() []netip.AddrPort
	// LookupFailed tells the data plane that the tunnel OnNoRoute asked
	// for will not come: unknown means no node holds vip (its packets
	// are refused for a while, hold.Config.Negative), otherwise the
	// lookup failed for now (retried no sooner than hold.Config.Retry).
	// The packets held for vip are dropped and counted.
	LookupFailed(vip netip.Addr, unknown bool)
	// AskVIP decides whether the node may ask NMS now who holds vip for
	// a lookup that carries no packet (a PTR query): ErrUnknownVIP while
	// a recent answer says nobody does (LookupFailed with unknown),
	// ErrLookupRate when the lookups' budget (hold.Config.Lookups per
	// Retry, shared with OnNoRoute's) is spent.
	AskVIP(vip netip.Addr) error
	// HoldStats counts what the hold queue did.
	HoldStats() HoldStats
} = (*Dataplane)(nil)
