// Command testsum reads `go test -json` on stdin and prints what a person
// needs from a whole-suite run: each failing test with its output, each
// package's result line, the tests skipped because the user opted out of
// system tests (test/systest), other skips by name, and one closing line:
//
//	N passed, N failed, N skipped
//
// It exits 1 when any test or package failed (or built badly), so
// `go test -json ./... | testsum` is a test command by itself. It is the
// summary half of scripts/test.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// marker is test/systest.Marker; testsum does not import test code.
const marker = "system test skipped (CYPHONIC_SKIP_SYSTEM_TESTS=1):"

// event is one line of test2json output (cmd/test2json documents it).
type event struct {
	Action      string
	Package     string
	Test        string
	Output      string
	ImportPath  string // build-output and build-fail events
	FailedBuild string // a package whose test binary did not build
}

type key struct{ pkg, test string }

// summary accumulates a run. Output is kept per test only until the test
// ends, so memory follows the tests running at once, not the whole run.
type summary struct {
	out     io.Writer
	running map[key]*strings.Builder
	passed  int
	failed  []key
	skipped []key
	optOut  []string // "pkg.Test: what it needed"
	pkgFail []string
	builds  map[string]*strings.Builder // build output by import path
}

func newSummary(out io.Writer) *summary {
	return &summary{out: out, running: map[key]*strings.Builder{}, builds: map[string]*strings.Builder{}}
}

func (s *summary) add(e event) {
	k := key{e.Package, e.Test}
	switch e.Action {
	case "build-output":
		b := s.builds[e.ImportPath]
		if b == nil {
			b = new(strings.Builder)
			s.builds[e.ImportPath] = b
		}
		b.WriteString(e.Output)
	case "build-fail":
		s.pkgFail = append(s.pkgFail, e.ImportPath+" (build failed)")
		if b := s.builds[e.ImportPath]; b != nil {
			fmt.Fprint(s.out, b.String())
		}
	case "run":
		s.running[k] = new(strings.Builder)
	case "output":
		if b := s.running[k]; b != nil {
			b.WriteString(e.Output)
		} else if e.Test == "" {
			s.packageOutput(e)
		}
	case "pass", "fail", "skip":
		if e.Test == "" {
			s.packageDone(e)
			return
		}
		b := s.running[k]
		delete(s.running, k)
		text := ""
		if b != nil {
			text = b.String()
		}
		switch e.Action {
		case "pass":
			s.passed++
		case "fail":
			s.failed = append(s.failed, k)
			fmt.Fprintf(s.out, "--- FAIL: %s %s\n%s", e.Package, e.Test, text)
		case "skip":
			if i := strings.Index(text, marker); i >= 0 {
				why := strings.TrimSpace(strings.SplitN(text[i+len(marker):], "\n", 2)[0])
				s.optOut = append(s.optOut, e.Package+"."+e.Test+": "+why)
			} else {
				s.skipped = append(s.skipped, k)
			}
		}
	}
}

// packageOutput passes on what a package prints outside any test: its
// "ok"/"FAIL" line, a panic, a timeout.
func (s *summary) packageOutput(e event) {
	line := e.Output
	if strings.HasPrefix(line, "PASS") || strings.HasPrefix(line, "=== ") || strings.TrimSpace(line) == "" {
		return
	}
	fmt.Fprint(s.out, line)
}

func (s *summary) packageDone(e event) {
	if e.Action == "fail" {
		if e.FailedBuild == "" { // a build failure is listed already
			s.pkgFail = append(s.pkgFail, e.Package)
		}
		// Tests still "running" when the package failed (a panic, a
		// timeout) get their output printed and count as failed.
		for k, b := range s.running {
			if k.pkg == e.Package {
				s.failed = append(s.failed, k)
				fmt.Fprintf(s.out, "--- FAIL (unfinished): %s %s\n%s", k.pkg, k.test, b.String())
				delete(s.running, k)
			}
		}
	}
}

func (s *summary) print() (ok bool) {
	if len(s.skipped) > 0 {
		var names []string
		for _, k := range s.skipped {
			names = append(names, k.pkg+"."+k.test)
		}
		sort.Strings(names)
		fmt.Fprintf(s.out, "\nskipped (by the test itself):\n  %s\n", strings.Join(names, "\n  "))
	}
	if len(s.optOut) > 0 {
		sort.Strings(s.optOut)
		fmt.Fprintf(s.out, "\nskipped because CYPHONIC_SKIP_SYSTEM_TESTS=1 (%d):\n  %s\n", len(s.optOut), strings.Join(s.optOut, "\n  "))
	}
	if len(s.pkgFail) > 0 {
		fmt.Fprintf(s.out, "\nfailed packages:\n  %s\n", strings.Join(s.pkgFail, "\n  "))
	}
	failed := len(s.failed)
	if failed == 0 && len(s.pkgFail) > 0 {
		failed = len(s.pkgFail) // a build failure fails no test by name
	}
	fmt.Fprintln(s.out)
	if len(s.optOut) > 0 {
		fmt.Fprintf(s.out, "%d system tests skipped by CYPHONIC_SKIP_SYSTEM_TESTS=1: this run is NOT the whole suite\n", len(s.optOut))
	}
	fmt.Fprintf(s.out, "%d passed, %d failed, %d skipped\n", s.passed, failed, len(s.skipped)+len(s.optOut))
	return failed == 0 && s.passed > 0
}

func run(in io.Reader, out io.Writer) int {
	s := newSummary(out)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintf(out, "%s\n", line) // not test2json: go's own error text
			continue
		}
		s.add(e)
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(out, "testsum: read: %v\n", err)
		return 1
	}
	if !s.print() {
		return 1
	}
	return 0
}

func main() { os.Exit(run(os.Stdin, os.Stdout)) }
