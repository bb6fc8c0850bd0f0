// Package systemd holds the systemd units of the two daemons; its test
// checks them with systemd-analyze verify.
package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cyphonic/cyphonic-go/test/systest"
)

// TestUnitsVerify runs systemd-analyze verify on each unit as shipped,
// but for ExecStart's binary, which it requires to exist: the test binary
// stands in for /usr/local/bin/cyphonic. Any complaint fails the test
// (an unknown key is only a warning to systemd).
func TestUnitsVerify(t *testing.T) {
	systest.Require(t, systest.Tool("systemd-analyze", "systemd"))
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	units, err := filepath.Glob("*.service")
	if err != nil || len(units) != 2 {
		t.Fatalf("units %v (%v); want the node's and the cloud's", units, err)
	}
	dir := t.TempDir()
	for _, u := range units {
		t.Run(u, func(t *testing.T) {
			b, err := os.ReadFile(u)
			if err != nil {
				t.Fatal(err)
			}
			text := string(b)
			if !strings.Contains(text, "ExecStart=/usr/local/bin/cyphonic ") {
				t.Fatalf("%s: ExecStart does not run /usr/local/bin/cyphonic", u)
			}
			text = strings.ReplaceAll(text, "ExecStart=/usr/local/bin/cyphonic ", "ExecStart="+self+" ")
			p := filepath.Join(dir, u)
			if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("systemd-analyze", "verify", p).CombinedOutput()
			if err != nil || len(strings.TrimSpace(string(out))) > 0 {
				t.Fatalf("systemd-analyze verify %s: %v\n%s", u, err, out)
			}
		})
	}
}

// TestNodeUnitPrivileges: the node's unit grants CAP_NET_ADMIN and nothing
// else, as a non-root user (cmd/internal/nodecmd's TestNodeRunsWithCapNetAdminOnly
// shows the node runs so); the cloud's grants nothing.
func TestNodeUnitPrivileges(t *testing.T) {
	for unit, want := range map[string][]string{
		"cyphonic-node.service":  {"DynamicUser=yes", "AmbientCapabilities=CAP_NET_ADMIN\n", "CapabilityBoundingSet=CAP_NET_ADMIN\n", "NoNewPrivileges=yes"},
		"cyphonic-cloud.service": {"DynamicUser=yes", "AmbientCapabilities=\n", "CapabilityBoundingSet=\n", "NoNewPrivileges=yes"},
	} {
		b, err := os.ReadFile(unit)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s lacks %q", unit, w)
			}
		}
		if strings.Contains(string(b), "User=root") {
			t.Errorf("%s runs as root", unit)
		}
	}
}
