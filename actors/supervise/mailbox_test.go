package supervise

import (
	"testing"

	"github.com/asynkron/protoactor-go/actor"
)

// A message to an idle actor wakes its mailbox. protoactor's default
// mailbox allocates a closure per wake-up; on the data path that was one
// allocation per batch per actor it crossed.
func TestMailboxWakeAllocatesNothing(t *testing.T) {
	sys := newTestSystem(t)
	done := make(chan struct{}, 1)
	pid, err := sys.Spawn(nil, "echo", "echo", actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*struct{ n int }); ok {
			done <- struct{}{}
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	// An envelope, so that the receiver middleware's wrapping (another
	// allocation per message, which the data path avoids the same way) is
	// not counted.
	env := &actor.MessageEnvelope{Message: &struct{ n int }{}}
	root := sys.Root()
	if a := testing.AllocsPerRun(200, func() {
		root.Send(pid, env)
		<-done // idle again before the next one: every send is a wake-up
	}); a != 0 {
		t.Errorf("a message to an idle actor allocates %.2f times, want 0", a)
	}
}

// Messages keep their order across the ring's growth and shrinking, and a
// drained ring gives a burst's buffer back.
func TestRingOrderAndShrink(t *testing.T) {
	var r ring
	next := 0
	for round, burst := range []int{3, 1000, 5, 200} {
		for i := range burst {
			r.push(round*10000 + i)
		}
		for i := range burst {
			if v := r.pop(); v != round*10000+i {
				t.Fatalf("round %d: pop %d = %v, want %d", round, i, v, round*10000+i)
			}
			next++
			if i == burst/2 { // interleave: push while not empty
				r.push(-1)
				burst++
			}
		}
		for r.size > 0 {
			r.pop()
		}
		if r.pop() != nil {
			t.Fatal("pop from an empty ring is not nil")
		}
		if len(r.buf) > ringKeep {
			t.Fatalf("round %d: a drained ring keeps %d slots, want <= %d", round, len(r.buf), ringKeep)
		}
	}
}

// Messages from many senders all arrive, each sender's in order, and the
// mailbox's count is back to 0.
func TestMailboxConcurrentSenders(t *testing.T) {
	sys := newTestSystem(t)
	const senders, each = 4, 2000
	got := make(chan [2]int, senders*each)
	pid, err := sys.Spawn(nil, "sink", "sink", actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().([2]int); ok {
			got <- m
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	for s := range senders {
		go func() {
			for i := range each {
				sys.Root().Send(pid, [2]int{s, i})
			}
		}()
	}
	var last [senders]int
	for i := range last {
		last[i] = -1
	}
	for range senders * each {
		m := <-got
		if m[1] != last[m[0]]+1 {
			t.Fatalf("sender %d: %d after %d", m[0], m[1], last[m[0]])
		}
		last[m[0]] = m[1]
	}
}
