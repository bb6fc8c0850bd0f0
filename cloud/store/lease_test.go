package store_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/cloud/store/storetest"
)

// TestRedisLeases: a lease is held while renewed, seen by every handle on
// the store, and lapses its time to live after the last renewal (as when
// its process is killed). Another prefix (overlay) has leases of its own.
func TestRedisLeases(t *testing.T) {
	base := storetest.RedisURL(t)
	prefix := "cyphonic-test:" + randomHex(t) + ":"
	url := storetest.WithPrefix(t, base, prefix)
	t.Cleanup(func() { storetest.DeletePrefix(t, base, prefix) })
	other := "cyphonic-test:" + randomHex(t) + ":"
	t.Cleanup(func() { storetest.DeletePrefix(t, base, other) })
	ctx := context.Background()
	open := func(u string) *store.RedisStore {
		s, err := store.OpenRedis(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b, c := open(url), open(url), open(storetest.WithPrefix(t, base, other))

	held := func(s store.Leases, holder string) bool {
		t.Helper()
		ok, err := s.LeaseHeld(ctx, holder)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if held(b, "127.0.0.1:7410") {
		t.Fatal("lease held before any renewal")
	}
	const ttl = 300 * time.Millisecond
	for range 3 {
		if err := a.RenewLease(ctx, "127.0.0.1:7410", ttl); err != nil {
			t.Fatal(err)
		}
		if !held(b, "127.0.0.1:7410") {
			t.Fatal("renewed lease not held for another handle")
		}
		time.Sleep(ttl / 3)
	}
	if held(b, "127.0.0.1:7411") || held(c, "127.0.0.1:7410") {
		t.Fatal("lease held for another holder or in another prefix")
	}
	deadline := time.Now().Add(10 * time.Second)
	for held(b, "127.0.0.1:7410") {
		if time.Now().After(deadline) {
			t.Fatal("lease never lapsed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, bad := range []struct {
		holder string
		ttl    time.Duration
	}{{"", ttl}, {"x", 0}} {
		if err := a.RenewLease(ctx, bad.holder, bad.ttl); err == nil {
			t.Errorf("lease %q for %v accepted", bad.holder, bad.ttl)
		}
	}
}

// TestRedisLeaseDirectory: a published lease carries its holder's
// addresses to every handle while it is held; a lapsed one leaves the
// directory; a plain RenewLease holds a lease with nothing to list.
func TestRedisLeaseDirectory(t *testing.T) {
	base := storetest.RedisURL(t)
	prefix := "cyphonic-test:" + randomHex(t) + ":"
	url := storetest.WithPrefix(t, base, prefix)
	t.Cleanup(func() { storetest.DeletePrefix(t, base, prefix) })
	ctx := context.Background()
	open := func() *store.RedisStore {
		s, err := store.OpenRedis(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	infoA := store.LeaseInfo{NMS: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:7400"), netip.MustParseAddrPort("[2001:db8::1]:7400")},
		Probe: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:7402")}}
	infoB := store.LeaseInfo{NMS: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.2:7400")}}
	if err := a.PublishLease(ctx, "a:7410", infoA, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.PublishLease(ctx, "b:7410", infoB, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := b.RenewLease(ctx, "c:7410", time.Minute); err != nil {
		t.Fatal(err)
	}
	got, err := b.LiveLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !slices.Equal(got["a:7410"].NMS, infoA.NMS) || !slices.Equal(got["a:7410"].Probe, infoA.Probe) || !slices.Equal(got["b:7410"].NMS, infoB.NMS) {
		t.Fatalf("directory %+v", got)
	}
	if ok, err := a.LeaseHeld(ctx, "a:7410"); err != nil || !ok {
		t.Fatalf("published lease not held: %v %v", ok, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := a.LiveLeases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := got["b:7410"]; !ok && len(got) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lapsed lease still listed: %+v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	many := store.LeaseInfo{NMS: make([]netip.AddrPort, 9)}
	if err := a.PublishLease(ctx, "a:7410", many, time.Minute); err == nil {
		t.Fatal("a lease with 9 NMS addresses published")
	}
}
