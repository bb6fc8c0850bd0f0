package resolver

import (
	"context"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

func TestParseReverse(t *testing.T) {
	v6 := netip.MustParseAddr("fd63:7970:686f::2")
	v6name, _ := dns.ReverseAddr(v6.String())
	tests := []struct {
		name string
		want string // "" means not an address
	}{
		{"2.0.64.100.in-addr.arpa.", "100.64.0.2"},
		{"255.255.255.255.in-addr.arpa.", "255.255.255.255"},
		{v6name, v6.String()},
		{"0.64.100.in-addr.arpa.", ""},        // a zone
		{"02.0.64.100.in-addr.arpa.", ""},     // non-canonical
		{"256.0.64.100.in-addr.arpa.", ""},    // out of range
		{"+2.0.64.100.in-addr.arpa.", ""},     // sign
		{"a.0.64.100.in-addr.arpa.", ""},      // not a number
		{"2.0.0.64.100.in-addr.arpa.", ""},    // five labels
		{"f.d.ip6.arpa.", ""},                 // a zone
		{"2.0.64.100.in-addr.arpa.evil.", ""}, // not under the reverse tree
		{"bob.example.cyphonic.", ""},
	}
	for _, tt := range tests {
		got, ok := parseReverse(tt.name)
		if ok != (tt.want != "") || ok && got.String() != tt.want {
			t.Errorf("parseReverse(%q) = %v, %v; want %q", tt.name, got, ok, tt.want)
		}
	}
	// Nibbles that are not hex, or two characters long.
	bad := []byte(v6name)
	bad[0] = 'g'
	if _, ok := parseReverse(string(bad)); ok {
		t.Errorf("parseReverse accepted %q", bad)
	}
}

// reverseBackend adds Reverse to fakeBackend: the overlay is fd00:cafe::/32
// and 100.64.0.0/10.
type reverseBackend struct{ *fakeBackend }

func (b reverseBackend) Reverse(_ context.Context, a netip.Addr) (string, error) {
	if !netip.MustParsePrefix("fd00:cafe::/32").Contains(a) && !netip.MustParsePrefix("100.64.0.0/10").Contains(a) {
		return "", ErrNotOverlay
	}
	for name, ans := range b.peers {
		if ans.VIP4 == a || ans.VIP6 == a {
			return name, nil
		}
	}
	return "", ErrUnknownName
}

// TestShortNamesAndPTR: "bob" resolves as bob in the search domain, PTR
// of a VIP names its holder; a short name no node holds, and reverse
// names outside the overlay, go to the upstream.
func TestShortNamesAndPTR(t *testing.T) {
	up, upCount := fakeUpstream(t)
	s := startServer(t, Config{Upstream: up, Search: "example.cyphonic"}, reverseBackend{newBackend()})
	v6name, _ := dns.ReverseAddr("fd00:cafe::2")
	tests := []struct {
		name    string
		qname   string
		qtype   uint16
		rcode   int
		want    string
		forward bool
	}{
		{"short A", "bob", dns.TypeA, dns.RcodeSuccess, "100.64.0.2", false},
		{"short AAAA", "BOB", dns.TypeAAAA, dns.RcodeSuccess, "fd00:cafe::2", false},
		{"unknown short name goes upstream", "printer", dns.TypeA, dns.RcodeSuccess, "192.0.2.1", true},
		{"localhost is never a peer", "localhost", dns.TypeA, dns.RcodeSuccess, "192.0.2.1", true},
		{"PTR v4", "2.0.64.100.in-addr.arpa", dns.TypePTR, dns.RcodeSuccess, "bob.example.cyphonic.", false},
		{"PTR v6", v6name, dns.TypePTR, dns.RcodeSuccess, "bob.example.cyphonic.", false},
		{"PTR of an unheld VIP", "9.0.64.100.in-addr.arpa", dns.TypePTR, dns.RcodeNameError, "", false},
		{"PTR outside the overlay goes upstream", "1.2.0.192.in-addr.arpa", dns.TypePTR, dns.RcodeSuccess, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := upCount.Load()
			r := query(t, s.Addr(), "udp", tt.qname, tt.qtype)
			if r.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.rcode])
			}
			var got string
			for _, rr := range r.Answer {
				switch rr := rr.(type) {
				case *dns.A:
					got = rr.A.String()
				case *dns.AAAA:
					got = rr.AAAA.String()
				case *dns.PTR:
					got = rr.Ptr
				}
				if rr.Header().Name != dns.Fqdn(tt.qname) {
					t.Errorf("answer names %q, asked %q", rr.Header().Name, tt.qname)
				}
			}
			if got != tt.want {
				t.Fatalf("answer %q, want %q", got, tt.want)
			}
			if forwarded := upCount.Load() > before; forwarded != tt.forward {
				t.Fatalf("forwarded=%v, want %v", forwarded, tt.forward)
			}
		})
	}
	if st := s.Stats(); st.Short != 2 || st.Reverse != 2 {
		t.Fatalf("stats %+v", st)
	}
	// Without a search domain a single label is just forwarded.
	s2 := startServer(t, Config{Upstream: up}, reverseBackend{newBackend()})
	if r := query(t, s2.Addr(), "udp", "bob", dns.TypeA); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
		t.Fatalf("no search domain: %v", r.Answer)
	}
	if _, err := NewServer(Config{Search: "example.org"}, newBackend(), quiet()); err == nil {
		t.Fatal("a search domain outside the overlay accepted")
	}
}
