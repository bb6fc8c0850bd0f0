package nodecloud

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/admin"
)

// TestEndSessionLogsNodeInAgain: the operator lists the nodes over the
// cloud's admin socket (both online, with their mappings and
// certificates), ends bob's session there, and bob's node, told by NMS at
// its next keepalive that its session expired, logs in again on its own
// with a new session; alice reaches it again through the cloud. Ending a
// session bob no longer holds is refused, naming why.
func TestEndSessionLogsNodeInAgain(t *testing.T) {
	c := startCloud(t, t.TempDir(), nil)
	defer c.close(t)
	alice := startNode(t, c, "alice.example.cyphonic")
	bob := startNode(t, c, "bob.example.cyphonic")
	eventually(t, "alice online", online(alice))
	eventually(t, "bob online", online(bob))
	roundTrip(t, alice, bob, 1)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := admin.NewClient(c.srv.AdminSocket())
	nodes, err := cl.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 || nodes[0].FQDN != alice.FQDN() || nodes[1].FQDN != bob.FQDN() {
		t.Fatalf("nodes: %+v", nodes)
	}
	old := bob.Session().Status()
	for _, n := range nodes {
		switch {
		case !n.Online || !n.Live:
			t.Errorf("%s not online: %+v", n.FQDN, n)
		case n.FQDN == bob.FQDN() && (n.Session != old.SessionID || n.VIP4 != old.VIP4 || n.CertSerial == "" || n.CertNotAfter.IsZero() || !n.Observed4.IsValid()):
			t.Errorf("bob as the cloud tells it: %+v; as bob knows it: %+v", n, old)
		}
	}

	ended, err := cl.EndSession(ctx, bob.FQDN())
	if err != nil || ended.Session != old.SessionID {
		t.Fatalf("end-session: %+v, %v", ended, err)
	}
	eventually(t, "bob logs in again with a new session", func() bool {
		st := bob.Session().Status()
		return online(bob)() && st.SessionID != old.SessionID && st.Logins == old.Logins+1
	})
	eventually(t, "the cloud shows bob's new session", func() bool {
		n, err := cl.Node(ctx, bob.FQDN())
		return err == nil && n.Live && n.Session == bob.Session().Status().SessionID
	})
	if got := c.srv.NMS.Counters.Ended.Load(); got != 1 {
		t.Errorf("NMS counted %d sessions ended by the operator, want 1", got)
	}
	roundTrip(t, alice, bob, 2)
	roundTrip(t, bob, alice, 3)

	if _, err := cl.EndSession(ctx, "carol.example.cyphonic"); !errors.Is(err, admin.ErrUnknownNode) {
		t.Errorf("end-session of an unknown node: %v", err)
	}
}
