package netlab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/test/systest"
)

// assertGone checks that nothing named prefix-* is left.
func assertGone(t *testing.T, prefix string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	if strings.Contains(string(out), prefix+"-") {
		t.Errorf("namespaces of %s left:\n%s", prefix, out)
	}
	left, _ := filepath.Glob(filepath.Join(etcNetnsDir, prefix+"-*"))
	if len(left) > 0 {
		t.Errorf("/etc/netns entries left: %v", left)
	}
}

func require(t *testing.T) {
	t.Helper()
	var needs []systest.Need
	for _, n := range Needs() {
		needs = append(needs, n)
	}
	systest.Require(t, needs...)
}

func TestSweepStale(t *testing.T) {
	require(t)
	stale := fmt.Sprintf("cy%04x-stale", os.Getpid()&0xffff)
	if _, err := run(t.Context(), "", "ip", "netns", "add", stale); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = removeNamespace(stale) })
	if err := os.MkdirAll(filepath.Join(etcNetnsDir, stale), 0o755); err != nil {
		t.Fatal(err)
	}
	only := func(name string) bool { return name == stale }

	if swept := sweepStale(time.Now().Add(-time.Hour), only); len(swept) != 0 {
		t.Fatalf("swept a fresh namespace: %v", swept)
	}
	swept := sweepStale(time.Now().Add(time.Minute), only)
	if len(swept) != 1 || swept[0] != stale {
		t.Fatalf("swept %v, want [%s]", swept, stale)
	}
	assertGone(t, strings.TrimSuffix(stale, "-stale"))
}
