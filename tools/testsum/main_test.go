package main

import (
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	ev := func(action, pkg, test, output string) string {
		return `{"Action":"` + action + `","Package":"` + pkg + `","Test":"` + test + `","Output":` + quote(output) + "}\n"
	}
	tests := []struct {
		name    string
		in      string
		code    int
		want    []string
		wantNot []string
	}{
		{
			name: "all pass",
			in: ev("run", "p", "TestA", "") + ev("output", "p", "TestA", "=== RUN TestA\n") + ev("pass", "p", "TestA", "") +
				ev("output", "p", "", "ok  \tp\t0.1s\n") + ev("pass", "p", "", ""),
			code: 0, want: []string{"ok  \tp", "1 passed, 0 failed, 0 skipped"}, wantNot: []string{"TestA\n=== RUN"},
		},
		{
			name: "a failure prints its output",
			in: ev("run", "p", "TestA", "") + ev("output", "p", "TestA", "boom: got 1 want 2\n") + ev("fail", "p", "TestA", "") +
				ev("run", "p", "TestB", "") + ev("pass", "p", "TestB", "") + ev("fail", "p", "", ""),
			code: 1, want: []string{"--- FAIL: p TestA", "boom: got 1 want 2", "1 passed, 1 failed, 0 skipped", "failed packages:\n  p"},
		},
		{
			name: "opt-out skips are counted and named",
			in: ev("run", "p", "TestNS", "") + ev("output", "p", "TestNS", "    x_test.go:9: "+marker+" root, nft on PATH\n") + ev("skip", "p", "TestNS", "") +
				ev("run", "p", "TestPerf", "") + ev("output", "p", "TestPerf", "takes minutes\n") + ev("skip", "p", "TestPerf", "") +
				ev("run", "p", "TestA", "") + ev("pass", "p", "TestA", "") + ev("pass", "p", "", ""),
			code: 0,
			want: []string{"skipped because CYPHONIC_SKIP_SYSTEM_TESTS=1 (1):\n  p.TestNS: root, nft on PATH", "skipped (by the test itself):\n  p.TestPerf",
				"1 system tests skipped by CYPHONIC_SKIP_SYSTEM_TESTS=1", "1 passed, 0 failed, 2 skipped"},
		},
		{
			name: "a panic fails the tests still running",
			in:   ev("run", "p", "TestA", "") + ev("output", "p", "TestA", "started\n") + ev("output", "p", "", "panic: oops\n") + ev("fail", "p", "", ""),
			code: 1, want: []string{"panic: oops", "--- FAIL (unfinished): p TestA", "started", "0 passed, 1 failed"},
		},
		{
			name: "a build failure fails the run",
			in: `{"ImportPath":"p [p.test]","Action":"build-output","Output":"x.go:1: syntax error\n"}` + "\n" +
				`{"ImportPath":"p [p.test]","Action":"build-fail"}` + "\n" + `{"Action":"fail","Package":"p","FailedBuild":"p [p.test]"}` + "\n",
			code: 1, want: []string{"x.go:1: syntax error", "(build failed)", "0 passed, 1 failed"},
		},
		{
			name: "no test ran is a failure",
			in:   "go: no packages\n",
			code: 1, want: []string{"go: no packages", "0 passed, 0 failed, 0 skipped"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			if code := run(strings.NewReader(tt.in), &out); code != tt.code {
				t.Errorf("exit %d, want %d\n%s", code, tt.code, out.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(out.String(), w) {
					t.Errorf("output has %q:\n%s", w, out.String())
				}
			}
		})
	}
}

func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}
