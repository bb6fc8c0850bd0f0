package dataplane

import (
	"testing"

	"github.com/cyphonic/cyphonic-go/messages"
)

// TestPrevTicket: a handle remembers the relay ticket a new one replaced,
// so a peer binds both when two relay sessions were allocated for the pair
// at once; an update that keeps the ticket (new endpoints) changes nothing.
func TestPrevTicket(t *testing.T) {
	t1 := &messages.RelayTicket{Token: messages.RelayToken{1}}
	t2 := &messages.RelayTicket{Token: messages.RelayToken{2}}
	h := newHandle(messages.PathInfo{PeerFQDN: "bob.example.cyphonic", Relay: t1})
	if h.prevTicket() != nil {
		t.Fatal("a new handle has a previous ticket")
	}
	steps := []struct {
		relay *messages.RelayTicket
		want  *messages.RelayTicket
	}{
		{t1, nil}, // the same ticket again
		{t2, t1},  // replaced
		{t2, t1},  // endpoints only
		{nil, t2}, // a path without a ticket
		{t1, t2},  // nothing held before: the previous stays
	}
	for i, st := range steps {
		h.setInfo(messages.PathInfo{PeerFQDN: "bob.example.cyphonic", Relay: st.relay})
		if got := h.prevTicket(); got != st.want {
			t.Errorf("step %d: previous ticket %v, want %v", i, got, st.want)
		}
	}
}
