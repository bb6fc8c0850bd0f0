package dataplane

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/seal"
)

func TestTables(t *testing.T) {
	tb := newTables()
	h := newHandle(messages.PathInfo{PeerFQDN: "bob.example.cyphonic"})
	v4, v6 := netip.MustParseAddr("100.64.0.2"), netip.MustParseAddr("fd7a::2")
	tb.SetRoutes(h, v4, v6, netip.Addr{})
	if tb.Route(v4) != h || tb.Route(v6) != h || tb.Route(netip.MustParseAddr("100.64.0.3")) != nil {
		t.Fatal("routes")
	}
	tb.RemoveRoutes(h)
	if tb.Route(v4) != nil {
		t.Fatal("route survived RemoveRoutes")
	}
	s1, s2 := &peerSession{Peer: h}, &peerSession{Peer: h}
	i1, i2 := tb.Reserve(s1), tb.Reserve(s2)
	if i1 == 0 || i1 == i2 || tb.Session(i1) != s1 || tb.Session(i2) != s2 {
		t.Fatal("reserve")
	}
	s3 := &peerSession{Peer: h}
	tb.Set(i1, s3)
	tb.Remove(i2)
	if tb.Session(i1) != s3 || tb.Session(i2) != nil {
		t.Fatal("set/remove")
	}
}

func TestHandleWaitUp(t *testing.T) {
	h := newHandle(messages.PathInfo{PeerFQDN: "bob.example.cyphonic"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.WaitUp(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("not up: %v", err)
	}
	h.setUp(h.lastHandshake, seal.ChaCha20Poly1305)
	if err := h.WaitUp(context.Background()); err != nil {
		t.Fatalf("up: %v", err)
	}
	h.setFailure("handshake timeout")
	h.gaveUp(false)
	if err := h.WaitUp(context.Background()); !errors.Is(err, errHandleFailed) {
		t.Fatalf("gave up: %v", err)
	}
	if st := h.Status(); st.State != StateFailed+": handshake timeout" {
		t.Fatalf("state %q", st.State)
	}
}

// TestStatusPath: Status reports the path data takes now, which differs
// from NMS's path once a relayed tunnel has upgraded itself to direct.
func TestStatusPath(t *testing.T) {
	trs, direct := netip.MustParseAddrPort("192.0.2.1:7403"), netip.MustParseAddrPort("198.51.100.2:4500")
	for _, tc := range []struct {
		name  string
		kind  messages.PathKind
		route *peerRoute
		want  messages.PathKind
		ep    netip.AddrPort
	}{
		{"no route yet", messages.PathRelay, nil, messages.PathRelay, netip.AddrPort{}},
		{"relayed", messages.PathRelay, &peerRoute{Addr: trs, Relay: true}, messages.PathRelay, trs},
		{"upgraded", messages.PathRelay, &peerRoute{Addr: direct}, messages.PathDirect, direct},
		{"hole punched", messages.PathHolePunch, &peerRoute{Addr: direct}, messages.PathHolePunch, direct},
		{"direct fell back to relay", messages.PathDirect, &peerRoute{Addr: trs, Relay: true}, messages.PathRelay, trs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandle(messages.PathInfo{PeerFQDN: "bob.example.cyphonic", Kind: tc.kind})
			if tc.route != nil {
				h.route.Store(tc.route)
			}
			if st := h.Status(); st.Path != tc.want || st.Endpoint != tc.ep || st.Cipher != "" {
				t.Fatalf("status %+v, want path %v endpoint %v", st, tc.want, tc.ep)
			}
		})
	}
}
