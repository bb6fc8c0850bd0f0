package nodecmd

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/cyphonic/cyphonic-go/cmd/internal/cli"
	"github.com/cyphonic/cyphonic-go/cmd/internal/procgov"
)

// defaultNodeProcs is the node's GOMAXPROCS: "auto", the governor
// (procgov), which runs the node on one P while it uses under half a CPU
// and gives it the runtime's default (the CPUs it may use) within a
// quarter second of a load that needs more. A node at a tenth of the
// machine's rate otherwise spends about as much CPU waking and parking
// the Go scheduler's threads as moving packets: with ten pushers in
// test/perf, auto moved ~20 % more in sum at ~20 % less daemon CPU per GB
// (BENCHMARKS.md, "s10-lead: procs"), neutral at one pusher.
//
// A count or "Nx" fixes the Ps instead. More Ps than CPUs ("2x") let a
// woken data-path goroutine run at once while the CPUs are saturated; on
// the quiet machine (session 7) it moved the idle peer's average RTT
// under ten pushers from 5.8–6.3 to 4.9–5.4 ms, not its p99, for 1–3 MiB
// more RSS ("s7-rtt"): an operator's choice for a busy machine.
const defaultNodeProcs = procsAuto

// procsAuto is --gomaxprocs's value for the governor (procgov): one P
// while the node uses under half a CPU, all of them when it needs them.
const procsAuto = "auto"

// parseProcs reads --gomaxprocs: a count of Ps, or Nx for N times the
// runtime's default (cpus); "auto" is 0.
func parseProcs(s string, cpus int) (int, error) {
	if s == procsAuto {
		return 0, nil
	}
	if m, ok := strings.CutSuffix(s, "x"); ok {
		n, err := strconv.Atoi(m)
		if err != nil || n < 1 || n > 16 {
			return 0, fmt.Errorf("%q: want 1x to 16x the CPUs, or a count", s)
		}
		return n * cpus, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 1024 {
		return 0, fmt.Errorf("%q: want auto, a count of 1 to 1024, or Nx for N times the CPUs (%d)", s, cpus)
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

// governor is the process's GOMAXPROCS governor, shared by every node
// the process runs with --gomaxprocs auto (GOMAXPROCS is the process's).
var governor = procgov.NewShared()

// nodeProcs checks --gomaxprocs and returns what applies it as the node
// starts (nil: leave the runtime's) and the data plane's crypto workers
// (0: its default, one per P). What apply returns undoes it when the node
// stops: it releases the governor; a set count stays.
func nodeProcs(o *cli.Options, value string) (apply func(*slog.Logger) (undo func()), workers int, err error) {
	n, err := procs(value, o.Given("gomaxprocs"), os.Getenv, runtimeProcs())
	if errors.Is(err, errProcsEnv) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, o.UsageErr("gomaxprocs", "%v", err)
	}
	if n == 0 {
		// The governor drops to one P when the node idles; the crypto
		// workers stay one per CPU for when it raises them again.
		return func(log *slog.Logger) func() { return governor.Acquire(log) }, runtimeProcs(), nil
	}
	if !o.Given("gomaxprocs") && n == runtimeProcs() {
		// The runtime's own, which follows the container's CPU limit as
		// it changes (a set value would not).
		return nil, 0, nil
	}
	return func(*slog.Logger) func() { runtime.GOMAXPROCS(n); return func() {} }, 0, nil
}
