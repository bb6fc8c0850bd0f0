package svc

import (
	"context"
	"errors"
	"runtime"
	"testing"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/leaktest"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

// sink spawns an actor that forwards every int it receives to a channel.
func sink(t *testing.T, sys *actor.ActorSystem) (*actor.PID, chan int) {
	ch := make(chan int, 16)
	pid := sys.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if v, ok := c.Message().(int); ok {
			ch <- v
		}
	}))
	t.Cleanup(func() { sys.Root.Stop(pid) })
	return pid, ch
}

func TestWorkersDeliverResults(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	pid, ch := sink(t, sys)
	w := NewWorkers(sys.Root, 2, 8)
	defer w.Close()
	for i := range 5 {
		if err := w.Do(pid, func(context.Context) any { return i }); err != nil {
			t.Fatal(err)
		}
	}
	got := map[int]bool{}
	for range 5 {
		got[<-ch] = true
	}
	if len(got) != 5 {
		t.Fatalf("results %v", got)
	}
}

// TestWorkersBounded fills the pool and its queue: the next job is refused
// at once (ErrBusy) rather than blocking the asking actor.
func TestWorkersBounded(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	w := NewWorkers(sys.Root, 1, 1)
	release, running := make(chan struct{}), make(chan struct{})
	block := func(context.Context) any { running <- struct{}{}; <-release; return nil }
	if err := w.Do(nil, block); err != nil {
		t.Fatal(err)
	}
	<-running // the worker holds job 1; job 2 waits in the queue
	if err := w.Do(nil, func(context.Context) any { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := w.Do(nil, func(context.Context) any { return nil }); !errors.Is(err, ErrBusy) {
		t.Fatalf("third job: %v, want ErrBusy", err)
	}
	if w.Busy() != 1 {
		t.Fatalf("Busy = %d", w.Busy())
	}
	close(release)
	w.Close()
}

// TestWorkersCloseDrains checks that Close runs the jobs still queued, with
// a cancelled context (so a job holding a resource still releases it), and
// that Do after Close fails.
func TestWorkersCloseDrains(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	w := NewWorkers(sys.Root, 1, 4)
	release, running := make(chan struct{}), make(chan struct{})
	if err := w.Do(nil, func(context.Context) any { running <- struct{}{}; <-release; return nil }); err != nil {
		t.Fatal(err)
	}
	<-running
	sawCancel := make(chan bool, 1)
	if err := w.Do(nil, func(ctx context.Context) any { sawCancel <- ctx.Err() != nil; return nil }); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { w.Close(); close(closed) }()
	// Close cancels before it waits, so the queued job sees the cancel.
	for !errors.Is(w.Do(nil, func(context.Context) any { return nil }), ErrClosed) {
		runtime.Gosched()
	}
	close(release)
	<-closed
	if !<-sawCancel {
		t.Fatal("queued job ran with a live context after Close")
	}
	w.Close() // idempotent
}
