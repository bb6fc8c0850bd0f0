package pki

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateFQDN(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	tests := []struct {
		name string
		ok   bool
	}{
		{"alice.example.cyphonic", true},
		{"a.b", true},
		{"xn--bcher-kva.example", true},
		{"a-1.b2.c", true},
		{long63 + ".example", true},
		{strings.Repeat(long63+".", 3) + strings.Repeat("a", 61), true},  // 253
		{strings.Repeat(long63+".", 3) + strings.Repeat("a", 62), false}, // 254
		{strings.Repeat("a", 64) + ".example", false},
		{"", false},
		{"localhost", false},
		{"Alice.example", false},
		{"alice.example.", false},
		{".alice.example", false},
		{"alice..example", false},
		{"-alice.example", false},
		{"alice-.example", false},
		{"al_ice.example", false},
		{"*.example", false},
		{"10.0.0.1", false},
		{"host.123", false},
		{"al ice.example", false},
		{"alice.exämple", false},
	}
	for _, tt := range tests {
		err := ValidateFQDN(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateFQDN(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidFQDN) {
			t.Errorf("ValidateFQDN(%q) error %v is not ErrInvalidFQDN", tt.name, err)
		}
	}
}

func TestCanonicalFQDN(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Alice.Example.CYPHONIC.", "alice.example.cyphonic"},
		{"bob.example", "bob.example"},
		{"bob.example..", ""},
		{"BOB", ""},
	}
	for _, tt := range tests {
		got, err := CanonicalFQDN(tt.in)
		if got != tt.want || (err == nil) != (tt.want != "") {
			t.Errorf("CanonicalFQDN(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func FuzzValidateFQDN(f *testing.F) {
	for _, s := range []string{"alice.example.cyphonic", "", "a..b", "A.b.", "10.0.0.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := CanonicalFQDN(s)
		if err != nil {
			return
		}
		if ValidateFQDN(c) != nil {
			t.Fatalf("CanonicalFQDN(%q) = %q, which does not validate", s, c)
		}
		if c2, _ := CanonicalFQDN(c); c2 != c {
			t.Fatalf("CanonicalFQDN not idempotent: %q -> %q", c, c2)
		}
	})
}
