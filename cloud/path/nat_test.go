package path

import (
	"net/netip"
	"testing"
)

func TestClassify(t *testing.T) {
	ap := netip.MustParseAddrPort
	local := []netip.AddrPort{ap("192.168.1.10:41641"), ap("[2001:db8::a]:41641")}
	tests := []struct {
		name         string
		local        []netip.AddrPort
		primary, alt netip.AddrPort
		want         NATType
	}{
		{"global v4, alt agrees", local, ap("192.168.1.10:41641"), ap("192.168.1.10:41641"), None},
		{"global v4, alt missing", local, ap("192.168.1.10:41641"), netip.AddrPort{}, None},
		{"global v6", local, ap("[2001:db8::a]:41641"), ap("[2001:db8::a]:41641"), None},
		{"v4-mapped observation of a local address", local, ap("[::ffff:192.168.1.10]:41641"), netip.AddrPort{}, None},
		{"same address, other port is NAT", local, ap("192.168.1.10:50000"), ap("192.168.1.10:50000"), EndpointIndependent},
		{"cone", local, ap("198.51.100.1:60001"), ap("198.51.100.1:60001"), EndpointIndependent},
		{"cone, mapped alt", local, ap("198.51.100.1:60001"), ap("[::ffff:198.51.100.1]:60001"), EndpointIndependent},
		{"symmetric: port differs", local, ap("198.51.100.1:60001"), ap("198.51.100.1:60002"), EndpointDependent},
		{"symmetric: pooled address differs", local, ap("198.51.100.1:60001"), ap("198.51.100.2:60001"), EndpointDependent},
		{"alt missing", local, ap("198.51.100.1:60001"), netip.AddrPort{}, Unknown},
		{"alt port zero", local, ap("198.51.100.1:60001"), ap("198.51.100.1:0"), Unknown},
		{"alt other family", local, ap("198.51.100.1:60001"), ap("[2001:db8::1]:60001"), Unknown},
		{"primary missing", local, netip.AddrPort{}, ap("198.51.100.1:60001"), Unknown},
		{"primary unspecified", local, ap("0.0.0.0:60001"), ap("0.0.0.0:60001"), Unknown},
		{"no locals declared", nil, ap("198.51.100.1:60001"), ap("198.51.100.1:60001"), EndpointIndependent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.local, tt.primary, tt.alt); got != tt.want {
				t.Errorf("Classify(%v, %v, %v) = %v, want %v", tt.local, tt.primary, tt.alt, got, tt.want)
			}
		})
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{NoPath.String(), "none"},
		{Direct.String(), "direct"},
		{HolePunch.String(), "hole-punch"},
		{Relay.String(), "relay"},
		{Kind(7).String(), "kind(7)"},
		{BothSides.String(), "both"},
		{SideA.String(), "a"},
		{SideB.String(), "b"},
		{Side(5).String(), "side(5)"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
