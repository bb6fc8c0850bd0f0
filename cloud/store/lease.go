package store

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/redis/go-redis/v9"
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

// LeaseInfo is what a cloud process publishes with its lease: where its
// NMS takes signaling and its second observation point takes probes, so
// that the AS of any process can tell a node where else its session is
// served (LoginReply lists them after its own process's).
type LeaseInfo struct {
	NMS   []netip.AddrPort `json:"nms"`
	Probe []netip.AddrPort `json:"probe"`
}

// LeaseDirectory is a Leases that also carries each holder's LeaseInfo.
type LeaseDirectory interface {
	Leases
	// PublishLease is RenewLease that also records info as the holder's.
	PublishLease(ctx context.Context, holder string, info LeaseInfo, ttl time.Duration) error
	// LiveLeases returns the info of every holder whose lease is held.
	LiveLeases(ctx context.Context) (map[string]LeaseInfo, error)
}

var _ LeaseDirectory = (*RedisStore)(nil)

// MaxLeaseAddrs bounds each list of a published LeaseInfo: a process has
// a few addresses, and they end up in every LoginReply.
const MaxLeaseAddrs = 8

func (s *RedisStore) leasesKey() string { return s.prefix + "leases" }

// PublishLease sets the holder's key to info with a time to live (as
// RenewLease) and adds the holder to the set LiveLeases reads.
func (s *RedisStore) PublishLease(ctx context.Context, holder string, info LeaseInfo, ttl time.Duration) error {
	if holder == "" || ttl <= 0 {
		return fmt.Errorf("store: lease %q for %v: want a holder and a positive time to live", holder, ttl)
	}
	if len(info.NMS) > MaxLeaseAddrs || len(info.Probe) > MaxLeaseAddrs {
		return fmt.Errorf("store: lease %s: %d NMS and %d probe addresses, at most %d each", holder, len(info.NMS), len(info.Probe), MaxLeaseAddrs)
	}
	v, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("store: lease %s: %w", holder, err)
	}
	_, err = s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, s.leaseKey(holder), v, ttl)
		p.SAdd(ctx, s.leasesKey(), holder)
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: publish lease %s: %w", holder, err)
	}
	return nil
}

// LiveLeases reads every published holder's key; holders whose lease has
// lapsed are dropped from the set (a process that died stays out until
// it publishes again).
func (s *RedisStore) LiveLeases(ctx context.Context) (map[string]LeaseInfo, error) {
	holders, err := s.c.SMembers(ctx, s.leasesKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("store: leases: %w", err)
	}
	out := make(map[string]LeaseInfo, len(holders))
	if len(holders) == 0 {
		return out, nil
	}
	keys := make([]string, len(holders))
	for i, h := range holders {
		keys[i] = s.leaseKey(h)
	}
	vals, err := s.c.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("store: leases: %w", err)
	}
	var lapsed []any
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			lapsed = append(lapsed, holders[i])
			continue
		}
		var info LeaseInfo
		if err := json.Unmarshal([]byte(str), &info); err != nil {
			continue // a lease renewed without info (RenewLease): held, nothing to tell
		}
		out[holders[i]] = info
	}
	if len(lapsed) > 0 {
		// Best effort: a failure leaves them for the next read.
		_ = s.c.SRem(ctx, s.leasesKey(), lapsed...).Err()
	}
	return out, nil
}
