package store

import (
	"errors"
	"net/netip"
	"testing"
)

func TestVIPPoolAt(t *testing.T) {
	tests := []struct {
		p6, p4    string
		n         uint64
		want6     string
		want4     string
		exhausted bool
	}{
		{"fd63:7970:686f::/48", "100.64.0.0/10", 1, "fd63:7970:686f::1", "100.64.0.1", false},
		{"fd63:7970:686f::/48", "100.64.0.0/10", 256, "fd63:7970:686f::100", "100.64.1.0", false},
		{"fd63:7970:686f::/48", "100.64.0.0/10", 1<<22 - 2, "fd63:7970:686f::3f:fffe", "100.127.255.254", false},
		{"fd63:7970:686f::/48", "100.64.0.0/10", 1<<22 - 1, "", "", true},
		{"fd63:7970:686f::/48", "100.64.0.0/10", 0, "", "", true},
		// The low 64 bits carry into the high ones.
		{"fd00:0:0:1:ffff:ffff:ffff:ff00/120", "10.0.0.0/8", 255 - 1, "fd00:0:0:1:ffff:ffff:ffff:fffe", "10.0.0.254", false},
		{"fd00::/126", "10.0.0.0/30", 2, "fd00::2", "10.0.0.2", false},
		{"fd00::/126", "10.0.0.0/30", 3, "", "", true},
	}
	for _, tt := range tests {
		pool, err := newVIPPool(Config{VIP6: netip.MustParsePrefix(tt.p6), VIP4: netip.MustParsePrefix(tt.p4)})
		if err != nil {
			t.Fatalf("newVIPPool(%s, %s): %v", tt.p6, tt.p4, err)
		}
		v6, v4, err := pool.at(tt.n)
		if tt.exhausted {
			if !errors.Is(err, ErrVIPExhausted) {
				t.Errorf("at(%d) in %s/%s: err = %v, want ErrVIPExhausted", tt.n, tt.p6, tt.p4, err)
			}
			continue
		}
		if err != nil || v6 != netip.MustParseAddr(tt.want6) || v4 != netip.MustParseAddr(tt.want4) {
			t.Errorf("at(%d) in %s/%s = %v %v, %v; want %s %s", tt.n, tt.p6, tt.p4, v6, v4, err, tt.want6, tt.want4)
		}
	}
}

func TestVIPPoolCarry(t *testing.T) {
	pool := vipPool{p6: netip.MustParsePrefix("fd00:0:0:1:ffff:ffff:ffff:fff0/64"), p4: netip.MustParsePrefix("10.0.0.0/8"), size: 100}
	// A /64 base with low bits set is not produced by newVIPPool; it shows
	// that the addition carries into the upper half.
	v6, _, err := pool.at(0x20)
	if err != nil || v6 != netip.MustParseAddr("fd00:0:0:2::10") {
		t.Fatalf("carry: got %v, %v", v6, err)
	}
}
