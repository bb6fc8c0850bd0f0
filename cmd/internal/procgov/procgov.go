// Package procgov sizes a daemon's GOMAXPROCS to its load: one P while the
// process uses less than half a CPU, the runtime's default as soon as it
// uses most of the Ps it has.
//
// Why: a lightly loaded node (a pusher at a tenth of the machine's rate, a
// node that mostly idles) pays for every I/O event with the Go scheduler's
// wake-ups: the goroutine a packet readies finds an idle P, so the runtime
// wakes a second thread to spin for it (wakep, startm, futex), and that
// thread spins in findRunnable before it parks again. Last measured, that
// was ~45 % of such a node's CPU (BENCHMARKS.md, "s9-push") and why its CPU
// per GB doubled from one pusher to ten. With one P the readied goroutine
// waits in the P's run queue for the goroutine that readied it to block,
// and no thread is woken. A node that needs the cores gets them back
// within one sample.
//
// GOMAXPROCS is the process's, so one governor runs per process however
// many nodes it holds (Shared).
package procgov

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/metrics"
	"sync"
	"syscall"
	"time"
)

// Policy is when the governor changes the Ps. Its zero value is not
// useful: use DefaultPolicy.
type Policy struct {
	// Interval is how often the process's CPU time is sampled.
	Interval time.Duration
	// Raise is the share of its Ps' time the process used over one
	// sample at or above which it gets all of them back.
	Raise float64
	// Queued is the share of the runtime's sampled scheduling waits
	// (goroutines runnable but not running) of QueuedWait or longer, at or
	// above which a process with fewer Ps than the default gets them all:
	// on a machine whose CPUs are all busy a process on one P cannot show
	// its need as CPU time, only as goroutines queued for that P.
	Queued     float64
	QueuedWait time.Duration
	// MinWaits is the fewest sampled waits in a sample for Queued to count.
	MinWaits uint64
	// Lower is the CPUs used, per sample, under which the process drops
	// to one P once it has stayed under for LowerAfter samples in a row.
	Lower      float64
	LowerAfter int
}

// DefaultPolicy raises within a quarter second of a load that fills one
// P, and lowers after two seconds under half a CPU, so a flow that
// starts on an idle node is throttled for at most one sample and a load
// that flickers around the threshold does not flap.
var DefaultPolicy = Policy{
	Interval: 250 * time.Millisecond, Raise: 0.8,
	Queued: 0.2, QueuedWait: 100 * time.Microsecond, MinWaits: 20,
	Lower: 0.5, LowerAfter: 8,
}

// sample is what the governor read over one interval.
type sample struct {
	used        float64 // CPUs: the process's CPU time over wall time
	waits, long uint64  // sampled scheduling waits, and those of QueuedWait or more
}

// decider holds the policy's state between samples; next is pure.
//
// A load that one P cannot quite carry would flap: lowered after
// LowerAfter quiet samples, raised by the next. So a raise soon after a
// lowering doubles the quiet samples the next lowering needs (up to
// maxLowerAfter), and a lowering that holds brings them back down.
type decider struct {
	Policy
	quiet      int // samples in a row under Lower
	lowerAfter int // quiet samples the next lowering needs (0: LowerAfter)
	sinceLower int // samples since the last lowering (0: none yet)
}

// maxLowerAfter caps the flap damping: 256 samples, a minute at the
// default interval.
const maxLowerAfter = 256

// next is the Ps to run with after sample s taken with procs Ps, max
// being the runtime's default.
func (d *decider) next(procs, max int, s sample) int {
	if d.lowerAfter == 0 {
		d.lowerAfter = d.LowerAfter
	}
	if d.sinceLower > 0 {
		d.sinceLower++
	}
	queued := s.waits >= d.MinWaits && float64(s.long) >= d.Queued*float64(s.waits)
	switch {
	case procs < max && (s.used >= d.Raise*float64(procs) || queued):
		d.quiet = 0
		if d.sinceLower > 0 && d.sinceLower <= 4*d.lowerAfter {
			d.lowerAfter = min(2*d.lowerAfter, maxLowerAfter)
		}
		d.sinceLower = 0
		return max
	case procs > 1 && s.used < d.Lower:
		d.quiet++
		if d.quiet >= d.lowerAfter {
			d.quiet, d.sinceLower = 0, 1
			return 1
		}
	default:
		d.quiet = 0
	}
	if procs == 1 && d.sinceLower > 4*d.lowerAfter {
		d.lowerAfter = d.LowerAfter // the lowering held: forget the flapping
	}
	return procs
}

// runtimeHooks is what a governor reads and sets; tests replace it.
type runtimeHooks struct {
	cpuTime    func() time.Duration                          // the process's user + system time
	waits      func(longer time.Duration) (all, long uint64) // scheduling waits so far
	procs      func() int                                    // GOMAXPROCS now
	setProcs   func(int)
	setDefault func() // back to the runtime's default, which follows the CPU limit
}

var realRuntime = runtimeHooks{
	cpuTime: processCPU,
	waits:   schedWaits,
	procs:   func() int { return runtime.GOMAXPROCS(0) },
	setProcs: func(n int) {
		runtime.GOMAXPROCS(n)
	},
	setDefault: runtime.SetDefaultGOMAXPROCS,
}

// processCPU is the process's user and system time, all threads.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// schedWaits counts the runtime's sampled scheduling latencies so far
// (runtime/metrics /sched/latencies:seconds), all and those of at least
// longer.
func schedWaits(longer time.Duration) (all, long uint64) {
	s := [1]metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s[:])
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return 0, 0
	}
	h := s[0].Value.Float64Histogram()
	for i, c := range h.Counts {
		all += c
		if h.Buckets[i] >= longer.Seconds() {
			long += c
		}
	}
	return all, long
}

// run samples until ctx ends, then gives the runtime its default back.
// max is the runtime's default when it started; each raise re-reads it
// (the default follows the container's CPU limit).
func run(ctx context.Context, p Policy, rt runtimeHooks, log *slog.Logger) {
	d := decider{Policy: p}
	max := rt.procs()
	defer func() {
		if rt.procs() != max {
			rt.setDefault()
		}
	}()
	if max <= 1 {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	last, lastAt := rt.cpuTime(), time.Now()
	lastAll, lastLong := rt.waits(p.QueuedWait)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cpu := rt.cpuTime()
			wall := now.Sub(lastAt)
			if wall <= 0 {
				continue
			}
			all, long := rt.waits(p.QueuedWait)
			smp := sample{used: float64(cpu-last) / float64(wall), waits: all - lastAll, long: long - lastLong}
			last, lastAt, lastAll, lastLong = cpu, now, all, long
			procs := rt.procs()
			n := d.next(procs, max, smp)
			if n == procs {
				continue
			}
			if n == max {
				rt.setDefault()
				max = rt.procs()
			} else {
				rt.setProcs(n)
			}
			log.Debug("gomaxprocs", "from", procs, "to", rt.procs(), "cpus_used", smp.used, "waits", smp.waits, "long_waits", smp.long)
		}
	}
}

// Shared runs one governor for the whole process while anyone holds it.
// GOMAXPROCS is process-wide, and a test process runs many nodes: two
// governors would each undo the other's setting.
type Shared struct {
	mu     sync.Mutex
	held   int
	cancel context.CancelFunc
	done   chan struct{}
	policy Policy
	rt     runtimeHooks
}

// NewShared returns a governor with DefaultPolicy on the real runtime.
func NewShared() *Shared { return &Shared{policy: DefaultPolicy, rt: realRuntime} }

// Acquire starts the governor if no one holds it yet. release stops it
// once the last holder has released it, restores the runtime's default
// GOMAXPROCS and returns when its goroutine has ended.
func (s *Shared) Acquire(log *slog.Logger) (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held++
	if s.held == 1 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		s.cancel, s.done = cancel, done
		go func() {
			defer close(done)
			run(ctx, s.policy, s.rt, log)
		}()
	}
	var once sync.Once
	return func() { once.Do(s.release) }
}

func (s *Shared) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held--
	if s.held > 0 {
		return
	}
	s.cancel()
	<-s.done
	s.cancel, s.done = nil, nil
}
