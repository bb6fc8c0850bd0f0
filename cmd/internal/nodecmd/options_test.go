package nodecmd

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cmd/internal/clitest"
)

// TestConfigRoundTrip: --check-config prints the effective options as a
// config file that reads back to the same options, for both daemons; a
// flag overrides the file.
func TestConfigRoundTrip(t *testing.T) {
	dir := t.TempDir()
	alice := issueNode(t, dir, "alice")
	for _, tt := range []struct {
		daemon string
		file   string
		want   []string
	}{
		{"node", `cloud = "127.0.0.1:7401"
cert = "` + alice + `"
dns = "off"
mtu = 1400
listen4 = "0.0.0.0:7400"
listen6 = "off"
keepalive = "20s"
fallback-after = "3s"
peer-passive-keepalive = "250ms"
peer-silence-after = "1500ms"
tun-backend = "water"
log-format = "json"
v = true
`, []string{`mtu = 1400`, `dns = "off"`, `keepalive = "20s"`, `fallback-after = "3s"`, `peer-passive-keepalive = "250ms"`, `peer-silence-after = "1.5s"`, `tun-backend = "water"`, `v = true`, `listen6 = "off"`, `# ok: alice.example.cyphonic`}},
		{"node", `cloud = "127.0.0.1:7401"
cert = "` + alice + `"
tun-backend = "offload"
tun-queues = 3
`, []string{`tun-backend = "offload"`, `tun-queues = 3`, `# ok: alice.example.cyphonic`}},
		{"cloud", `listen = ["0.0.0.0", "::"]
as-port = 17401
services = "as,nms"
session-idle = "5m"
debug-addr = "off"
`, []string{`listen = "0.0.0.0,::"`, `as-port = 17401`, `services = "as,nms"`, `session-idle = "5m0s"`, `debug-addr = "off"`}},
	} {
		t.Run(tt.daemon, func(t *testing.T) {
			f := clitest.WriteFile(t, filepath.Join(dir, tt.daemon+".toml"), tt.file)
			code, first, stderr := runCmd(t, tt.daemon, "--config", f, "--check-config")
			if code != 0 {
				t.Fatalf("--check-config: exit %d: %s", code, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(first, w) {
					t.Errorf("effective config lacks %q:\n%s", w, first)
				}
			}
			f2 := clitest.WriteFile(t, filepath.Join(dir, tt.daemon+"2.toml"), first)
			code, second, stderr := runCmd(t, tt.daemon, "--config", f2, "--check-config")
			if code != 0 || second != first {
				t.Fatalf("read back: exit %d (%s):\n%s\nwant\n%s", code, stderr, second, first)
			}
			_, over, _ := runCmd(t, tt.daemon, "--config", f, "--check-config", "--log-format", "text")
			if !strings.Contains(over, `log-format = "text"`) {
				t.Errorf("a flag did not override the file:\n%s", over)
			}
		})
	}
}

// TestConfigValidation: a bad config file stops the daemon at start,
// naming the file and the key.
func TestConfigValidation(t *testing.T) {
	dir := t.TempDir()
	alice := issueNode(t, dir, "alice")
	base := `cloud = "127.0.0.1:7401"` + "\n" + `cert = "` + alice + `"` + "\n"
	tests := []struct {
		name, daemon, file, want string
	}{
		{"unknown key", "node", base + "mtux = 1400\n", `unknown key "mtux"`},
		{"meta key", "node", base + "check-config = true\n", `unknown key "check-config"`},
		{"wrong type", "node", base + "mtu = \"big\"\n", `key "mtu"`},
		{"float", "node", base + "mtu = 1.5\n", `key "mtu": unsupported value`},
		{"table", "node", base + "[dns]\naddr = \"x\"\n", `key "dns": a table is not an option`},
		{"syntax", "node", base + "mtu = = 3\n", `line 3`},
		{"bad address", "node", base + "listen4 = \"1.2.3\"\n", `listen4 (in `},
		{"empty switch", "node", base + "dns = \"\"\n", `dns (in `},
		{"bad duration", "node", base + "keepalive = \"-1s\"\n", `keepalive (in `},
		{"bad fallback", "node", base + "fallback-after = \"5m\"\n", `fallback-after (in `},
		{"bad silence", "node", base + "peer-silence-after = \"1s\"\n", `peer-silence-after (in `},
		{"bad port", "cloud", "as-port = 99999\n", `as-port (in `},
		{"bad service", "cloud", "services = [\"dns\"]\n", `services (in `},
		{"list of numbers", "cloud", "listen = [1, 2]\n", `key "listen": a list may hold only strings`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := clitest.WriteFile(t, filepath.Join(t.TempDir(), "c.toml"), tt.file)
			code, _, stderr := runCmd(t, tt.daemon, "--config", f, "--check-config")
			if code != 2 || !strings.Contains(stderr, tt.want) || (!strings.Contains(tt.want, "(in ") && !strings.Contains(stderr, f)) {
				t.Fatalf("exit %d, stderr %q; want exit 2 naming %s and %q", code, stderr, f, tt.want)
			}
		})
	}
	if code, _, stderr := runCmd(t, "node", "--config", filepath.Join(dir, "missing.toml")); code != 2 || !strings.Contains(stderr, "--config") {
		t.Fatalf("missing file: exit %d, %q", code, stderr)
	}
}

// TestShippedConfigs: the example config files in dist/ (the systemd
// units read them from /etc/cyphonic) hold only known keys and valid
// values.
func TestShippedConfigs(t *testing.T) {
	if code, _, stderr := runCmd(t, "cloud", "--config", "../../../dist/cloud.toml", "--check-config"); code != 0 {
		t.Fatalf("dist/cloud.toml: exit %d: %s", code, stderr)
	}
	alice := issueNode(t, t.TempDir(), "alice")
	// The file's certificate path exists on a provisioned host only.
	code, stdout, stderr := runCmd(t, "node", "--config", "../../../dist/node.toml", "--cert", alice, "--check-config")
	if code != 0 || !strings.Contains(stdout, `cloud = "192.0.2.10:7401"`) {
		t.Fatalf("dist/node.toml: exit %d: %s%s", code, stderr, stdout)
	}
}

// TestLogFormatJSON: --log-format json makes every log line a JSON object
// (log/slog's JSON handler).
func TestLogFormatJSON(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr clitest.SyncBuffer
	args := []string{"--data", t.TempDir(), "--listen", "127.0.0.1", "--log-format", "json", "--debug-addr", "off",
		"--nms-port", fmt.Sprint(clitest.FreeUDPPort(t)), "--as-port", fmt.Sprint(clitest.FreeUDPPort(t)),
		"--alt-port", fmt.Sprint(clitest.FreeUDPPort(t)), "--trs-port", fmt.Sprint(clitest.FreeUDPPort(t))}
	done := make(chan error, 1)
	go func() { done <- runCloud(ctx, args, &stdout, &stderr) }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(stdout.String(), "Issue a node certificate") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A first start logs the new CA at WARN.
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) == 0 || lines[0] == "" {
		t.Fatal("nothing logged")
	}
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec["level"] == nil || rec["msg"] == nil {
			t.Fatalf("not a JSON log record (%v): %q", err, l)
		}
	}
}
