package fallback

import (
	"testing"
	"time"
)

const ms = time.Millisecond

func TestRoutes(t *testing.T) {
	punch := Attempt{Direct: true, Ticket: true, After: 2500 * ms, Retry: time.Second}
	for _, tt := range []struct {
		name    string
		a       Attempt
		elapsed time.Duration
		want    Routes
	}{
		{"punch starts direct only", punch, 0, Routes{Direct: true}},
		{"punch before the deadline", punch, 2499 * ms, Routes{Direct: true}},
		{"punch at the deadline adds the relay", punch, 2500 * ms, Routes{Direct: true, Relay: true}},
		{"punch long after keeps both", punch, 9 * time.Second, Routes{Direct: true, Relay: true}},
		{"no ticket: direct forever", Attempt{Direct: true}, time.Minute, Routes{Direct: true}},
		{"relay path: relay at once", Attempt{Relayed: true, Direct: true, Ticket: true}, 0, Routes{Relay: true}},
		{"no direct endpoint we can send to: relay at once", Attempt{Ticket: true}, 0, Routes{Relay: true}},
		{"nothing at all", Attempt{}, time.Second, Routes{}},
		{"zero deadline takes the default", Attempt{Direct: true, Ticket: true}, DefaultAfter - ms, Routes{Direct: true}},
		{"default deadline", Attempt{Direct: true, Ticket: true}, DefaultAfter, Routes{Direct: true, Relay: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Routes(tt.elapsed); got != tt.want {
				t.Errorf("Routes(%v) = %+v, want %+v", tt.elapsed, got, tt.want)
			}
		})
	}
}

func TestDue(t *testing.T) {
	punch := Attempt{Direct: true, Ticket: true, After: 2500 * ms, Retry: time.Second}
	for _, tt := range []struct {
		name              string
		a                 Attempt
		elapsed, lastSent time.Duration
		want              bool
	}{
		{"first init at once", punch, 0, -1, true},
		{"not before Retry", punch, 900 * ms, 0, false},
		{"at Retry", punch, time.Second, 0, true},
		{"the relay is added between retries: at once", punch, 2500 * ms, 2000 * ms, true},
		{"after the relay was added: at Retry again", punch, 2750 * ms, 2500 * ms, false},
		{"relay path: at Retry", Attempt{Relayed: true, Ticket: true, Retry: time.Second}, 500 * ms, 0, false},
		{"no Retry: only the first and the fallback", Attempt{Direct: true, Ticket: true, After: time.Second}, 5 * time.Second, 2 * time.Second, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Due(tt.elapsed, tt.lastSent); got != tt.want {
				t.Errorf("Due(%v, %v) = %v, want %v", tt.elapsed, tt.lastSent, got, tt.want)
			}
		})
	}
}

// TestEveryPathReachesTheRelay walks a whole series for each kind of
// attempt: any attempt with a ticket sends an init over the relay within
// the deadline plus one tick, so no pair is left without a way through.
func TestEveryPathReachesTheRelay(t *testing.T) {
	const tick = 250 * ms
	for _, a := range []Attempt{
		{Direct: true, Ticket: true, After: 2500 * ms, Retry: time.Second},
		{Direct: true, Ticket: true, After: 2 * time.Second, Retry: 3 * time.Second},
		{Relayed: true, Direct: true, Ticket: true, Retry: time.Second},
		{Ticket: true, Retry: time.Second},
	} {
		last, reached := time.Duration(-1), time.Duration(-1)
		for e := time.Duration(0); e < 10*time.Second && reached < 0; e += tick {
			if a.Due(e, last) {
				last = e
				if a.Routes(e).Relay {
					reached = e
				}
			}
		}
		if reached < 0 || reached > a.after()+tick {
			t.Errorf("%+v: first init over the relay at %v, want by %v", a, reached, a.after()+tick)
		}
	}
}
