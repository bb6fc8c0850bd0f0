// Package cli is what the two binaries of CYPHONIC-Go share: cyphonic (the
// node daemon and its tools) and cyphonic-cloud (the cloud services and
// the CA). A subcommand table, flag sets that report errors instead of
// exiting, config files (options.go) and the version line.
//
// They are two binaries so that a node does not link the cloud: every
// package linked runs its init at every start, and the cloud's (gRPC,
// protoactor's remote, Redis, bbolt, their protobuf descriptors) cost a
// node megabytes of resident binary it never runs.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Version is stamped at build time with
// -ldflags "-X github.com/cyphonic/cyphonic-go/cmd/internal/cli.Version=...".
var Version = "0.1.0-dev"

// Commit may be stamped the same way (cli.Commit=$(git rev-parse HEAD))
// where the toolchain cannot stamp it (-buildvcs=false, a git worktree).
var Commit = ""

// FullVersion is the version with the commit the binary was built from,
// as the Go toolchain stamps it (debug.ReadBuildInfo's vcs settings).
func FullVersion() string {
	info, _ := debug.ReadBuildInfo()
	return DescribeBuild(Version, info)
}

// DescribeBuild writes "VERSION (commit REV[-dirty], COMMIT-TIME, GOVERSION)".
func DescribeBuild(v string, info *debug.BuildInfo) string {
	if info == nil {
		info = &debug.BuildInfo{}
	}
	rev, at, dirty := "unknown", "", false
	if Commit != "" {
		rev = Commit
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

// Command is one subcommand of a binary.
type Command struct {
	Name    string
	Summary string
	Run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// ErrUsage marks an error that was caused by the command line; Run prints
// it with a hint and exits 2.
var ErrUsage = errors.New("usage")

// VersionCommand prints the version line.
var VersionCommand = Command{"version", "print the version and the commit it was built from", func(_ context.Context, _ []string, stdout, _ io.Writer) error {
	fmt.Fprintln(stdout, "cyphonic", FullVersion())
	return nil
}}

func usage(w io.Writer, cmds []Command) {
	fmt.Fprintf(w, "cyphonic %s — a peer-to-peer overlay network\n\nUsage: cyphonic <command> [flags]\n\nCommands:\n", Version)
	cmds = append([]Command(nil), cmds...)
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name < cmds[j].Name })
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-8s %s\n", c.Name, c.Summary)
	}
	fmt.Fprintf(w, "  %-8s %s\n\nRun 'cyphonic <command> -h' for a command's flags.\n", "help", "show this help")
}

// Run runs the command args name, with SIGINT and SIGTERM ending its
// context, and returns the exit code.
func Run(cmds []Command, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr, cmds)
		return 2
	}
	switch args[0] {
	case "help", "-h", "--help", "-help":
		usage(stdout, cmds)
		return 0
	case "--version", "-version", "-v":
		fmt.Fprintln(stdout, "cyphonic", FullVersion())
		return 0
	}
	for _, c := range cmds {
		if c.Name != args[0] {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err := c.Run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, ErrUsage):
			fmt.Fprintf(stderr, "cyphonic %s: %v\nRun 'cyphonic %s -h' for help.\n", c.Name, err, c.Name)
			return 2
		default:
			fmt.Fprintf(stderr, "cyphonic %s: %v\n", c.Name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "cyphonic: unknown command %q\n\n", args[0])
	usage(stderr, cmds)
	return 2
}

// NewFlagSet returns a flag set that reports errors instead of exiting, so
// Run decides the exit code.
func NewFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("cyphonic "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// ParseFlags parses args and rejects stray positional arguments.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", ErrUsage, fs.Arg(0))
	}
	return nil
}

// Off is how every flag of every command spells "disabled".
const Off = "off"

// Switchable checks an address flag that "off" disables and returns its
// value with off as "" (how the daemons' configs spell it). An empty value
// is refused, so that disabling has one spelling.
func Switchable(name, v string) (string, error) {
	switch v {
	case Off:
		return "", nil
	case "":
		return "", fmt.Errorf("%w: --%s is empty: give an address, or %q to disable it", ErrUsage, name, Off)
	}
	return v, nil
}

// CheckHostPort checks host:port with a port in range (0 allowed only if
// zeroOK).
func CheckHostPort(s string, zeroOK bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("no host")
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return fmt.Errorf("port %q is not a number in 0..65535", port)
	}
	if p == 0 && !zeroOK {
		return errors.New("port 0")
	}
	return nil
}

// The cloud binary's commands, which the node's binary lists and hands on
// to it (Delegate).
const (
	SummaryCA    = "manage the overlay's root CA: init, issue, issue-service, revoke, list"
	SummaryCloud = "run the cloud services (AS, NMS, TRS); cloud nodes, node FQDN, end-session FQDN administer a running one"
	SummaryDemo  = "build a small namespace topology and show nodes talking (root)"
)

// CloudBinary is the name of the binary with the cloud's commands
// (cmd/cyphonic-cloud), installed beside cyphonic.
const CloudBinary = "cyphonic-cloud"

// ErrNoCloudBinary: a cloud command ran where cyphonic-cloud is not
// installed.
var ErrNoCloudBinary = errors.New(CloudBinary + " not found")

// Delegate is the node binary's stand-in for a command of the cloud's
// binary: it replaces the process (execve) with CloudBinary found beside
// the running executable, else on PATH (FindCloudBinary), with the same
// arguments, so that `cyphonic cloud …` keeps its PID, signals and exit
// code, as systemd units and scripts expect.
func Delegate(name, summary string) Command {
	return Command{Name: name, Summary: summary, Run: func(_ context.Context, args []string, _, _ io.Writer) error {
		bin, err := FindCloudBinary(os.Executable, exec.LookPath)
		if err != nil {
			return err
		}
		argv := append([]string{bin, name}, args...)
		if err := syscall.Exec(bin, argv, os.Environ()); err != nil {
			return fmt.Errorf("exec %s: %w", bin, err)
		}
		return nil // not reached: Exec returns only on failure
	}}
}

// FindCloudBinary finds CloudBinary beside the running executable, else on
// PATH.
func FindCloudBinary(self func() (string, error), lookPath func(string) (string, error)) (string, error) {
	var beside string
	if p, err := self(); err == nil {
		beside = filepath.Join(filepath.Dir(p), CloudBinary)
		if st, err := os.Stat(beside); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return beside, nil
		}
	}
	if p, err := lookPath(CloudBinary); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%w beside %s or on PATH: this binary (cmd/cyphonic) is the node's and does not link the cloud; build both with `go build -o DIR/ ./cmd/cyphonic ./cmd/cyphonic-cloud`", ErrNoCloudBinary, beside)
}
