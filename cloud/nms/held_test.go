package nms

import (
	"testing"
	"time"
)

func TestHeldSet(t *testing.T) {
	h := newHeldSet()
	for _, id := range []uint32{0, 1, 64, 1 << 31} {
		if h.has(id) {
			t.Fatalf("%d held before add", id)
		}
		h.add(id)
		if !h.has(id) {
			t.Fatalf("%d not held after add", id)
		}
	}
	h.remove(64)
	if h.has(64) || !h.has(0) {
		t.Fatal("remove took the wrong ID")
	}
	var nilSet *heldSet
	nilSet.add(1)
	nilSet.remove(1)
	if nilSet.has(1) {
		t.Fatal("a nil set holds nothing")
	}
}

func TestReaderBucket(t *testing.T) {
	b := newReaderBucket(400) // burst 100
	now := time.Unix(1000, 0)
	n := 0
	for range 1000 {
		if b.allow(now) {
			n++
		}
	}
	if n != 100 {
		t.Fatalf("burst passed %d, want 100", n)
	}
	now = now.Add(50 * time.Millisecond) // 20 tokens
	n = 0
	for range 1000 {
		if b.allow(now) {
			n++
		}
	}
	if n != 20 {
		t.Fatalf("after 50 ms passed %d, want 20", n)
	}
	if b.allow(now.Add(-time.Second)) {
		t.Fatal("a clock stepped back made tokens")
	}
}
