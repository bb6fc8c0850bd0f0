package sequencer

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cyphonic/cyphonic-go/actors/leaktest"
)

func TestMain(m *testing.M) {
	leaktest.VerifyTestMain(m)
}

// failsafe only turns a hang into a failure; no test asserts on speed.
const failsafe = 2 * time.Minute

// quietSystem is an actor system that keeps its start-up chatter out of
// test output.
func quietSystem() *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
}

func newSystem(t *testing.T) *actor.ActorSystem {
	t.Helper()
	sys := quietSystem()
	t.Cleanup(sys.Shutdown)
	return sys
}

// askStats gets the actor's StatsReply through a throwaway actor, not a
// future (protoactor's Future has a known data race).
func askStats(t *testing.T, sys *actor.ActorSystem, pid *actor.PID) StatsReply {
	t.Helper()
	replies := make(chan StatsReply, 1)
	probe := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if r, ok := ctx.Message().(*StatsReply); ok {
			replies <- *r
		}
	}))
	defer stopAndWait(t, sys, probe)
	sys.Root.RequestWithCustomSender(pid, &StatsRequest{}, probe)
	select {
	case r := <-replies:
		return r
	case <-time.After(failsafe):
		t.Fatal("no stats reply")
		return StatsReply{}
	}
}

// stopAndWait stops pid and returns once it has terminated.
func stopAndWait(t *testing.T, sys *actor.ActorSystem, pid *actor.PID) {
	t.Helper()
	gone := make(chan struct{})
	watcher := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *actor.Started:
			ctx.Watch(pid)
		case *actor.Terminated:
			if m.Who.Equal(pid) {
				close(gone)
				ctx.Stop(ctx.Self())
			}
		}
	}))
	_ = watcher
	sys.Root.Stop(pid)
	select {
	case <-gone:
	case <-time.After(failsafe):
		t.Fatal("actor did not terminate")
	}
}

// TestActorRestoresOrder: 100,000 items (some dropped upstream) sent in
// shuffled batches from several goroutines come out complete and in order.
// Senders respect the window the way an upstream with bounded in-flight
// work does: an item is sent only once it is within Window of the head.
func TestActorRestoresOrder(t *testing.T) {
	const (
		total   = 100_000
		window  = 1024
		block   = 512 // shuffled together: at most this far out of order
		senders = 4
	)
	sys := newSystem(t)

	var (
		mu       sync.Mutex
		progress = sync.NewCond(&mu)
		passed   uint64 // items plus drops the sequencer has passed, as seen by the sink
		got      []uint64
		bad      error
		done     = make(chan struct{})
	)
	dropped := func(seq uint64) bool { return seq%97 == 13 }
	var wantReleased uint64
	for seq := uint64(0); seq < total; seq++ {
		if !dropped(seq) {
			wantReleased++
		}
	}
	sink := ToFunc(func(b *Batch[uint64]) {
		mu.Lock()
		defer mu.Unlock()
		if len(b.Entries) == 0 || len(b.Entries) > MaxBatch {
			bad = errors.New("output batch size out of range")
		}
		for _, e := range b.Entries {
			if e.Dropped || e.Item != e.Seq*3 {
				bad = errors.New("bad entry in output")
			}
			got = append(got, e.Seq)
			passed = e.Seq + 1
		}
		progress.Broadcast()
		if uint64(len(got)) == wantReleased {
			close(done)
		}
	})
	props, err := Props(Config{Window: window}, sink)
	if err != nil {
		t.Fatal(err)
	}
	pid := sys.Root.Spawn(props)

	rng := rand.New(rand.NewPCG(7, 7))
	order := make([]uint64, total)
	for i := range order {
		order[i] = uint64(i)
	}
	for lo := 0; lo < total; lo += block {
		hi := min(total, lo+block)
		rng.Shuffle(hi-lo, func(i, j int) { order[lo+i], order[lo+j] = order[lo+j], order[lo+i] })
	}
	var list []*Batch[uint64]
	for lo := 0; lo < total; {
		hi := min(total, lo+1+rng.IntN(MaxBatch))
		b := &Batch[uint64]{}
		for _, seq := range order[lo:hi] {
			b.Entries = append(b.Entries, Entry[uint64]{Seq: seq, Item: seq * 3, Dropped: dropped(seq)})
		}
		list = append(list, b)
		lo = hi
	}
	batches := make(chan *Batch[uint64], len(list))
	for _, b := range list {
		batches <- b
	}
	close(batches)

	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for b := range batches {
				var highest uint64
				for _, e := range b.Entries {
					highest = max(highest, e.Seq)
				}
				// The head is at least the sink's progress (drops right
				// after the last released item may have passed already).
				mu.Lock()
				for highest >= passed+window {
					progress.Wait()
				}
				mu.Unlock()
				sys.Root.Send(pid, b)
			}
		})
	}
	select {
	case <-done:
	case <-time.After(failsafe):
		t.Fatal("not all items arrived")
	}
	wg.Wait()

	mu.Lock()
	if bad != nil {
		t.Fatal(bad)
	}
	want := uint64(0)
	for _, seq := range got {
		for dropped(want) {
			want++
		}
		if seq != want {
			t.Fatalf("got seq %d, want %d", seq, want)
		}
		want++
	}
	mu.Unlock()

	st := askStats(t, sys, pid)
	// The input was shuffled, so the actor must have held items back.
	if st.Stats.Held == 0 {
		t.Fatalf("stats %+v: nothing held out of order from a shuffled input", st)
	}
	want1 := Stats{Released: wantReleased, Dropped: total - wantReleased, Held: st.Stats.Held}
	if st.Stats != want1 || st.Next != total || st.Pending != 0 {
		t.Fatalf("stats %+v, want %+v next %d pending 0", st, want1, total)
	}
	stopAndWait(t, sys, pid)
}

func TestActorSkipsGapAfterDeadline(t *testing.T) {
	sys := newSystem(t)
	out := make(chan *Batch[string], 4)
	props, err := Props(Config{Window: 16, GapTimeout: 20 * time.Millisecond}, ToFunc(func(b *Batch[string]) { out <- &Batch[string]{Entries: slices.Clone(b.Entries)} }))
	if err != nil {
		t.Fatal(err)
	}
	pid := sys.Root.Spawn(props)
	defer stopAndWait(t, sys, pid)

	// 0 never arrives; 1-3 wait behind it until the gap deadline passes
	// and the actor's own timer releases them.
	sys.Root.Send(pid, &Batch[string]{Entries: []Entry[string]{
		{Seq: 3, Item: "c"}, {Seq: 1, Item: "a"}, {Seq: 2, Item: "b"},
	}})
	select {
	case b := <-out:
		if len(b.Entries) != 3 || b.Entries[0].Item != "a" || b.Entries[1].Item != "b" || b.Entries[2].Item != "c" {
			t.Fatalf("released %+v, want a b c", b.Entries)
		}
	case <-time.After(failsafe):
		t.Fatal("gap never skipped")
	}
	// The lost packet turning up late is refused, not forwarded.
	sys.Root.Send(pid, &Batch[string]{Entries: []Entry[string]{{Seq: 0, Item: "late"}}})
	st := askStats(t, sys, pid)
	want := Stats{Released: 3, Skipped: 1, TooOld: 1, Held: 2}
	if st.Stats != want || st.Next != 4 {
		t.Fatalf("stats %+v, want %+v next 4", st, want)
	}
	select {
	case b := <-out:
		t.Fatalf("unexpected output %+v", b.Entries)
	default:
	}
}

func TestActorSplitsOutputBatches(t *testing.T) {
	sys := newSystem(t)
	out := make(chan *Batch[int], 8)
	props, _ := Props(Config{Window: 256}, ToFunc(func(b *Batch[int]) { out <- &Batch[int]{Entries: slices.Clone(b.Entries)} }))
	pid := sys.Root.Spawn(props)
	defer stopAndWait(t, sys, pid)

	in := &Batch[int]{}
	for i := 199; i >= 0; i-- {
		in.Entries = append(in.Entries, Entry[int]{Seq: uint64(i), Item: i})
	}
	sys.Root.Send(pid, in)
	next := 0
	for _, size := range []int{64, 64, 64, 8} {
		var b *Batch[int]
		select {
		case b = <-out:
		case <-time.After(failsafe):
			t.Fatal("output missing")
		}
		if len(b.Entries) != size {
			t.Fatalf("batch of %d, want %d", len(b.Entries), size)
		}
		for _, e := range b.Entries {
			if e.Item != next {
				t.Fatalf("item %d, want %d", e.Item, next)
			}
			next++
		}
	}
}

// TestActorToPID: released batches reach another actor by PID.
func TestActorToPID(t *testing.T) {
	sys := newSystem(t)
	out := make(chan *Batch[int], 1)
	target := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if b, ok := ctx.Message().(*Batch[int]); ok {
			out <- b
		}
	}))
	defer stopAndWait(t, sys, target)
	props, _ := Props(Config{Window: 4}, ToPID[int](target))
	pid := sys.Root.Spawn(props)
	defer stopAndWait(t, sys, pid)

	sys.Root.Send(pid, &Batch[int]{Entries: []Entry[int]{{Seq: 1, Item: 1}, {Seq: 0, Dropped: true}}})
	select {
	case b := <-out:
		if len(b.Entries) != 1 || b.Entries[0].Seq != 1 {
			t.Fatalf("got %+v, want seq 1 only", b.Entries)
		}
	case <-time.After(failsafe):
		t.Fatal("nothing delivered")
	}
}

// TestActorReturnsRefused: an item that comes after its gap was given up,
// or twice, is handed to reject rather than forgotten (it may hold a pooled
// buffer or an in-flight slot), and released items never are.
func TestActorReturnsRefused(t *testing.T) {
	sys := newSystem(t)
	out := make(chan uint64, 8)
	rejected := make(chan string, 8)
	props, err := PropsReturning(Config{Window: 16, GapTimeout: 20 * time.Millisecond},
		ToFunc(func(b *Batch[string]) {
			for _, e := range b.Entries {
				out <- e.Seq
			}
		}), func(item string) { rejected <- item })
	if err != nil {
		t.Fatal(err)
	}
	pid := sys.Root.Spawn(props)
	defer stopAndWait(t, sys, pid)
	sys.Root.Send(pid, &Batch[string]{Entries: []Entry[string]{{Seq: 1, Item: "b"}}})
	select {
	case seq := <-out:
		if seq != 1 {
			t.Fatalf("released %d, want 1 after the gap deadline", seq)
		}
	case <-time.After(failsafe):
		t.Fatal("gap never skipped")
	}
	sys.Root.Send(pid, &Batch[string]{Entries: []Entry[string]{{Seq: 0, Item: "late"}, {Seq: 1, Item: "again"}}})
	st := askStats(t, sys, pid) // the actor has handled both by now
	if st.Stats.TooOld != 2 {
		t.Fatalf("stats %+v, want 2 too old", st)
	}
	var got []string
	for range 2 {
		select {
		case item := <-rejected:
			got = append(got, item)
		case <-time.After(failsafe):
			t.Fatalf("rejected %v, want late and again", got)
		}
	}
	if got[0] != "late" || got[1] != "again" || len(rejected) != 0 {
		t.Fatalf("rejected %v, want [late again]", got)
	}
	if _, err := PropsReturning(Config{Window: 16}, ToFunc(func(*Batch[string]) {}), nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("nil reject: err %v", err)
	}
}

// TestActorStopDisarmsTimer: a pending gap deadline does not outlive the
// actor.
func TestActorStopDisarmsTimer(t *testing.T) {
	sys := newSystem(t)
	cfg := Config{Window: 8, GapTimeout: time.Hour}
	made := make(chan *sequencer[int], 1)
	out := ToFunc(func(*Batch[int]) {})
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		s := newSequencer(cfg, out, nil)
		made <- s
		return s
	}))
	sys.Root.Send(pid, &Batch[int]{Entries: []Entry[int]{{Seq: 5, Item: 5}}})
	if st := askStats(t, sys, pid); st.Pending != 1 {
		t.Fatalf("pending %d, want 1", st.Pending)
	}
	stopAndWait(t, sys, pid)
	s := <-made
	if s.timer == nil {
		t.Fatal("no gap timer was armed")
	}
	if s.timer.Stop() {
		t.Fatal("gap timer still armed after stop")
	}
}

func TestPropsRejectsBadConfig(t *testing.T) {
	out := ToFunc(func(*Batch[int]) {})
	if _, err := Props(Config{Window: 3}, out); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("window 3: err %v", err)
	}
	if _, err := Props[int](Config{Window: 4}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("nil output: err %v", err)
	}
}
