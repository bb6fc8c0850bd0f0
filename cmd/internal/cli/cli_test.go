package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func runCmd(cmds []Command, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Run(cmds, args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestTopLevel(t *testing.T) {
	failing := Command{"fail", "fails", func(context.Context, []string, io.Writer, io.Writer) error { return errors.New("boom") }}
	misused := Command{"misuse", "a usage error", func(context.Context, []string, io.Writer, io.Writer) error {
		return ParseFlags(NewFlagSet("misuse", io.Discard), []string{"stray"})
	}}
	cmds := []Command{VersionCommand, failing, misused, Delegate("cloud", SummaryCloud)}
	if code, out, _ := runCmd(cmds, "--version"); code != 0 || !strings.HasPrefix(out, "cyphonic ") {
		t.Fatalf("--version: exit %d, %q", code, out)
	}
	code, out, _ := runCmd(cmds, "help")
	if code != 0 {
		t.Fatalf("help: exit %d", code)
	}
	for _, c := range cmds {
		if !strings.Contains(out, c.Name) {
			t.Errorf("help does not list %q", c.Name)
		}
	}
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"nonsense"}, 2, "unknown command"},
		{nil, 2, "Usage:"},
		{[]string{"fail"}, 1, "cyphonic fail: boom"},
		{[]string{"misuse"}, 2, `unexpected argument "stray"`},
	} {
		if code, _, stderr := runCmd(cmds, tt.args...); code != tt.code || !strings.Contains(stderr, tt.want) {
			t.Errorf("%q: exit %d, %q; want exit %d mentioning %q", tt.args, code, stderr, tt.code, tt.want)
		}
	}
}

func TestDescribeBuild(t *testing.T) {
	info := &debug.BuildInfo{GoVersion: "go1.26.0", Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	if got, want := DescribeBuild("0.1.0", info), "0.1.0 (commit 0123456789ab-dirty, 2026-12-01T10:00:00Z, go1.26.0)"; got != want {
		t.Errorf("DescribeBuild = %q, want %q", got, want)
	}
	if got := DescribeBuild("0.1.0", &debug.BuildInfo{}); got != "0.1.0 (commit unknown)" {
		t.Errorf("no vcs info: %q", got)
	}
	if code, out, _ := runCmd([]Command{VersionCommand}, "version"); code != 0 || !strings.Contains(out, "(commit ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

// TestFindCloudBinary: the node's binary finds cyphonic-cloud beside
// itself first, then on PATH, and otherwise says how to build it.
func TestFindCloudBinary(t *testing.T) {
	dir := t.TempDir()
	self := filepath.Join(dir, "cyphonic")
	beside := filepath.Join(dir, CloudBinary)
	onPath := func(string) (string, error) { return "/usr/bin/" + CloudBinary, nil }
	noPath := func(string) (string, error) { return "", errors.New("not found") }
	selfIs := func() (string, error) { return self, nil }

	if _, err := FindCloudBinary(selfIs, noPath); !errors.Is(err, ErrNoCloudBinary) || !strings.Contains(err.Error(), "go build") {
		t.Fatalf("neither beside nor on PATH: %v", err)
	}
	if got, err := FindCloudBinary(selfIs, onPath); err != nil || got != "/usr/bin/"+CloudBinary {
		t.Fatalf("on PATH: %q, %v", got, err)
	}
	// Not executable: not taken.
	if err := os.WriteFile(beside, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := FindCloudBinary(selfIs, onPath); got != "/usr/bin/"+CloudBinary {
		t.Fatalf("a non-executable file beside it was taken: %q", got)
	}
	if err := os.Chmod(beside, 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := FindCloudBinary(selfIs, onPath); err != nil || got != beside {
		t.Fatalf("beside: %q, %v; want %q", got, err, beside)
	}
}
