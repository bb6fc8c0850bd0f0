//go:build !race

package messages

// The tests that count allocations. The race detector makes sync.Pool drop
// a share of what is put and allocates on its own, so the counts mean
// nothing under it: these are built only without it, and scripts/test runs
// them in a pass without -race (CI runs everything else with it).

import (
	"net/netip"
	"testing"
	"time"
)

func TestEncodeAllocs(t *testing.T) {
	enc := NewEncoder()
	env, err := NewEnvelope(testID, "alice.example.cyphonic", time.Unix(1, 0), samples()[6])
	if err != nil {
		t.Fatal(err)
	}
	var ack Body = &KeepaliveAck{Observed: netip.MustParseAddrPort("[2001:db8::1]:5")}
	reg := samples()[6]
	enc.Encode(env) // grow the buffer once
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := enc.Encode(env); err != nil {
			t.Fatal(err)
		}
		if _, err := enc.EncodeMessage(testID, "nms", 1, ack); err != nil {
			t.Fatal(err)
		}
		if _, err := enc.EncodeMessage(testID, "nms", 1, reg); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("encoding allocates %v times per run, want 0", allocs)
	}
}

func TestHeaderAllocs(t *testing.T) {
	pkt := make([]byte, 1500)
	h := DataHeader{Type: TypeData, Receiver: 1, Counter: 2}
	relay := make([]byte, 100)
	PutRelayHeader(relay, RelayToken{1})
	relay[RelayHeaderLen] = byte(TypeData)
	garbage := []byte{0xff, 0, 0}
	allocs := testing.AllocsPerRun(100, func() {
		h.Put(pkt)
		_, _ = ParseDataHeader(pkt)
		_, _ = ParseDataHeader(garbage)
		_, _, _ = ParseRelay(relay)
		_, _, _ = ParseHandshake(garbage)
		_, _ = ParseProbeReply(garbage)
	})
	if allocs != 0 {
		t.Errorf("header put/parse allocates %v times per run, want 0", allocs)
	}
}
