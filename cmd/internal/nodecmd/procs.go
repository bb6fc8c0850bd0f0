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

// defaultNodeProcs is the node's GOMAXPROCS: the runtime's own default
// (the CPUs it may use). More Ps than CPUs ("2x") let a woken data-path
// goroutine run at once while the CPUs are saturated, instead of waiting
// for a P behind whatever keeps the Ps busy; the kernel then schedules
// the threads, favouring one that just woke. On the shared machine it cut
// the idle peer's socket-buffer wait under ten pushers by ~40 % ("s7-rtt"
// in BENCHMARKS.md), but on the quiet machine (lead, session 7, two pairs
// interleaved) it moved the idle peer's average RTT only from 5.8–6.3 to
// 4.9–5.4 ms, not its p99 (16.5–22.0 against 14.3–17.1 ms), for 1–3 MiB
// more RSS under load (30.9–33.8 against 29.8–30.1 MiB, the goal being 32).
// So it is an operator's choice for a busy machine, not the default.
const defaultNodeProcs = "1x"

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
	if !o.Given("gomaxprocs") && n == runtimeProcs() {
		// The default: leave the runtime's own, which follows the
		// container's CPU limit as it changes (a set value would not).
		return nil, nil
	}
	return func() { runtime.GOMAXPROCS(n) }, nil
}
