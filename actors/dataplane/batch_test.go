package dataplane

import (
	"testing"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
)

func TestBatchMoveAndRelease(t *testing.T) {
	p := newBatchPool(128)
	a, b := p.Get(), p.Get()
	bufs, sizes, _ := a.ReadSlices(headroom)
	copy(bufs[0], "hello")
	sizes[0], sizes[1] = 5, 0
	a.Filled(2, headroom)
	if a.Pkts[1].Drop != Truncated {
		t.Fatalf("empty read not marked truncated: %v", a.Pkts[1].Drop)
	}
	if !b.Move(a, 0) || string(b.Pkts[0].Bytes()) != "hello" || b.N != 1 {
		t.Fatalf("move: %q n=%d", b.Pkts[0].Bytes(), b.N)
	}
	if len(a.Pkts[0].Buf) != 128 {
		t.Fatal("source lost its buffer")
	}
	var st peerStats
	b.stats = &st
	b.DropAll(Auth, nil)
	if st.Drops.Get(Auth) != 1 || b.Live() != 0 || len(b.Payloads()) != 0 {
		t.Fatalf("DropAll: %v live %d", st.Drops.Snapshot(), b.Live())
	}
	n := supervise.NewLimiter(1)
	n.Acquire()
	b.track(n)
	b.Release()
	if n.Len() != 0 {
		t.Fatalf("Release did not give the in-flight slot back: %d", n.Len())
	}
	a.Release()
}
