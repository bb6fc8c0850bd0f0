package store_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/cloud/store/storetest"
)

func TestOpenPicksBackend(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	tests := []struct {
		url  string
		want string // "bolt", "redis" or "" for an error
	}{
		{"bolt://" + filepath.Join(dir, "a.db"), "bolt"},
		{filepath.Join(dir, "b.db"), "bolt"},
		{"bolt://host" + filepath.Join(dir, "c.db"), ""},
		{"bolt://", ""},
		{"ftp://example.com/x", ""},
		{"", ""},
		{"redis://127.0.0.1:1/0?bogus=1", ""}, // go-redis rejects unknown options
	}
	for _, tt := range tests {
		s, err := store.Open(ctx, tt.url)
		if tt.want == "" {
			if err == nil {
				s.Close()
				t.Errorf("Open(%q) succeeded, want an error", tt.url)
			}
			continue
		}
		if err != nil {
			t.Errorf("Open(%q): %v", tt.url, err)
			continue
		}
		var got string
		switch s.(type) {
		case *store.BoltStore:
			got = "bolt"
		case *store.RedisStore:
			got = "redis"
		}
		if got != tt.want {
			t.Errorf("Open(%q) gave %T, want %s", tt.url, s, tt.want)
		}
		s.Close()
	}
}

func TestOpenRedis(t *testing.T) {
	redisURL := storetest.RedisURL(t)
	prefix := "cyphonic-test:open:"
	t.Cleanup(func() { storetest.DeletePrefix(t, redisURL, prefix) })
	s, err := store.Open(context.Background(), storetest.WithPrefix(t, redisURL, prefix))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*store.RedisStore); !ok {
		t.Fatalf("Open(redis URL) gave %T", s)
	}
}

func TestBoltRefusesSecondProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.db")
	s, err := store.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// bbolt's lock is per open file description, so a second open in this
	// process stands in for a second process.
	if s2, err := store.OpenBolt(path); err == nil {
		s2.Close()
		t.Fatal("second OpenBolt on a locked file succeeded")
	}
}
