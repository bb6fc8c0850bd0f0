// Package store is the cloud's shared registry: what AS and NMS know about
// every node (its virtual addresses, its session with the cloud, its
// locator), behind one small interface with two implementations:
//
//   - bbolt, a file in the data directory: the default, for one cloud process;
//   - Redis, shared by several cloud processes (the papers' State Database).
//
// Open picks one from a URL. Both pass the conformance suite in storetest.
package store

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
)

// Errors callers can test with errors.Is.
var (
	ErrNotFound     = errors.New("not found")
	ErrSessionInUse = errors.New("session ID held by another node")
	ErrInvalidNode  = errors.New("invalid node record")
	ErrClosed       = errors.New("store closed")
	// ErrSessionChanged is UpdateLocator's refusal: the record no longer
	// holds the session the update came in on (the node logged in again,
	// or out, since), so the update is stale.
	ErrSessionChanged = errors.New("node's session changed")
)

// SessionID names a node's session with the cloud; it is the session ID in
// sealed signaling packets (messages.SignalingHeader). Zero means none.
type SessionID = uint32

// Session is a node's login session: the keys sealing its signaling in
// each direction and when the session ends.
type Session struct {
	ID          SessionID
	NodeToCloud [32]byte
	CloudToNode [32]byte
	Expires     time.Time
}

// Locator is where a node is, as its registration told NMS, and what NMS
// concluded about its NATs.
type Locator struct {
	// Observed4/6 are the public mappings NMS saw (zero if none).
	Observed4, Observed6 netip.AddrPort
	// Locals are the addresses the node declared for its sockets.
	Locals           []netip.AddrPort
	NAT4, NAT6       messages.NATType
	HasIPv4, HasIPv6 bool
}

// Node is one node's record, keyed by FQDN.
type Node struct {
	FQDN       string
	VIP6, VIP4 netip.Addr
	CertSerial string // hex, as pki.FormatSerial writes it
	// CertNotAfter is when that certificate expires, as the AS read it at
	// the login (zero in records older than the field).
	CertNotAfter time.Time
	Session      Session
	Locator      Locator
	HomeNMS      string // the NMS instance the node registered with
	Updated      time.Time
}

// HasVIP reports whether vip (IPv4-mapped or not) is one of n's VIPs.
func (n *Node) HasVIP(vip netip.Addr) bool {
	vip = vip.Unmap()
	return vip.IsValid() && (vip == n.VIP6 || vip == n.VIP4)
}

// LocatorUpdate is what UpdateLocator writes: the fields of a record that
// NMS owns.
type LocatorUpdate struct {
	Locator Locator
	HomeNMS string
	Updated time.Time
}

// apply writes u into n.
func (u *LocatorUpdate) apply(n *Node) {
	n.Locator, n.HomeNMS, n.Updated = u.Locator, u.HomeNMS, u.Updated
}

// Store is the registry. Implementations are safe for concurrent use, and
// the Redis one for use by several processes at once.
//
// A Store may also be a PairGetter.
type Store interface {
	// PutNode creates or replaces n's record and indexes its session
	// (n.Session.ID, unless zero), dropping the index of the session the
	// record held before. It fails with ErrSessionInUse, changing nothing,
	// if that session ID belongs to another node: callers choose session
	// IDs at random and retry.
	PutNode(ctx context.Context, n Node) error

	// FreeSessionIDs returns those of ids, in order, that no session holds
	// (that PutNode would not refuse with ErrSessionInUse), leaving out 0.
	// It is one read for the whole batch and reserves nothing: PutNode
	// stays the atomic claim. The AS checks the IDs it will challenge
	// logins with here, ahead of the logins, so that a random ID colliding
	// with a live session (one login in ~4,300 at a million sessions) is
	// replaced before any node sees it.
	FreeSessionIDs(ctx context.Context, ids []SessionID) ([]SessionID, error)

	// CountSessions returns how many sessions the store holds: the ones a
	// restarted NMS would reload (its sweep reads every record with a
	// session). It reads the session index, not the records, so it is for
	// reports and metrics, not for a request's path: bbolt counts the
	// index's keys page by page in one read transaction, Redis SCANs for
	// the index's keys (a pass over the keyspace, in round trips of 1,000).
	CountSessions(ctx context.Context) (int, error)

	// GetNode returns fqdn's record, or ErrNotFound.
	GetNode(ctx context.Context, fqdn string) (Node, error)

	// LookupSession returns the record of the node holding session id, or
	// ErrNotFound.
	LookupSession(ctx context.Context, id SessionID) (Node, error)

	// LookupVIP returns the record of the node whose VIP6 or VIP4 is vip
	// (an IPv4-mapped address counts as its IPv4 form), or ErrNotFound. It
	// is an index lookup, not a scan: NMS answers a node's first packet to
	// an overlay address with it. A VIP is a certificate's (the CA never
	// gives one to two FQDNs), so if two records name the same VIP anyway
	// the one written last owns it; a record that no longer names vip is
	// never returned for it.
	LookupVIP(ctx context.Context, vip netip.Addr) (Node, error)

	// DeleteSession ends session id: its index goes, and the node holding
	// it keeps its record with a zero Session. Deleting an unknown session
	// is not an error.
	DeleteSession(ctx context.Context, id SessionID) error

	// UpdateLocator sets fqdn's Locator, HomeNMS and Updated from u and
	// leaves the rest of its record alone, but only if the record still
	// holds session; otherwise it fails with ErrSessionChanged, changing
	// nothing (ErrNotFound if there is no record). The check and the write
	// are one atomic step: this is how NMS records what a registration or
	// keepalive told it, because writing back the whole record it read
	// (PutNode) would undo a login that landed in between.
	UpdateLocator(ctx context.Context, fqdn string, session SessionID, u LocatorUpdate) error

	// ListNodes returns every node record, ordered by FQDN.
	ListNodes(ctx context.Context) ([]Node, error)

	// EachNode calls fn with every node record, in no particular order,
	// without holding them all: for scans of a large registry (NMS's
	// sweep). A record written during the scan may be seen or not, and
	// with Redis (SSCAN) one may be seen twice. It stops at fn's first
	// error and returns it. fn must not call the store (with bbolt it runs
	// inside a read transaction).
	EachNode(ctx context.Context, fn func(Node) error) error

	Close() error
}

// PairGetter is a Store that reads two nodes' records in one step, as a
// tunnel setup needs them (the bbolt store: one read transaction instead
// of two, a tenth of a setup's CPU). Each result is what GetNode would
// return for it: b is read even when a is not found. GetNodePair reads
// through it where the store is one, else with two GetNode calls.
type PairGetter interface {
	GetNodePair(ctx context.Context, a, b string) (na Node, errA error, nb Node, errB error)
}

// GetNodePair reads a's and b's records, in one step where st is a
// PairGetter.
func GetNodePair(ctx context.Context, st Store, a, b string) (na Node, errA error, nb Node, errB error) {
	if pg, ok := st.(PairGetter); ok {
		return pg.GetNodePair(ctx, a, b)
	}
	na, errA = st.GetNode(ctx, a)
	nb, errB = st.GetNode(ctx, b)
	return na, errA, nb, errB
}
