package dataplane

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/handshake"
)

func TestBucket(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name        string
		rate, burst float64
		after       time.Duration // since the burst was spent
		want        int           // tokens available then
	}{
		{"burst", 10, 5, 0, 0},
		{"refills at rate", 10, 5, 300 * time.Millisecond, 3},
		{"never above burst", 10, 5, time.Hour, 5},
		{"slow rate", 1, 1, 999 * time.Millisecond, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBucket(tc.rate, tc.burst, now)
			for i := range int(tc.burst) {
				if !b.take(now) {
					t.Fatalf("burst token %d refused", i)
				}
			}
			got := 0
			for b.take(now.Add(tc.after)) {
				got++
			}
			if got != tc.want {
				t.Fatalf("%d tokens after %v, want %d", got, tc.after, tc.want)
			}
		})
	}
}

func TestSourceLimiter(t *testing.T) {
	now := time.Now()
	l := newSourceLimiter(1, 2)
	a := netip.MustParseAddrPort("192.0.2.1:1000")
	mapped := netip.MustParseAddrPort("[::ffff:192.0.2.1]:1000")
	for i, want := range []bool{true, true, false} {
		if got := l.take(a, now); got != want {
			t.Fatalf("take %d from a: %v, want %v", i, got, want)
		}
	}
	if l.take(mapped, now) {
		t.Fatal("the v4-mapped form of a escapes a's bucket")
	}
	// Another source has its own bucket (two candidates: one of them
	// shares a's bucket with probability 1/sourceTableSize).
	if !l.take(netip.MustParseAddrPort("192.0.2.2:1000"), now) && !l.take(netip.MustParseAddrPort("192.0.2.3:1000"), now) {
		t.Fatal("another source is limited by a's bucket")
	}
	// The table is fixed: however many sources, it never grows, and a
	// source's bucket refills.
	for i := range 4 * sourceTableSize {
		l.take(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 1), now)
	}
	if len(l.tab) != sourceTableSize {
		t.Fatalf("table of %d buckets, want %d", len(l.tab), sourceTableSize)
	}
	if !l.take(a, now.Add(2*time.Second)) {
		t.Fatal("a's bucket did not refill")
	}
}

// An init padded to initPadTo, with the largest certificate that
// gets no padding, still fits a receive buffer with its trailer and a relay
// header.
func TestPaddedInitFitsBuffer(t *testing.T) {
	const fixed = 1 + 4 + 8 + 1 + 2 + 2 // handshake payload header (payload.go)
	init := messages.RelayHeaderLen + messages.HandshakeInitHeaderLen + 32 + 32 +
		fixed + 8 + max(initPadTo, handshake.MaxCertLen) + messages.HandshakeTrailerLen
	if init > minBufSize {
		t.Fatalf("largest init %d bytes > buffer %d", init, minBufSize)
	}
}
