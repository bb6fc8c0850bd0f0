package perf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The wireguard-go baseline, fetched from the Go module proxy at run time
// (its code is never vendored). The module has no tagged releases, only
// pseudo-versions; this one builds with Go 1.26 and reports itself as
// wireguard-go 0.0.20250522.
const (
	WireGuardGoModule  = "golang.zx2c4.com/wireguard"
	WireGuardGoVersion = "v0.0.0-20260522210424-ecfc5a8d5446"
)

// ErrNotReady means a tool or a system under test is missing or does not
// work yet; the error says what to do about it.
var ErrNotReady = errors.New("perf: not ready")

// toolTimeout bounds one build or tool invocation of the harness.
const toolTimeout = 5 * time.Minute

// command runs argv (outside any namespace) with a bounded time and
// returns its combined output; errors carry the output's tail.
func command(ctx context.Context, dir string, env []string, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("perf: %s: %w: %s", strings.Join(argv, " "), err, tail(out, 2000))
	}
	return out, nil
}

// tail is the last n bytes of b, trimmed, for error messages.
func tail(b []byte, n int) string {
	b = bytes.TrimSpace(b)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// firstLine is the first non-empty line of b.
func firstLine(b []byte) string {
	for line := range strings.Lines(string(b)) {
		if s := strings.TrimSpace(line); s != "" {
			return s
		}
	}
	return ""
}

// CheckTools reports which of the programs the harness drives are missing,
// with the Debian package that provides each.
func CheckTools() error {
	var missing []string
	for _, t := range []struct{ bin, pkg string }{
		{"iperf3", "iperf3"}, {"ping", "iputils-ping"}, {"ss", "iproute2"}, {"getent", "libc-bin"},
	} {
		if _, err := exec.LookPath(t.bin); err != nil {
			missing = append(missing, fmt.Sprintf("%s (apt-get install %s)", t.bin, t.pkg))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %s", ErrNotReady, strings.Join(missing, ", "))
	}
	return nil
}

// CheckWG reports whether the wg tool (Debian's wireguard-tools) is there;
// the wireguard-go half needs it to configure the daemons.
func CheckWG() error {
	if _, err := exec.LookPath("wg"); err != nil {
		return fmt.Errorf("%w: the wg tool is missing: apt-get install wireguard-tools", ErrNotReady)
	}
	return nil
}

// ToolVersions lists the versions of the external programs, for the report.
func ToolVersions(ctx context.Context) []string {
	var v []string
	for _, argv := range [][]string{{"iperf3", "--version"}, {"ping", "-V"}, {"wg", "--version"}} {
		out, err := command(ctx, "", nil, argv...)
		if err != nil {
			continue
		}
		v = append(v, firstLine(out))
	}
	return v
}

// InstallWireGuardGo builds wireguard-go from the module proxy into dir and
// returns the binary's path and its own version line. It runs outside any
// module so the project's go.mod is never touched.
func InstallWireGuardGo(ctx context.Context, dir string) (bin, version string, err error) {
	spec := WireGuardGoModule + "@" + WireGuardGoVersion
	// GOFLAGS is cleared: the project's flags (e.g. -mod=...) do not apply
	// to "go install pkg@version".
	if _, err := command(ctx, dir, []string{"GOBIN=" + dir, "GOFLAGS="}, "go", "install", spec); err != nil {
		return "", "", fmt.Errorf("%w: go install %s: %v", ErrNotReady, spec, err)
	}
	bin = filepath.Join(dir, "wireguard") // the binary takes the module's last element
	out, err := command(ctx, "", nil, bin, "--version")
	if err != nil {
		return "", "", fmt.Errorf("perf: wireguard-go --version: %w", err)
	}
	return bin, firstLine(out) + ", module " + spec, nil
}

// ModuleRoot is the directory of the project's go.mod, found upward from
// the working directory (go test runs in the package's directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("perf: module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("perf: module root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// cyphonicFlags are the flags the harness passes to each subcommand; a
// binary whose help lacks one is not ready for the harness.
var cyphonicFlags = map[string][]string{
	"cloud": {"-data", "-listen"},
	"node":  {"-cloud", "-cert", "-dns", "-upstream", "-mtu"},
}

// BuildCyphonic builds the two binaries of the module at root as README
// builds them (CGO_ENABLED=0): ./cmd/cyphonic, the node's, into out, and
// ./cmd/cyphonic-cloud beside it, which `out cloud` and `out ca` hand on
// to; then checks them with CheckCyphonic. Any failure wraps ErrNotReady:
// the run cannot measure cyphonic (TestPerf fails).
func BuildCyphonic(ctx context.Context, root, out string) (string, error) {
	dir := filepath.Dir(out)
	if filepath.Base(out) != "cyphonic" {
		return "", fmt.Errorf("perf: build ./cmd/cyphonic into %s: want a path ending in /cyphonic (cyphonic-cloud goes beside it)", out)
	}
	if _, err := command(ctx, root, []string{"CGO_ENABLED=0"}, "go", "build", "-o", dir+string(filepath.Separator), "./cmd/cyphonic", "./cmd/cyphonic-cloud"); err != nil {
		return "", fmt.Errorf("%w: build ./cmd/cyphonic ./cmd/cyphonic-cloud: %v", ErrNotReady, err)
	}
	return CheckCyphonic(ctx, out)
}

// CheckCyphonic checks that the binary's cloud and node commands take the
// flags the harness uses and returns its version line.
func CheckCyphonic(ctx context.Context, out string) (string, error) {
	for _, sub := range []string{"cloud", "node"} {
		// Flag sets print their usage to stderr; -h exits 0 here.
		help, err := command(ctx, "", nil, out, sub, "-h")
		if err != nil {
			return "", fmt.Errorf("%w: cyphonic %s -h: %v", ErrNotReady, sub, err)
		}
		for _, f := range cyphonicFlags[sub] {
			if !bytes.Contains(help, []byte(f)) {
				return "", fmt.Errorf("%w: cyphonic %s has no %s flag yet", ErrNotReady, sub, f)
			}
		}
	}
	v, err := command(ctx, "", nil, out, "version")
	if err != nil {
		return "", fmt.Errorf("%w: cyphonic version: %v", ErrNotReady, err)
	}
	return firstLine(v), nil
}
