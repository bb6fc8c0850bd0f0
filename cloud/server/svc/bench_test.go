package svc

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
)

// BenchmarkLinkSendLocal measures a frame from one service's link into
// another service's actor system in the same process (the path of every
// AS -> NMS -> TRS frame when they run together), up to its receipt.
func BenchmarkLinkSendLocal(b *testing.B) {
	r := NewRouter(nil)
	sys := supervise.New(NMS, nil)
	defer sys.Shutdown(context.Background())
	r.Attach(NMS, sys.Actors())
	var got atomic.Int64
	done := make(chan struct{})
	want := int64(b.N)
	if _, err := sys.Spawn(nil, "nms", NMS, actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*Message); ok && got.Add(1) == want {
			close(done)
		}
	})); err != nil {
		b.Fatal(err)
	}
	link, to, frame := r.Link(AS), RootOf("", NMS), []byte{0, 1, 2, 3}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := link.Send(to, frame); err != nil {
			b.Fatal(err)
		}
	}
	<-done
}
