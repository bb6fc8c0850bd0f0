package cloudsim

import (
	"fmt"
	"testing"

	"github.com/cyphonic/cyphonic-go/cloud/relay"
	"github.com/cyphonic/cyphonic-go/cloud/server"
	"github.com/cyphonic/cyphonic-go/messages"
)

// TestRelayTableUnderSetups (issue 14): tunnel setups no longer fill the
// TRS's relay table. With a table of 8 sessions, 45 tunnels on direct
// paths each get their fallback tickets and the TRS holds nothing; a node
// that binds every ticket it holds gets its share (3) and no more; and a
// pair whose direct path then fails (both bind, as at the fallback
// deadline) relays through the TRS.
//
// On the old code (a session allocated per setup) the table is full after
// the eighth setup and the later tunnels get no fallback ticket.
func TestRelayTableUnderSetups(t *testing.T) {
	s := startCloudWith(t, server.Config{RelayMaxSessions: 8, RelayMaxPerNode: 3})
	var nodes []*Node
	for i := range 10 {
		n := nodeAt(t, s, fmt.Sprintf("n%d.example.cyphonic", i), byte(10+i))
		online(t, s, n, messages.NATNone)
		nodes = append(nodes, n)
	}
	// Every pair, requested by the one with the higher index, so nodes[0]
	// ends up holding a ticket for each of its nine tunnels (Directions).
	for i := range nodes {
		for j := range i {
			p, err := nodes[i].Tunnel(nodes[j].FQDN, false)
			if err != nil {
				t.Fatalf("tunnel %d -> %d: %v", i, j, err)
			}
			if p.Kind != messages.PathDirect || p.Relay == nil {
				t.Fatalf("tunnel %d -> %d: path %v, relay ticket %v: want direct with a fallback ticket", i, j, p.Kind, p.Relay != nil)
			}
		}
	}
	tab := s.TRS.Table()
	if st := tab.Stats(); st.Sessions != 0 {
		t.Fatalf("45 setups nobody relays through hold %d relay sessions", st.Sessions)
	}

	// nodes[0] binds all nine tickets it was given: three sessions, the
	// rest refused for its share.
	mallory := nodes[0]
	ds := mallory.Directions()
	if len(ds) != 9 {
		t.Fatalf("mallory holds %d directions, want 9", len(ds))
	}
	for _, d := range ds {
		if d.Relay == nil {
			t.Fatalf("direction %+v without a fallback ticket", d)
		}
		if err := mallory.SendBind(*d.Relay); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the TRS takes mallory's binds", func() bool {
		st := tab.Stats()
		return st.Created == 3 && st.Dropped(relay.DropOwnerFull) == 6
	})

	// A pair whose direct path fails: both bind their fallback tickets and
	// relay both ways.
	alice, bob := nodes[9], nodes[8]
	p, err := alice.Tunnel(bob.FQDN, false)
	if err != nil {
		t.Fatal(err)
	}
	var tb *messages.RelayTicket
	for _, d := range bob.Directions() {
		if d.TunnelID == p.TunnelID {
			tb = d.Relay
		}
	}
	if p.Relay == nil || tb == nil {
		t.Fatalf("alice's ticket %v, bob's %v", p.Relay != nil, tb != nil)
	}
	inner := []byte{byte(messages.TypeData), 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	relayOnce(t, bob, *tb, alice, *p.Relay, inner)
	relayOnce(t, alice, *p.Relay, bob, *tb, inner)
	if st := tab.Stats(); st.Sessions != 4 {
		t.Fatalf("%d relay sessions, want mallory's 3 and alice and bob's", st.Sessions)
	}
}
