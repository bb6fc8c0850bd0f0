package nms

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/cloud/store/storetest"
	"github.com/cyphonic/cyphonic-go/messages"
)

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func putNode(t *testing.T, st store.Store, fqdn string, loc store.Locator, home string) {
	t.Helper()
	bg := context.Background()
	vips := storetest.VIPs(fqdn)
	v6, v4 := vips[0], vips[1]
	if err := st.PutNode(bg, store.Node{FQDN: fqdn, VIP6: v6, VIP4: v4, Locator: loc, HomeNMS: home}); err != nil {
		t.Fatal(err)
	}
}

// TestRegisterClassifies checks the store job of a registration: the NAT
// type follows from the declared addresses and the second observation, and
// the locator and home NMS are written.
func TestRegisterClassifies(t *testing.T) {
	from := netip.MustParseAddrPort("198.51.100.7:4000")
	private := netip.MustParseAddrPort("10.0.0.2:4000")
	for _, tt := range []struct {
		name   string
		reg    messages.Register
		want   messages.NATType
		wantV6 bool
	}{
		{"global", messages.Register{Locals: []netip.AddrPort{from}, IPv4: true}, messages.NATNone, false},
		{"cone", messages.Register{Locals: []netip.AddrPort{private}, ProbeObserved: []netip.AddrPort{from}, IPv4: true}, messages.NATEndpointIndependent, false},
		{"symmetric", messages.Register{Locals: []netip.AddrPort{private}, ProbeObserved: []netip.AddrPort{netip.MustParseAddrPort("198.51.100.7:4001")}, IPv4: true}, messages.NATSymmetric, false},
		{"no second observation", messages.Register{Locals: []netip.AddrPort{private}, IPv4: true}, messages.NATUnknown, false},
		// An IPv6 probe says nothing about the IPv4 mapping.
		{"other family probe", messages.Register{Locals: []netip.AddrPort{private}, ProbeObserved: []netip.AddrPort{netip.MustParseAddrPort("[2001:db8::7]:4000")}, IPv4: true, IPv6: true}, messages.NATUnknown, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t)
			putNode(t, st, "n.example.cyphonic", store.Locator{}, "")
			r := register(context.Background(), st, "n.example.cyphonic", 0, "home:1", from, tt.reg)
			if r.err != nil {
				t.Fatal(r.err)
			}
			rep, ok := r.body.(messages.RegisterReply)
			if !ok || rep.NAT != tt.want || rep.Observed != from || !rep.VIP4.IsValid() {
				t.Fatalf("reply %+v, want NAT %v", r.body, tt.want)
			}
			n, err := st.GetNode(context.Background(), "n.example.cyphonic")
			if err != nil {
				t.Fatal(err)
			}
			if n.Locator.Observed4 != from || n.Locator.NAT4 != tt.want || n.HomeNMS != "home:1" ||
				!n.Locator.HasIPv4 || n.Locator.HasIPv6 != tt.wantV6 {
				t.Fatalf("stored %+v home %q", n.Locator, n.HomeNMS)
			}
		})
	}
	if r := register(context.Background(), openStore(t), "nobody.example.cyphonic", 0, "h", from, messages.Register{}); r.err == nil {
		t.Fatal("registering a node without a record succeeded")
	}
}

// TestKeepaliveMoves checks the store job of a keepalive: nothing is
// written or told when the mapping is unchanged; a new mapping is written
// and the peers with a home NMS are returned to be told.
func TestKeepaliveMoves(t *testing.T) {
	was := netip.MustParseAddrPort("198.51.100.7:4000")
	now := netip.MustParseAddrPort("203.0.113.9:5000")
	st := openStore(t)
	putNode(t, st, "a.example.cyphonic", store.Locator{Observed4: was}, "home:1")
	putNode(t, st, "b.example.cyphonic", store.Locator{}, "home:2")
	putNode(t, st, "c.example.cyphonic", store.Locator{}, "") // never registered: cannot be told
	// The peer list is asked for only after a move (it is copied from
	// the tunnels map then: peers.go).
	asked := 0
	peers := func() []string {
		asked++
		return []string{"b.example.cyphonic", "c.example.cyphonic", "gone.example.cyphonic"}
	}
	bg := context.Background()

	r := keepalive(bg, st, "a.example.cyphonic", 0, "home:1", was, peers)
	if r.err != nil || len(r.moved) != 0 || r.body.(messages.KeepaliveAck).Observed != was {
		t.Fatalf("unchanged: %+v", r)
	}
	if asked != 0 {
		t.Fatalf("an unchanged keepalive asked for the peer list %d times", asked)
	}
	before, _ := st.GetNode(bg, "a.example.cyphonic")

	r = keepalive(bg, st, "a.example.cyphonic", 0, "home:1", now, peers)
	if r.err != nil || len(r.moved) != 1 || r.moved[0].FQDN != "b.example.cyphonic" || r.moved[0].HomeNMS != "home:2" || asked != 1 {
		t.Fatalf("moved: %+v (peer list asked for %d times)", r, asked)
	}
	after, _ := st.GetNode(bg, "a.example.cyphonic")
	if after.Locator.Observed4 != now || !after.Updated.After(before.Updated) {
		t.Fatalf("locator after the move %+v", after.Locator)
	}

	// Homed at another NMS now (a node that re-registered elsewhere): the
	// record is rewritten, but it is no move.
	r = keepalive(bg, st, "a.example.cyphonic", 0, "home:3", now, peers)
	if r.err != nil || len(r.moved) != 0 {
		t.Fatalf("rehomed: %+v", r)
	}
	if n, _ := st.GetNode(bg, "a.example.cyphonic"); n.HomeNMS != "home:3" {
		t.Fatalf("home %q", n.HomeNMS)
	}
}

// TestStaleSessionWritesNothing checks that a registration or keepalive
// that came in on a session the node has since replaced (it logged in
// again) fails with store.ErrSessionChanged and leaves the new login's
// record as it was, while one on the current session is written.
func TestStaleSessionWritesNothing(t *testing.T) {
	const fqdn, oldSID, newSID = "a.example.cyphonic", 4, 5
	from := netip.MustParseAddrPort("198.51.100.7:4000")
	moved := netip.MustParseAddrPort("203.0.113.9:5000")
	bg := context.Background()
	st := openStore(t)
	vips := storetest.VIPs(fqdn)
	v6, v4 := vips[0], vips[1]
	login := store.Node{
		FQDN: fqdn, VIP6: v6, VIP4: v4,
		Session: store.Session{ID: newSID, NodeToCloud: [32]byte{1}, CloudToNode: [32]byte{2}, Expires: time.Unix(1_900_000_000, 0)},
		Locator: store.Locator{Observed4: from, HasIPv4: true}, HomeNMS: "home:1",
	}
	if err := st.PutNode(bg, login); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		run  func(sid store.SessionID) stored
	}{
		{"register", func(sid store.SessionID) stored {
			return register(bg, st, fqdn, sid, "home:2", moved, messages.Register{Locals: []netip.AddrPort{moved}, IPv4: true})
		}},
		{"keepalive", func(sid store.SessionID) stored { return keepalive(bg, st, fqdn, sid, "home:2", moved, nil) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if r := tt.run(oldSID); !errors.Is(r.err, store.ErrSessionChanged) {
				t.Fatalf("on the old session: err = %v, want ErrSessionChanged", r.err)
			}
			n, err := st.GetNode(bg, fqdn)
			if err != nil || n.Session != login.Session || n.Locator.Observed4 != from || n.HomeNMS != "home:1" {
				t.Fatalf("after the stale request: %+v, %v", n, err)
			}
		})
	}
	if r := keepalive(bg, st, fqdn, newSID, "home:2", moved, nil); r.err != nil {
		t.Fatalf("keepalive on the current session: %v", r.err)
	}
	n, err := st.GetNode(bg, fqdn)
	if err != nil || n.Session.ID != newSID || n.Locator.Observed4 != moved || n.HomeNMS != "home:2" {
		t.Fatalf("after the current keepalive: %+v, %v", n, err)
	}
}
