package procgov

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestDeciderNext: the Ps after each of a run of samples, from the
// runtime's default of 4.
func TestDeciderNext(t *testing.T) {
	idle := sample{used: 0.05, waits: 30}
	busy1 := sample{used: 0.9, waits: 100, long: 5}     // fills one P
	half := sample{used: 0.6, waits: 100}               // over Lower, under Raise at 1 P
	queued := sample{used: 0.6, waits: 100, long: 40}   // one P, starved by the machine: goroutines wait for it
	fewQueued := sample{used: 0.6, waits: 10, long: 10} // too few waits to judge
	light2 := sample{used: 0.3, waits: 100, long: 30}   // under Lower: queued waits do not hold Ps up
	for _, tc := range []struct {
		name    string
		start   int
		samples []sample
		want    []int
	}{
		{"idle drops to one P after LowerAfter samples", 4, rep(idle, 9), []int{4, 4, 4, 4, 4, 4, 4, 1, 1}},
		{"a busy sample resets the count", 4, append(append(rep(idle, 7), half), rep(idle, 8)...),
			[]int{4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 1}},
		{"one P filled raises at once", 1, []sample{idle, busy1, idle}, []int{1, 4, 4}},
		{"half a CPU on one P stays", 1, rep(half, 5), []int{1, 1, 1, 1, 1}},
		{"queued for the one P raises", 1, []sample{half, queued}, []int{1, 4}},
		{"too few waits do not raise", 1, rep(fewQueued, 3), []int{1, 1, 1}},
		{"light load lowers despite queued waits", 4, rep(light2, 8), []int{4, 4, 4, 4, 4, 4, 4, 1}},
		{"at the default nothing raises", 4, []sample{busy1, queued}, []int{4, 4}},
		{"a raise right after a lowering doubles the next wait", 4, rep(light2, 8+1+16),
			append(append(append(rep4(7), 1, 4), rep4(15)...), 1)},
		{"a lowering that holds forgets the flapping", 4,
			append(append(append(append(rep(light2, 9), rep(idle, 16)...), rep(idle, 70)...), busy1), rep(idle, 8)...),
			append(append(append(append(append(rep4(7), 1, 4), rep4(15)...), rep1(71)...), 4), append(rep4(7), 1)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := decider{Policy: DefaultPolicy}
			procs := tc.start
			for i, s := range tc.samples {
				procs = d.next(procs, 4, s)
				if procs != tc.want[i] {
					t.Fatalf("sample %d (%+v): %d Ps, want %d (all: %v)", i, s, procs, tc.want[i], tc.want)
				}
			}
		})
	}
}

func rep4(n int) []int { return repInt(4, n) }
func rep1(n int) []int { return repInt(1, n) }

func repInt(v, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func rep(s sample, n int) []sample {
	out := make([]sample, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// fakeRuntime is a process whose CPU use is set by the test: CPU time
// accrues at load CPUs per second of wall time.
type fakeRuntime struct {
	mu       sync.Mutex
	load     float64
	cpu      time.Duration
	at       time.Time
	procs    int
	def      int
	setCalls atomic.Int32
}

func newFakeRuntime(def int) *fakeRuntime {
	return &fakeRuntime{procs: def, def: def, at: time.Now()}
}

func (f *fakeRuntime) setLoad(l float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advance()
	f.load = l
}

func (f *fakeRuntime) advance() {
	now := time.Now()
	f.cpu += time.Duration(f.load * float64(now.Sub(f.at)))
	f.at = now
}

func (f *fakeRuntime) current() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.procs
}

func (f *fakeRuntime) hooks() runtimeHooks {
	return runtimeHooks{
		cpuTime: func() time.Duration {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.advance()
			return f.cpu
		},
		waits: func(time.Duration) (uint64, uint64) { return 0, 0 },
		procs: f.current,
		setProcs: func(n int) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.procs = n
			f.setCalls.Add(1)
		},
		setDefault: func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.procs = f.def
			f.setCalls.Add(1)
		},
	}
}

// waitProcs waits (bounded) for the fake runtime to reach want Ps.
func waitProcs(t *testing.T, f *fakeRuntime, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f.current() != want {
		if time.Now().After(deadline) {
			t.Fatalf("GOMAXPROCS %d, want %d", f.current(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRunFollowsLoad: the governor drops an idle process to one P, gives
// a loaded one its default back, and restores the default when it stops.
func TestRunFollowsLoad(t *testing.T) {
	f := newFakeRuntime(4)
	p := DefaultPolicy
	p.Interval = 2 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); run(ctx, p, f.hooks(), quiet) }()

	waitProcs(t, f, 1) // idle from the start
	f.setLoad(2)
	waitProcs(t, f, 4)
	f.setLoad(0)
	waitProcs(t, f, 1)
	cancel()
	<-done
	if got := f.current(); got != 4 {
		t.Fatalf("GOMAXPROCS %d after the governor stopped, want the default 4", got)
	}
}

// TestRunOneCPU: with a default of one P there is nothing to govern.
func TestRunOneCPU(t *testing.T) {
	f := newFakeRuntime(1)
	p := DefaultPolicy
	p.Interval = time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	run(ctx, p, f.hooks(), quiet)
	if n := f.setCalls.Load(); n != 0 {
		t.Fatalf("%d GOMAXPROCS changes with one CPU", n)
	}
}

// TestSharedOneGovernor: holders share one governor; it stops, and the
// default comes back, only when the last releases it (goleak checks the
// goroutine is gone).
func TestSharedOneGovernor(t *testing.T) {
	f := newFakeRuntime(4)
	p := DefaultPolicy
	p.Interval = 2 * time.Millisecond
	s := &Shared{policy: p, rt: f.hooks()}
	r1 := s.Acquire(quiet)
	r2 := s.Acquire(quiet)
	waitProcs(t, f, 1)
	r1()
	r1() // a second release of the same hold is a no-op
	time.Sleep(20 * time.Millisecond)
	if got := f.current(); got != 1 {
		t.Fatalf("GOMAXPROCS %d with a holder left, want the governor's 1", got)
	}
	r2()
	if got := f.current(); got != 4 {
		t.Fatalf("GOMAXPROCS %d after the last release, want the default 4", got)
	}
	// Held again, it starts again.
	r3 := s.Acquire(quiet)
	waitProcs(t, f, 1)
	r3()
}

// TestSharedRealRuntime runs the governor on this process's runtime: idle,
// it drops to one P; with goroutines that want more CPU than one P gives,
// it raises back to the default; released, the default stays.
func TestSharedRealRuntime(t *testing.T) {
	def := runtime.GOMAXPROCS(0)
	if def < 2 {
		t.Skipf("GOMAXPROCS is %d: one P is all there is to govern", def)
	}
	defer runtime.SetDefaultGOMAXPROCS()
	p := DefaultPolicy
	p.Interval = 10 * time.Millisecond
	p.LowerAfter = 3
	s := &Shared{policy: p, rt: realRuntime}
	release := s.Acquire(quiet)
	defer release()
	waitReal := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for runtime.GOMAXPROCS(0) != want {
			if time.Now().After(deadline) {
				t.Fatalf("GOMAXPROCS %d, want %d", runtime.GOMAXPROCS(0), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitReal(1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for t0 := time.Now(); time.Since(t0) < time.Millisecond; {
				}
				runtime.Gosched()
			}
		})
	}
	waitReal(def)
	close(stop)
	wg.Wait()
	release()
	if got := runtime.GOMAXPROCS(0); got != def {
		t.Fatalf("GOMAXPROCS %d after release, want the default %d", got, def)
	}
}
