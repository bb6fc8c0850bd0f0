package store

import (
	"context"
	"fmt"
	"time"
)

// Leases is what a store shared by several cloud processes offers so that
// each can tell whether another is still running: a lease per process
// (its gateway address, the HomeNMS of its nodes) that lapses unless the
// process renews it. NMS renews its own and, before directing a node
// through another NMS, checks that one's: a node whose home's lease has
// lapsed is served by the NMS that asks (see cloud/nms). The Redis store
// implements it; bbolt, one process's own file, does not need to.
type Leases interface {
	// RenewLease holds holder's lease for ttl from now.
	RenewLease(ctx context.Context, holder string, ttl time.Duration) error
	// LeaseHeld reports whether holder's lease is held (renewed within its
	// ttl).
	LeaseHeld(ctx context.Context, holder string) (bool, error)
}

var _ Leases = (*RedisStore)(nil)

func (s *RedisStore) leaseKey(holder string) string { return s.prefix + "lease:" + holder }

// RenewLease sets the holder's key with a time to live: Redis drops it,
// and with it the lease, ttl after the last renewal (a killed process
// renews nothing).
func (s *RedisStore) RenewLease(ctx context.Context, holder string, ttl time.Duration) error {
	if holder == "" || ttl <= 0 {
		return fmt.Errorf("store: lease %q for %v: want a holder and a positive time to live", holder, ttl)
	}
	if err := s.c.Set(ctx, s.leaseKey(holder), "1", ttl).Err(); err != nil {
		return fmt.Errorf("store: renew lease %s: %w", holder, err)
	}
	return nil
}

// LeaseHeld reports whether the holder's key still exists.
func (s *RedisStore) LeaseHeld(ctx context.Context, holder string) (bool, error) {
	n, err := s.c.Exists(ctx, s.leaseKey(holder)).Result()
	if err != nil {
		return false, fmt.Errorf("store: lease %s: %w", holder, err)
	}
	return n == 1, nil
}
