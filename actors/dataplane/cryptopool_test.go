package dataplane

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/sequencer"
)

// TestPoolServesPeersFairly: work waits per peer, not in one FIFO. While
// the only worker is busy, a bulk peer queues three batches and then an
// idle peer one; the idle peer's batch is processed once the bulk peer
// has used up its turn (maxBatch packets: two of its batches), not after
// all of them: the bulk flow, drained by the worker's first pull and
// refilled within its turn, does not get a new turn (fairq's deficit
// round robin, RFC 8290). Every batch still reaches its Reply.
func TestPoolServesPeersFairly(t *testing.T) {
	sys := supervise.New("crypto-test", slog.New(slog.DiscardHandler))
	defer sys.Shutdown(context.Background())

	busy, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook := func() { once.Do(func() { close(busy); <-release }) }
	pool, _, err := spawnCrypto(sys.Root(), 1, hook)
	if err != nil {
		t.Fatal(err)
	}
	order := make(chan uint64, 8)
	reply := sys.Root().Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*sequencer.Batch[*batch]); ok {
			for _, e := range m.Entries {
				order <- e.Seq
				e.Item.Release()
			}
		}
	}))

	a, _ := keys(t)
	bpool := newBatchPool(headroom + 1500 + 64)
	bulk, idle := &peerPipe{SeqOut: reply, SealWork: newFlow(8)}, &peerPipe{SeqOut: reply, SealWork: newFlow(8)}
	submit := func(p *peerPipe, seq uint64) {
		b := fill(bpool, maxBatch/2+1, a) // two use up a turn (maxBatch packets)
		b.seq, b.pipe = seq, p
		pool.submit(sys.Root(), b)
	}
	submit(bulk, 0)
	<-busy // the worker holds batch 0; the bulk flow is empty again
	for seq := uint64(1); seq <= 3; seq++ {
		submit(bulk, seq)
	}
	submit(idle, 100)
	close(release)

	want := []uint64{0, 1, 100, 2, 3}
	for i, w := range want {
		select {
		case got := <-order:
			if got != w {
				t.Fatalf("batch %d: got seq %d, want %d (order %v)", i, got, w, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("batch %d (seq %d) never reached its reply", i, w)
		}
	}
	if left := pool.Close(); len(left) != 0 {
		t.Fatalf("Close returned %d batches", len(left))
	}
}

// TestPoolFullFlow: a batch its peer's full queue refuses still reaches
// its sequencer (which expects every slot), with its packets dropped.
func TestPoolFullFlow(t *testing.T) {
	sys := supervise.New("crypto-test", slog.New(slog.DiscardHandler))
	defer sys.Shutdown(context.Background())
	busy, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	pool, _, err := spawnCrypto(sys.Root(), 1, func() { once.Do(func() { close(busy); <-release }) })
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		seq  uint64
		live int
	}
	got := make(chan seen, 8)
	reply := sys.Root().Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*sequencer.Batch[*batch]); ok {
			for _, e := range m.Entries {
				got <- seen{e.Seq, e.Item.Live()}
				e.Item.Release()
			}
		}
	}))
	a, _ := keys(t)
	bpool := newBatchPool(headroom + 1500 + 64)
	pipe := &peerPipe{SeqOut: reply, SealWork: newFlow(1)}
	for seq := range uint64(3) {
		b := fill(bpool, inlineMax+1, a) // big enough for the workers
		b.seq, b.pipe = seq, pipe
		pool.submit(sys.Root(), b)
		if seq == 0 {
			<-busy
		}
	}
	// Batch 1 waits in the flow; batch 2 found it full.
	first := <-got
	if first.seq != 2 || first.live != 0 {
		t.Fatalf("refused batch: %+v, want seq 2 with no live packets", first)
	}
	close(release)
	for _, w := range []uint64{0, 1} {
		if s := <-got; s.seq != w || s.live != inlineMax+1 {
			t.Fatalf("got %+v, want seq %d with %d live packets", s, w, inlineMax+1)
		}
	}
}

// TestPoolSmallBatchesInline: a batch of at most inlineMax packets of a
// peer with nothing else in flight is opened or sealed by the submitter and
// reaches its sequencer while every worker is busy; a larger one, or a
// small one of a peer with other batches in flight (a bulk flow), waits for
// a worker. An idle peer's ping does not wait for a worker's turn.
func TestPoolSmallBatchesInline(t *testing.T) {
	for _, tc := range []struct {
		packets  int
		inflight int // the peer's batches in flight, this one included
		inline   bool
	}{
		{1, 1, true},
		{inlineMax, 1, true},
		{inlineMax + 1, 1, false},
		{maxBatch, 1, false},
		{1, 2, false},
		{1, 0, true}, // untracked (no limit)
	} {
		t.Run(strconv.Itoa(tc.packets)+"/"+strconv.Itoa(tc.inflight), func(t *testing.T) {
			sys := supervise.New("crypto-test", slog.New(slog.DiscardHandler))
			defer sys.Shutdown(context.Background())
			busy, release := make(chan struct{}), make(chan struct{})
			var once, freed sync.Once
			free := func() { freed.Do(func() { close(release) }) }
			defer free() // before Shutdown, which waits for the worker
			pool, _, err := spawnCrypto(sys.Root(), 1, func() { once.Do(func() { close(busy); <-release }) })
			if err != nil {
				t.Fatal(err)
			}
			got := make(chan *batch, 2)
			reply := sys.Root().Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
				if m, ok := ctx.Message().(*sequencer.Batch[*batch]); ok {
					for _, e := range m.Entries {
						got <- e.Item
					}
				}
			}))
			a, _ := keys(t)
			bpool := newBatchPool(headroom + 1500 + 64)
			hog := fill(bpool, maxBatch, a)
			hog.seq, hog.pipe = 0, &peerPipe{SeqOut: reply, SealWork: newFlow(4)}
			pool.submit(sys.Root(), hog)
			<-busy // the only worker holds the hog's batch
			b := fill(bpool, tc.packets, a)
			b.seq, b.pipe = 0, &peerPipe{SeqOut: reply, SealWork: newFlow(4)}
			if tc.inflight > 0 {
				l := supervise.NewLimiter(8)
				for range tc.inflight {
					l.Acquire()
				}
				b.track(l)
			}
			pool.submit(sys.Root(), b)
			if tc.inline {
				select {
				case r := <-got:
					if r != b || r.Live() != tc.packets || r.Pkts[0].Off == headroom {
						t.Fatalf("inline batch: live %d, first packet at %d (not sealed?)", r.Live(), r.Pkts[0].Off)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("a %d-packet batch waited for the busy worker", tc.packets)
				}
			} else {
				select {
				case <-got:
					t.Fatalf("a %d-packet batch reached its sequencer with the worker busy", tc.packets)
				case <-time.After(200 * time.Millisecond): // it must not come at all before release
				}
			}
			free()
			for range map[bool]int{true: 1, false: 2}[tc.inline] {
				select {
				case r := <-got:
					r.Release()
				case <-time.After(10 * time.Second):
					t.Fatal("a batch never reached its sequencer")
				}
			}
		})
	}
}
