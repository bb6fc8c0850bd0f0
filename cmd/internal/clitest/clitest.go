// Package clitest holds what the command packages' tests share: running a
// cloud command in-process on free ports and reading its output. Test
// support only: no binary imports it.
package clitest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cmd/internal/cli"
)

// SyncBuffer is a bytes.Buffer safe for the command's goroutine and the test.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// FreeUDPPort is a loopback UDP port free a moment ago.
func FreeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// FreeTCPPort is a loopback TCP port free a moment ago.
func FreeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Run is a command's entry point (cli.Command.Run).
type Run func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// StartCloud runs `cyphonic cloud` (cloud: that command's Run) with free
// ports until the returned stop function is called, and returns its output
// once it is up.
func StartCloud(t *testing.T, cloud Run, extra ...string) (out *SyncBuffer, stop func() error) {
	t.Helper()
	args := []string{
		"--data", t.TempDir(), "--listen", "127.0.0.1",
		"--nms-port", fmt.Sprint(FreeUDPPort(t)), "--as-port", fmt.Sprint(FreeUDPPort(t)),
		"--alt-port", fmt.Sprint(FreeUDPPort(t)), "--trs-port", fmt.Sprint(FreeUDPPort(t)),
		"--remote", fmt.Sprintf("127.0.0.1:%d", FreeTCPPort(t)), "--debug-addr", "127.0.0.1:0",
	}
	args = append(args, extra...)
	ctx, cancel := context.WithCancel(context.Background())
	out = new(SyncBuffer)
	done := make(chan error, 1)
	go func() { done <- cloud(ctx, args, out, io.Discard) }()
	for !strings.Contains(out.String(), "Issue a node certificate") {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("cloud exited early: %v\n%s", err, out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return out, func() error {
		cancel()
		return <-done
	}
}

// ASAddr reads the AS's address from `cyphonic cloud`'s output.
func ASAddr(t *testing.T, out string) netip.AddrPort {
	t.Helper()
	m := regexp.MustCompile(`AS   \(login\)\s+udp (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no AS address in:\n%s", out)
	}
	return netip.MustParseAddrPort(m[1])
}

// WriteFile writes text to path and returns path.
func WriteFile(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// IssueNode makes a CA in dir/ca (with cmds' `ca init`) and a node
// identity in dir/<name> (`ca issue`), and returns the identity's
// directory.
func IssueNode(t *testing.T, cmds []cli.Command, dir, name string, extra ...string) string {
	t.Helper()
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		return cli.Run(cmds, args, &out, &errb), errb.String()
	}
	caDir := filepath.Join(dir, "ca")
	if _, err := os.Stat(filepath.Join(caDir, "ca.crt")); err != nil {
		if code, stderr := run("ca", "init", "--dir", caDir); code != 0 {
			t.Fatalf("ca init: %s", stderr)
		}
	}
	out := filepath.Join(dir, name)
	if code, stderr := run(append([]string{"ca", "issue", "--dir", caDir, "--fqdn", name + ".example.cyphonic", "--out", out}, extra...)...); code != 0 {
		t.Fatalf("ca issue: %s", stderr)
	}
	return out
}
