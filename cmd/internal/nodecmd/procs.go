package nodecmd

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/cyphonic/cyphonic-go/cmd/internal/cli"
)

// defaultNodeProcs is the node's GOMAXPROCS: twice the runtime's own
// default (the CPUs it may use). The data path's socket and TUN readers and
// writers are goroutines that a packet wakes; while the CPUs are saturated
// (a node forwarding at its limit beside the applications that feed it),
// a woken goroutine with as many Ps as CPUs waits for a P, behind whatever
// keeps the Ps busy, for up to the runtime's 10 ms slice. With more Ps than
// CPUs the woken goroutine has a P and its thread is the kernel's to
// schedule, which favours a thread that just woke over one that has run
// its share. Under test/perf's ten pushers on two shared cores it cut the
// idle peer's wait in the responder's socket buffer by ~40 % and the
// pushing peer's ping from ~11 to ~7 ms, for no throughput or CPU per byte
// measured (BENCHMARKS.md, "s7-rtt").
const defaultNodeProcs = "2x"

// parseProcs reads --gomaxprocs: a count of Ps, or Nx for N times the
// runtime's default (cpus).
func parseProcs(s string, cpus int) (int, error) {
	if m, ok := strings.CutSuffix(s, "x"); ok {
		n, err := strconv.Atoi(m)
		if err != nil || n < 1 || n > 16 {
			return 0, fmt.Errorf("%q: want 1x to 16x the CPUs, or a count", s)
		}
		return n * cpus, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 1024 {
		return 0, fmt.Errorf("%q: want a count of 1 to 1024, or Nx for N times the CPUs (%d)", s, cpus)
	}
	return n, nil
}

// errProcsEnv says GOMAXPROCS, not the flag's default, sets the count.
var errProcsEnv = errors.New("GOMAXPROCS is set")

// procs returns the GOMAXPROCS to set from the flag's value: given says
// the operator gave it; otherwise GOMAXPROCS in the environment, which the
// runtime has applied already, wins over the default.
func procs(value string, given bool, getenv func(string) string, cpus int) (int, error) {
	if !given && getenv("GOMAXPROCS") != "" {
		return 0, errProcsEnv
	}
	return parseProcs(value, cpus)
}

// runtimeProcs is the runtime's own GOMAXPROCS, read before the first node
// started in this process set it: Nx multiplies it, never the last node's
// setting (a test process runs many nodes).
var runtimeProcs = sync.OnceValue(func() int { return runtime.GOMAXPROCS(0) })

// nodeProcs checks --gomaxprocs and returns the function that sets it
// (see procs; nil: leave the runtime's).
func nodeProcs(o *cli.Options, value string) (func(), error) {
	n, err := procs(value, o.Given("gomaxprocs"), os.Getenv, runtimeProcs())
	if errors.Is(err, errProcsEnv) {
		return nil, nil
	}
	if err != nil {
		return nil, o.UsageErr("gomaxprocs", "%v", err)
	}
	return func() { runtime.GOMAXPROCS(n) }, nil
}
