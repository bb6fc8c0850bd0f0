package dataplane

import (
	"encoding/binary"
	"io"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
)

func TestIsProbe(t *testing.T) {
	echo := make([]byte, probeLen)
	echo[0] = probeEcho
	reply := make([]byte, probeLen)
	reply[0] = probeReply
	ipv4 := make([]byte, probeLen)
	ipv4[0] = 0x45
	for _, c := range []struct {
		name string
		p    []byte
		want bool
	}{
		{"echo", echo, true},
		{"reply", reply, true},
		{"keepalive", nil, false},
		{"IPv4 of the same length", ipv4, false},
		{"echo kind, longer", append(echo, 0), false},
		{"echo kind, shorter", echo[:probeLen-1], false},
		{"unknown kind", append([]byte{0x03}, echo[1:]...), false},
	} {
		if got := isProbe(c.p); got != c.want {
			t.Errorf("%s: isProbe = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestProbeFloodIsBounded: a peer that floods echoes (authenticated, so
// past every check before this one) gets at most maxProbesQueued of them
// queued at its peer actor, which here never gets to run them; the rest are
// counted as queue-full drops. Handled probes free their slots.
func TestProbeFloodIsBounded(t *testing.T) {
	sys := supervise.New("probe-test", slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer sys.Shutdown(t.Context())
	var got atomic.Int64
	block := make(chan struct{})
	pid := sys.Root().Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if _, ok := c.Message().(probed); ok {
			<-block
			got.Add(1)
		}
	}))
	d := &Dataplane{sys: sys}
	h := &peerHandle{}
	pipe := &peerPipe{Peer: pid}
	echo := make([]byte, probeLen)
	echo[0] = probeEcho
	for i := range 1000 {
		binary.BigEndian.PutUint64(echo[1:], uint64(i))
		d.onProbe(h, pipe, echo, netip.MustParseAddrPort("192.0.2.1:1"), false)
	}
	if q, drops := pipe.Probes.Load(), h.Stats.Drops.Get(QueueFull); q != maxProbesQueued || drops != 1000-maxProbesQueued {
		t.Fatalf("queued %d, dropped %d: want %d and %d", q, drops, maxProbesQueued, 1000-maxProbesQueued)
	}
	close(block)
}
