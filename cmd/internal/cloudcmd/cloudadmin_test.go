package cloudcmd

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cyphonic/cyphonic-go/cloud/admin"
	"github.com/cyphonic/cyphonic-go/cmd/internal/clitest"
)

// TestCloudAdminCLI runs `cyphonic cloud nodes|node|end-session` against a
// running `cyphonic cloud` with a node logged in, and each error case:
// exit code and the cause in the message.
func TestCloudAdminCLI(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	out, stop := startCloudCmd(t, "--data", data)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	alice := filepath.Join(t.TempDir(), "alice")
	if code, _, stderr := runCmd(t, "ca", "issue", "--dir", data+"-ca", "--fqdn", "alice.example.cyphonic", "--out", alice); code != 0 {
		t.Fatalf("ca issue: %s", stderr)
	}
	if !strings.Contains(out.String(), filepath.Join(data, admin.SocketName)) {
		t.Errorf("the cloud does not say where its admin socket is:\n%s", out)
	}
	code, stdout, stderr := runCmd(t, "cloud", "nodes", "--data", data)
	if code != 0 || !strings.Contains(stdout, "no nodes yet") {
		t.Errorf("nodes before any login: exit %d\n%s%s", code, stdout, stderr)
	}
	loginWith(t, alice, clitest.ASAddr(t, out.String()))

	for _, c := range []struct {
		args   []string
		code   int
		stdout []string // each must appear
		stderr string
	}{
		{[]string{"cloud", "nodes", "--data", data}, 0, []string{"FQDN", "CERT EXPIRES", "alice.example.cyphonic", "100.64.", "127.0.0.1:", "yes", "(in "}, ""},
		{[]string{"cloud", "node", "alice.example.cyphonic", "--data", data}, 0, []string{"Online:", "yes (session", "Certificate:", "Mapping (IPv4):", "127.0.0.1:"}, ""},
		{[]string{"cloud", "node", "--data", data, "alice.example.cyphonic"}, 0, []string{"FQDN:", "alice.example.cyphonic"}, ""},
		{[]string{"cloud", "node", "bob.example.cyphonic", "--data", data}, 1, nil, `unknown node "bob.example.cyphonic"`},
		{[]string{"cloud", "end-session", "bob.example.cyphonic", "--data", data}, 1, nil, `unknown node "bob.example.cyphonic"`},
		{[]string{"cloud", "node", "--data", data}, 2, nil, "which node?"},
		{[]string{"cloud", "nodes", "extra", "--data", data}, 2, nil, `unexpected argument "extra"`},
		{[]string{"cloud", "nodes", "--data", filepath.Join(t.TempDir(), "none")}, 1, nil, "no cloud running with this data directory"},
		{[]string{"cloud", "end-session", "alice.example.cyphonic", "--data", data}, 0, []string{"ended session", "alice.example.cyphonic", "logs in again"}, ""},
		{[]string{"cloud", "node", "alice.example.cyphonic", "--data", data}, 0, []string{"Online:", "no"}, ""},
		{[]string{"cloud", "end-session", "alice.example.cyphonic", "--data", data}, 1, nil, "has no session"},
	} {
		code, stdout, stderr := runCmd(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.stderr) {
			t.Errorf("%v: exit %d (want %d), stderr %q (want %q)", c.args, code, c.code, stderr, c.stderr)
			continue
		}
		for _, w := range c.stdout {
			if !strings.Contains(stdout, w) {
				t.Errorf("%v: output lacks %q:\n%s", c.args, w, stdout)
			}
		}
	}
	// The cloud's own config file says where its data is.
	conf := clitest.WriteFile(t, filepath.Join(t.TempDir(), "cloud.toml"), "data = \""+data+"\"\n")
	if code, stdout, stderr := runCmd(t, "cloud", "nodes", "--config", conf); code != 0 || !strings.Contains(stdout, "alice.example.cyphonic") {
		t.Errorf("nodes --config: exit %d\n%s%s", code, stdout, stderr)
	}

	code, stdout, _ = runCmd(t, "cloud", "nodes", "--json", "--data", data)
	var nodes []admin.Node
	if err := json.Unmarshal([]byte(stdout), &nodes); code != 0 || err != nil || len(nodes) != 1 || nodes[0].FQDN != "alice.example.cyphonic" || nodes[0].Online {
		t.Errorf("nodes --json: exit %d, %v: %s", code, err, stdout)
	}
	// The no-cloud error names the socket it tried.
	_, _, stderr = runCmd(t, "cloud", "nodes", "--data", "/nonexistent/cloud")
	if !strings.Contains(stderr, "/nonexistent/cloud/admin.sock") || !strings.Contains(stderr, "--data") {
		t.Errorf("no-cloud error: %s", stderr)
	}
}
