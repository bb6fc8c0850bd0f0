package svc

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/transport/udp"
)

// TestPacketCarriesKernelStamp: a datagram that waited in the socket's
// queue before the listener read it carries the kernel's receive time
// (Packet.Recv), not the read's: the wait before the read counts.
func TestPacketCarriesKernelStamp(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	srv, client := listen(t)
	// Linux turns receive stamping on for the whole stack lazily (a static
	// key flipped from a work queue when the first socket asks): until then
	// a datagram is stamped when it is read. Wait until stamps are taken on
	// arrival, as they are in a running cloud, reading the socket directly.
	oob := make([]byte, udp.StampCtrlLen)
	buf := make([]byte, 64)
	for i := 0; ; i++ {
		if _, err := client.Write([]byte("warm-up")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		_, oobn, _, _, err := srv.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(time.Unix(0, udp.ReceiveStamp(oob[:oobn]))) >= 15*time.Millisecond {
			break
		}
		if i == 100 {
			t.Fatal("the kernel never stamped a datagram on arrival")
		}
	}
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
