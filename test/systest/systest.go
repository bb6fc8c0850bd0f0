// Package systest decides what a test does when the machine lacks what it
// needs — root, a system tool, a service, an IPv6 loopback: it fails,
// naming what is missing and how to get it, so that a green run means the
// whole suite ran. A user who knows the machine cannot host such tests opts
// out explicitly with CYPHONIC_SKIP_SYSTEM_TESTS=1; the tests then skip
// with [Marker] in their message, which the test command (scripts/test)
// counts in its summary.
//
// The package does not import "testing": the network-namespace testbed,
// which `cyphonic demo` also drives, reports through it too.
package systest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// EnvSkip is the environment variable that turns a missing requirement
// from a failure into a skip.
const EnvSkip = "CYPHONIC_SKIP_SYSTEM_TESTS"

// Marker starts the message of every test skipped because of EnvSkip.
const Marker = "system test skipped (" + EnvSkip + "=1):"

// TB is the part of testing.TB that Missing uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Skip(args ...any)
}

// OptedOut reports whether the user asked to skip system tests.
func OptedOut() bool { return os.Getenv(EnvSkip) == "1" }

// Missing fails tb because the machine lacks what (a sentence naming the
// tool, package, privilege or service), or skips it with Marker when the
// user opted out.
func Missing(tb TB, what string) {
	tb.Helper()
	if OptedOut() {
		tb.Skip(Marker + " " + what)
		return
	}
	tb.Fatalf("this test needs %s (scripts/test installs the system packages; set %s=1 to skip the tests that need them)", what, EnvSkip)
}

// A Need is one thing a test requires of the machine. Check returns nil
// when the machine has it, or a sentence saying what is missing.
type Need func() error

// Require calls Missing, once, naming everything in needs that the machine
// lacks.
func Require(tb TB, needs ...Need) {
	tb.Helper()
	var missing []string
	for _, n := range needs {
		if err := n(); err != nil {
			missing = append(missing, err.Error())
		}
	}
	if len(missing) > 0 {
		Missing(tb, strings.Join(missing, ", "))
	}
}

// Root needs the effective user to be root (namespaces, TUN devices,
// nftables).
func Root() Need {
	return func() error {
		if os.Geteuid() != 0 {
			return fmt.Errorf("root (run the tests as root: sudo)")
		}
		return nil
	}
}

// Tool needs an executable on PATH; pkg is the Debian package that has it.
func Tool(name, pkg string) Need {
	return func() error {
		if _, err := exec.LookPath(name); err != nil {
			return fmt.Errorf("%s on PATH (Debian package %s)", name, pkg)
		}
		return nil
	}
}

// File needs a path to exist (a device node such as /dev/net/tun).
func File(path string) Need {
	return func() error {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("%s (%v)", path, err)
		}
		return nil
	}
}
