package as

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/messages"
)

func TestWithOtherClouds(t *testing.T) {
	ap := netip.MustParseAddrPort
	own, ownProbe := []netip.AddrPort{ap("192.0.2.1:7400"), ap("[2001:db8::1]:7400")}, []netip.AddrPort{ap("192.0.2.1:7402")}
	b := store.LeaseInfo{NMS: []netip.AddrPort{ap("192.0.2.2:7400"), ap("[2001:db8::2]:7400"), ap("198.51.100.2:7400")}, Probe: []netip.AddrPort{ap("192.0.2.2:7402")}}
	nms, probe := withOtherClouds(own, ownProbe, []store.LeaseInfo{b})
	if want := []netip.AddrPort{own[0], own[1], b.NMS[0], b.NMS[1]}; !slices.Equal(nms, want) {
		t.Fatalf("NMS %v, want %v (own first, two per other process)", nms, want)
	}
	if want := []netip.AddrPort{ownProbe[0], b.Probe[0]}; !slices.Equal(probe, want) {
		t.Fatalf("probes %v, want %v", probe, want)
	}
	if own[0] != ap("192.0.2.1:7400") || len(own) != 2 {
		t.Fatal("own list changed")
	}
	// However many processes there are, the lists stay decodable.
	var many []store.LeaseInfo
	for i := range 20 {
		a := ap(fmt.Sprintf("192.0.2.%d:7400", 10+i))
		many = append(many, store.LeaseInfo{NMS: []netip.AddrPort{a, a}, Probe: []netip.AddrPort{a, a}})
	}
	nms, probe = withOtherClouds(own, ownProbe, many)
	if len(nms) > messages.MaxAddrs || len(probe) > messages.MaxAddrs || len(nms) < messages.MaxAddrs-1 {
		t.Fatalf("%d NMS and %d probe addresses, bound %d", len(nms), len(probe), messages.MaxAddrs)
	}
}
