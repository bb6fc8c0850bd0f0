package dataplane

import (
	"crypto/rand"
	"encoding/binary"
	"math/big"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/cyphonic/cyphonic-go/transport/handshake"
	"github.com/cyphonic/cyphonic-go/transport/seal"
)

// peerSession is what a receiver index names: a peer's keypair from one
// handshake, and the pipe its packets go through. Sessions are immutable once
// published in Tables, except for the confirmation flag.
type peerSession struct {
	Peer *peerHandle
	Pipe *peerPipe
	Key  *seal.Keypair // nil while the index is reserved for a handshake in progress

	confirmed atomic.Bool
	msg1Time  int64    // responder: msg1's timestamp (Unix ns), committed on confirmation
	serial    *big.Int // the peer certificate's serial, checked against the deny list

	// ini is set (before publishing) on an initiator's reserved session:
	// the handshake a response to this index completes. Handshake workers
	// call it, one at a time (iniMu), never the peer actor.
	ini   *handshake.Initiator
	iniMu sync.Mutex
}

// Confirmed reports whether the session has carried an authenticated packet
// from the peer (always true on the initiator's side).
func (s *peerSession) Confirmed() bool { return s.confirmed.Load() }

// peerTables are the lookups the reader goroutines do per packet: destination
// VIP -> peer, receiver index -> session. Reads are one atomic load and a
// map lookup (copy-on-write: writes are rare and serialised).
type peerTables struct {
	mu     sync.Mutex
	routes atomic.Pointer[map[netip.Addr]*peerHandle]
	index  atomic.Pointer[map[uint32]*peerSession]
	// remote maps the index the peer chose (the one we put in the data
	// packets we send it) to the session, for unknown-index answers,
	// which echo it. Kept with index, for sessions that have keys.
	remote atomic.Pointer[map[uint32]*peerSession]
}

// newTables makes empty tables.
func newTables() *peerTables {
	t := &peerTables{}
	r, i, ri := map[netip.Addr]*peerHandle{}, map[uint32]*peerSession{}, map[uint32]*peerSession{}
	t.routes.Store(&r)
	t.index.Store(&i)
	t.remote.Store(&ri)
	return t
}

// Route returns the peer owning the overlay address dst, or nil.
func (t *peerTables) Route(dst netip.Addr) *peerHandle { return (*t.routes.Load())[dst] }

// Session returns the session with receiver index idx, or nil.
func (t *peerTables) Session(idx uint32) *peerSession { return (*t.index.Load())[idx] }

// ByRemote returns the session whose data packets carry the peer's
// receiver index idx, or nil.
func (t *peerTables) ByRemote(idx uint32) *peerSession { return (*t.remote.Load())[idx] }

// SetRoutes points addrs (invalid ones ignored) at h.
func (t *peerTables) SetRoutes(h *peerHandle, addrs ...netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.routes.Load()
	m := make(map[netip.Addr]*peerHandle, len(old)+len(addrs))
	for k, v := range old {
		m[k] = v
	}
	for _, a := range addrs {
		if a.IsValid() {
			m[a.Unmap()] = h
		}
	}
	t.routes.Store(&m)
}

// RemoveRoutes drops every route to h.
func (t *peerTables) RemoveRoutes(h *peerHandle) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.routes.Load()
	m := make(map[netip.Addr]*peerHandle, len(old))
	for k, v := range old {
		if v != h {
			m[k] = v
		}
	}
	t.routes.Store(&m)
}

// Reserve publishes s under a fresh random non-zero index and returns it.
func (t *peerTables) Reserve(s *peerSession) uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.index.Load()
	var idx uint32
	for {
		var b [4]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
		idx = binary.BigEndian.Uint32(b[:])
		if _, taken := old[idx]; idx != 0 && !taken {
			break
		}
	}
	t.storeIndex(old, idx, s)
	return idx
}

// Set replaces the session under idx.
func (t *peerTables) Set(idx uint32, s *peerSession) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.storeIndex(*t.index.Load(), idx, s)
}

// Remove forgets idx.
func (t *peerTables) Remove(idx uint32) {
	if idx == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.storeIndex(*t.index.Load(), idx, nil)
}

func (t *peerTables) storeIndex(old map[uint32]*peerSession, idx uint32, s *peerSession) {
	m := make(map[uint32]*peerSession, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	if s == nil {
		delete(m, idx)
	} else {
		m[idx] = s
	}
	t.index.Store(&m)
	prev := old[idx]
	hadKey, hasKey := prev != nil && prev.Key != nil, s != nil && s.Key != nil
	if !hadKey && !hasKey {
		return
	}
	oldR := *t.remote.Load()
	r := make(map[uint32]*peerSession, len(oldR)+1)
	for k, v := range oldR {
		r[k] = v
	}
	if hadKey && r[prev.Key.RemoteIndex()] == prev {
		delete(r, prev.Key.RemoteIndex())
	}
	if hasKey {
		r[s.Key.RemoteIndex()] = s
	}
	t.remote.Store(&r)
}
