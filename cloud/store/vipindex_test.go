package store_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/cloud/store/storetest"
)

// TestBoltIndexesOlderStore: a store written before the VIP index existed
// gets its records indexed the first time it is opened.
func TestBoltIndexesOlderStore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "registry.db")
	s, err := store.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	n := store.Node{FQDN: "alice.example.cyphonic", VIP6: netip.MustParseAddr("fd63:7970:686f::1"), VIP4: netip.MustParseAddr("100.64.0.1")}
	if err := s.PutNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// What an older cloud left: the same records, no index.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("byvip")) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = store.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, v := range []netip.Addr{n.VIP6, n.VIP4} {
		if got, err := s.LookupVIP(ctx, v); err != nil || got.FQDN != n.FQDN {
			t.Fatalf("LookupVIP(%v) after upgrade = %+v, %v", v, got, err)
		}
	}
}

// TestRedisIndexesOlderStore: the same for Redis.
func TestRedisIndexesOlderStore(t *testing.T) {
	ctx := context.Background()
	base := storetest.RedisURL(t)
	prefix := "cyphonic-test:" + randomHex(t) + ":"
	url := storetest.WithPrefix(t, base, prefix)
	t.Cleanup(func() { storetest.DeletePrefix(t, base, prefix) })
	s, err := store.OpenRedis(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	n := store.Node{FQDN: "alice.example.cyphonic", VIP6: netip.MustParseAddr("fd63:7970:686f::1"), VIP4: netip.MustParseAddr("100.64.0.1")}
	if err := s.PutNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// What an older cloud left: no index, no "vipindex" mark.
	opts, err := redis.ParseURL(base)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	if err := c.Del(ctx, prefix+"vip:"+n.VIP6.String(), prefix+"vip:"+n.VIP4.String()).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.HDel(ctx, prefix+"config", "vipindex").Err(); err != nil {
		t.Fatal(err)
	}
	s, err = store.OpenRedis(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, v := range []netip.Addr{n.VIP6, n.VIP4} {
		if got, err := s.LookupVIP(ctx, v); err != nil || got.FQDN != n.FQDN {
			t.Fatalf("LookupVIP(%v) after upgrade = %+v, %v", v, got, err)
		}
	}
}
