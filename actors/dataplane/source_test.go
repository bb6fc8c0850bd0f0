package dataplane

import (
	"net/netip"
	"testing"

	"github.com/cyphonic/cyphonic-go/messages"
)

func TestSourceAllowed(t *testing.T) {
	h := newHandle(messages.PathInfo{
		PeerFQDN: "bob.example.cyphonic",
		PeerVIP4: netip.MustParseAddr("100.64.0.2"),
		PeerVIP6: netip.MustParseAddr("fd63:7970:686f::2"),
	})
	v4 := func(src string) []byte {
		p := make([]byte, 28)
		p[0] = 0x45
		a := netip.MustParseAddr(src).As4()
		copy(p[12:16], a[:])
		return p
	}
	v6 := func(src string) []byte {
		p := make([]byte, 48)
		p[0] = 0x60
		a := netip.MustParseAddr(src).As16()
		copy(p[8:24], a[:])
		return p
	}
	tests := []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"keepalive (empty)", nil, true},
		{"ipv4 from the peer's VIP", v4("100.64.0.2"), true},
		{"ipv4 from another peer's VIP", v4("100.64.0.3"), false},
		{"ipv4 from a real address", v4("198.51.100.7"), false},
		{"ipv6 from the peer's VIP", v6("fd63:7970:686f::2"), true},
		{"ipv6 from another VIP", v6("fd63:7970:686f::9"), false},
		{"ipv4 header cut short", v4("100.64.0.2")[:19], false},
		{"ipv6 header cut short", v6("fd63:7970:686f::2")[:39], false},
		{"not IP", []byte{0x00, 1, 2, 3}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := h.SourceAllowed(tt.pkt); got != tt.want {
				t.Fatalf("SourceAllowed = %v, want %v", got, tt.want)
			}
		})
	}

	// A peer whose cloud record has no IPv4 VIP may send no IPv4 at all.
	v6only := newHandle(messages.PathInfo{PeerFQDN: "dave.example.cyphonic", PeerVIP6: netip.MustParseAddr("fd63:7970:686f::4")})
	if v6only.SourceAllowed(v4("0.0.0.0")) {
		t.Fatal("a peer without an IPv4 VIP was allowed an IPv4 source")
	}
}
