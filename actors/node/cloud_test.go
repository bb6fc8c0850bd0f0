package node

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
)

func TestResolveCloud(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		in   string
		want []netip.AddrPort
		err  bool
	}{
		{in: "192.0.2.1:7401", want: []netip.AddrPort{ap("192.0.2.1:7401")}},
		{in: "192.0.2.1:7401, 192.0.2.2:7401,[2001:db8::1]:7401", want: []netip.AddrPort{ap("192.0.2.1:7401"), ap("192.0.2.2:7401"), ap("[2001:db8::1]:7401")}},
		{in: "[::ffff:192.0.2.1]:7401", want: []netip.AddrPort{ap("192.0.2.1:7401")}},
		// A name stands for every address it resolves to.
		{in: "localhost:7401", want: nil},
		{in: "192.0.2.1", err: true},
		{in: "localhost:http", err: true},
		{in: " , ", err: true},
	}
	for _, tt := range tests {
		got, err := resolveCloud(context.Background(), tt.in)
		if tt.err {
			if !errors.Is(err, ErrConfig) {
				t.Errorf("%q: err %v, want ErrConfig", tt.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if tt.want == nil { // localhost: its loopback addresses, each on the port
			if len(got) == 0 || !slices.ContainsFunc(got, func(a netip.AddrPort) bool { return a.Addr().IsLoopback() && a.Port() == 7401 }) {
				t.Errorf("%q: %v", tt.in, got)
			}
			continue
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%q: %v, want %v", tt.in, got, tt.want)
		}
	}
}
