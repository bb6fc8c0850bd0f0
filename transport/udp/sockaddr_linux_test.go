package udp

import (
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSockaddrRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		ep      string
		family  int
		wantLen uint32
		want    string // what parse returns; "" means same as ep
		wantErr error
	}{
		{"v4 on v4", "192.0.2.1:4500", unix.AF_INET, unix.SizeofSockaddrInet4, "", nil},
		{"mapped on v4", "[::ffff:192.0.2.1]:4500", unix.AF_INET, unix.SizeofSockaddrInet4, "192.0.2.1:4500", nil},
		{"v6 on v6", "[2001:db8::1]:65535", unix.AF_INET6, unix.SizeofSockaddrInet6, "", nil},
		{"v4 on dual-stack is mapped, parsed back unmapped", "198.51.100.7:1", unix.AF_INET6, unix.SizeofSockaddrInet6, "", nil},
		{"numeric zone", "[fe80::1%7]:53", unix.AF_INET6, unix.SizeofSockaddrInet6, "", nil},
		{"v6 on v4", "[2001:db8::1]:1", unix.AF_INET, 0, "", ErrFamily},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep := netip.MustParseAddrPort(tt.ep)
			var sa sockaddr
			n, err := putSockaddr(&sa, ep, tt.family)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("putSockaddr err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if n != tt.wantLen {
				t.Fatalf("len = %d, want %d", n, tt.wantLen)
			}
			got, ok := parseSockaddr(sa[:n])
			want := tt.want
			if want == "" {
				want = tt.ep
			}
			if !ok || got != netip.MustParseAddrPort(want) {
				t.Fatalf("parse = %v, %v; want %s", got, ok, want)
			}
		})
	}
	var sa sockaddr
	if _, err := putSockaddr(&sa, netip.AddrPort{}, unix.AF_INET); !errors.Is(err, ErrInvalidEndpoint) {
		t.Fatalf("zero endpoint: err = %v, want ErrInvalidEndpoint", err)
	}
}

func TestParseSockaddrRejects(t *testing.T) {
	for _, b := range [][]byte{nil, {2}, {2, 0, 1, 2}, {10, 0, 0, 0, 0}, {1, 0, 0, 0}} {
		if ep, ok := parseSockaddr(b); ok {
			t.Errorf("parseSockaddr(%v) = %v, want rejection", b, ep)
		}
	}
}

// FuzzParseSockaddr: the decoder must never panic, and whatever it accepts
// must encode back to an address that decodes the same.
func FuzzParseSockaddr(f *testing.F) {
	var sa sockaddr
	putSockaddr(&sa, netip.MustParseAddrPort("192.0.2.1:80"), unix.AF_INET)
	f.Add(sa[:unix.SizeofSockaddrInet4])
	putSockaddr(&sa, netip.MustParseAddrPort("[2001:db8::1]:80"), unix.AF_INET6)
	f.Add(sa[:])
	f.Fuzz(func(t *testing.T, b []byte) {
		ep, ok := parseSockaddr(b)
		if !ok {
			return
		}
		var out sockaddr
		family := unix.AF_INET6
		if ep.Addr().Is4() {
			family = unix.AF_INET
		}
		n, err := putSockaddr(&out, ep, family)
		if err != nil {
			t.Fatalf("re-encode %v: %v", ep, err)
		}
		back, ok := parseSockaddr(out[:n])
		if !ok || back != ep {
			t.Fatalf("round trip %v -> %v", ep, back)
		}
	})
}
