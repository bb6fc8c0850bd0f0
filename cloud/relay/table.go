package relay

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults used when Config leaves a field zero.
const (
	// DefaultIdleTimeout is well above the nodes' keepalive interval, so a
	// quiet but live tunnel keeps its session.
	DefaultIdleTimeout = 3 * time.Minute
	// DefaultMaxSessions bounds the table's memory.
	DefaultMaxSessions = 1 << 16
)

// Errors returned by Allocate, wrapped with the session they concern.
var (
	ErrZeroToken        = errors.New("zero token")
	ErrSameToken        = errors.New("both sides have the same token")
	ErrNoExpiry         = errors.New("no ticket expiry")
	ErrDuplicateSession = errors.New("session already allocated")
	ErrDuplicateToken   = errors.New("token already in use")
	ErrFull             = errors.New("relay table full")
)

// Config tunes a Table.
type Config struct {
	// IdleTimeout is how long a session may go without a packet from
	// either side before Expire removes it. Zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxSessions bounds the number of live sessions. Zero means
	// DefaultMaxSessions.
	MaxSessions int
	// Self lists the relay's own addresses. Packets claiming to come from
	// them are dropped: a side whose endpoint pointed at the relay would
	// make it forward to itself.
	Self []netip.AddrPort
}

// Counters count the packets and bytes relayed in one direction.
type Counters struct {
	Packets, Bytes uint64
}

// SessionInfo is a snapshot of one session for status pages and metrics.
// It carries no tokens.
type SessionInfo struct {
	ID                   [16]byte
	FQDNA, FQDNB         string
	EndpointA, EndpointB netip.AddrPort // zero until that side has sent
	AToB, BToA           Counters
	Drops                uint64 // packets carrying this session's tokens that were not forwarded
	Roams                uint64 // times a side's endpoint changed after it was first learnt
	Expires              time.Time
	LastActive           time.Time // zero until a side has sent
}

// Stats is a snapshot of the whole table.
type Stats struct {
	Sessions      int
	Allocated     uint64 // sessions ever allocated
	Released      uint64 // sessions removed by Release
	ExpiredTicket uint64 // sessions removed by Expire because their ticket ran out
	ExpiredIdle   uint64 // sessions removed by Expire because they went quiet
	Forwarded     Counters
	Roams         uint64
	Drops         [NumDropReasons]uint64 // indexed by DropReason
}

// Dropped returns how many packets were dropped for reason r.
func (s Stats) Dropped(r DropReason) uint64 {
	if int(r) >= len(s.Drops) {
		return 0
	}
	return s.Drops[r]
}

// Table maps relay tokens to sessions and sessions to their two sides'
// endpoints. It is safe for concurrent use: lookups share a read lock and
// each session has its own lock, so packets of different sessions never
// contend and Forward allocates nothing.
type Table struct {
	idle time.Duration
	max  int
	self []netip.AddrPort

	mu       sync.RWMutex
	sessions map[[16]byte]*entry
	tokens   map[[16]byte]tokenRef
	// Lifecycle counts, guarded by mu.
	allocated, released, expiredTicket, expiredIdle uint64

	forwardedPackets, forwardedBytes atomic.Uint64
	roams                            atomic.Uint64
	drops                            [NumDropReasons]atomic.Uint64
}

type tokenRef struct {
	s    *entry
	side int // 0 = A, 1 = B
}

// entry is one relay session.
type entry struct {
	id      [16]byte
	fqdn    [2]string
	token   [2][16]byte
	expires time.Time

	mu         sync.Mutex
	removed    bool // set under mu when the session leaves the table
	endpoint   [2]netip.AddrPort
	from       [2]Counters // traffic received from side i, forwarded to the other
	drops      uint64
	roams      uint64
	lastActive time.Time
}

// NewTable returns an empty table.
func NewTable(cfg Config) *Table {
	t := &Table{
		idle:     cfg.IdleTimeout,
		max:      cfg.MaxSessions,
		sessions: make(map[[16]byte]*entry),
		tokens:   make(map[[16]byte]tokenRef),
	}
	if t.idle <= 0 {
		t.idle = DefaultIdleTimeout
	}
	if t.max <= 0 {
		t.max = DefaultMaxSessions
	}
	for _, a := range cfg.Self {
		t.self = append(t.self, normalize(a))
	}
	return t
}

// Allocate creates the relay session NMS asked for. Only allocated sessions
// exist: the relay forwards nothing for tokens it was not given. Tokens must
// be unique across the table, since a token alone names a session and side.
func (t *Table) Allocate(session [16]byte, tokenA, tokenB [16]byte, fqdnA, fqdnB string, expires time.Time) error {
	var zero [16]byte
	switch {
	case tokenA == zero || tokenB == zero:
		return fmt.Errorf("relay: allocate %x: %w", session, ErrZeroToken)
	case tokenA == tokenB:
		return fmt.Errorf("relay: allocate %x: %w", session, ErrSameToken)
	case expires.IsZero():
		return fmt.Errorf("relay: allocate %x: %w", session, ErrNoExpiry)
	}
	s := &entry{
		id:      session,
		fqdn:    [2]string{fqdnA, fqdnB},
		token:   [2][16]byte{tokenA, tokenB},
		expires: expires,
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.sessions[session]; ok {
		return fmt.Errorf("relay: allocate %x: %w", session, ErrDuplicateSession)
	}
	for _, tok := range s.token {
		if _, ok := t.tokens[tok]; ok {
			return fmt.Errorf("relay: allocate %x: %w", session, ErrDuplicateToken)
		}
	}
	if len(t.sessions) >= t.max {
		return fmt.Errorf("relay: allocate %x: %d sessions: %w", session, len(t.sessions), ErrFull)
	}
	t.sessions[session] = s
	t.tokens[tokenA] = tokenRef{s, 0}
	t.tokens[tokenB] = tokenRef{s, 1}
	t.allocated++
	return nil
}

// Release removes a session (NMS tore the tunnel down or moved it off the
// relay). It reports whether the session existed.
func (t *Table) Release(session [16]byte) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.sessions[session]
	if !ok {
		return false
	}
	t.removeLocked(s)
	t.released++
	return true
}

// Forward handles n bytes that arrived from address from carrying token.
// It records from as that side's endpoint (the mapping its NAT chose toward
// the relay, or its new address after a move) and returns where the payload
// goes: the other side's last endpoint and that side's token. When ok is
// false the packet must be dropped and reason says why.
func (t *Table) Forward(token [16]byte, from netip.AddrPort, n int, now time.Time) (to netip.AddrPort, peerToken [16]byte, ok bool, reason DropReason) {
	from = normalize(from)
	if !t.answerable(from) {
		return t.drop(DropBadSource)
	}
	if n < 0 {
		n = 0
	}

	t.mu.RLock()
	ref, found := t.tokens[token]
	t.mu.RUnlock()
	if !found {
		return t.drop(DropUnknownToken)
	}

	s, me, peer := ref.s, ref.side, 1-ref.side
	s.mu.Lock()
	if s.removed { // swept between the lookup and the lock
		s.mu.Unlock()
		return t.drop(DropUnknownToken)
	}
	if !now.Before(s.expires) {
		s.drops++
		s.mu.Unlock()
		return t.drop(DropExpired)
	}
	if s.endpoint[me] != from {
		if s.endpoint[me].IsValid() {
			s.roams++
			t.roams.Add(1)
		}
		s.endpoint[me] = from
	}
	if now.After(s.lastActive) {
		s.lastActive = now
	}
	to = s.endpoint[peer]
	if !to.IsValid() {
		s.drops++
		s.mu.Unlock()
		return t.drop(DropPeerUnknown)
	}
	s.from[me].Packets++
	s.from[me].Bytes += uint64(n)
	peerToken = s.token[peer]
	s.mu.Unlock()

	t.forwardedPackets.Add(1)
	t.forwardedBytes.Add(uint64(n))
	return to, peerToken, true, DropNone
}

// Expire removes sessions whose ticket has run out or that have been idle
// longer than the idle timeout, and returns how many it removed. Call it
// periodically.
//
// A session no side has sent on yet starts its idle clock at the first
// sweep that sees it, so an allocation nobody uses is gone after at most
// one sweep interval plus the idle timeout.
func (t *Table) Expire(now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	removed := 0
	for _, s := range t.sessions {
		s.mu.Lock()
		if s.lastActive.IsZero() {
			s.lastActive = now
		}
		ticket := !now.Before(s.expires)
		idle := now.Sub(s.lastActive) > t.idle
		s.mu.Unlock()
		switch {
		case ticket:
			t.expiredTicket++
		case idle:
			t.expiredIdle++
		default:
			continue
		}
		t.removeLocked(s)
		removed++
	}
	return removed
}

// Stats returns a snapshot of the table's counters.
func (t *Table) Stats() Stats {
	t.mu.RLock()
	st := Stats{
		Sessions:      len(t.sessions),
		Allocated:     t.allocated,
		Released:      t.released,
		ExpiredTicket: t.expiredTicket,
		ExpiredIdle:   t.expiredIdle,
	}
	t.mu.RUnlock()
	st.Forwarded = Counters{Packets: t.forwardedPackets.Load(), Bytes: t.forwardedBytes.Load()}
	st.Roams = t.roams.Load()
	for i := range t.drops {
		st.Drops[i] = t.drops[i].Load()
	}
	return st
}

// Sessions returns a snapshot of every live session, ordered by ID.
func (t *Table) Sessions() []SessionInfo {
	t.mu.RLock()
	out := make([]SessionInfo, 0, len(t.sessions))
	for _, s := range t.sessions {
		s.mu.Lock()
		out = append(out, SessionInfo{
			ID:    s.id,
			FQDNA: s.fqdn[0], FQDNB: s.fqdn[1],
			EndpointA: s.endpoint[0], EndpointB: s.endpoint[1],
			AToB: s.from[0], BToA: s.from[1],
			Drops:      s.drops,
			Roams:      s.roams,
			Expires:    s.expires,
			LastActive: s.lastActive,
		})
		s.mu.Unlock()
	}
	t.mu.RUnlock()
	slices.SortFunc(out, func(a, b SessionInfo) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return out
}

// removeLocked takes s out of the table. t.mu must be held for writing.
func (t *Table) removeLocked(s *entry) {
	s.mu.Lock()
	s.removed = true
	s.mu.Unlock()
	delete(t.sessions, s.id)
	delete(t.tokens, s.token[0])
	delete(t.tokens, s.token[1])
}

func (t *Table) drop(r DropReason) (netip.AddrPort, [16]byte, bool, DropReason) {
	t.drops[r].Add(1)
	return netip.AddrPort{}, [16]byte{}, false, r
}

// answerable reports whether the relay may record from as an endpoint and
// send to it.
func (t *Table) answerable(from netip.AddrPort) bool {
	a := from.Addr()
	if !a.IsValid() || from.Port() == 0 || a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return false
	}
	for _, s := range t.self {
		if s == from {
			return false
		}
	}
	return true
}

// normalize unmaps IPv4-mapped IPv6 addresses, as a dual-stack socket
// reports IPv4 sources, so one endpoint has one form.
func normalize(ap netip.AddrPort) netip.AddrPort {
	if !ap.IsValid() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
