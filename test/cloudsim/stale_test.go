package cloudsim

import (
	"context"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
)

// TestStaleKeepaliveAfterRelogin: a node served by NMS-A logs in again at
// another cloud process (B, sharing the Redis store), which NMS-A is not
// told about. A keepalive still sealed with the old session, from a new
// mapping, then reaches NMS-A: it must not write NMS-A's view over the
// new login's record. NMS-A drops it as stale, the store keeps the new
// session and the locator, and the node carries on on its new session.
func TestStaleKeepaliveAfterRelogin(t *testing.T) {
	a, bAS := twoClouds(t)

	alice := newNode(t, a, "alice.example.cyphonic")
	online(t, a, alice, messages.NATNone)
	nmsA := alice.Reply.NMS[0]
	alice.mu.Lock()
	oldSess := alice.sess
	alice.mu.Unlock()
	oldID := alice.Reply.SessionID

	if _, err := alice.Login(bAS, false); err != nil {
		t.Fatal(err)
	}
	if alice.Reply.NMS[0] == nmsA {
		t.Fatalf("both logins on one NMS %v", nmsA)
	}
	if alice.Reply.SessionID == oldID {
		t.Fatal("the new login reused the session ID")
	}
	bg := context.Background()
	want, err := a.Store().GetNode(bg, alice.FQDN)
	if err != nil || want.Session.ID != alice.Reply.SessionID {
		t.Fatalf("record after the new login: %+v, %v", want, err)
	}

	// From a new mapping, so the keepalive would rewrite the locator.
	if err := alice.Move(); err != nil {
		t.Fatal(err)
	}
	var enc messages.Encoder
	pkt, err := oldSess.SealMessage(nil, &enc, messages.NewMsgID(), alice.FQDN, time.Now(), messages.Keepalive{})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Send(nmsA, pkt); err != nil {
		t.Fatal(err)
	}
	eventually(t, "NMS-A drops the keepalive on the replaced session", func() bool { return a.NMS.Counters.Stale.Load() == 1 })

	got, err := a.Store().GetNode(bg, alice.FQDN)
	if err != nil || got.Session.ID != want.Session.ID || got.Locator.Observed4 != want.Locator.Observed4 || got.HomeNMS != want.HomeNMS {
		t.Fatalf("record after the stale keepalive:\n got %+v, %v\nwant %+v", got, err, want)
	}
	// On the new session, at B, the node carries on.
	if _, err := alice.Register(false); err != nil {
		t.Fatalf("register on the new session: %v", err)
	}
	if got, err := a.Store().GetNode(bg, alice.FQDN); err != nil || got.Session.ID != want.Session.ID || got.Locator.Observed4 != alice.Addr() {
		t.Fatalf("record after registering on the new session: %+v, %v", got, err)
	}
}
