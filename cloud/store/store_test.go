package store_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/cloud/store/storetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBoltConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Fresh: func(t *testing.T) storetest.Opener {
			path := filepath.Join(t.TempDir(), "registry.db")
			return func() (store.Store, error) { return store.OpenBolt(path) }
		},
	})
}

func TestRedisConformance(t *testing.T) {
	base := storetest.RedisURL(t)
	storetest.Run(t, storetest.Harness{
		Fresh: func(t *testing.T) storetest.Opener {
			prefix := "cyphonic-test:" + randomHex(t) + ":"
			url := storetest.WithPrefix(t, base, prefix)
			t.Cleanup(func() { storetest.DeletePrefix(t, base, prefix) })
			return func() (store.Store, error) {
				return store.OpenRedis(context.Background(), url)
			}
		},
		SharedHandles: true,
	})
}

func randomHex(t *testing.T) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// TestRedisCountSessionsPrefixLiteral: CountSessions counts its own
// prefix's sessions only, even when the prefix holds SCAN's pattern
// characters and another overlay's prefix matches it as a pattern.
func TestRedisCountSessionsPrefixLiteral(t *testing.T) {
	base := storetest.RedisURL(t)
	root := "cyphonic-test:" + randomHex(t) + ":"
	t.Cleanup(func() { storetest.DeletePrefix(t, base, root) })
	open := func(prefix string) store.Store {
		s, err := store.OpenRedis(context.Background(), storetest.WithPrefix(t, base, prefix))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	glob, other := open(root+"x*:"), open(root+"xyz:")
	ctx := context.Background()
	put := func(s store.Store, fqdn string, id store.SessionID) {
		t.Helper()
		vips := storetest.VIPs(fqdn)
		if err := s.PutNode(ctx, store.Node{FQDN: fqdn, VIP6: vips[0], VIP4: vips[1], Session: store.Session{ID: id, Expires: time.Now().Add(time.Hour)}}); err != nil {
			t.Fatal(err)
		}
	}
	put(glob, "g.example", 1)
	for i := range 3 {
		put(other, fmt.Sprintf("o%d.example", i), store.SessionID(10+i))
	}
	if n, err := glob.CountSessions(ctx); err != nil || n != 1 {
		t.Fatalf("prefix x*: counts %d sessions (%v), want 1", n, err)
	}
	if n, err := other.CountSessions(ctx); err != nil || n != 3 {
		t.Fatalf("prefix xyz: counts %d sessions (%v), want 3", n, err)
	}
}
