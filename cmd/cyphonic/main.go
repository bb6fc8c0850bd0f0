// Command cyphonic is the one binary of CYPHONIC-Go: the cloud services, the
// node daemon, the certificate authority and the inspection tools.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// commit may be stamped with -ldflags "-X main.commit=$(git rev-parse HEAD)"
// where the toolchain cannot stamp it (-buildvcs=false, a git worktree).
var commit = ""

// fullVersion is the version with the commit the binary was built from,
// as the Go toolchain stamps it (debug.ReadBuildInfo's vcs settings).
func fullVersion() string {
	info, _ := debug.ReadBuildInfo()
	return describeBuild(version, info)
}

// describeBuild writes "VERSION (commit REV[-dirty], COMMIT-TIME, GOVERSION)".
func describeBuild(v string, info *debug.BuildInfo) string {
	if info == nil {
		info = &debug.BuildInfo{}
	}
	rev, at, dirty := "unknown", "", false
	if commit != "" {
		rev = commit
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	parts := []string{"commit " + rev}
	if at != "" {
		parts = append(parts, at)
	}
	if info.GoVersion != "" {
		parts = append(parts, info.GoVersion)
	}
	return v + " (" + strings.Join(parts, ", ") + ")"
}

// command is one subcommand of the binary.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// errUsage marks an error that was caused by the command line; main prints
// it with a hint and exits 2.
var errUsage = errors.New("usage")

func commands() []command {
	return []command{
		{"ca", "manage the overlay's root CA: init, issue, issue-service, revoke, list", runCA},
		{"cloud", "run the cloud services (AS, NMS, TRS); cloud nodes, node FQDN, end-session FQDN administer a running one", runCloud},
		{"node", "run the node daemon: TUN device, resolver, tunnels to peers", runNode},
		{"status", "show a node's peers, paths, handshakes and counters", runStatus},
		{"ping", "ping a peer over the overlay through the running node: RTT and the path taken", runPing},
		{"actors", "print a daemon's live actor tree from its debug endpoint", runActors},
		{"demo", "build a small namespace topology and show nodes talking (root)", runDemo},
		{"version", "print the version and the commit it was built from", func(_ context.Context, _ []string, stdout, _ io.Writer) error {
			fmt.Fprintln(stdout, "cyphonic", fullVersion())
			return nil
		}},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "cyphonic %s — a peer-to-peer overlay network\n\nUsage: cyphonic <command> [flags]\n\nCommands:\n", version)
	cmds := commands()
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-8s %s\n\nRun 'cyphonic <command> -h' for a command's flags.\n", "help", "show this help")
}

func main() {
	supervise.SmallRegistry() // before any actor system: 2.8 MB less heap per system
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "help", "-h", "--help", "-help":
		usage(stdout)
		return 0
	case "--version", "-version", "-v":
		fmt.Fprintln(stdout, "cyphonic", fullVersion())
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "cyphonic %s: %v\nRun 'cyphonic %s -h' for help.\n", c.name, err, c.name)
			return 2
		default:
			fmt.Fprintf(stderr, "cyphonic %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "cyphonic: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// newFlagSet returns a flag set that reports errors instead of exiting, so
// run decides the exit code.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("cyphonic "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args and rejects stray positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

// off is how every flag of every command spells "disabled".
const off = "off"

// switchable checks an address flag that "off" disables and returns its
// value with off as "" (how the daemons' configs spell it). An empty value
// is refused, so that disabling has one spelling.
func switchable(name, v string) (string, error) {
	switch v {
	case off:
		return "", nil
	case "":
		return "", fmt.Errorf("%w: --%s is empty: give an address, or %q to disable it", errUsage, name, off)
	}
	return v, nil
}
