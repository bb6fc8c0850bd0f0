package svc

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
)

// TestPacketCarriesKernelStamp: a datagram that waited in the socket's
// queue before the listener read it carries the kernel's receive time
// (Packet.Recv), not the read's: the wait before the read counts.
func TestPacketCarriesKernelStamp(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	srv, client := listen(t)
	sent := time.Now()
	if _, err := client.Write([]byte("keepalive")); err != nil {
		t.Fatal(err)
	}
	const queued = 100 * time.Millisecond
	time.Sleep(queued) // in the socket's queue: nobody reads yet
	got := make(chan *Packet, 1)
	pid := sys.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if p, ok := c.Message().(*Packet); ok {
			p.Done()
			got <- p
		}
	}))
	l := ServeSharded(sys.Root, []*actor.PID{pid}, []*supervise.Limiter{supervise.NewLimiter(4)}, nil, []*net.UDPConn{srv}, nil, slog.Default())
	defer l.Close()
	p := <-got
	read := time.Now()
	if p.Recv == 0 {
		t.Fatal("packet carries no receive stamp")
	}
	stamp := time.Unix(0, p.Recv)
	if stamp.Before(sent.Add(-time.Second)) || read.Sub(stamp) < queued {
		t.Fatalf("stamp %v: sent %v, handed on %v later; want the kernel's receipt, at least %v before the hand-over",
			stamp, stamp.Sub(sent), read.Sub(stamp), queued)
	}
}
