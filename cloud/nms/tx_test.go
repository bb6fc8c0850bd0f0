package nms

import (
	"net/netip"
	"testing"

	"github.com/cyphonic/cyphonic-go/cloud/path"
	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/messages"
)

func TestInitiates(t *testing.T) {
	for _, tt := range []struct {
		name string
		d    path.Decision
		a, b bool
	}{
		{"direct, A first", path.Decision{Kind: path.Direct, Initiator: path.SideA}, true, false},
		{"direct, B first", path.Decision{Kind: path.Direct, Initiator: path.SideB}, false, true},
		{"direct, both may", path.Decision{Kind: path.Direct, Initiator: path.BothSides}, true, false},
		// Each side's packet must open its own NAT toward the other.
		{"hole punch", path.Decision{Kind: path.HolePunch, Initiator: path.BothSides}, true, true},
		// Each side's init binds its relay token at the TRS.
		{"relay", path.Decision{Kind: path.Relay}, true, true},
	} {
		if got := initiates(tt.d, true); got != tt.a {
			t.Errorf("%s: A initiates = %v, want %v", tt.name, got, tt.a)
		}
		if got := initiates(tt.d, false); got != tt.b {
			t.Errorf("%s: B initiates = %v, want %v", tt.name, got, tt.b)
		}
	}
}

func TestTicketFamilies(t *testing.T) {
	trs4, trs6 := netip.MustParseAddrPort("198.51.100.2:7403"), netip.MustParseAddrPort("[2001:db8::2]:7403")
	node := func(o4, o6 string) store.Node {
		var n store.Node
		if o4 != "" {
			n.Locator.Observed4 = netip.MustParseAddrPort(o4)
		}
		if o6 != "" {
			n.Locator.Observed6 = netip.MustParseAddrPort(o6)
		}
		return n
	}
	for _, tt := range []struct {
		name         string
		n            store.Node
		want4, want6 netip.AddrPort
	}{
		{"IPv4 only", node("198.51.100.3:4000", ""), trs4, netip.AddrPort{}},
		{"IPv6 only", node("", "[2001:db8::4]:4000"), netip.AddrPort{}, trs6},
		{"dual stack", node("198.51.100.3:4000", "[2001:db8::4]:4000"), trs4, trs6},
		{"never observed", node("", ""), trs4, trs6},
	} {
		tk := ticketFor([]netip.AddrPort{trs4, trs6}, messages.RelayToken{1}, messages.RelayBindKey{2}, 0, tt.n)
		if tk.TRS4 != tt.want4 || tk.TRS6 != tt.want6 {
			t.Errorf("%s: ticket names %v %v, want %v %v", tt.name, tk.TRS4, tk.TRS6, tt.want4, tt.want6)
		}
		if tk.Token != (messages.RelayToken{1}) || tk.BindKey != (messages.RelayBindKey{2}) {
			t.Errorf("%s: ticket %+v lost its token or bind key", tt.name, tk)
		}
	}
}
