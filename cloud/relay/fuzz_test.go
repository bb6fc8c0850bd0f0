package relay

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/transport/relaybind"
)

// model is the obvious single-threaded reading of the relay rules that
// FuzzTable holds the Table to.
type model struct {
	alive    [4]bool
	expires  [4]time.Time
	endpoint [4][2]netip.AddrPort
	last     [4]time.Time
	counter  [4][2]uint64
	fwd      uint64
}

func fuzzToken(k, side int) [16]byte {
	return id(byte(0x10*(k+1) + side + 1))
}

var fuzzSources = []netip.AddrPort{
	ap("198.51.100.1:60001"),
	ap("198.51.100.1:60002"),
	ap("[2001:db8::1]:41641"),
	ap("[::ffff:198.51.100.1]:60001"), // same endpoint as the first
	ap("198.51.100.1:0"),              // unanswerable
}

// FuzzTable runs random sequences of Allocate, Forward, Bind (genuine and
// forged), Expire and Release against the Table and a model, and checks
// every result.
func FuzzTable(f *testing.F) {
	f.Add([]byte{0, 0, 30, 1, 0, 0, 1, 1, 1, 1, 0, 2, 2, 61, 0, 1, 2, 0})
	f.Add([]byte{0, 1, 5, 1, 1, 0, 2, 10, 0, 1, 5, 1, 3, 1, 0})
	// Allocate, bind both sides, relay both ways, forge, replay, roam.
	f.Add([]byte{0, 0, 90, 4, 0, 8, 4, 4, 9, 1, 0, 8, 1, 4, 9, 5, 0, 17, 4, 0, 8, 4, 0, 17, 1, 0, 17, 2, 61, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		const idle = 60 * time.Second
		tab := NewTable(Config{IdleTimeout: idle})
		var m model
		now := t0
		for len(ops) >= 3 {
			op, x, y := ops[0]%6, int(ops[1]), int(ops[2])
			ops = ops[3:]
			k := x % 4
			switch op {
			case 0: // allocate session k, ticket valid for y seconds
				exp := now.Add(time.Duration(y) * time.Second)
				err := alloc(tab, id(byte(k+1)), fuzzToken(k, 0), fuzzToken(k, 1), exp)
				if m.alive[k] {
					if !errors.Is(err, ErrDuplicateSession) {
						t.Fatalf("Allocate of live session %d: %v", k, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("Allocate %d: %v", k, err)
				}
				m.alive[k], m.expires[k], m.endpoint[k], m.last[k], m.counter[k] = true, exp, [2]netip.AddrPort{}, time.Time{}, [2]uint64{}
			case 1: // forward on session k, side x>>2&1, from source y
				me := x >> 2 & 1
				from := fuzzSources[y%len(fuzzSources)]
				to, pt, ok, r := tab.Forward(fuzzToken(k, me), from, y, now)
				want := m.forward(k, me, from, y, now)
				if r != want || ok != (want == DropNone) {
					t.Fatalf("Forward(session %d side %d from %v): ok=%v %v, want %v", k, me, from, ok, r, want)
				}
				if ok && (to != m.endpoint[k][1-me] || pt != fuzzToken(k, 1-me)) {
					t.Fatalf("Forward to %v %x, want %v %x", to, pt, m.endpoint[k][1-me], fuzzToken(k, 1-me))
				}
			case 2: // time passes by x seconds, then a sweep
				now = now.Add(time.Duration(x) * time.Second)
				if got, want := tab.Expire(now), m.expire(now, idle); got != want {
					t.Fatalf("Expire removed %d, want %d", got, want)
				}
			case 3:
				if got := tab.Release(id(byte(k + 1))); got != m.alive[k] {
					t.Fatalf("Release(%d) = %v, model alive %v", k, got, m.alive[k])
				}
				m.alive[k] = false
			case 4, 5: // bind session k, side x>>2&1, from source y, counter y>>3; 5 forges it
				me, genuine := x>>2&1, op == 4
				from := fuzzSources[y%len(fuzzSources)]
				ctr := uint64(y >> 3)
				key := keyOf(fuzzToken(k, me))
				if !genuine {
					key[0] ^= 1
				}
				pkt, err := relaybind.Seal(key, fuzzToken(k, me), ctr)
				if err != nil {
					t.Fatal(err)
				}
				got, want := tab.Bind(pkt, from, now), m.bind(k, me, from, ctr, genuine, now)
				if got != want {
					t.Fatalf("Bind(session %d side %d from %v counter %d genuine %v) = %v, want %v", k, me, from, ctr, genuine, got, want)
				}
			}
		}
		live := 0
		for _, a := range m.alive {
			if a {
				live++
			}
		}
		if st := tab.Stats(); st.Sessions != live || st.Forwarded.Packets != m.fwd {
			t.Fatalf("stats %+v, model: %d sessions, %d forwarded", st, live, m.fwd)
		}
	})
}

func (m *model) forward(k, me int, from netip.AddrPort, n int, now time.Time) DropReason {
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	switch {
	case from.Port() == 0:
		return DropBadSource
	case n <= 0:
		return DropBadBind
	case !m.alive[k]:
		return DropUnknownToken
	case !now.Before(m.expires[k]):
		return DropExpired
	case m.endpoint[k][me] != from:
		return DropNotBound
	case !m.endpoint[k][1-me].IsValid():
		return DropPeerUnknown
	}
	m.fwd++
	return DropNone
}

func (m *model) bind(k, me int, from netip.AddrPort, ctr uint64, genuine bool, now time.Time) DropReason {
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	switch {
	case from.Port() == 0:
		return DropBadSource
	case !m.alive[k]:
		return DropUnknownToken
	case !now.Before(m.expires[k]):
		return DropExpired
	case !genuine:
		return DropBadBind
	case ctr <= m.counter[k][me]:
		return DropReplay
	}
	m.counter[k][me] = ctr
	m.endpoint[k][me] = from
	if now.After(m.last[k]) {
		m.last[k] = now
	}
	return DropNone
}

func (m *model) expire(now time.Time, idle time.Duration) int {
	n := 0
	for k := range m.alive {
		if !m.alive[k] {
			continue
		}
		if m.last[k].IsZero() {
			m.last[k] = now
		}
		if !now.Before(m.expires[k]) || now.Sub(m.last[k]) > idle {
			m.alive[k] = false
			n++
		}
	}
	return n
}
