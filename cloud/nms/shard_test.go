package nms

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

// TestRoute: a sealed packet goes to the worker of the session ID in its
// clear header, whoever sends it and whatever it holds; anything else is
// spread by source port; nothing the network sends makes route panic or
// leave [0, n).
func TestRoute(t *testing.T) {
	sealed := func(id uint32) []byte {
		ss, err := signaling.NewNodeSession(id, signaling.Keys{})
		if err != nil {
			t.Fatal(err)
		}
		pkt, err := ss.SealMessage(nil, messages.NewEncoder(), messages.NewMsgID(), "a.example.cyphonic", time.Now(), messages.Keepalive{})
		if err != nil {
			t.Fatal(err)
		}
		return pkt
	}
	from := netip.MustParseAddrPort("192.0.2.1:40001")
	var probe [messages.ProbeLen]byte
	messages.Probe{ID: 7}.Put(probe[:])
	for _, tc := range []struct {
		name string
		data []byte
		from netip.AddrPort
		n    int
		want int
	}{
		{"sealed, session 9 of 4 workers", sealed(9), from, 4, 1},
		{"sealed, same session from elsewhere", sealed(9), netip.MustParseAddrPort("[2001:db8::1]:9"), 4, 1},
		{"sealed, session 12 of 4", sealed(12), from, 4, 0},
		{"sealed, one worker", sealed(0xffffffff), from, 1, 0},
		{"probe by port", probe[:], from, 4, 40001 % 4},
		{"truncated sealed header", []byte{byte(messages.TypeSignaling), 1}, from, 3, 40001 % 3},
		{"unknown type", []byte{0xee}, from, 5, 40001 % 5},
		{"empty", nil, from, 2, 40001 % 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := route(tc.data, tc.from, tc.n); got != tc.want {
				t.Fatalf("route = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestFQDNIndex: a newer session replaces an older one, and the older
// one's end does not remove its replacement; concurrent workers are safe.
func TestFQDNIndex(t *testing.T) {
	x := newFQDNIndex()
	if _, had := x.swap("a", 1); had {
		t.Fatal("empty index had a")
	}
	if old, had := x.swap("a", 2); !had || old != 1 {
		t.Fatalf("swap returned %d %v, want 1 true", old, had)
	}
	if x.remove("a", 1) {
		t.Fatal("the replaced session's end removed its replacement")
	}
	if id, ok := x.get("a"); !ok || id != 2 {
		t.Fatalf("a = %d %v, want 2", id, ok)
	}
	if !x.remove("a", 2) || x.has("a") {
		t.Fatal("a's own end did not remove it")
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				f := string(rune('a' + i%26))
				x.swap(f, uint32(w*1000+i))
				x.get(f)
				x.remove(f, uint32(w*1000+i))
			}
		})
	}
	wg.Wait()
}
