package retransmit

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

// answer is a reply the scripted handler sends itself after a send: it is
// queued before any tick of that send.
type answer struct{ v Verdict }

// scripted is a Handler that logs what the Tx makes it do. After send n
// (counted over all stages) it answers with script[n]; Transmit fails at
// send loseAt.
type scripted struct {
	script map[int]Verdict
	loseAt int
	twice  bool // each answer comes twice
	sends  int
	stage  int
	log    chan<- string
}

func (h *scripted) Transmit(ctx actor.Context) bool {
	h.sends++
	if h.sends == h.loseAt {
		return false
	}
	h.log <- fmt.Sprintf("send %d", h.stage)
	if v, ok := h.script[h.sends]; ok {
		ctx.Send(ctx.Self(), answer{v})
		if h.twice {
			ctx.Send(ctx.Self(), answer{v})
		}
	}
	return true
}

func (h *scripted) Reply(_ actor.Context, msg any) Verdict {
	a, ok := msg.(answer)
	if !ok {
		return Wait
	}
	if a.v == Again {
		h.stage++
	}
	return a.v
}

func (h *scripted) End(_ actor.Context, how End) { h.log <- "end " + how.String() }

func TestTx(t *testing.T) {
	r := signaling.Retry{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond, Attempts: 3}
	tests := []struct {
		name   string
		script map[int]Verdict
		loseAt int
		twice  bool
		stop   bool // stop the actor from outside after its first send (on a slow schedule: no resend comes first)
		want   []string
	}{
		{"answered at once", map[int]Verdict{1: Done}, 0, false, false,
			[]string{"send 0", "end answered"}},
		{"answered after a resend", map[int]Verdict{2: Done}, 0, false, false,
			[]string{"send 0", "send 0", "end answered"}},
		{"unanswered: every attempt, then expiry", nil, 0, false, false,
			[]string{"send 0", "send 0", "send 0", "end expired"}},
		// Replies that are not the answer leave the schedule as it is.
		{"waits do not stop the schedule", map[int]Verdict{1: Wait, 2: Wait}, 0, false, false,
			[]string{"send 0", "send 0", "send 0", "end expired"}},
		// A new stage (a login's confirmation) sends at once and gets a
		// whole schedule of its own; the old stage's tick sends nothing.
		{"again restarts the schedule", map[int]Verdict{2: Again}, 0, false, false,
			[]string{"send 0", "send 0", "send 1", "send 1", "send 1", "end expired"}},
		{"again, then answered", map[int]Verdict{1: Again, 3: Done}, 0, false, false,
			[]string{"send 0", "send 1", "send 1", "end answered"}},
		{"state gone at the first send", nil, 1, false, false,
			[]string{"end lost"}},
		{"state gone at a resend", nil, 2, false, false,
			[]string{"send 0", "end lost"}},
		{"stopped from outside", nil, 0, false, true,
			[]string{"send 0", "end stopped"}},
		// An answer queued behind the end reaches nobody.
		{"answer after the end", map[int]Verdict{1: Done}, 0, true, false,
			[]string{"send 0", "end answered"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sys := actor.NewActorSystem()
			defer sys.Shutdown()
			log := make(chan string, 32)
			r := r
			if tt.stop {
				r.Initial, r.Max = time.Hour, time.Hour
			}
			pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
				return NewTx(r, &scripted{script: tt.script, loseAt: tt.loseAt, twice: tt.twice, log: log})
			}))
			var got []string
			deadline := time.After(10 * time.Second)
			for len(got) == 0 || got[len(got)-1][:3] != "end" {
				select {
				case e := <-log:
					got = append(got, e)
					if tt.stop && e == "send 0" {
						sys.Root.Stop(pid)
					}
				case <-deadline:
					t.Fatalf("no end; log %q", got)
				}
			}
			// Nothing after the end: no send, no second end. The longest
			// wait of the fast schedule is 20ms; give it several.
			time.Sleep(100 * time.Millisecond)
			for len(log) > 0 {
				got = append(got, <-log)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("log %q, want %q", got, tt.want)
			}
			sys.Root.Stop(pid)
		})
	}
}
