package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/retransmit"
	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/actors/txstore"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/transport/handshake"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

// Dataplane is what the session needs from the data plane
// (*dataplane.Dataplane implements it). None of it may block.
type Dataplane interface {
	SendControl(pkt []byte, to netip.AddrPort) error
	// PrimeNAT keeps our NAT open toward a cloud address we do not send
	// to (dataplane's api.go).
	PrimeNAT(to netip.AddrPort) error
	Open(info messages.PathInfo) error
	// OpenThen is Open, then ready once the peer can take a handshake
	// init (or with the error that it will not); see dataplane's api.go.
	// ready must not block.
	OpenThen(info messages.PathInfo, ready func(error)) error
	PeerUpdate(fqdn string, endpoints []netip.AddrPort) error
	LocalAddrs() []netip.AddrPort
	// Rebind: our address moved; relayed tunnels bind their relay side
	// from the new one now.
	Rebind() error
}

// Errors callers can test with errors.Is.
var (
	ErrConfig      = errors.New("session: bad config")
	ErrNotStarted  = errors.New("session: not started")
	ErrUnknownPeer = errors.New("session: unknown peer")
	ErrTimeout     = errors.New("session: no answer from the cloud")
	// ErrUnverified joins ErrTimeout when answers came but none verified:
	// the cloud's certificates are not from the node's CA.
	ErrUnverified = errors.New("answers arrived but did not verify (is --ca the CA of the cloud's certificates?)")
	ErrBusy       = errors.New("session: too many pending tunnel requests")
	ErrStopped    = errors.New("session: stopped")
	// ErrWrongPeer: NMS answered a tunnel request with a path to another
	// peer than the one asked for.
	ErrWrongPeer = errors.New("session: path names another peer")
)

// Config configures a Session. Zero durations take the defaults.
type Config struct {
	Identity *pki.Identity
	// VerifyAS checks the AS's certificate in the login handshake; it must
	// accept only the AS role (pki.Verifier.HandshakeFunc(pki.RoleAS, ...)).
	VerifyAS handshake.VerifyFunc
	// AS is the cloud address to log in to. Clouds, if given, are
	// several (cloud processes sharing one store, active-active): the
	// session logs in at one of them, picked at random so that nodes spread
	// over the processes, and fails over to the next when it loses it (see
	// FailoverAfter). AS, if set, is added to them.
	AS     netip.AddrPort
	Clouds []netip.AddrPort
	// InOrder starts at Clouds' first address instead of a random one
	// (an operator's preference order, or a test's).
	InOrder bool
	// FailoverAfter is how long a request to the cloud may go without an
	// answer (no authenticated packet from NMS since it was sent, or a
	// login not done in twice this) before the session takes the cloud for
	// lost and logs in at the next address of Clouds. Only with more than
	// one address: with one there is nowhere else to go, and the request's
	// whole retransmission schedule runs as before. Default: the first two
	// waits of Retry (1.5 s with the default schedule: two copies half a
	// second and a second apart unanswered, from a cloud that answers in a
	// round trip), so that losing a cloud process costs a node well under
	// the 5 s the cloud's active-active bound allows.
	FailoverAfter time.Duration
	Dataplane     Dataplane
	// Software goes in the login request, for the cloud's logs.
	Software string
	// OnLogin is called from the actor after every successful login (the
	// node configures its TUN device with the VIPs on the first). It must
	// not block.
	OnLogin func(messages.LoginReply)
	// DenyList is given each deny list (CRL DER) NMS sends, once its
	// chunks are put together; it verifies and keeps it if newer, and
	// returns the number of the list it holds (given nil, only that).
	// Called from the actor: must not block. May be nil.
	DenyList func(crl []byte) (held uint64)
	// OnFailover is told when the session gives up a cloud address for
	// the next (the node re-resolves its cloud names then). Called from
	// the actor: must not block. May be nil.
	OnFailover func()
	// OnVIPFailed is told when a tunnel asked for by NeedVIP will not
	// come: unknown when NMS says no node holds vip, otherwise for now
	// (the holder is offline, the cloud did not answer, the path did not
	// route vip). Called from the actor: must not block. May be nil.
	OnVIPFailed func(vip netip.Addr, unknown bool)
	Logger      *slog.Logger

	Keepalive time.Duration     // keepalive period (default 15s; holds NAT mappings)
	Retry     signaling.Retry   // retransmission of every request (default signaling.DefaultRetry)
	ReLogin   supervise.Backoff // wait between failed login attempts (default 1s..30s)
	// RefusedRetry is the least wait after the cloud refused a login
	// permanently (an expired, revoked or foreign certificate): asking
	// again cannot succeed until an operator acts (default 5m).
	RefusedRetry time.Duration
	ProbeWait    time.Duration // how long registration waits for the NAT probe reply (default 1s)
	MaxPending   int           // tunnel requests queued or in flight (default 256)
	// Interfaces lists the host's addresses for registration (default
	// InterfaceAddrs); tests and mobility simulations replace it.
	Interfaces func() []netip.Addr
}

func (c Config) withDefaults() (Config, error) {
	switch {
	case c.Identity == nil:
		return c, fmt.Errorf("%w: no identity", ErrConfig)
	case c.VerifyAS == nil:
		return c, fmt.Errorf("%w: no AS verifier", ErrConfig)
	case !c.AS.IsValid() && len(c.Clouds) == 0:
		return c, fmt.Errorf("%w: no AS address", ErrConfig)
	case c.Dataplane == nil:
		return c, fmt.Errorf("%w: no data plane", ErrConfig)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Keepalive <= 0 {
		c.Keepalive = 15 * time.Second
	}
	if c.Retry.Attempts == 0 {
		c.Retry = signaling.DefaultRetry()
	}
	clouds := make([]netip.AddrPort, 0, len(c.Clouds)+1)
	for _, a := range append([]netip.AddrPort{c.AS}, c.Clouds...) {
		if a.IsValid() && !slices.Contains(clouds, a) {
			clouds = append(clouds, a)
		}
	}
	c.Clouds = clouds
	if c.FailoverAfter <= 0 {
		for sent := 1; sent <= 2; sent++ {
			d, _ := c.Retry.Delay(sent)
			c.FailoverAfter += d
		}
		if c.FailoverAfter <= 0 {
			c.FailoverAfter = retransmit.Lifetime(c.Retry)
		}
	}
	if c.ReLogin == (supervise.Backoff{}) {
		c.ReLogin = supervise.Backoff{Initial: time.Second, Max: 30 * time.Second}
	}
	if c.RefusedRetry <= 0 {
		c.RefusedRetry = 5 * time.Minute
	}
	if c.ProbeWait <= 0 {
		c.ProbeWait = time.Second
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 256
	}
	if c.Interfaces == nil {
		c.Interfaces = InterfaceAddrs
	}
	if c.Software == "" {
		c.Software = "cyphonic-go"
	}
	return c, nil
}

// Session is the handle on the session actor: the node spawns it with
// Spawn and reaches it through the methods below from any goroutine.
type Session struct {
	cfg    Config
	store  *txstore.Store[entry]
	status atomic.Pointer[Status]
	pid    atomic.Pointer[actor.PID]
	root   atomic.Pointer[actor.RootContext]
	// inbound bounds the packets waiting for the actor; dropped counts those
	// that arrived before Spawn or found it full.
	inbound *supervise.Limiter
	dropped atomic.Uint64
	// clouds is the latest list SetClouds gave (nil: cfg.Clouds), for an
	// actor restarted after it.
	clouds atomic.Pointer[[]netip.AddrPort]
}

// New validates cfg. Close the Session after its actor has stopped.
func New(cfg Config) (*Session, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	// A node's transactions with the cloud are few: MaxPending tunnel
	// requests (256) plus a handful of others. 2,048 entries keep far
	// more than that; Ristretto's sketch and filter grow with the
	// capacity (1,019 KB of heap at 16,384, 382 KB here).
	st, err := txstore.New[entry](txstore.Config{MaxEntries: 1 << 11})
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	s := &Session{cfg: cfg, store: st, inbound: supervise.NewLimiter(inboundLimit)}
	s.status.Store(&Status{FQDN: cfg.Identity.FQDN, State: StateIdle})
	return s, nil
}

// inboundLimit bounds the cloud packets waiting for the session actor: a
// flood from the network is dropped (and counted) rather than queued
// without bound.
const inboundLimit = 1024

// Spawn starts the session actor as parent's child "session".
func (s *Session) Spawn(parent actor.SpawnerContext) (*actor.PID, error) {
	pid, err := supervise.Spawn(parent, "session", "session",
		actor.PropsFromProducer(func() actor.Actor { return newSessionActor(s) }))
	if err != nil {
		return nil, fmt.Errorf("session: spawn: %w", err)
	}
	s.root.Store(parent.ActorSystem().Root)
	s.pid.Store(pid)
	return pid, nil
}

// Close releases the transaction store. Call it after the actor stopped.
func (s *Session) Close() { s.store.Close() }

func (s *Session) send(msg any) bool {
	pid, root := s.pid.Load(), s.root.Load()
	if pid == nil || root == nil {
		return false
	}
	root.Send(pid, msg)
	return true
}

// Inbound hands the session a cloud packet (signaling, login reply, probe
// reply) from the data plane's OnControl hook. It never blocks.
func (s *Session) Inbound(pkt []byte, from netip.AddrPort) {
	if !s.inbound.Acquire() {
		s.dropped.Add(1)
		return
	}
	if !s.send(&inbound{pkt: pkt, from: from}) {
		s.inbound.Release()
		s.dropped.Add(1)
	}
}

// Tunnel is NMS's answer to a tunnel request, already handed to the data
// plane (Open).
type Tunnel = messages.PathInfo

// RequestTunnel asks NMS for a tunnel to fqdn and opens it in the data
// plane; it returns once NMS has answered (not once the tunnel is up: use
// the data plane's WaitUp). Call it from a goroutine that may wait, never
// from an actor. An overlay name NMS does not know returns an error
// wrapping ErrUnknownPeer.
func (s *Session) RequestTunnel(ctx context.Context, fqdn string) (Tunnel, error) {
	reply := make(chan tunnelResult, 1)
	if !s.send(&requestTunnel{fqdn: fqdn, reply: reply}) {
		return Tunnel{}, ErrNotStarted
	}
	select {
	case r := <-reply:
		return r.path, r.err
	case <-ctx.Done():
		return Tunnel{}, fmt.Errorf("session: tunnel to %s: %w", fqdn, ctx.Err())
	}
}

// NeedPath asks NMS for a new path to fqdn without waiting, for the data
// plane's OnPeerNeedsPath hook.
func (s *Session) NeedPath(fqdn string) { s.send(&requestTunnel{fqdn: fqdn}) }

// NeedVIP asks NMS, without waiting, for a tunnel to whichever node holds
// vip: a packet for vip found no tunnel (the data plane's OnNoRoute hook).
// NMS's answer goes the way of a tunnel request's: the data plane opens
// the path (so path choice and supervision are the same as for a name),
// and a failure goes to Config.OnVIPFailed.
func (s *Session) NeedVIP(vip netip.Addr) {
	if !s.send(&requestVIP{vip: vip.Unmap()}) && s.cfg.OnVIPFailed != nil {
		s.cfg.OnVIPFailed(vip, false)
	}
}

// AddrsChanged tells the session that the host's addresses may have
// changed; it re-registers if its locators did. The keepalive timer checks
// too, so this only makes mobility faster.
func (s *Session) AddrsChanged() { s.send(addrsChanged{}) }

// SetClouds replaces the cloud addresses (the node resolved its --cloud
// names again: an active-active cloud behind one name whose records
// changed). Invalid and repeated addresses are left out; an empty list
// changes nothing. The session stays with the cloud it is logged in at
// while that answers, and fails over within the new list.
func (s *Session) SetClouds(addrs []netip.AddrPort) {
	var clouds []netip.AddrPort
	for _, a := range addrs {
		a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		if a.IsValid() && !slices.Contains(clouds, a) {
			clouds = append(clouds, a)
		}
	}
	if len(clouds) == 0 {
		return
	}
	s.clouds.Store(&clouds)
	s.send(cloudsChanged{clouds: clouds})
}

// cloudsChanged: SetClouds' message to the actor.
type cloudsChanged struct{ clouds []netip.AddrPort }

// Status returns the latest session state. Safe from any goroutine.
func (s *Session) Status() Status {
	st := *s.status.Load()
	st.Dropped = s.dropped.Load()
	return st
}
