package nodecmd

import (
	"bytes"
	"context"
	"io"
	"os"
	"testing"

	"github.com/cyphonic/cyphonic-go/cmd/internal/cli"
	"github.com/cyphonic/cyphonic-go/cmd/internal/clitest"
	"github.com/cyphonic/cyphonic-go/cmd/internal/cloudcmd"
)

// asBinaryEnv makes the test binary behave as the cyphonic binary, for the
// tests that run it as a process (under setpriv).
const asBinaryEnv = "CYPHONIC_TEST_AS_BINARY"

func TestMain(m *testing.M) {
	if os.Getenv(asBinaryEnv) == "1" {
		os.Exit(cli.Run(allCommands(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// allCommands: the node's commands and, in-process, the cloud's (ca, cloud),
// which the node's binary would hand on to cyphonic-cloud.
func allCommands() []cli.Command { return append(Commands(), cloudcmd.Commands()...) }

// runCmd runs the commands' entry point in-process and returns its exit
// code and output.
func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Run(allCommands(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// runCloud is `cyphonic cloud`'s entry point.
func runCloud(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	for _, c := range cloudcmd.Commands() {
		if c.Name == "cloud" {
			return c.Run(ctx, args, stdout, stderr)
		}
	}
	panic("cloudcmd has no cloud command")
}

func startCloudCmd(t *testing.T, extra ...string) (out *clitest.SyncBuffer, stop func() error) {
	t.Helper()
	return clitest.StartCloud(t, runCloud, extra...)
}

func issueNode(t *testing.T, dir, name string, extra ...string) string {
	t.Helper()
	return clitest.IssueNode(t, allCommands(), dir, name, extra...)
}
