package tun

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestConfigureRejectsBadArguments(t *testing.T) {
	p6 := netip.MustParsePrefix("fd00:cafe::/64")
	p4 := netip.MustParsePrefix("100.64.0.0/10")
	tests := []struct {
		name string
		vip6 netip.Addr
		p6   netip.Prefix
		vip4 netip.Addr
		p4   netip.Prefix
	}{
		{"v6 outside prefix", netip.MustParseAddr("fd00:beef::1"), p6, netip.Addr{}, netip.Prefix{}},
		{"v4 outside prefix", netip.Addr{}, netip.Prefix{}, netip.MustParseAddr("10.0.0.1"), p4},
		{"v4 given as vip6", netip.MustParseAddr("100.64.0.1"), p4, netip.Addr{}, netip.Prefix{}},
		{"v4 without prefix", netip.Addr{}, netip.Prefix{}, netip.MustParseAddr("100.64.0.1"), netip.Prefix{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Validation happens before the link is touched, so the name
			// need not exist.
			err := Configure("cyph-none0", tt.vip6, tt.p6, tt.vip4, tt.p4, 1400)
			if !errors.Is(err, ErrAddrNotInPrefix) {
				t.Fatalf("err = %v, want ErrAddrNotInPrefix", err)
			}
		})
	}
}

func TestConfigureMissingLinkNamesIt(t *testing.T) {
	err := Configure("cyph-none0", netip.MustParseAddr("fd00:cafe::1"), netip.MustParsePrefix("fd00:cafe::/64"),
		netip.Addr{}, netip.Prefix{}, 1400)
	var nf netlink.LinkNotFoundError
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), "cyph-none0") {
		t.Fatalf("err = %v, want LinkNotFoundError naming cyph-none0", err)
	}
}

// TestConfigureOnIPv4OnlyHost: with IPv6 disabled by sysctl (an IPv4-only
// host or namespace), Configure still gives the device its VIPv6, since the
// overlay is dual-stack whatever the underlay is.
func TestConfigureOnIPv4OnlyHost(t *testing.T) {
	enterFreshNetns(t)
	for _, key := range []string{"all", "default"} {
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+key+"/disable_ipv6", []byte("1"), 0); err != nil {
			t.Fatal(err)
		}
	}
	dev, err := Open("cyphv4only0", testMTU)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if err := Configure(dev.Name(), testVIP6, testPrefix6, testVIP4, testPrefix4, testMTU); err != nil {
		t.Fatal(err)
	}
	checkLinkConfig(t, dev.Name())
}
