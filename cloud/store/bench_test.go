package store_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/cloud/store/storetest"
)

func benchStores(b *testing.B, fn func(b *testing.B, s store.Store)) {
	b.Run("bolt", func(b *testing.B) {
		s, err := store.OpenBolt(filepath.Join(b.TempDir(), "r.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		fn(b, s)
	})
	b.Run("redis", func(b *testing.B) {
		base := storetest.RedisURL(b)
		prefix := "cyphonic-bench:" + b.Name() + ":"
		defer storetest.DeletePrefix(b, base, prefix)
		s, err := store.OpenRedis(context.Background(), storetest.WithPrefix(b, base, prefix))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		fn(b, s)
	})
}

// BenchmarkLookupSession is NMS resolving a sealed signaling packet's
// session (cache the result in the caller: this is a store round trip).
func BenchmarkLookupSession(b *testing.B) {
	benchStores(b, func(b *testing.B, s store.Store) {
		ctx := context.Background()
		n := store.Node{FQDN: "alice.example", Session: store.Session{ID: 9}}
		if err := s.PutNode(ctx, n); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.LookupSession(ctx, 9); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPutNodeConcurrent is the registry write of a login or
// registration with 32 writers at once, as the cloud's store workers issue
// them: on bbolt they share commits (DB.Batch), on Redis they pipeline
// over the connection pool.
func BenchmarkPutNodeConcurrent(b *testing.B) {
	benchStores(b, func(b *testing.B, s store.Store) {
		ctx := context.Background()
		var next atomic.Int64
		b.ReportAllocs()
		b.SetParallelism(16) // x GOMAXPROCS goroutines
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := next.Add(1)
				n := store.Node{FQDN: fmt.Sprintf("n%d.example", i%1024), Session: store.Session{ID: uint32(i)}}
				if err := s.PutNode(ctx, n); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkUpdateLocator is NMS recording a registration or a keepalive
// from a new mapping, one node at a time.
func BenchmarkUpdateLocator(b *testing.B) {
	benchStores(b, func(b *testing.B, s store.Store) {
		ctx := context.Background()
		n := store.Node{FQDN: "alice.example", Session: store.Session{ID: 9}}
		if err := s.PutNode(ctx, n); err != nil {
			b.Fatal(err)
		}
		u := store.LocatorUpdate{
			Locator: store.Locator{Observed4: netip.MustParseAddrPort("198.51.100.7:4000"), HasIPv4: true},
			HomeNMS: "nms-1",
		}
		b.ReportAllocs()
		for b.Loop() {
			u.Updated = time.Now()
			if err := s.UpdateLocator(ctx, n.FQDN, 9, u); err != nil {
				b.Fatal(err)
			}
		}
	})
}
