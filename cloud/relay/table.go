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

	"github.com/cyphonic/cyphonic-go/cloud/shrink"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/relaybind"
)

// Defaults used when Config leaves a field zero.
const (
	// DefaultIdleTimeout is how long a session lives after its last
	// accepted bind. Nodes bind once a keepalive period (10 s) while they
	// use the relay, so a live tunnel is far from it; a token seen on the
	// wire is worth nothing two minutes after its nodes stopped.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultMaxSessions bounds the table's memory.
	DefaultMaxSessions = 1 << 16
	// DefaultSweepBatch bounds the sessions one Expire looks at, so a sweep
	// holds the table's lock for a bounded time however full it is.
	DefaultSweepBatch = 4096
	// DefaultOwnerShare: without Config.MaxPerOwner, one node (one owner
	// ID of stateless tickets) may hold at most this fraction of
	// MaxSessions, so it takes 64 nodes' worth of binds to fill the
	// table: 1,024 sessions a node at the default size, far above what a
	// node relays at once (its peers whose direct path failed).
	DefaultOwnerShare = 64
)

// Errors returned by Allocate, wrapped with the session they concern.
var (
	ErrZeroToken        = errors.New("zero token")
	ErrSameToken        = errors.New("both sides have the same token")
	ErrZeroKey          = errors.New("zero bind key")
	ErrSameKey          = errors.New("both sides have the same bind key")
	ErrNoExpiry         = errors.New("no ticket expiry")
	ErrDuplicateSession = errors.New("session already allocated")
	ErrDuplicateToken   = errors.New("token already in use")
	ErrFull             = errors.New("relay table full")
)

// Config tunes a Table.
type Config struct {
	// IdleTimeout is how long a session may go without an accepted bind
	// from either side before Expire removes it. Zero means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxSessions bounds the number of live sessions. Zero means
	// DefaultMaxSessions.
	MaxSessions int
	// SweepBatch bounds the sessions one Expire examines. Zero means
	// DefaultSweepBatch.
	SweepBatch int
	// Tickets, when set, opens stateless tickets (ticket.go): a bind on a
	// token the table does not hold creates its side of a session if its
	// MAC verifies under the key the token derives. Nil: only allocated
	// sessions exist.
	Tickets *Tickets
	// MaxPerOwner bounds the session sides one owner ID (one node) of
	// stateless tickets may hold bound. Zero means
	// MaxSessions/DefaultOwnerShare (at least 1).
	MaxPerOwner int
	// Self lists the relay's own addresses. Packets claiming to come from
	// them are dropped: a side whose endpoint pointed at the relay would
	// make it forward to itself.
	Self []netip.AddrPort
}

// Side is one side of a relay session as NMS allocated it.
type Side struct {
	Token [16]byte
	Key   messages.RelayBindKey // authenticates this side's binds
	FQDN  string                // for logs and metrics
}

// Counters count the packets and bytes relayed in one direction.
type Counters struct {
	Packets, Bytes uint64
}

// SessionInfo is a snapshot of one session for status pages and metrics.
// It carries no tokens and no keys.
type SessionInfo struct {
	ID                   [16]byte
	FQDNA, FQDNB         string
	EndpointA, EndpointB netip.AddrPort // zero until that side has bound
	AToB, BToA           Counters
	Drops                uint64 // packets carrying this session's tokens that were refused
	Roams                uint64 // times a bind moved a side's endpoint after it was first bound
	Expires              time.Time
	LastActive           time.Time // last accepted bind; zero until the first
}

// Stats is a snapshot of the whole table.
type Stats struct {
	Sessions      int
	Allocated     uint64 // sessions ever allocated (RelayAlloc)
	Created       uint64 // sessions created by a stateless ticket's first bind
	Released      uint64 // sessions removed by Release
	ExpiredTicket uint64 // sessions removed by Expire because their ticket ran out
	ExpiredIdle   uint64 // sessions removed by Expire because they went quiet
	Forwarded     Counters
	Binds         uint64 // binds accepted
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
// contend, and neither Forward nor Bind allocates.
//
// Only Bind moves an endpoint, and only for a bind MACed under the side's
// key with a counter above the last accepted one. Forward relays a frame
// only if it comes from its side's bound endpoint and never changes
// anything but counters. Per session the table holds a fixed amount of
// state (two endpoints, two MACs, two counters), whatever arrives.
type Table struct {
	idle     time.Duration
	max      int
	perOwner int
	batch    int
	self     []netip.AddrPort
	tickets  *Tickets

	mu       sync.RWMutex
	sessions map[[16]byte]*entry
	tokens   map[[16]byte]tokenRef
	// owners counts the bound sides of stateless sessions per owner ID.
	owners map[uint32]int
	// order holds every session once, for Expire to walk a bounded part of
	// at a time from cursor on; entry.pos is each one's index.
	order  []*entry
	cursor int
	// Peaks of the maps and of order since their last rebuild: Go maps
	// never shrink, so after a burst each is rebuilt once it falls under a
	// quarter of its peak (cloud/shrink).
	sessionsPeak, tokensPeak, ownersPeak, sweptPeak shrink.Peak
	// swept remembers, per side of a stateless session removed before its
	// ticket expired, the last counter accepted for it, so that a recorded
	// first (or later) bind sent again after the sweep cannot recreate the
	// side: its token and MAC are as good as ever, only its counter is
	// old. Only sides that bound genuinely are recorded, at most max of
	// them (sweptQ's order, oldest forgotten first), each until its
	// ticket's expiry, when the token is refused anyway.
	swept  map[[16]byte]sweptSide
	sweptQ sweptQueue
	// Lifecycle counts, guarded by mu.
	allocated, created, released, expiredTicket, expiredIdle uint64

	forwardedPackets, forwardedBytes atomic.Uint64
	binds, roams                     atomic.Uint64
	drops                            [NumDropReasons]atomic.Uint64
}

// sweptSide is what the table keeps of a swept stateless side.
type sweptSide struct {
	counter uint64 // the last accepted; a bind must be above it
	seq     uint64 // its place in sweptQ, to tell a later record from it
}

type sweptRef struct {
	token [16]byte
	seq   uint64
}

// sweptQueue is a FIFO of swept sides, oldest first.
type sweptQueue struct {
	q    []sweptRef
	head int
	seq  uint64
}

func (q *sweptQueue) len() int { return len(q.q) - q.head }

func (q *sweptQueue) push(tok [16]byte) uint64 {
	q.seq++
	q.q = append(q.q, sweptRef{tok, q.seq})
	return q.seq
}

func (q *sweptQueue) front() sweptRef { return q.q[q.head] }

// pop drops the front, and compacts the slice once its dead head is most
// of it (so the queue's memory follows its length, amortised).
func (q *sweptQueue) pop() {
	q.q[q.head] = sweptRef{}
	q.head++
	if q.head == len(q.q) {
		q.q, q.head = q.q[:0], 0
		if cap(q.q) >= 4*shrink.MinPeak {
			q.q = nil
		}
	} else if q.head >= shrink.MinPeak && q.head > len(q.q)/2 {
		q.q, q.head = slices.Clone(q.q[q.head:]), 0
	}
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
	pos     int // index in Table.order, guarded by Table.mu
	// owner[i] is side i's owner ID once it has bound, for a session of
	// stateless tickets (owned[i]); guarded by Table.mu.
	owner     [2]uint32
	owned     [2]bool
	stateless bool // made by a first bind (bindNew), not by Allocate

	// macMu[i] guards mac[i]. A bind's MAC is checked under it, not under
	// mu, so a flood of forged binds on a session never holds up its
	// relay frames. Never held together with mu. mac[i] is made from
	// key[i] on side i's first bind: most sessions are a direct or
	// punched tunnel's fallback that nobody binds, and the two keys cost
	// 64 bytes where two keyed BLAKE2s states cost ~500.
	macMu [2]sync.Mutex
	mac   [2]*relaybind.MAC
	key   [2]messages.RelayBindKey

	mu         sync.Mutex
	removed    bool      // set under mu when the session leaves the table
	counter    [2]uint64 // last accepted bind counter per side
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
		batch:    cfg.SweepBatch,
		sessions: make(map[[16]byte]*entry),
		tokens:   make(map[[16]byte]tokenRef),
		owners:   make(map[uint32]int),
		swept:    make(map[[16]byte]sweptSide),
		tickets:  cfg.Tickets,
		perOwner: cfg.MaxPerOwner,
	}
	if t.idle <= 0 {
		t.idle = DefaultIdleTimeout
	}
	if t.max <= 0 {
		t.max = DefaultMaxSessions
	}
	if t.batch <= 0 {
		t.batch = DefaultSweepBatch
	}
	if t.perOwner <= 0 {
		t.perOwner = max(t.max/DefaultOwnerShare, 1)
	}
	for _, a := range cfg.Self {
		t.self = append(t.self, normalize(a))
	}
	return t
}

// IdleTimeout is the table's idle timeout, defaults applied.
func (t *Table) IdleTimeout() time.Duration { return t.idle }

// Allocate creates the relay session NMS asked for (an NMS in another
// process, which has no ticket key: RelayAlloc). Without Config.Tickets
// only allocated sessions exist: the relay forwards nothing for tokens it
// was not given. Tokens must
// be unique across the table, since a token alone names a session and side;
// each side needs its own bind key.
func (t *Table) Allocate(session [16]byte, a, b Side, expires time.Time) error {
	var zero [16]byte
	switch {
	case a.Token == zero || b.Token == zero:
		return fmt.Errorf("relay: allocate %x: %w", session, ErrZeroToken)
	case a.Token == b.Token:
		return fmt.Errorf("relay: allocate %x: %w", session, ErrSameToken)
	case a.Key.IsZero() || b.Key.IsZero():
		return fmt.Errorf("relay: allocate %x: %w", session, ErrZeroKey)
	case a.Key == b.Key:
		return fmt.Errorf("relay: allocate %x: %w", session, ErrSameKey)
	case expires.IsZero():
		return fmt.Errorf("relay: allocate %x: %w", session, ErrNoExpiry)
	}
	s := &entry{
		id:      session,
		fqdn:    [2]string{a.FQDN, b.FQDN},
		token:   [2][16]byte{a.Token, b.Token},
		key:     [2]messages.RelayBindKey{a.Key, b.Key},
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
	t.tokens[a.Token] = tokenRef{s, 0}
	t.tokens[b.Token] = tokenRef{s, 1}
	s.pos = len(t.order)
	t.order = append(t.order, s)
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
	t.rememberLocked(s)
	t.removeLocked(s)
	t.released++
	return true
}

// Bind handles a RelayBind packet (the whole datagram) that arrived from
// address from. If its MAC verifies under its side's key and its counter is
// above the last accepted one, from becomes that side's endpoint (the
// mapping its NAT chose toward the relay, or its new address after a move)
// and the session's idle clock restarts; otherwise nothing changes and the
// drop is counted. A bind is never answered.
func (t *Table) Bind(pkt []byte, from netip.AddrPort, now time.Time) DropReason {
	from = normalize(from)
	if !t.answerable(from) {
		return t.dropReason(DropBadSource)
	}
	b, err := messages.ParseRelayBind(pkt)
	if err != nil {
		return t.dropReason(DropBadBind)
	}
	t.mu.RLock()
	ref, found := t.tokens[b.Token]
	t.mu.RUnlock()
	if !found {
		r, again := t.bindNew(pkt, b, from, now)
		if !again {
			return t.dropReason(r)
		}
		// Another reader created this side meanwhile: take it as a bind
		// on the session it made.
		t.mu.RLock()
		ref, found = t.tokens[b.Token]
		t.mu.RUnlock()
		if !found {
			return t.dropReason(DropUnknownToken)
		}
	}

	s, me := ref.s, ref.side
	s.macMu[me].Lock()
	if s.mac[me] == nil {
		if m, err := relaybind.NewMAC(s.key[me]); err == nil {
			s.mac[me] = m
		}
	}
	genuine := s.mac[me] != nil && s.mac[me].Verify(pkt)
	s.macMu[me].Unlock()
	s.mu.Lock()
	var r DropReason
	switch {
	case s.removed: // swept between the lookup and the lock
		s.mu.Unlock()
		return t.dropReason(DropUnknownToken)
	case !now.Before(s.expires):
		r = DropExpired
	case !genuine:
		r = DropBadBind
	case !relaybind.Fresh(b.Counter, s.counter[me]):
		r = DropReplay
	}
	if r != DropNone {
		s.drops++
		s.mu.Unlock()
		return t.dropReason(r)
	}
	s.counter[me] = b.Counter
	roamed := false
	if s.endpoint[me] != from {
		roamed = s.endpoint[me].IsValid()
		if roamed {
			s.roams++
		}
		s.endpoint[me] = from
	}
	if now.After(s.lastActive) {
		s.lastActive = now
	}
	s.mu.Unlock()

	t.binds.Add(1)
	if roamed {
		t.roams.Add(1)
	}
	return DropNone
}

// bindNew handles a bind on a token the table does not hold: a stateless
// ticket's first bind of its side. Nothing is kept unless the bind's MAC
// verifies under the key the token derives (ticket.go), and then only
// within the table's bound and the side's owner's. It returns DropNone
// when the side was created (counted as a bind), or again when another
// goroutine created it first.
func (t *Table) bindNew(pkt []byte, b messages.RelayBind, from netip.AddrPort, now time.Time) (r DropReason, again bool) {
	if t.tickets == nil {
		return DropUnknownToken, false
	}
	k, r := t.tickets.open(pkt[1:1+len(b.Token)], now) // the token, as it came
	if r != DropNone {
		return r, false
	}
	// What a token of the format costs (a keyed BLAKE2s state, which
	// x/crypto cannot re-key in place); kept as the side's MAC if the
	// bind is genuine, garbage otherwise.
	mac, err := relaybind.NewMAC(k.key)
	if err != nil || !mac.Verify(pkt) {
		return DropBadBind, false
	}
	if !relaybind.Fresh(b.Counter, 0) {
		return DropReplay, false
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.tokens[b.Token]; ok {
		return DropNone, true
	}
	if sw, ok := t.swept[b.Token]; ok {
		if !relaybind.Fresh(b.Counter, sw.counter) {
			return DropReplay, false // a recording of a swept side
		}
		// The node itself, binding again: the record has done its work
		// (the side's counter lives in the session again).
		delete(t.swept, b.Token)
		t.swept = shrink.Map(t.swept, &t.sweptPeak)
	}
	if t.owners[k.owner] >= t.perOwner {
		return DropOwnerFull, false
	}
	s := t.sessions[k.session]
	switch {
	case s == nil:
		if len(t.sessions) >= t.max {
			return DropFull, false
		}
		s = &entry{id: k.session, expires: k.expires, stateless: true}
		t.sessions[k.session] = s
		s.pos = len(t.order)
		t.order = append(t.order, s)
		t.created++
	case !s.stateless || s.owned[k.side] || s.expires != k.expires:
		// Cannot happen for tokens minted here (one token per side of a
		// nonce); refuse rather than move a side that is not this one.
		return DropBadBind, false
	}
	me := k.side
	s.owner[me], s.owned[me] = k.owner, true
	t.owners[k.owner]++
	s.macMu[me].Lock()
	s.mac[me] = mac
	s.macMu[me].Unlock()
	s.mu.Lock()
	s.token[me] = b.Token
	s.counter[me] = b.Counter
	s.endpoint[me] = from
	if now.After(s.lastActive) {
		s.lastActive = now
	}
	s.mu.Unlock()
	t.tokens[b.Token] = tokenRef{s, me}
	t.binds.Add(1)
	return DropNone, false
}

// Forward handles a relay frame with an inner packet of n bytes that
// arrived from address from carrying token. If from is that side's bound
// endpoint it returns where the payload goes: the other side's bound
// endpoint and that side's token. It changes no endpoint. When ok is false
// the packet must be dropped and reason says why. An empty frame (n == 0)
// is refused as a bad bind.
func (t *Table) Forward(token [16]byte, from netip.AddrPort, n int, now time.Time) (to netip.AddrPort, peerToken [16]byte, ok bool, reason DropReason) {
	from = normalize(from)
	if !t.answerable(from) {
		return t.drop(DropBadSource)
	}
	if n <= 0 {
		return t.drop(DropBadBind)
	}

	t.mu.RLock()
	ref, found := t.tokens[token]
	t.mu.RUnlock()
	if !found {
		return t.drop(DropUnknownToken)
	}

	s, me, peer := ref.s, ref.side, 1-ref.side
	s.mu.Lock()
	var r DropReason
	switch {
	case s.removed: // swept between the lookup and the lock
		s.mu.Unlock()
		return t.drop(DropUnknownToken)
	case !now.Before(s.expires):
		r = DropExpired
	case !s.endpoint[me].IsValid() || s.endpoint[me] != from:
		r = DropNotBound
	case !s.endpoint[peer].IsValid():
		r = DropPeerUnknown
	}
	if r != DropNone {
		s.drops++
		s.mu.Unlock()
		return t.drop(r)
	}
	to = s.endpoint[peer]
	s.from[me].Packets++
	s.from[me].Bytes += uint64(n)
	peerToken = s.token[peer]
	s.mu.Unlock()

	t.forwardedPackets.Add(1)
	t.forwardedBytes.Add(uint64(n))
	return to, peerToken, true, DropNone
}

// Expire removes sessions whose ticket has run out or that have gone
// longer than the idle timeout without an accepted bind, and returns how
// many it removed. Call it periodically. Each call examines at most
// SweepBatch sessions, going on where the last call stopped, so a full
// table is swept over several calls and no call holds the lock long.
//
// A session no side has bound yet starts its idle clock at the first
// sweep that sees it, so an allocation nobody uses is gone after the idle
// timeout plus at most one pass over the table.
func (t *Table) Expire(now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	removed := 0
	// The walk goes down the order, so a removal (the last session moves
	// into the hole) never moves a session not yet looked at behind the
	// cursor. A table that fits in one batch is walked whole, top down.
	n := len(t.order)
	if n <= t.batch || t.cursor > n {
		t.cursor = n
	}
	for range min(t.batch, n) {
		if t.cursor == 0 {
			t.cursor = len(t.order)
		}
		if t.cursor == 0 {
			break
		}
		t.cursor--
		s := t.order[t.cursor]
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
			t.rememberLocked(s)
		default:
			continue
		}
		t.removeLocked(s)
		removed++
	}
	t.forgetSweptLocked(now)
	return removed
}

// CountDrop counts a packet dropped for reason r before it reached the
// table (one that does not parse, say), so every drop shows in Stats.
func (t *Table) CountDrop(r DropReason) {
	if int(r) < len(t.drops) && r != DropNone {
		t.drops[r].Add(1)
	}
}

// Stats returns a snapshot of the table's counters.
func (t *Table) Stats() Stats {
	t.mu.RLock()
	st := Stats{
		Sessions:      len(t.sessions),
		Allocated:     t.allocated,
		Created:       t.created,
		Released:      t.released,
		ExpiredTicket: t.expiredTicket,
		ExpiredIdle:   t.expiredIdle,
	}
	t.mu.RUnlock()
	st.Forwarded = Counters{Packets: t.forwardedPackets.Load(), Bytes: t.forwardedBytes.Load()}
	st.Binds = t.binds.Load()
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

// rememberLocked records s's bound stateless sides in swept before s
// leaves the table with its ticket still valid. t.mu must be held for
// writing.
func (t *Table) rememberLocked(s *entry) {
	if !s.stateless {
		return // an allocation: only Allocate makes it, never a bind
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.token {
		if !s.owned[i] {
			continue
		}
		for t.sweptQ.len() >= t.max {
			t.forgetFrontLocked()
		}
		t.swept[s.token[i]] = sweptSide{counter: s.counter[i], seq: t.sweptQ.push(s.token[i])}
		t.sweptPeak.Grew(len(t.swept))
	}
}

// forgetFrontLocked drops the oldest swept record.
func (t *Table) forgetFrontLocked() {
	f := t.sweptQ.front()
	t.sweptQ.pop()
	if sw, ok := t.swept[f.token]; ok && sw.seq == f.seq {
		delete(t.swept, f.token)
	}
}

// forgetSweptLocked drops the swept records, oldest first, whose tickets
// have expired (or that a fresh bind already replaced). Records are
// queued in sweep order, which follows mint order closely (a ticket's
// life is the same for all), so stopping at the first live one leaves
// little behind; the bound on the queue forgets the rest.
func (t *Table) forgetSweptLocked(now time.Time) {
	for t.sweptQ.len() > 0 {
		f := t.sweptQ.front()
		sw, ok := t.swept[f.token]
		if ok && sw.seq == f.seq && now.Before(tokenExpiry(f.token)) {
			break
		}
		t.forgetFrontLocked()
	}
	t.swept = shrink.Map(t.swept, &t.sweptPeak)
}

// removeLocked takes s out of the table; the last session of order takes
// its place there. t.mu must be held for writing.
func (t *Table) removeLocked(s *entry) {
	s.mu.Lock()
	s.removed = true
	s.mu.Unlock()
	delete(t.sessions, s.id)
	for i := range s.token {
		if s.token[i] != ([16]byte{}) {
			delete(t.tokens, s.token[i])
		}
		if s.owned[i] {
			if t.owners[s.owner[i]]--; t.owners[s.owner[i]] <= 0 {
				delete(t.owners, s.owner[i])
			}
		}
	}
	last := len(t.order) - 1
	moved := t.order[last]
	t.order[s.pos], moved.pos = moved, s.pos
	t.order[last] = nil
	t.order = t.order[:last]
	t.sessions = shrink.Map(t.sessions, &t.sessionsPeak)
	t.tokens = shrink.Map(t.tokens, &t.tokensPeak)
	t.owners = shrink.Map(t.owners, &t.ownersPeak)
	if c := cap(t.order); c >= 4*shrink.MinPeak && len(t.order) < c/4 {
		t.order = slices.Clone(t.order) // indices (entry.pos) unchanged
	}
}

func (t *Table) sweptLen() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.swept)
}

func (t *Table) drop(r DropReason) (netip.AddrPort, [16]byte, bool, DropReason) {
	return netip.AddrPort{}, [16]byte{}, false, t.dropReason(r)
}

func (t *Table) dropReason(r DropReason) DropReason {
	t.drops[r].Add(1)
	return r
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
