package session

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
)

type vipAnswers struct {
	mu  sync.Mutex
	got map[netip.Addr]bool // vip -> unknown
}

func (v *vipAnswers) record(vip netip.Addr, unknown bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.got == nil {
		v.got = map[netip.Addr]bool{}
	}
	v.got[vip] = unknown
}

func (v *vipAnswers) get(vip netip.Addr) (unknown, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	unknown, ok = v.got[vip]
	return
}

func vipFixture(t *testing.T, setup ...func(*fakeCloud)) (*fixture, *vipAnswers) {
	ans := &vipAnswers{}
	f := newFixture(t, func(c *Config) { c.OnVIPFailed = ans.record }, setup...)
	eventually(t, "online", online(f))
	return f, ans
}

func TestNeedVIP(t *testing.T) {
	tests := []struct {
		name    string
		vip     netip.Addr
		setup   func(*fakeCloud)
		opens   bool
		fails   bool
		unknown bool
	}{
		{name: "holder's VIP4 opens its path", vip: bobVIP4, opens: true},
		{name: "holder's VIP6 opens its path", vip: bobVIP6, opens: true},
		{name: "nobody holds it", vip: netip.MustParseAddr("100.64.9.9"), fails: true, unknown: true},
		// A compromised NMS answers with a path that does not route the
		// VIP asked about: opening it would carry none of the waiting
		// packets, and would give the VIPs it names to whoever NMS likes
		// (the handshake checks them, but the held packets are for vip).
		{name: "path routing other VIPs refused", vip: bobVIP4, fails: true,
			setup: func(c *fakeCloud) { c.pathVIP4 = netip.MustParseAddr("100.64.0.66") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var setup []func(*fakeCloud)
			if tt.setup != nil {
				setup = append(setup, tt.setup)
			}
			f, ans := vipFixture(t, setup...)
			f.s.NeedVIP(tt.vip)
			if tt.opens {
				eventually(t, "path opened", func() bool { return f.dp.openCount() == 1 })
				f.dp.mu.Lock()
				info := f.dp.opened[0]
				f.dp.mu.Unlock()
				if info.PeerFQDN != "bob.example.cyphonic" || info.PeerVIP4 != bobVIP4 {
					t.Fatalf("opened %+v", info)
				}
			} else {
				eventually(t, "failure reported", func() bool { _, ok := ans.get(tt.vip); return ok })
				if unknown, _ := ans.get(tt.vip); unknown != tt.unknown {
					t.Fatalf("reported unknown=%v, want %v", unknown, tt.unknown)
				}
				if n := f.dp.openCount(); n != 0 {
					t.Fatalf("opened %d tunnels", n)
				}
			}
			if _, failed := ans.get(tt.vip); failed != tt.fails {
				t.Fatalf("failure reported: %v, want %v", failed, tt.fails)
			}
		})
	}
}

// TestNeedVIPOncePerVIP: packets to one address ask once while the
// request is in flight or queued.
func TestNeedVIPOncePerVIP(t *testing.T) {
	f, _ := vipFixture(t)
	// The first answer is lost, so the request is certainly still in
	// flight while the other 19 arrive (else a fast answer could complete
	// it between two calls, and a later call would rightly ask again).
	f.cloud.set(func(c *fakeCloud) { c.lostVIPAnswers = 1 })
	for range 20 {
		f.s.NeedVIP(bobVIP4)
	}
	eventually(t, "path opened", func() bool { return f.dp.openCount() >= 1 })
	time.Sleep(50 * time.Millisecond)
	if n := f.dp.openCount(); n != 1 {
		t.Fatalf("opened %d times for one address", n)
	}
	if n := f.cloud.count(messages.MsgTunnelByVIP); n > 3 {
		t.Fatalf("NMS saw %d requests (retransmissions included), want one transaction", n)
	}
}

// LookupVIP names the holder of a VIP without opening anything; an
// address nobody holds is ErrUnknownPeer; an answer about another address
// (a compromised NMS) is refused.
func TestLookupVIP(t *testing.T) {
	tests := []struct {
		name  string
		vip   netip.Addr
		setup func(*fakeCloud)
		want  string
		err   error
	}{
		{name: "holder's VIP4", vip: bobVIP4, want: "bob.example.cyphonic"},
		{name: "holder's VIP6", vip: bobVIP6, want: "bob.example.cyphonic"},
		{name: "nobody holds it", vip: netip.MustParseAddr("100.64.9.9"), err: ErrUnknownPeer},
		{name: "an answer about another address refused", vip: bobVIP4, err: ErrWrongPeer,
			setup: func(c *fakeCloud) { c.pathVIP4 = netip.MustParseAddr("100.64.0.66") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var setup []func(*fakeCloud)
			if tt.setup != nil {
				setup = append(setup, tt.setup)
			}
			f, _ := vipFixture(t, setup...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := f.s.LookupVIP(ctx, tt.vip)
			if got != tt.want || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("LookupVIP(%s) = %q, %v; want %q, %v", tt.vip, got, err, tt.want, tt.err)
			}
			if n := f.dp.openCount(); n != 0 {
				t.Fatalf("a lookup opened %d paths", n)
			}
		})
	}
}
