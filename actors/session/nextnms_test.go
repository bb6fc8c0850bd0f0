package session

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/cyphonic/cyphonic-go/messages"
)

// TestNextNMS: where a node whose cloud process is lost moves its session:
// the next NMS of its family in the login's list (its own process's first,
// then one per other process), with the probe at the same place; never
// one it tried since its last registration, and nowhere when the login
// listed only its own process.
func TestNextNMS(t *testing.T) {
	ap := netip.MustParseAddrPort
	a4, a6, b4, b6, c4 := ap("192.0.2.1:7400"), ap("[2001:db8::1]:7400"), ap("192.0.2.2:7400"), ap("[2001:db8::2]:7400"), ap("192.0.2.3:7400")
	pa4, pb4, pc4 := ap("192.0.2.1:7402"), ap("192.0.2.2:7402"), ap("192.0.2.3:7402")
	three := messages.LoginReply{NMS: []netip.AddrPort{a4, a6, b4, b6, c4}, NATProbe: []netip.AddrPort{pa4, pb4, pc4}}
	for _, tt := range []struct {
		name       string
		login      messages.LoginReply
		at         netip.AddrPort
		moves      int
		want, prob netip.AddrPort
		ok         bool
	}{
		{"own process lost: the next process's", three, a4, 0, b4, pb4, true},
		{"second lost: the third's", three, b4, 1, c4, pc4, true},
		{"from the last: round to the first", three, c4, 0, a4, pa4, true},
		{"each tried since the last registration: log in", three, c4, 2, netip.AddrPort{}, netip.AddrPort{}, false},
		{"IPv6 stays IPv6 (no probe listed there)", three, a6, 0, b6, netip.AddrPort{}, true},
		{"only its own process listed", messages.LoginReply{NMS: []netip.AddrPort{a4, a6}, NATProbe: []netip.AddrPort{pa4}}, a4, 0, netip.AddrPort{}, netip.AddrPort{}, false},
		{"an NMS the login did not list", three, ap("203.0.113.1:7400"), 0, netip.AddrPort{}, netip.AddrPort{}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := &sessionActor{login: tt.login, nms: tt.at, moves: tt.moves}
			got, probe, ok := a.nextNMS()
			if got != tt.want || probe != tt.prob || ok != tt.ok {
				t.Fatalf("nextNMS = %v %v %v, want %v %v %v", got, probe, ok, tt.want, tt.prob, tt.ok)
			}
		})
	}
}

// TestPrimeOtherNMS: the NMS addresses whose NAT mapping a node keeps open
// (the ones a process that adopts it would direct it from): every other
// NMS of its own NMS's family in the login's list, never its own, none of
// the other family.
func TestPrimeOtherNMS(t *testing.T) {
	ap := netip.MustParseAddrPort
	a4, a6, b4, b6, c4 := ap("192.0.2.1:7400"), ap("[2001:db8::1]:7400"), ap("192.0.2.2:7400"), ap("[2001:db8::2]:7400"), ap("192.0.2.3:7400")
	three := messages.LoginReply{NMS: []netip.AddrPort{a4, a6, b4, b6, c4}}
	for _, tt := range []struct {
		name  string
		login messages.LoginReply
		at    netip.AddrPort
		want  []netip.AddrPort
	}{
		{"at the first process: the other two", three, a4, []netip.AddrPort{b4, c4}},
		{"at the last: the first two", three, c4, []netip.AddrPort{a4, b4}},
		{"IPv6: the other IPv6 NMS only", three, b6, []netip.AddrPort{a6}},
		{"one process: nothing", messages.LoginReply{NMS: []netip.AddrPort{a4, a6}}, a4, nil},
		{"not registered: nothing", three, netip.AddrPort{}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := &fakeDataplane{}
			a := &sessionActor{login: tt.login, nms: tt.at, cfg: Config{Dataplane: d}}
			a.primeOtherNMS()
			if !slices.Equal(d.primed, tt.want) {
				t.Fatalf("primed %v, want %v", d.primed, tt.want)
			}
		})
	}
}
