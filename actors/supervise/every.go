package supervise

import (
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Every sends msg to the actor of ctx every interval until the returned
// stop is called (call it on Stopping; it is idempotent and waits for
// nothing). It replaces protoactor's scheduler.SendRepeatedly, whose
// cancellation races with its timer (a plain read of the state the cancel
// writes atomically: the race detector reports it).
func Every(ctx actor.Context, interval time.Duration, msg any) (stop func()) {
	root, self := ctx.ActorSystem().Root, ctx.Self()
	t := time.NewTicker(interval)
	done := make(chan struct{})
	go func() {
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				root.Send(self, msg)
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}
