package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/test/testbed"
)

// readmeBuildLine is the block's first command. The test builds the
// binaries once for every scenario (TestMain, also with CGO_ENABLED=0) and
// copies them in their place, so the block runs in a scratch directory
// rather than the checkout.
const readmeBuildLine = "CGO_ENABLED=0 go build -buildvcs=true -o . ./cmd/cyphonic ./cmd/cyphonic-cloud"

// usingIt returns the shell block between the README's using-it markers.
func usingIt(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "<!-- using-it:begin -->")
	block, _, ok2 := strings.Cut(rest, "<!-- using-it:end -->")
	if !ok || !ok2 {
		t.Fatal("README.md has no using-it block")
	}
	block = strings.TrimSpace(block)
	block = strings.TrimPrefix(block, "```sh\n")
	block = strings.TrimSuffix(block, "```")
	first, script, _ := strings.Cut(block, "\n")
	if first != readmeBuildLine {
		t.Fatalf("the block's first line is %q, want %q", first, readmeBuildLine)
	}
	return script
}

// TestReadmeUsingIt runs README "Using it" as written: two namespaces, a
// cloud listening on the veth address, certificates for alice, bob and
// carol, DNS through each node's resolver, a second node on one
// "machine", pings by name both ways.
func TestReadmeUsingIt(t *testing.T) {
	testbed.Require(t)
	script := usingIt(t)
	dir := t.TempDir()
	for _, name := range []string{"cyphonic", "cyphonic-cloud"} {
		bin, err := os.ReadFile(filepath.Join(filepath.Dir(cyphonicBin), name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), bin, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cleanup := func() {
		for _, ns := range []string{"cy-alice", "cy-bob"} {
			exec.Command("ip", "netns", "del", ns).Run()
			os.RemoveAll(filepath.Join("/etc/netns", ns))
		}
	}
	cleanup() // a run that was killed may have left them
	defer cleanup()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", script)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// One process group: the daemons the block starts in the background
	// stop with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	err := cmd.Run()
	// What the block left running: stop it as the README's clean-up does
	// (kill), then make sure.
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		time.Sleep(2 * time.Second)
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	logs := func() string {
		var b strings.Builder
		for _, f := range []string{"cloud.log", "alice.log", "bob.log", "carol.log"} {
			data, _ := os.ReadFile(filepath.Join(dir, f))
			b.WriteString("--- " + f + "\n" + string(data))
		}
		return b.String()
	}
	if err != nil {
		t.Fatalf("the README block failed: %v\n%s\n%s", err, out.String(), logs())
	}
	text := out.String()
	if n := strings.Count(text, "3 packets transmitted, 3 received"); n != 2 {
		t.Errorf("%d of the 2 pings got every reply:\n%s\n%s", n, text, logs())
	}
	if !strings.Contains(text, "1 packets transmitted, 1 received") {
		t.Errorf("the short name bob did not answer:\n%s", text)
	}
	if !regexp.MustCompile(`(?m)^100\.64\.0\.2\s+bob\.example\.cyphonic$`).MatchString(text) {
		t.Errorf("no PTR answer for bob's VIP:\n%s", text)
	}
	if !regexp.MustCompile(`(?m)^100\.64\.0\.3\s+carol\.example\.cyphonic$`).MatchString(text) {
		t.Errorf("no PTR answer for carol's VIP from bob, who had no tunnel with her:\n%s", text)
	}
	for _, want := range []string{"bob.example.cyphonic", "up", "carol.example.cyphonic", "6 certificate(s) issued", "node [node]"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}
