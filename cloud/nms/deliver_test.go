package nms

import (
	"testing"

	"github.com/cyphonic/cyphonic-go/messages"
)

// TestDeliveryTable: a worker's deliveries in flight, by message ID: a
// second delivery under a running one's ID is refused as running, a full
// table refuses new ones (they fail rather than grow it), and a removed
// ID is free again.
func TestDeliveryTable(t *testing.T) {
	mk := func(i int) *delivery {
		d := &delivery{}
		d.env.ID[0], d.env.ID[1], d.env.ID[2] = byte(i), byte(i>>8), byte(i>>16)
		return d
	}
	for _, tc := range []struct {
		name        string
		fill        int // deliveries put first
		put         int // then this one
		removeFirst bool
		ok, running bool
	}{
		{"first", 0, 0, false, true, false},
		{"another", 10, 10, false, true, false},
		{"same ID running", 10, 3, false, false, true},
		{"same ID after its end", 10, 3, true, true, false},
		{"full", maxDeliveries, maxDeliveries, false, false, false},
		{"room again after an end", maxDeliveries, maxDeliveries, true, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := newDeliveryTable()
			for i := range tc.fill {
				if ok, _ := tb.put(mk(i)); !ok {
					t.Fatalf("put %d refused", i)
				}
			}
			if tc.removeFirst {
				tb.remove(mk(3).env.ID)
			}
			d := mk(tc.put)
			ok, running := tb.put(d)
			if ok != tc.ok || running != tc.running {
				t.Fatalf("put: ok %v running %v, want %v %v", ok, running, tc.ok, tc.running)
			}
			if got, found := tb.get(d.env.ID); ok && (!found || got != d) {
				t.Fatal("a delivery put is not found by its ID")
			}
		})
	}
}

// TestDeliveryTableShrinks: after a burst the table gives its buckets
// back on the tick.
func TestDeliveryTableShrinks(t *testing.T) {
	tb := newDeliveryTable()
	var ids []messages.MsgID
	for range 50_000 {
		d := &delivery{}
		d.env.ID = messages.NewMsgID()
		tb.put(d)
		ids = append(ids, d.env.ID)
	}
	before := tb.m
	for _, id := range ids[10:] {
		tb.remove(id)
	}
	tb.shrink()
	if tb.len() != 10 {
		t.Fatalf("%d left, want 10", tb.len())
	}
	// A rebuilt map is a new one (Go maps never shrink in place).
	tb.m[messages.MsgID{0xff}] = nil
	if _, same := before[messages.MsgID{0xff}]; same {
		t.Fatal("the table was not rebuilt after the burst")
	}
}
