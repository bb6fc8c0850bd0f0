package node

import (
	"net/netip"
	"slices"
	"strconv"
	"testing"
)

func TestReverseZones(t *testing.T) {
	slash10 := make([]string, 0, 64)
	for i := 64; i < 128; i++ {
		slash10 = append(slash10, strconv.Itoa(i)+".100.in-addr.arpa")
	}
	for _, c := range []struct {
		prefix string
		want   []string
	}{
		{"100.64.0.0/10", slash10},
		{"10.1.0.0/16", []string{"1.10.in-addr.arpa"}},
		{"10.1.2.3/32", []string{"3.2.1.10.in-addr.arpa"}},
		{"10.1.3.7/23", []string{"2.1.10.in-addr.arpa", "3.1.10.in-addr.arpa"}}, // masked first
		{"fd7a:115c:a1e0::/48", []string{"0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa"}},
		{"fd63:7970:686c::/46", []string{"c.6.8.6.0.7.9.7.3.6.d.f.ip6.arpa", "d.6.8.6.0.7.9.7.3.6.d.f.ip6.arpa",
			"e.6.8.6.0.7.9.7.3.6.d.f.ip6.arpa", "f.6.8.6.0.7.9.7.3.6.d.f.ip6.arpa"}},
		{"fc00::/7", []string{"c.f.ip6.arpa", "d.f.ip6.arpa"}},
		{"0.0.0.0/0", nil},
	} {
		t.Run(c.prefix, func(t *testing.T) {
			if got := reverseZones(netip.MustParsePrefix(c.prefix)); !slices.Equal(got, c.want) {
				t.Errorf("reverseZones(%s) = %q, want %q", c.prefix, got, c.want)
			}
		})
	}
	if got := reverseZones(netip.Prefix{}); got != nil {
		t.Errorf("invalid prefix: %q", got)
	}
	// A /1 spreads over 128 first octets: allowed; the bound is 256.
	if got := reverseZones(netip.MustParsePrefix("0.0.0.0/1")); len(got) != 128 || got[0] != "0.in-addr.arpa" || got[127] != "127.in-addr.arpa" {
		t.Errorf("a /1: %d zones %q…", len(got), got[:min(2, len(got))])
	}
}

func TestSplitDNSCommands(t *testing.T) {
	got := splitDNSCommands("cyph0", "127.0.0.1:5353", "cyphonic", "example.cyphonic",
		netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd7a:115c:a1e0::/48"))
	want := [][]string{
		{"dns", "cyph0", "127.0.0.1:5353"},
		{"domain", "cyph0", "~cyphonic", "~1.10.in-addr.arpa", "~0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa", "example.cyphonic"},
	}
	if !slices.EqualFunc(got, want, slices.Equal[[]string]) {
		t.Errorf("splitDNSCommands = %q, want %q", got, want)
	}
}
