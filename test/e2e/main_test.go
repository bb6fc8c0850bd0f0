package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"go.uber.org/goleak"
)

// Paths of the binaries TestMain builds, shared read-only by every test.
var (
	cyphonicBin string // the node's binary; cyphonic-cloud beside it serves its cloud and ca commands
	xferBin     string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "cyphonic-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	cyphonicBin = filepath.Join(dir, "cyphonic")
	cloudBin := filepath.Join(dir, "cyphonic-cloud")
	xferBin = filepath.Join(dir, "xfer")
	// Built once, without -race: the scenarios measure the daemons'
	// behaviour, and the race detector would only slow a 2-core machine.
	for _, b := range []struct{ out, pkg string }{
		{cyphonicBin, "github.com/cyphonic/cyphonic-go/cmd/cyphonic"},
		{cloudBin, "github.com/cyphonic/cyphonic-go/cmd/cyphonic-cloud"},
		{xferBin, "github.com/cyphonic/cyphonic-go/test/e2e/internal/xfer"},
	} {
		cmd := exec.Command(goTool(), "build", "-o", b.out, b.pkg)
		// Pure-Go resolver: it reads the namespace's resolv.conf (which
		// "ip netns exec" bind-mounts) with no libc or nsswitch in between.
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: go build %s: %v\n%s", b.pkg, err, out)
			return 1
		}
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: goroutines leaked:", err)
			return 1
		}
	}
	return code
}

// goTool finds the go command: PATH first, then the toolchain that built
// this test.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	//lint:ignore SA1019 a test binary runs on the machine that built it, so its GOROOT is the toolchain's
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}
