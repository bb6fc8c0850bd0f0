package store

import "testing"

// TestGlobEscape: a prefix is matched literally by CountSessions' SCAN.
func TestGlobEscape(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"cyphonic:session:", "cyphonic:session:"},
		{"a*b?c[d]e\\f:", `a\*b\?c\[d\]e\\f:`},
		{"", ""},
	} {
		if got := globEscape(tt.in); got != tt.want {
			t.Errorf("globEscape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
