package supervise

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cyphonic/cyphonic-go/actors/leaktest"
)

func TestMain(m *testing.M) {
	SmallRegistry() // as the daemons do (TestSystemHeapAtRest)
	leaktest.VerifyTestMain(m)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestSystem(t *testing.T) *System {
	t.Helper()
	sys := New(t.Name(), quietLogger())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sys.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return sys
}

// Messages understood by testActor.
type (
	spawnChild struct {
		kind, name string
		props      *actor.Props
		reply      chan spawnResult
	}
	spawnResult struct {
		pid *actor.PID
		err error
	}
	boom  struct{ why string }
	block struct {
		entered chan struct{}
		gate    chan struct{}
	}
	ping struct{ reply chan struct{} }
)

// testActor spawns children on request, panics on boom, blocks on block, and
// reports each incarnation on started.
func testActor(started chan<- *actor.PID) *actor.Props {
	return actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *actor.Started:
			if started != nil {
				started <- ctx.Self()
			}
		case spawnChild:
			pid, err := Spawn(ctx, m.kind, m.name, m.props)
			m.reply <- spawnResult{pid, err}
		case boom:
			panic(m.why)
		case block:
			close(m.entered)
			<-m.gate
		case ping:
			close(m.reply)
		}
	})
}

func spawnVia(t *testing.T, sys *System, parent *actor.PID, kind, name string, props *actor.Props) *actor.PID {
	t.Helper()
	reply := make(chan spawnResult, 1)
	sys.Root().Send(parent, spawnChild{kind, name, props, reply})
	r := <-reply
	if r.err != nil {
		t.Fatalf("spawn %s: %v", name, r.err)
	}
	return r.pid
}

func supervised(t *testing.T, sys *System, cfg Backoff) *actor.Props {
	t.Helper()
	st, err := sys.NewBackoffStrategy(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return testActor(nil).Configure(WithBackoff(st))
}

func TestTreeRestartsAndStop(t *testing.T) {
	sys := newTestSystem(t)
	fast := Backoff{Initial: time.Millisecond, Max: 10 * time.Millisecond, MaxRetries: 5, Window: time.Minute}

	node, err := sys.Spawn(nil, "node", "node", supervised(t, sys, fast))
	if err != nil {
		t.Fatal(err)
	}
	peers := spawnVia(t, sys, node, "peers", "peers", supervised(t, sys, fast))
	started := make(chan *actor.PID, 8)
	bob := spawnVia(t, sys, peers, "peer", "bob.example.cyphonic", testActor(started))
	if want := "node/peers/bob.example.cyphonic"; bob.Id != want {
		t.Fatalf("child ID = %q, want %q", bob.Id, want)
	}
	<-started
	for i := range 2 {
		sys.Root().Send(bob, boom{why: "handshake timeout " + string(rune('A'+i))})
		<-started // the restarted incarnation
	}

	tree := sys.Registry().Snapshot()
	if tree.Count() != 3 {
		t.Fatalf("tree has %d actors, want 3: %+v", tree.Count(), tree)
	}
	if len(tree.Actors) != 1 || tree.Actors[0].ID != "node" || tree.Actors[0].Kind != "node" {
		t.Fatalf("roots = %+v, want just node", tree.Actors)
	}
	p := tree.Actors[0].Children
	if len(p) != 1 || p[0].ID != "node/peers" || p[0].Parent != "node" || len(p[0].Children) != 1 {
		t.Fatalf("node's children = %+v", p)
	}
	b := p[0].Children[0]
	if b.Kind != "peer" || b.Restarts != 2 || b.LastFailure != "handshake timeout B" || b.State != StateRunning || b.LastFailureAt.IsZero() {
		t.Fatalf("bob = %+v, want kind peer, 2 restarts, last failure B, running", b)
	}
	if sv := b.Supervision; sv == nil || *sv != (Supervision{Strategy: StrategyBackoff, Failures: 2, MaxRetries: 5, Window: time.Minute, Delay: sv.Delay,
		Initial: time.Millisecond, Max: 10 * time.Millisecond, Multiplier: 2}) || sv.Delay <= 0 {
		t.Fatalf("bob's supervision = %+v, want backoff, 2 of 5 failures in 1m", sv)
	}
	if ks := kindStats(sys, "peer"); ks.Restarts != 2 || ks.Live != 1 {
		t.Fatalf("peer kind stats = %+v", ks)
	}

	sys.Root().Stop(bob)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sys.Registry().WaitGone(ctx, bob.Id); err != nil {
		t.Fatal(err)
	}
	tree = sys.Registry().Snapshot()
	if _, ok := tree.Find(bob.Id); ok || tree.Count() != 2 {
		t.Fatalf("stopped actor still in tree: %+v", tree)
	}
	if ks := kindStats(sys, "peer"); ks.Restarts != 2 || ks.Live != 0 {
		t.Fatalf("peer kind stats after stop = %+v (restarts are cumulative)", ks)
	}
}

// A top-level actor under protoactor's default strategy is restarted at
// once; the tree says so rather than nothing.
func TestTreeShowsImmediateRestart(t *testing.T) {
	sys := newTestSystem(t)
	started := make(chan *actor.PID, 4)
	pid, err := sys.Spawn(nil, "resolver", "resolver", testActor(started))
	if err != nil {
		t.Fatal(err)
	}
	<-started
	if n, _ := sys.Registry().Snapshot().Find(pid.Id); n.Supervision == nil || *n.Supervision != defaultSupervision {
		t.Fatalf("supervision %+v before any failure, want protoactor's default %+v", n.Supervision, defaultSupervision)
	}
	sys.Root().Send(pid, boom{why: "port taken"})
	<-started
	n, _ := sys.Registry().Snapshot().Find(pid.Id)
	if n.Supervision == nil || *n.Supervision != defaultSupervision || n.Restarts != 1 {
		t.Fatalf("resolver = %+v (supervision %+v), want 1 immediate restart", n, n.Supervision)
	}
}

// A child of a parent spawned WithBackoff shows that strategy's policy from
// its spawn, before any failure; a child of a parent without it shows
// protoactor's immediate default.
func TestTreeShowsSupervisionFromSpawn(t *testing.T) {
	sys := newTestSystem(t)
	cfg := Backoff{Initial: 50 * time.Millisecond, Max: 8 * time.Second, Multiplier: 3, MaxRetries: 7, Window: time.Hour}
	node, err := sys.Spawn(nil, "node", "node", supervised(t, sys, cfg))
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan *actor.PID, 2)
	bob := spawnVia(t, sys, node, "peer", "bob", testActor(started))
	<-started
	plain := spawnVia(t, sys, bob, "sequencer", "seq", testActor(started))
	<-started

	tree := sys.Registry().Snapshot()
	want := Supervision{Strategy: StrategyBackoff, MaxRetries: 7, Window: time.Hour, Initial: 50 * time.Millisecond, Max: 8 * time.Second, Multiplier: 3}
	if n, _ := tree.Find(bob.Id); n.Supervision == nil || *n.Supervision != want || !n.NextRestartAt.IsZero() {
		t.Errorf("bob before any failure: supervision %+v next restart %v, want %+v and none", n.Supervision, n.NextRestartAt, want)
	}
	if got := want.NextDelay(time.Time{}, time.Now()); got != 50*time.Millisecond {
		t.Errorf("next delay before any failure = %v, want the initial 50ms", got)
	}
	if n, _ := tree.Find(plain.Id); n.Supervision == nil || *n.Supervision != defaultSupervision {
		t.Errorf("child of a parent without WithBackoff: supervision %+v, want %+v", n.Supervision, defaultSupervision)
	}
}

func kindStats(sys *System, kind string) KindStats {
	for _, ks := range sys.Registry().Kinds() {
		if ks.Kind == kind {
			return ks
		}
	}
	return KindStats{}
}

func TestStrategyGrowsThenGivesUp(t *testing.T) {
	sys := newTestSystem(t)
	cfg := Backoff{Initial: time.Millisecond, Max: time.Second, Multiplier: 3, Jitter: 0.1, MaxRetries: 3, Window: time.Hour}
	parent, err := sys.Spawn(nil, "node", "node", supervised(t, sys, cfg))
	if err != nil {
		t.Fatal(err)
	}
	backoffs := make(chan *BackoffEvent, 16)
	sub := sys.Actors().EventStream.Subscribe(func(evt any) {
		if e, ok := evt.(*BackoffEvent); ok {
			backoffs <- e
		}
	})
	defer sys.Actors().EventStream.Unsubscribe(sub)

	// A child that fails on every start.
	crashing := actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*actor.Started); ok {
			panic("path lost")
		}
	})
	child := spawnVia(t, sys, parent, "peer", "carol", crashing)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sys.Registry().WaitGone(ctx, child.Id); err != nil {
		t.Fatal(err)
	}
	close(backoffs)
	var delays []time.Duration
	for e := range backoffs {
		if e.Child.Id != child.Id || e.Failures != len(delays)+1 {
			t.Fatalf("backoff event %+v out of order", e)
		}
		delays = append(delays, e.Delay)
	}
	if len(delays) != cfg.MaxRetries {
		t.Fatalf("got %d restarts, want %d", len(delays), cfg.MaxRetries)
	}
	for i := 1; i < len(delays); i++ {
		if delays[i] <= delays[i-1] {
			t.Fatalf("delays do not grow: %v", delays)
		}
	}

	tree := sys.Registry().Snapshot()
	if len(tree.GaveUp) != 1 {
		t.Fatalf("gave-up list = %+v, want carol", tree.GaveUp)
	}
	g := tree.GaveUp[0]
	if g.ID != child.Id || g.State != StateGaveUp || g.LastFailure != "path lost" || g.Restarts != cfg.MaxRetries {
		t.Fatalf("gave-up node = %+v", g)
	}
	if ks := kindStats(sys, "peer"); ks.GaveUp != 1 || ks.Restarts != uint64(cfg.MaxRetries) {
		t.Fatalf("kind stats = %+v", ks)
	}
}

func TestBackoffDoesNotBlockParent(t *testing.T) {
	sys := newTestSystem(t)
	slow := Backoff{Initial: time.Hour, Max: time.Hour}
	parent, err := sys.Spawn(nil, "node", "node", supervised(t, sys, slow))
	if err != nil {
		t.Fatal(err)
	}
	child := spawnVia(t, sys, parent, "session", "session", testActor(nil))
	scheduled := make(chan struct{})
	sub := sys.Actors().EventStream.Subscribe(func(evt any) {
		if e, ok := evt.(*BackoffEvent); ok && e.Child.Id == child.Id {
			close(scheduled)
		}
	})
	defer sys.Actors().EventStream.Unsubscribe(sub)
	sys.Root().Send(child, boom{why: "cloud lost"})
	<-scheduled

	// The parent still answers while the child waits out an hour of backoff.
	reply := make(chan struct{})
	sys.Root().Send(parent, ping{reply})
	<-reply
	n, ok := sys.Registry().Snapshot().Find(child.Id)
	if !ok || n.State != StateBackoff || n.NextRestartAt.IsZero() || n.Restarts != 0 || n.LastFailure != "cloud lost" {
		t.Fatalf("child = %+v (found %v), want backoff pending", n, ok)
	}
	if sv := n.Supervision; sv == nil || sv.Strategy != StrategyBackoff || sv.Failures != 1 || sv.Delay < 30*time.Minute {
		t.Fatalf("child's supervision = %+v, want backoff after 1 failure, delay about an hour", sv)
	}
	// Shutdown (in Cleanup) must cancel the pending restart and stop the child.
}

func TestMailboxDepth(t *testing.T) {
	sys := newTestSystem(t)
	pid, err := sys.Spawn(nil, "worker", "w", testActor(nil))
	if err != nil {
		t.Fatal(err)
	}
	b := block{entered: make(chan struct{}), gate: make(chan struct{})}
	sys.Root().Send(pid, b)
	<-b.entered
	const queued = 5
	for range queued {
		sys.Root().Send(pid, ping{reply: make(chan struct{})})
	}
	n, _ := sys.Registry().Snapshot().Find("w")
	if n.Mailbox != queued {
		t.Errorf("mailbox depth = %d, want %d", n.Mailbox, queued)
	}
	if ks := kindStats(sys, "worker"); ks.Mailbox != queued || ks.MailboxMax != queued {
		t.Errorf("kind stats = %+v", ks)
	}
	close(b.gate)
}

func TestSpawnErrors(t *testing.T) {
	sys := newTestSystem(t)
	props := testActor(nil)
	if _, err := sys.Spawn(nil, "x", "dup", props); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, kind, actor string
		want              error
	}{
		{"empty name", "peer", "", ErrBadName},
		{"slash in name", "peer", "a/b", ErrBadName},
		{"empty kind", "", "a", ErrBadName},
		{"duplicate", "x", "dup", ErrNameExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sys.Spawn(nil, tt.kind, tt.actor, props)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if n := sys.Registry().Len(); n != 1 {
		t.Fatalf("registry has %d actors after failed spawns, want 1", n)
	}
	// A name taken outside the runtime is reported by protoactor and the
	// registry entry is rolled back.
	if _, err := sys.Root().SpawnNamed(props, "raw"); err != nil {
		t.Fatal(err)
	}
	if _, err := sys.Spawn(nil, "x", "raw", props); !errors.Is(err, ErrNameExists) {
		t.Fatalf("err = %v, want ErrNameExists", err)
	}
	if n := sys.Registry().Len(); n != 1 {
		t.Fatalf("registry has %d actors, want 1", n)
	}
	sys.Root().Stop(actor.NewPID(sys.Actors().Address(), "raw"))
}

func TestSpawnAfterShutdown(t *testing.T) {
	sys := New("gone", quietLogger())
	if err := sys.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := sys.Spawn(nil, "x", "y", testActor(nil)); !errors.Is(err, ErrShutdown) {
		t.Fatalf("err = %v, want ErrShutdown", err)
	}
}

func TestBackoffDelay(t *testing.T) {
	b, err := Backoff{Initial: 10 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: 0.2}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		failures int
		r        float64
		want     time.Duration
	}{
		{1, 0.5, 10 * time.Millisecond},
		{2, 0.5, 20 * time.Millisecond},
		{3, 0.5, 40 * time.Millisecond},
		{1, 0, 8 * time.Millisecond},
		{1, 0.999999, 12 * time.Millisecond},
		{0, 0.5, 10 * time.Millisecond},  // treated as the first failure
		{8, 0.5, time.Second},            // 1.28 s capped
		{8, 0.999999, time.Second},       // jitter never exceeds Max
		{8, 0, 800 * time.Millisecond},   // but may go below it
		{5000, 0.5, time.Second},         // no overflow
		{7, 0.5, 640 * time.Millisecond}, // last step below the cap
		{6, 0.5, 320 * time.Millisecond}, // plain doubling
		{2, 0.999999, 24 * time.Millisecond},
	}
	for _, tt := range tests {
		got := b.Delay(tt.failures, tt.r)
		if d := got - tt.want; d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("Delay(%d, %v) = %v, want %v", tt.failures, tt.r, got, tt.want)
		}
	}
}

func TestBackoffValidation(t *testing.T) {
	tests := []struct {
		name string
		b    Backoff
		ok   bool
	}{
		{"zero takes defaults", Backoff{}, true},
		{"max below initial", Backoff{Initial: time.Second, Max: time.Millisecond}, false},
		{"shrinking", Backoff{Multiplier: 0.5}, false},
		{"jitter 1", Backoff{Jitter: 1}, false},
		{"negative jitter", Backoff{Jitter: -0.1}, false},
		{"negative window", Backoff{Window: -1}, false},
		{"never give up", Backoff{MaxRetries: -1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewBackoffStrategy(tt.b, nil)
			if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrInvalidBackoff)) {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestFailureTextBounded(t *testing.T) {
	long := strings.Repeat("x", 10*maxFailureText)
	if got := failureText(long); len(got) > maxFailureText+len("…") {
		t.Fatalf("failure text %d bytes", len(got))
	}
	if got := failureText(errors.New("e")); got != "e" {
		t.Fatalf("got %q", got)
	}
}

// BenchmarkSend shows what the registry's receiver middleware costs per
// message: compare "plain" (spawned directly) with "registered".
func BenchmarkSend(b *testing.B) {
	for _, registered := range []bool{false, true} {
		name := "plain"
		if registered {
			name = "registered"
		}
		b.Run(name, func(b *testing.B) {
			sys := New("bench", quietLogger())
			defer sys.Shutdown(context.Background())
			done := make(chan struct{})
			n := 0
			props := actor.PropsFromFunc(func(ctx actor.Context) {
				if _, ok := ctx.Message().(int); ok {
					n++
					if n == b.N {
						close(done)
					}
				}
			})
			var pid *actor.PID
			var err error
			if registered {
				pid, err = sys.Spawn(nil, "sink", "sink", props)
			} else {
				pid, err = sys.Root().SpawnNamed(props, "sink")
				defer sys.Root().Stop(pid)
			}
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				sys.Root().Send(pid, i&0xff) // small ints box without allocating
			}
			<-done
		})
	}
}

// lockedBuffer is a log sink safe for the actors' goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSupervisionLogged: every supervision event is our own WARN line
// naming the actor, the peer, the reason, the attempt and the next try;
// protoactor's "[ACTOR] Recovering" at INFO (with Address:"nonhost") is
// gone.
func TestSupervisionLogged(t *testing.T) {
	var logs lockedBuffer
	sys := New(t.Name(), slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	defer sys.Shutdown(context.Background())
	slow := Backoff{Initial: 20 * time.Millisecond, Max: 20 * time.Millisecond, MaxRetries: 5, Window: time.Minute}
	node, err := sys.Spawn(nil, "node", "node", supervised(t, sys, slow))
	if err != nil {
		t.Fatal(err)
	}
	peers := spawnVia(t, sys, node, "peers", "peers", supervised(t, sys, slow))
	started := make(chan *actor.PID, 8)
	bob := spawnVia(t, sys, peers, "peer", "bob.example.cyphonic", testActor(started))
	<-started
	sys.Root().Send(bob, boom{why: "handshake timeout"})
	<-started
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), `msg="actor restarting"`) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	out := logs.String()
	for _, want := range []string{
		`level=WARN msg="actor failed: restarting after backoff"`, `actor=node/peers/bob.example.cyphonic`,
		`reason="handshake timeout"`, `peer=bob.example.cyphonic`, `attempt=1`, `next_try_in=20ms`, `next_try_at=`,
		`level=WARN msg="actor restarting"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "[ACTOR] Recovering") {
		t.Errorf("protoactor's own recovery line is still logged:\n%s", out)
	}
}

// TestRestartNow: a child waiting out a long backoff restarts at once when
// its parent has news for it, and only a pending restart can be taken.
func TestRestartNow(t *testing.T) {
	sys := newTestSystem(t)
	st, err := sys.NewBackoffStrategy(Backoff{Initial: time.Hour, Max: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	parent, err := sys.Spawn(nil, "peers", "peers", testActor(nil).Configure(WithBackoff(st)))
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan *actor.PID, 4)
	child := spawnVia(t, sys, parent, "peer", "bob.example.cyphonic", testActor(started))
	<-started
	if st.RestartNow(child) {
		t.Fatal("RestartNow took a restart from a running child")
	}
	scheduled := make(chan struct{})
	sub := sys.Actors().EventStream.Subscribe(func(evt any) {
		if e, ok := evt.(*BackoffEvent); ok && e.Child.Id == child.Id {
			close(scheduled)
		}
	})
	defer sys.Actors().EventStream.Unsubscribe(sub)
	sys.Root().Send(child, boom{why: "handshake timeout"})
	<-scheduled
	if st.Pending() != 1 {
		t.Fatalf("%d restarts pending, want 1", st.Pending())
	}
	if !st.RestartNow(child) {
		t.Fatal("RestartNow found no pending restart")
	}
	select {
	case <-started: // the new incarnation, without the hour's wait
	case <-time.After(5 * time.Second):
		t.Fatal("child not restarted after RestartNow")
	}
	if st.Pending() != 0 || st.RestartNow(child) {
		t.Fatalf("restart still pending after RestartNow (%d)", st.Pending())
	}
	if n, ok := sys.Registry().Snapshot().Find(child.Id); !ok || n.Restarts != 1 || n.State != StateRunning {
		t.Fatalf("child = %+v (found %v), want running after 1 restart", n, ok)
	}
}

// TestRestartAfterStopStops: a restart issued to a child that has already
// been told to stop (its backoff timer firing, or RestartNow, while it
// waits for its own children to stop) must not bring it back. protoactor
// turns a Restart into a restart whatever the actor's state, so the Stop
// was lost: the child ran on and its stopping parent waited for it
// forever (the data plane's Stop hung after a peer that had failed its
// handshake was closed: peers/bob running under a stopping peers).
func TestRestartAfterStopStops(t *testing.T) {
	sys := newTestSystem(t)
	st, err := sys.NewBackoffStrategy(Backoff{Initial: time.Hour, Max: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	parent, err := sys.Spawn(nil, "peers", "peers", testActor(nil).Configure(WithBackoff(st)))
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan *actor.PID, 4)
	child := spawnVia(t, sys, parent, "peer", "bob.example.cyphonic", testActor(started))
	<-started
	// A grandchild (a peer's sequencer) that takes a while to stop holds
	// the child in "stopping" while the restart comes in.
	entered, gate := make(chan struct{}), make(chan struct{})
	spawnVia(t, sys, child, "sequencer", "sequencer-in", actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*actor.Stopping); ok {
			close(entered)
			<-gate
		}
	}))

	scheduled := make(chan struct{})
	sub := sys.Actors().EventStream.Subscribe(func(evt any) {
		if e, ok := evt.(*BackoffEvent); ok && e.Child.Id == child.Id {
			close(scheduled)
		}
	})
	defer sys.Actors().EventStream.Unsubscribe(sub)
	sys.Root().Send(child, boom{why: "handshake timeout"})
	<-scheduled // the child is suspended, its restart pending

	sys.Root().Stop(child) // the manager closes the peer
	<-entered              // the child is stopping, waiting for its sequencer
	if !st.RestartNow(child) {
		t.Fatal("no pending restart")
	}
	// The Restart is in the child's system queue now, ahead of the
	// sequencer's Terminated that releasing the gate sends.
	close(gate)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sys.Registry().WaitGone(ctx, child.Id); err != nil {
		n, _ := sys.Registry().Snapshot().Find(child.Id)
		t.Fatalf("child told to stop, then restarted: still alive (%+v): %v", n, err)
	}
	select {
	case <-started:
		t.Fatal("a stopped child was started again")
	default:
	}
}

// TestNoChildrenWhileStopping: an actor that is stopping cannot spawn.
// protoactor stops the children an actor has when its Stop comes, then
// waits for them, and meanwhile still runs the actor's user and Terminated
// messages; a child spawned then was never told to stop, and the parent
// never finished stopping (the peer manager replayed a queued Open on a
// closed peer's Terminated while stopping: Dataplane.Stop hung).
func TestNoChildrenWhileStopping(t *testing.T) {
	sys := newTestSystem(t)
	parent, err := sys.Spawn(nil, "peers", "peers", testActor(nil))
	if err != nil {
		t.Fatal(err)
	}
	entered, gate := make(chan struct{}), make(chan struct{})
	spawnVia(t, sys, parent, "peer", "old", actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*actor.Stopping); ok {
			close(entered)
			<-gate
		}
	}))
	sys.Root().Stop(parent)
	<-entered // the parent is stopping, waiting for "old"

	reply := make(chan spawnResult, 1)
	sys.Root().Send(parent, spawnChild{"peer", "new", testActor(nil), reply})
	r := <-reply
	close(gate)
	if !errors.Is(r.err, ErrParentEnding) {
		t.Errorf("spawn under a stopping parent: %v, want ErrParentEnding", r.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sys.Registry().WaitGone(ctx, parent.Id); err != nil {
		t.Fatalf("parent never stopped (%d actors alive): %v", sys.Registry().Len(), err)
	}
	// A restarted actor spawns again once it has started.
	started := make(chan *actor.PID, 4)
	p2, err := sys.Spawn(nil, "peers", "peers2", testActor(started))
	if err != nil {
		t.Fatal(err)
	}
	<-started
	sys.Root().Send(p2, boom{why: "crash"})
	<-started
	spawnVia(t, sys, p2, "peer", "after-restart", testActor(nil))
}
