package supervise

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

type everyTick struct{}

// TestEvery: ticks arrive at the actor until stop; stop is idempotent, and
// its goroutine ends (the package's leak check runs after the tests).
func TestEvery(t *testing.T) {
	sys := newTestSystem(t)
	ticks := make(chan struct{}, 64)
	var stop func()
	pid, err := sys.Spawn(nil, "ticker", "ticker", actor.PropsFromFunc(func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case *actor.Started:
			stop = Every(ctx, 5*time.Millisecond, everyTick{})
		case everyTick:
			ticks <- struct{}{}
		case *actor.Stopping:
			stop()
			stop()
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		select {
		case <-ticks:
		case <-time.After(5 * time.Second):
			t.Fatal("no tick")
		}
	}
	if err := sys.Root().StopFuture(pid).Wait(); err != nil {
		t.Fatal(err)
	}
	for len(ticks) > 0 {
		<-ticks
	}
	time.Sleep(30 * time.Millisecond)
	if n := len(ticks); n != 0 {
		t.Fatalf("%d ticks after stop", n)
	}
}
