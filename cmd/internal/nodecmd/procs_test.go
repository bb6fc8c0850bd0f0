package nodecmd

import (
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"runtime"
	"testing"

	"github.com/cyphonic/cyphonic-go/cmd/internal/cli"
)

// TestProcs: --gomaxprocs takes a count or a multiple of the CPUs; its
// default leaves a GOMAXPROCS from the environment alone, a given flag
// does not.
func TestProcs(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "GOMAXPROCS" {
				return v
			}
			return ""
		}
	}
	for _, tc := range []struct {
		value string
		given bool
		env   string
		cpus  int
		want  int
		err   bool
		isEnv bool
	}{
		{value: "auto", cpus: 2, want: 0}, // the governor
		{value: "auto", given: true, env: "3", cpus: 2, want: 0},
		{value: "auto", env: "3", cpus: 2, isEnv: true},
		{value: "Auto", given: true, cpus: 2, err: true},
		{value: "2x", cpus: 2, want: 4},
		{value: "2x", cpus: 1, want: 2},
		{value: "1x", given: true, cpus: 8, want: 8},
		{value: "3", given: true, cpus: 2, want: 3},
		{value: "2x", env: "2", cpus: 2, isEnv: true},          // the default leaves GOMAXPROCS alone
		{value: "6", given: true, env: "2", cpus: 2, want: 6},  // the flag wins
		{value: "1x", given: true, env: "3", cpus: 2, want: 2}, // so does a multiple
		{value: "0", given: true, cpus: 2, err: true},          // no P at all
		{value: "0x", given: true, cpus: 2, err: true},
		{value: "17x", given: true, cpus: 2, err: true},
		{value: "x", given: true, cpus: 2, err: true},
		{value: "-1", given: true, cpus: 2, err: true},
		{value: "", given: true, cpus: 2, err: true},
		{value: "2.5x", given: true, cpus: 2, err: true},
		{value: "100000", given: true, cpus: 2, err: true},
	} {
		got, err := procs(tc.value, tc.given, env(tc.env), tc.cpus)
		switch {
		case tc.isEnv:
			if !errors.Is(err, errProcsEnv) {
				t.Errorf("%q with GOMAXPROCS=%s: %d, %v; want the environment's", tc.value, tc.env, got, err)
			}
		case tc.err:
			if err == nil {
				t.Errorf("%q: %d, want an error", tc.value, got)
			}
		case err != nil || got != tc.want:
			t.Errorf("%q (given %v, env %q, cpus %d) = %d, %v; want %d", tc.value, tc.given, tc.env, tc.cpus, got, err, tc.want)
		}
	}
}

// TestNodeProcsDoesNotCompound: a process that starts several nodes (the
// tests do) sets twice the runtime's own count each time, not twice the
// last node's.
func TestNodeProcsDoesNotCompound(t *testing.T) {
	if os.Getenv("GOMAXPROCS") != "" {
		t.Skip("GOMAXPROCS is set: the default leaves it alone")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	want := 2 * runtimeProcs()
	for range 3 {
		fs := flag.NewFlagSet("node", flag.ContinueOnError)
		o := cli.NewOptions(fs, "node")
		if err := fs.Parse(nil); err != nil {
			t.Fatal(err)
		}
		apply, _, err := nodeProcs(o, "2x")
		if err != nil || apply == nil {
			t.Fatalf("nodeProcs: %v, setter %v", err, apply != nil)
		}
		apply(nil)()
		if got := runtime.GOMAXPROCS(0); got != want {
			t.Fatalf("GOMAXPROCS %d after a node's start, want %d", got, want)
		}
	}
}

// TestNodeProcsAuto: --gomaxprocs auto runs the process's governor while
// the node runs, keeps a crypto worker per CPU for when it raises the Ps,
// and gives the runtime its default back when the node stops.
func TestNodeProcsAuto(t *testing.T) {
	if os.Getenv("GOMAXPROCS") != "" {
		t.Skip("GOMAXPROCS is set: the default leaves it alone")
	}
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	o := cli.NewOptions(fs, "node")
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	apply, workers, err := nodeProcs(o, "auto")
	if err != nil || apply == nil {
		t.Fatalf("nodeProcs: %v, apply %v", err, apply != nil)
	}
	if workers != runtimeProcs() {
		t.Fatalf("%d crypto workers, want one per CPU (%d)", workers, runtimeProcs())
	}
	undo := apply(slog.New(slog.NewTextHandler(io.Discard, nil)))
	undo()
	if got := runtime.GOMAXPROCS(0); got != runtimeProcs() {
		t.Fatalf("GOMAXPROCS %d after the node stopped, want the default %d", got, runtimeProcs())
	}
}
