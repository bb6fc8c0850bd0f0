package netlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// StaleAge is how old a namespace of this package must be before New
// sweeps it as left over by a run that died without cleaning up.
const StaleAge = 60 * time.Minute

// etcNetnsDir holds per-namespace /etc overrides that "ip netns exec"
// bind-mounts over /etc (resolv.conf, hosts).
const etcNetnsDir = "/etc/netns"

// ErrUnavailable means the machine cannot host a Bed.
var ErrUnavailable = errors.New("netlab: unavailable")

// Needs are what a Bed uses, each a check that says what is missing:
// root, namespaces, veths and bridges (iproute2), NAPT (nftables) and
// reachability probes (ping).
func Needs() []func() error {
	return []func() error{
		func() error {
			if os.Geteuid() != 0 {
				return errors.New("root (run as root: sudo)")
			}
			return nil
		},
		tool("ip", "iproute2"),
		tool("nft", "nftables"),
		tool("ping", "iputils-ping"),
	}
}

func tool(name, pkg string) func() error {
	return func() error {
		if _, err := exec.LookPath(name); err != nil {
			return fmt.Errorf("%s on PATH (Debian package %s)", name, pkg)
		}
		return nil
	}
}

// Available reports why this machine cannot build namespaces, or nil.
func Available() error {
	var missing []string
	for _, n := range Needs() {
		if err := n(); err != nil {
			missing = append(missing, err.Error())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: needs %s", ErrUnavailable, strings.Join(missing, ", "))
	}
	return nil
}

// Bed is one topology: the internet namespace plus whatever hosts and
// sites its user adds. Build it from one goroutine; Exec, Start, Do and the
// Host accessors are safe from any goroutine. Close tears it down.
type Bed struct {
	logf   func(format string, args ...any)
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
// addresses). logf, if not nil, hears what New sweeps and names. It fails
// with ErrUnavailable when the machine cannot host a Bed; on any failure
// it removes what it built. The caller must Close the Bed.
func New(logf func(format string, args ...any)) (*Bed, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	for _, name := range sweepStale(time.Now().Add(-StaleAge), nsPattern.MatchString) {
		logf("netlab: swept stale namespace %s", name)
	}
	b := &Bed{logf: logf, names: map[string]bool{}}

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
		return nil, errors.Join(fmt.Errorf("netlab: claim a prefix: %w", err), b.Close())
	}
	if err := b.setupInternet(); err != nil {
		return nil, errors.Join(err, b.Close())
	}
	logf("netlab: namespaces %s-*", b.prefix)
	return b, nil
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
		return nil, errors.New("netlab: exec: empty command")
	}
	return run(ctx, "", append([]string{"ip", "netns", "exec", ns}, argv...)...)
}

// Start runs argv in the background in namespace ns. Close stops it, and
// the kernel kills it if this process dies before that.
func (b *Bed) Start(ns string, argv ...string) (*Proc, error) {
	p, err := startProc(ns, argv)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.procs = append(b.procs, p)
	b.mu.Unlock()
	return p, nil
}

// Procs lists the processes Start started, in order.
func (b *Bed) Procs() []*Proc {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*Proc(nil), b.procs...)
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
		return fmt.Errorf("netlab: %w", err)
	}
	// Point the resolver at the namespace itself, where a node's resolver
	// listens, so no lookup ever leaves the Bed.
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

// Close stops the processes, then deletes the namespaces and their
// /etc/netns directories. Their output stays readable (Proc.Output).
func (b *Bed) Close() error {
	b.mu.Lock()
	procs, namespaces := b.procs, b.namespaces
	b.namespaces = nil
	b.mu.Unlock()

	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].Stop(); err != nil {
			b.logf("netlab: stop %v: %v", procs[i], err)
		}
	}
	for i := len(namespaces) - 1; i >= 0; i-- {
		if err := removeNamespace(namespaces[i]); err != nil {
			errs = append(errs, fmt.Errorf("netlab: close: %w", err))
		}
	}
	_ = os.Remove(etcNetnsDir) // only if empty: others may use it
	return errors.Join(errs...)
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
		errs = append(errs, fmt.Errorf("netlab: %w", err))
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
