package pki

import (
	"math/big"
	"testing"
)

// TestContainsSerial: a serial as written is found in whatever form
// ParseSerial reads (the fast path takes FormatSerial's form only), and
// nothing unparsable or absent is.
func TestContainsSerial(t *testing.T) {
	d := NewDenyList(big.NewInt(0x9f3a0c), new(big.Int).SetBytes([]byte{0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}))
	for _, tt := range []struct {
		serial string
		want   bool
	}{
		{"9f3a0c", true},
		{"9F3A0C", true},
		{"009f3a0c", true},
		{"9f:3a:0c", true},
		{"0x9f3a0c", true},
		{" 9f3a0c ", true},
		{"7fffffffffffffff01", true},
		{"9f3a0d", false},
		{"0", false},
		{"", false},
		{"zz", false},
		{"-9f3a0c", false},
	} {
		if got := d.ContainsSerial(tt.serial); got != tt.want {
			t.Errorf("ContainsSerial(%q) = %v, want %v", tt.serial, got, tt.want)
		}
		if n, err := ParseSerial(tt.serial); err == nil && d.Contains(n) != tt.want {
			t.Errorf("Contains(ParseSerial(%q)) disagrees with ContainsSerial", tt.serial)
		}
	}
	var empty *DenyList
	if empty.ContainsSerial("9f3a0c") || NewDenyList().ContainsSerial("9f3a0c") {
		t.Error("an empty list contains a serial")
	}
	if n := testing.AllocsPerRun(100, func() { d.ContainsSerial("9f3a0c"); d.ContainsSerial("9f3a0d") }); n != 0 {
		t.Errorf("ContainsSerial of canonical serials allocates %.0f times, want 0", n)
	}
}
