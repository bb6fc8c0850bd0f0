package nms

import (
	"fmt"
	"testing"
	"time"
)

func TestLeaseView(t *testing.T) {
	var v leaseView
	now := time.Now()
	if _, ok := v.get("a:1", now); ok {
		t.Fatal("hit on an empty view")
	}
	v.put("a:1", true, now)
	v.put("b:1", false, now)
	for _, tt := range []struct {
		home     string
		at       time.Time
		held, ok bool
	}{
		{"a:1", now, true, true},
		{"b:1", now.Add(leaseCacheFor), false, true},
		{"a:1", now.Add(leaseCacheFor + time.Millisecond), false, false}, // stale: ask the store
		{"c:1", now, false, false},
	} {
		if held, ok := v.get(tt.home, tt.at); held != tt.held || ok != tt.ok {
			t.Errorf("get(%s, +%v) = %v, %v; want %v, %v", tt.home, tt.at.Sub(now), held, ok, tt.held, tt.ok)
		}
	}
	// Homes come from store records: the view stays bounded whatever
	// they name.
	for i := range 3 * maxLeaseViews {
		v.put(fmt.Sprintf("h%d:1", i), true, now)
	}
	if n := len(v.seen); n > maxLeaseViews {
		t.Fatalf("%d entries, bound %d", n, maxLeaseViews)
	}
}
