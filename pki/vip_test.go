package pki

import (
	"errors"
	"net/netip"
	"testing"
)

func TestVIPPair(t *testing.T) {
	p6, p4 := netip.MustParsePrefix("fd00::/64"), netip.MustParsePrefix("100.64.0.0/30")
	tests := []struct {
		n         uint64
		want6, w4 string
		exhausted bool
	}{
		{n: 1, want6: "fd00::1", w4: "100.64.0.1"},
		{n: 2, want6: "fd00::2", w4: "100.64.0.2"},
		{n: 3, exhausted: true}, // .3 is the /30's broadcast form
		{n: 0, exhausted: true},
	}
	for _, tt := range tests {
		v6, v4, err := VIPPair(p6, p4, tt.n)
		if tt.exhausted {
			if !errors.Is(err, ErrVIPExhausted) {
				t.Errorf("n=%d: err %v, want exhausted", tt.n, err)
			}
			continue
		}
		if err != nil || v6.String() != tt.want6 || v4.String() != tt.w4 {
			t.Errorf("n=%d: %s %s %v", tt.n, v6, v4, err)
		}
	}
}
