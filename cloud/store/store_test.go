package store_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
	"testing"

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
