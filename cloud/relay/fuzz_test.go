package relay

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// model is the obvious single-threaded reading of the relay rules that
// FuzzTable holds the Table to.
type model struct {
	alive    [4]bool
	expires  [4]time.Time
	endpoint [4][2]netip.AddrPort
	last     [4]time.Time
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

// FuzzTable runs random sequences of Allocate, Forward, Expire and Release
// against the Table and a model, and checks every result.
func FuzzTable(f *testing.F) {
	f.Add([]byte{0, 0, 30, 1, 0, 0, 1, 1, 1, 1, 0, 2, 2, 61, 0, 1, 2, 0})
	f.Add([]byte{0, 1, 5, 1, 1, 0, 2, 10, 0, 1, 5, 1, 3, 1, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		const idle = 60 * time.Second
		tab := NewTable(Config{IdleTimeout: idle})
		var m model
		now := t0
		for len(ops) >= 3 {
			op, x, y := ops[0]%4, int(ops[1]), int(ops[2])
			ops = ops[3:]
			k := x % 4
			switch op {
			case 0: // allocate session k, ticket valid for y seconds
				exp := now.Add(time.Duration(y) * time.Second)
				err := tab.Allocate(id(byte(k+1)), fuzzToken(k, 0), fuzzToken(k, 1), "a", "b", exp)
				if m.alive[k] {
					if !errors.Is(err, ErrDuplicateSession) {
						t.Fatalf("Allocate of live session %d: %v", k, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("Allocate %d: %v", k, err)
				}
				m.alive[k], m.expires[k], m.endpoint[k], m.last[k] = true, exp, [2]netip.AddrPort{}, time.Time{}
			case 1: // forward on session k, side x>>2&1, from source y
				me := x >> 2 & 1
				from := fuzzSources[y%len(fuzzSources)]
				to, pt, ok, r := tab.Forward(fuzzToken(k, me), from, y, now)
				want := m.forward(k, me, from, now)
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

func (m *model) forward(k, me int, from netip.AddrPort, now time.Time) DropReason {
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	switch {
	case from.Port() == 0:
		return DropBadSource
	case !m.alive[k]:
		return DropUnknownToken
	case !now.Before(m.expires[k]):
		return DropExpired
	}
	m.endpoint[k][me] = from
	if now.After(m.last[k]) {
		m.last[k] = now
	}
	if !m.endpoint[k][1-me].IsValid() {
		return DropPeerUnknown
	}
	m.fwd++
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
