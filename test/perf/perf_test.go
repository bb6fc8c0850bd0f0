package perf

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/test/testbed"
)

// reproduce is the command the report shows: the full run, writing the
// section of BENCHMARKS.md at the module root.
const reproduce = "sudo CYPHONIC_PERF=1 CYPHONIC_PERF_WRITE=BENCHMARKS.md go test ./test/perf -run TestPerf -v -timeout 30m"

// TestPerf is the side-by-side measurement. It runs only with
// CYPHONIC_PERF=1 (10-second loads) or CYPHONIC_PERF=smoke (2-second
// loads), as root. CYPHONIC_PERF_ONLY=wireguard-go, =nebula or =cyphonic runs
// one system; CYPHONIC_PERF_BIN measures a prebuilt cyphonic binary; CYPHONIC_PERF_PROFILE=dir saves CPU profiles of
// the responder and the pusher during the 1-pusher load (cyphonic only: its
// pprof endpoint). It fails when a system it was asked to measure cannot
// be measured; it never fails because a system is slow.
func TestPerf(t *testing.T) {
	cfg := DefaultConfig()
	switch mode := os.Getenv("CYPHONIC_PERF"); mode {
	case "":
		t.Skip("the side-by-side measurement takes minutes: run as root with CYPHONIC_PERF=1 (or =smoke for 2-second loads); see the package doc")
	case "smoke":
		cfg.Duration = 2 * time.Second
	case "1":
	default:
		t.Fatalf("CYPHONIC_PERF=%q: want 1 or smoke", mode)
	}
	cfg.ProfileDir = os.Getenv("CYPHONIC_PERF_PROFILE")
	cfg.Rate = os.Getenv("CYPHONIC_PERF_RATE")
	if s := os.Getenv("CYPHONIC_PERF_PEERS"); s != "" {
		// A subset of the loads (e.g. "10"), for A/B runs of one load.
		cfg.Peers = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				t.Fatalf("CYPHONIC_PERF_PEERS=%q: %v", s, err)
			}
			cfg.Peers = append(cfg.Peers, n)
		}
	}
	testbed.Require(t)
	if err := CheckTools(); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	work := t.TempDir()
	rep := Report{Command: reproduce, Machine: ThisMachine(), Tools: ToolVersions(ctx), Duration: cfg.Duration, Ping: cfg.PingInterval}
	pushers := slices.Max(cfg.Peers)
	if root, err := ModuleRoot(); err == nil {
		// Which tree the cyphonic binary was built from.
		if out, err := command(ctx, root, nil, "git", "describe", "--always", "--dirty"); err == nil {
			rev := firstLine(out)
			if strings.HasSuffix(rev, "-dirty") {
				rev += " (dirty: uncommitted work in the tree)"
			}
			rep.Tools = append(rep.Tools, "cyphonic built from git "+rev)
		}
	}

	only := os.Getenv("CYPHONIC_PERF_ONLY")
	rep.Results = append(rep.Results, runHalf(t, only, "wireguard-go", func(t *testing.T) (Result, error) {
		return measureWireGuard(ctx, t, cfg, pushers, filepath.Join(work, "wg"))
	}))
	rep.Results = append(rep.Results, runHalf(t, only, "nebula", func(t *testing.T) (Result, error) {
		return measureNebula(ctx, t, cfg, pushers, filepath.Join(work, "nebula"))
	}))
	rep.Results = append(rep.Results, runHalf(t, only, "cyphonic", func(t *testing.T) (Result, error) {
		return measureCyphonic(ctx, t, cfg, pushers, filepath.Join(work, "cy"))
	}))

	md := rep.Markdown()
	t.Logf("\n%s", md)
	if path := os.Getenv("CYPHONIC_PERF_WRITE"); path != "" {
		if err := writeSection(path, md); err != nil {
			t.Error(err)
		}
	}
}

// runHalf measures one system in a subtest of its own, so its namespaces
// and processes are gone before the other half starts. A system that is
// not ready (a binary that does not build or lacks a flag, a module the
// proxy does not serve) is reported as pending and one whose run fails as
// failed; either fails the test, and its numbers are not invented.
func runHalf(t *testing.T, only, system string, measure func(*testing.T) (Result, error)) Result {
	res := Result{System: system, Pending: "not run"}
	if only != "" && only != system {
		res.Pending = "not run (CYPHONIC_PERF_ONLY=" + only + ")"
		return res
	}
	t.Run(system, func(t *testing.T) {
		r, err := measure(t)
		r.System = system
		switch {
		case errors.Is(err, ErrNotReady):
			// Reported as pending, and a failure: a side-by-side run
			// that quietly left a system out would read as a pass.
			r.Pending = err.Error()
			t.Errorf("%s not measured: %v (CYPHONIC_PERF_ONLY=<system> measures one system alone)", system, err)
		case err != nil:
			r.Pending = "the run failed: " + err.Error()
			t.Error(err)
		}
		res = r
	})
	return res
}

func measureWireGuard(ctx context.Context, t *testing.T, cfg Config, pushers int, dir string) (Result, error) {
	if err := CheckWG(); err != nil {
		return Result{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Result{}, err
	}
	bin, version, err := InstallWireGuardGo(ctx, dir)
	if err != nil {
		return Result{}, err
	}
	topo := NewTopology(testbed.New(t), pushers)
	target, err := SetupWireGuard(ctx, topo, bin, dir)
	if err != nil {
		return Result{Version: version}, err
	}
	res, err := Measure(ctx, topo, target, cfg)
	res.Version = version
	return res, err
}

func measureNebula(ctx context.Context, t *testing.T, cfg Config, pushers int, dir string) (Result, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Result{}, err
	}
	bin, certBin, version, err := InstallNebula(ctx, dir)
	if err != nil {
		return Result{}, err
	}
	topo := NewTopology(testbed.New(t), pushers)
	target, err := SetupNebula(ctx, topo, bin, certBin, dir)
	if err != nil {
		return Result{Version: version}, err
	}
	res, err := Measure(ctx, topo, target, cfg)
	res.Version = version
	return res, err
}

func measureCyphonic(ctx context.Context, t *testing.T, cfg Config, pushers int, dir string) (Result, error) {
	root, err := ModuleRoot()
	if err != nil {
		return Result{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Result{}, err
	}
	// CYPHONIC_PERF_BIN measures a given build instead of building the
	// tree's (e.g. one built with -ldflags or from another commit).
	bin := os.Getenv("CYPHONIC_PERF_BIN")
	var version string
	if bin != "" {
		version, err = CheckCyphonic(ctx, bin)
	} else {
		bin = filepath.Join(dir, "cyphonic")
		version, err = BuildCyphonic(ctx, root, bin)
	}
	if err != nil {
		return Result{}, err
	}
	bed := testbed.New(t)
	cloud := bed.AddHost("cloud", testbed.HostOpts{})
	topo := NewTopology(bed, pushers)
	// CYPHONIC_PERF_TUN_QUEUES=N starts every node with --tun-queues=N
	// (unset: the binary's default, and a build without the flag runs).
	var nodeArgs []string
	if q := os.Getenv("CYPHONIC_PERF_TUN_QUEUES"); q != "" {
		nodeArgs = append(nodeArgs, "--tun-queues="+q)
	}
	target, err := SetupCyphonic(ctx, topo, cloud, bin, dir, nodeArgs...)
	if err != nil {
		return Result{Version: version}, err
	}
	res, err := Measure(ctx, topo, target, cfg)
	res.Version = version
	return res, err
}

// writeSection replaces the harness's section of the Markdown file at path
// (relative paths are from the module root), creating the file if needed.
func writeSection(path, section string) error {
	if !filepath.IsAbs(path) {
		root, err := ModuleRoot()
		if err != nil {
			return err
		}
		path = filepath.Join(root, path)
	}
	doc, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if len(doc) == 0 {
		doc = []byte("# Benchmarks\n")
	}
	return os.WriteFile(path, []byte(ReplaceSection(string(doc), SectionHeading, section)), 0o644)
}
