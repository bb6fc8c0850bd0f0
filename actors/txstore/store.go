// Package txstore keeps signaling transaction state outside the actors that
// handle it, keyed by the 16-byte message ID, with a TTL (the papers' "cache
// keyed by message ID"). It wraps a Ristretto v2 cache so that a caller knows
// whether an entry is really stored: Ristretto's Set is asynchronous and may
// drop (buffer full) or reject (admission policy) a new key.
package txstore

import (
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

// ID is a signaling message ID.
type ID = [16]byte

// Errors returned by Put and PutIfAbsent.
var (
	ErrNotStored  = errors.New("txstore: entry not stored")
	ErrInvalidTTL = errors.New("txstore: ttl must be positive")
	ErrClosed     = errors.New("txstore: closed")
)

// Config sizes a Store. Zero fields take defaults.
type Config struct {
	// MaxEntries is the cache capacity. Keep it far above the transactions
	// live at once: once full, Ristretto's admission policy rejects or evicts.
	// Default 1<<18.
	MaxEntries int64
	// Retries is how many more times Put tries after a dropped or rejected
	// Set. Default 3.
	Retries int
}

// Stats counts what happened to entries. Evicted excludes expiry.
type Stats struct {
	Stored   uint64 // successful Puts
	Dropped  uint64 // Sets Ristretto dropped (set buffer full); retried
	Rejected uint64 // Sets the admission policy refused; retried
	Evicted  uint64 // live entries pushed out to make room
	Expired  uint64 // entries removed by the TTL sweep
	Failed   uint64 // Puts that gave up with ErrNotStored
}

const stripes = 256

// Store maps message IDs to transaction state of type V. Safe for concurrent
// use.
type Store[V any] struct {
	cache   *ristretto.Cache[uint64, item[V]]
	seed    maphash.Seed
	retries int
	locks   [stripes]sync.Mutex // make get-then-set atomic per key (PutIfAbsent)
	// life is held shared by every operation and exclusively by Close:
	// Ristretto panics on a Set racing its Close (send on closed channel).
	life   sync.RWMutex
	closed atomic.Bool

	stored, dropped, rejected, evicted, expired, failed atomic.Uint64
}

// item keeps the full ID beside the value: the cache stores only a 64-bit
// hash of the key, so a Get checks the ID to tell a collision from a hit.
type item[V any] struct {
	id      ID
	v       V
	expires time.Time // tells expiry from eviction in OnEvict
}

// New makes a Store. Close it to stop Ristretto's goroutines.
func New[V any](cfg Config) (*Store[V], error) {
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 1 << 18
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 3
	}
	s := &Store[V]{seed: maphash.MakeSeed(), retries: cfg.Retries}
	c, err := ristretto.NewCache(&ristretto.Config[uint64, item[V]]{
		NumCounters:        10 * cfg.MaxEntries, // Ristretto's advice: 10x the items
		MaxCost:            cfg.MaxEntries,      // every entry costs 1
		BufferItems:        64,
		IgnoreInternalCost: true,
		OnReject: func(*ristretto.Item[item[V]]) {
			if !s.closed.Load() {
				s.rejected.Add(1)
			}
		},
		OnEvict: func(it *ristretto.Item[item[V]]) {
			if s.closed.Load() {
				return // Close clears the cache through OnEvict
			}
			if !time.Now().Before(it.Value.expires) {
				s.expired.Add(1)
				return
			}
			s.evicted.Add(1)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("txstore: new cache: %w", err)
	}
	s.cache = c
	return s, nil
}

// key hashes the ID with a per-store random seed, so that IDs chosen by a
// remote peer cannot be made to collide with someone else's transaction.
func (s *Store[V]) key(id *ID) uint64 { return maphash.Comparable(s.seed, *id) }

func (s *Store[V]) lock(k uint64) *sync.Mutex { return &s.locks[k%stripes] }

// Get returns the live entry for id.
func (s *Store[V]) Get(id ID) (V, bool) {
	s.life.RLock()
	defer s.life.RUnlock()
	it, ok := s.cache.Get(s.key(&id))
	if !ok || it.id != id {
		var zero V
		return zero, false
	}
	return it.v, true
}

// Put stores v under id for ttl, replacing any entry. When it returns nil the
// entry is visible to Get from any goroutine (until ttl, Delete, or eviction
// if the store is overfull).
func (s *Store[V]) Put(id ID, v V, ttl time.Duration) error {
	s.life.RLock()
	defer s.life.RUnlock()
	k := s.key(&id)
	mu := s.lock(k)
	mu.Lock()
	defer mu.Unlock()
	return s.putLocked(k, id, v, ttl)
}

// PutIfAbsent stores v under id unless a live entry exists, in which case it
// returns that entry and loaded=true. For deduplicating retransmitted
// requests: the first caller for a message ID wins. It is atomic against
// other Put, PutIfAbsent and Delete calls on the same ID.
func (s *Store[V]) PutIfAbsent(id ID, v V, ttl time.Duration) (actual V, loaded bool, err error) {
	s.life.RLock()
	defer s.life.RUnlock()
	k := s.key(&id)
	mu := s.lock(k)
	mu.Lock()
	defer mu.Unlock()
	if cur, ok := s.cache.Get(k); ok && cur.id == id {
		return cur.v, true, nil
	}
	if err := s.putLocked(k, id, v, ttl); err != nil {
		return v, false, err
	}
	return v, false, nil
}

func (s *Store[V]) putLocked(k uint64, id ID, v V, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("txstore: put %x: %w", id, ErrInvalidTTL)
	}
	if s.closed.Load() {
		return fmt.Errorf("txstore: put %x: %w", id, ErrClosed)
	}
	it := item[V]{id: id, v: v, expires: time.Now().Add(ttl)}
	for range s.retries + 1 {
		if !s.cache.SetWithTTL(k, it, 1, ttl) {
			s.dropped.Add(1)
			// The set buffer was full: waiting for it to drain is both the
			// back-pressure and the retry delay.
			s.cache.Wait()
			continue
		}
		// Set is applied asynchronously; Wait makes it visible to every Get
		// that follows, and tells us whether it was admitted.
		s.cache.Wait()
		if cur, ok := s.cache.Get(k); ok && cur.id == id {
			s.stored.Add(1)
			return nil
		}
		// Rejected by admission (counted in OnReject) or evicted at once.
	}
	s.failed.Add(1)
	return fmt.Errorf("txstore: put %x after %d tries: %w", id, s.retries+1, ErrNotStored)
}

// Delete removes id's entry, if any.
func (s *Store[V]) Delete(id ID) {
	s.life.RLock()
	defer s.life.RUnlock()
	k := s.key(&id)
	mu := s.lock(k)
	mu.Lock()
	defer mu.Unlock()
	if cur, ok := s.cache.Get(k); ok && cur.id != id {
		return // another ID's entry that happens to share the hash
	}
	s.cache.Del(k)
}

// Stats returns the counters.
func (s *Store[V]) Stats() Stats {
	return Stats{
		Stored:   s.stored.Load(),
		Dropped:  s.dropped.Load(),
		Rejected: s.rejected.Load(),
		Evicted:  s.evicted.Load(),
		Expired:  s.expired.Load(),
		Failed:   s.failed.Load(),
	}
}

// Len is the number of entries the cache holds (each costs 1), including
// expired ones its TTL sweep has not removed yet; Cap its capacity. For
// metrics: Len near Cap means new entries are being rejected or evict
// live ones.
func (s *Store[V]) Len() int64 {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed.Load() {
		return 0
	}
	return s.cache.MaxCost() - s.cache.RemainingCost()
}

// Cap is the cache's capacity in entries (Config.MaxEntries).
func (s *Store[V]) Cap() int64 { return s.cache.MaxCost() }

// Close stops the cache's goroutines and drops every entry. Later calls
// find nothing and Put returns ErrClosed.
func (s *Store[V]) Close() {
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed.Swap(true) {
		return
	}
	s.cache.Close()
}
