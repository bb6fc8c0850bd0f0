package testbed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cyphonic/cyphonic-go/test/systest"
)

// T is what a Bed needs from its caller: the part of testing.TB it uses.
// *testing.T, *testing.B and testing.TB satisfy it; a program (cyphonic
// demo) can drive a Bed with its own implementation, whose Fatal unwinds
// and whose Cleanup runs the functions last-in first-out at its end. The
// package does not import "testing" so such a program carries none of it.
type T interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Skip(args ...any)
	Failed() bool
	Cleanup(func())
}

// StaleAge is how old a namespace of this package must be before New
// sweeps it as left over by a run that died without cleaning up.
const StaleAge = 60 * time.Minute

// etcNetnsDir holds per-namespace /etc overrides that "ip netns exec"
// bind-mounts over /etc (resolv.conf, hosts).
const etcNetnsDir = "/etc/netns"

// ErrUnavailable means the machine cannot host a testbed.
var ErrUnavailable = errors.New("testbed: unavailable")

// needs is what a Bed uses: namespaces, veths and bridges (iproute2),
// NAPT (nftables) and reachability probes (ping).
var needs = []systest.Need{
	systest.Root(),
	systest.Tool("ip", "iproute2"),
	systest.Tool("nft", "nftables"),
	systest.Tool("ping", "iputils-ping"),
}

// Available reports why this machine cannot build namespaces, or nil.
func Available() error {
	var missing []string
	for _, n := range needs {
		if err := n(); err != nil {
			missing = append(missing, err.Error())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: needs %s", ErrUnavailable, strings.Join(missing, ", "))
	}
	return nil
}

// Require fails the test, naming what is missing, when the machine cannot
// host a Bed — or skips it when the user opted out of system tests
// (systest.EnvSkip).
func Require(tb T) {
	tb.Helper()
	systest.Require(tb, needs...)
}

// Bed is one test's topology: the internet namespace plus whatever hosts
// and sites the test adds. Build it from the test goroutine (builders call
// tb.Fatal); Exec, Start, Do and the Host accessors are safe from any
// goroutine.
type Bed struct {
	tb     T
	prefix string // "cyXXXX"

	mu         sync.Mutex
	namespaces []string // in creation order
	procs      []*Proc
	names      map[string]bool // host and site names in use
	internet   *Site
	sites      int // sites added, for address planning
	routed4    int // IPv4 sites without NAT, for address planning
}

// New builds an empty internet (a dual-stack bridge with documentation
// addresses) and registers the cleanup that tears everything down. It
// fails (or, opted out, skips) the test as Require does when the machine
// cannot host it.
func New(tb T) *Bed {
	tb.Helper()
	Require(tb)
	for _, name := range sweepStale(time.Now().Add(-StaleAge), nsPattern.MatchString) {
		tb.Logf("testbed: swept stale namespace %s", name)
	}
	b := &Bed{tb: tb, names: map[string]bool{}}
	tb.Cleanup(b.cleanup)

	// "ip netns add" refuses an existing name, so the internet namespace
	// doubles as this run's claim on its prefix.
	var err error
	for range 8 {
		var r [2]byte
		_, _ = rand.Read(r[:])
		b.prefix = "cy" + hex.EncodeToString(r[:])
		if err = b.addNamespace(internetName); err == nil {
			break
		}
	}
	if err != nil {
		tb.Fatalf("testbed: claim a prefix: %v", err)
	}
	if err := b.setupInternet(); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("testbed: namespaces %s-*", b.prefix)
	return b
}

// Prefix is this Bed's namespace prefix ("cyXXXX"); every namespace it
// creates is named prefix + "-" + name.
func (b *Bed) Prefix() string { return b.prefix }

// Namespaces lists the namespaces the Bed has created.
func (b *Bed) Namespaces() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.namespaces...)
}

// Internet is the global segment. Hosts on it have global addresses;
// Move a host here to give it one.
func (b *Bed) Internet() *Site { return b.internet }

// Exec runs argv in namespace ns (with its /etc/netns files mounted) and
// returns its combined output. It gives up after ExecTimeout.
func (b *Bed) Exec(ns string, argv ...string) ([]byte, error) {
	return b.ExecContext(context.Background(), ns, argv...)
}

// ExecContext is Exec with a context for cancellation.
func (b *Bed) ExecContext(ctx context.Context, ns string, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("testbed: exec: empty command")
	}
	return run(ctx, "", append([]string{"ip", "netns", "exec", ns}, argv...)...)
}

// Start runs argv in the background in namespace ns. The Bed stops it at
// cleanup and logs its output if the test failed, and the kernel kills it
// if the test binary dies before that.
func (b *Bed) Start(ns string, argv ...string) *Proc {
	b.tb.Helper()
	p, err := startProc(ns, argv)
	if err != nil {
		b.tb.Fatal(err)
	}
	b.mu.Lock()
	b.procs = append(b.procs, p)
	b.mu.Unlock()
	return p
}

// Do runs f on a thread inside namespace ns, for Go code of the test
// itself: sockets f opens live in ns even after Do returns. Programs f
// starts do not get the namespace's /etc/netns files; use Exec or Start.
func (b *Bed) Do(ns string, f func() error) error { return doIn(ns, f) }

// nsName is the full namespace name for a host or site name.
func (b *Bed) nsName(name string) string { return b.prefix + "-" + name }

// addNamespace creates namespace prefix-name with its /etc/netns directory
// (default resolv.conf and hosts) and IPv6 DAD off, so addresses work at
// once.
func (b *Bed) addNamespace(name string) error {
	ns := b.nsName(name)
	if _, err := run(context.Background(), "", "ip", "netns", "add", ns); err != nil {
		return err
	}
	b.mu.Lock()
	b.namespaces = append(b.namespaces, ns)
	b.mu.Unlock()
	if err := os.MkdirAll(filepath.Join(etcNetnsDir, ns), 0o755); err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	// Point the resolver at the namespace itself, where a node's resolver
	// listens, so no lookup ever leaves the testbed.
	if err := writeEtc(ns, "resolv.conf", resolvConf(nil)); err != nil {
		return err
	}
	if err := writeEtc(ns, "hosts", hostsFile(name, nil)); err != nil {
		return err
	}
	return setSysctls(ns,
		"net.ipv6.conf.all.accept_dad", "0",
		"net.ipv6.conf.default.accept_dad", "0",
	)
}

// cleanup stops processes, then deletes namespaces and their /etc/netns
// directories. It runs on every exit path of the test, pass, fail or panic.
func (b *Bed) cleanup() {
	b.mu.Lock()
	procs, namespaces := b.procs, b.namespaces
	b.procs, b.namespaces = nil, nil
	b.mu.Unlock()

	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		if err := p.Stop(); err != nil {
			b.tb.Logf("testbed: stop %v: %v", p, err)
		}
		if b.tb.Failed() {
			b.tb.Logf("testbed: output of %v:\n%s", p, p.Output())
		}
	}
	for i := len(namespaces) - 1; i >= 0; i-- {
		if err := removeNamespace(namespaces[i]); err != nil {
			b.tb.Errorf("testbed: cleanup: %v", err)
		}
	}
	_ = os.Remove(etcNetnsDir) // only if empty: others may use it
}

// removeNamespace kills what still runs in ns, deletes it and its
// /etc/netns directory.
func removeNamespace(ns string) error {
	var errs []error
	if out, err := run(context.Background(), "", "ip", "netns", "pids", ns); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
				_ = killPid(pid)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(netnsDir, ns)); err == nil {
		if _, err := run(context.Background(), "", "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(filepath.Join(etcNetnsDir, ns)); err != nil {
		errs = append(errs, fmt.Errorf("testbed: %w", err))
	}
	return errors.Join(errs...)
}

// sweepStale removes namespaces (and /etc/netns directories) whose names
// match and that were created before cutoff: leftovers of runs killed
// before their cleanup ran. It is best effort and returns what it removed.
func sweepStale(cutoff time.Time, match func(string) bool) []string {
	var swept []string
	seen := map[string]bool{}
	for _, dir := range []string{netnsDir, etcNetnsDir} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			name := e.Name()
			if seen[name] || !match(name) {
				continue
			}
			info, err := e.Info()
			// A namespace file's mtime is the namespace's creation time.
			if err != nil || !info.ModTime().Before(cutoff) {
				continue
			}
			seen[name] = true
			if removeNamespace(name) == nil {
				swept = append(swept, name)
			}
		}
	}
	return swept
}
