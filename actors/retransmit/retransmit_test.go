package retransmit

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/leaktest"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

// restart asks the test actor to start its schedule over.
type restart struct{}

// sender is an actor that sends on a Timer and reports each send and the
// expiry.
type sender struct {
	timer     *Timer
	restartAt int // restart once, after this send: the restart is queued before any tick of that send
	sends     chan<- int
	expired   chan<- int
}

func (s *sender) Receive(ctx actor.Context) {
	send := func() {
		n := s.timer.Sent() + 1
		s.sends <- n
		if n == s.restartAt {
			s.restartAt = 0
			ctx.Send(ctx.Self(), restart{})
		}
	}
	switch m := ctx.Message().(type) {
	case *actor.Started:
		s.timer.Start(ctx, send)
	case restart:
		s.timer.Start(ctx, send)
	case Tick:
		if s.timer.Tick(ctx, m, send) {
			s.expired <- s.timer.Sent()
		}
	case *actor.Stopping:
		s.timer.Stop()
	}
}

func TestTimer(t *testing.T) {
	r := signaling.Retry{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond, Attempts: 4}
	tests := []struct {
		name      string
		restartAt int // restart after this send (0: never)
		want      []int
	}{
		{"every attempt, then expiry", 0, []int{1, 2, 3, 4}},
		// A restart (a login moving to its confirmation) begins a new
		// schedule; the old one's pending tick is stale and sends nothing.
		{"restart", 2, []int{1, 2, 1, 2, 3, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sys := actor.NewActorSystem()
			defer sys.Shutdown()
			sends, expired := make(chan int, 16), make(chan int, 1)
			pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
				return &sender{timer: New(r), restartAt: tt.restartAt, sends: sends, expired: expired}
			}))
			defer sys.Root.Stop(pid)
			var got []int
			deadline := time.After(10 * time.Second)
			for done := false; !done; {
				select {
				case n := <-sends:
					got = append(got, n)
				case n := <-expired:
					if n != r.Attempts {
						t.Errorf("expired after %d sends, want %d", n, r.Attempts)
					}
					done = true
				case <-deadline:
					t.Fatalf("no expiry; sends %v", got)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("sends %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("sends %v, want %v", got, tt.want)
				}
			}
			select {
			case n := <-sends:
				t.Fatalf("send %d after the expiry", n)
			default:
			}
		})
	}
}

func TestLifetime(t *testing.T) {
	r := signaling.Retry{Initial: time.Second, Max: 4 * time.Second, Attempts: 4}
	if got := Lifetime(r); got != (1+2+4+4)*time.Second {
		t.Errorf("Lifetime = %v, want 11s: waits 1, 2, 4 and the last 4", got)
	}
	if got := LastWait(signaling.Retry{Initial: time.Second}); got != time.Second {
		t.Errorf("LastWait without Max = %v, want Initial", got)
	}
}
