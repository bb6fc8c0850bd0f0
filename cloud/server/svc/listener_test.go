package svc

import (
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
)

// listen opens a loopback socket and a client socket aimed at it.
func listen(t *testing.T) (*net.UDPConn, *net.UDPConn) {
	t.Helper()
	conns, err := ListenUDP([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(LocalAddrs(conns)[0]))
	if err != nil {
		conns[0].Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return conns[0], c
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second) // only stops a broken test from hanging
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDeadLetterReleasesSlot: packets sent to a target that is not
// running (a stopped worker, or one between its stop and its restart) go
// to dead letters; their slots come back, so the target's bound is whole
// when it runs again. Before, each such packet kept its slot for good and
// the listener dropped everything for the target once Bound had died.
func TestDeadLetterReleasesSlot(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	var dead atomic.Int64
	sub := sys.EventStream.Subscribe(func(evt any) {
		if d, ok := evt.(*actor.DeadLetterEvent); ok {
			if _, ok := d.Message.(*Packet); ok {
				dead.Add(1)
			}
		}
	})
	defer sys.EventStream.Unsubscribe(sub)
	const bound, sent = 4, 12
	lim := supervise.NewLimiter(bound)
	conn, c := listen(t)
	l := ServeSharded(sys.Root, []*actor.PID{sys.NewLocalPID("stopped-worker")}, []*supervise.Limiter{lim}, nil, []*net.UDPConn{conn}, nil, slog.Default())
	defer l.Close()
	for i := range sent {
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the packet reaches dead letters", func() bool { return dead.Load() == int64(i+1) || lim.Dropped() > 0 })
	}
	if lim.Dropped() != 0 || lim.Len() != 0 {
		t.Fatalf("after %d packets to a stopped target: %d slots held, %d packets dropped (bound %d)", sent, lim.Len(), lim.Dropped(), bound)
	}
}

// TestReleaseOnReceiptStoppedActor: an actor that stops with packets still
// in its mailbox never sees them (protoactor drops them unseen); the
// mailbox middleware gives their slots back. The actor here never calls
// Done itself.
func TestReleaseOnReceiptStoppedActor(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	const n = 6
	lim := supervise.NewLimiter(n)
	release := make(chan struct{})
	var seen atomic.Int64
	pid := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*Packet); ok {
			if seen.Add(1) == 1 {
				<-release // the others queue up behind this one
				ctx.Stop(ctx.Self())
			}
		}
	}, actor.WithMailbox(actor.Unbounded(ReleaseOnReceipt{}))))
	defer sys.Root.Stop(pid)
	conn, c := listen(t)
	l := ServeSharded(sys.Root, []*actor.PID{pid}, []*supervise.Limiter{lim}, nil, []*net.UDPConn{conn}, nil, slog.Default())
	defer l.Close()
	for i := range n {
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every packet sent to the actor", func() bool { return lim.Len()+int(lim.Dropped()) == n && seen.Load() == 1 })
	close(release)
	waitFor(t, "the slots come back", func() bool { return lim.Len() == 0 })
	if got := seen.Load(); got != 1 {
		t.Fatalf("the stopped actor saw %d packets, want 1 (the rest dropped unseen)", got)
	}
	if lim.Dropped() != 0 {
		t.Fatalf("%d packets dropped", lim.Dropped())
	}
}
