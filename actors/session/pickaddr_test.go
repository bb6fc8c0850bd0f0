package session

import (
	"net/netip"
	"testing"
)

func TestPickAddr(t *testing.T) {
	ap := netip.MustParseAddrPort
	nms := []netip.AddrPort{ap("198.51.100.2:7400"), ap("[2001:db8::2]:7400")}
	both := []netip.AddrPort{ap("0.0.0.0:4000"), ap("[::]:4000")}
	fallback := ap("192.0.2.9:1")
	for _, tt := range []struct {
		name   string
		locals []netip.AddrPort
		as     netip.AddrPort
		want   netip.AddrPort
	}{
		// An IPv6-only host still binds a wildcard IPv4 socket: the AS's
		// family, which answered the login, must win.
		{"logged in over IPv6", both, ap("[2001:db8::2]:7401"), nms[1]},
		{"logged in over IPv4", both, ap("198.51.100.2:7401"), nms[0]},
		{"no AS: first usable", both, netip.AddrPort{}, nms[0]},
		{"nothing usable", nil, netip.AddrPort{}, fallback},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := pickAddr(nms, tt.locals, tt.as, fallback); got != tt.want {
				t.Errorf("pickAddr = %v, want %v", got, tt.want)
			}
		})
	}
	// The AS family not offered: by socket.
	if got := pickAddr(nms[:1], both, ap("[2001:db8::2]:7401"), fallback); got != nms[0] {
		t.Errorf("only IPv4 offered: %v, want %v", got, nms[0])
	}
}

func TestWithoutOverlay(t *testing.T) {
	ap := netip.MustParseAddrPort
	locs := []netip.AddrPort{ap("10.1.0.2:4000"), ap("100.64.0.1:4000"), ap("[2001:db8::4]:4001"), ap("[fd63:7970:686f::1]:4001")}
	got := withoutOverlay(locs, netip.MustParsePrefix("100.64.0.0/10"), netip.MustParsePrefix("fd63:7970:686f::/48"))
	want := []netip.AddrPort{ap("10.1.0.2:4000"), ap("[2001:db8::4]:4001")}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("withoutOverlay = %v, want %v", got, want)
	}
	if got := withoutOverlay([]netip.AddrPort{ap("100.64.0.1:1")}); len(got) != 1 {
		t.Errorf("no overlay prefixes (before login): %v, want the address kept", got)
	}
}
