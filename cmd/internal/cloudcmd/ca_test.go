package cloudcmd

import (
	"bytes"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cmd/internal/cli"
	"github.com/cyphonic/cyphonic-go/cmd/internal/clitest"
	"github.com/cyphonic/cyphonic-go/cmd/internal/nodecmd"
	"github.com/cyphonic/cyphonic-go/pki"
)

// runCmd runs the binary's entry point in-process and returns its exit code
// and output.
func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Run(allCommands(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCALifecycle(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	if code, _, stderr := runCmd(t, "ca", "init", "--dir", caDir); code != 0 {
		t.Fatalf("ca init: exit %d: %s", code, stderr)
	}
	// A second init must refuse: replacing the root orphans every certificate.
	if code, _, stderr := runCmd(t, "ca", "init", "--dir", caDir); code == 0 || !strings.Contains(stderr, "already exists") {
		t.Fatalf("second ca init: exit %d, stderr %q; want a refusal", code, stderr)
	}

	alice := filepath.Join(dir, "alice")
	code, stdout, stderr := runCmd(t, "ca", "issue", "--dir", caDir, "--fqdn", "Alice.Example.Cyphonic", "--out", alice)
	if code != 0 {
		t.Fatalf("ca issue: exit %d: %s", code, stderr)
	}
	id, err := pki.LoadIdentity(alice)
	if err != nil {
		t.Fatal(err)
	}
	if id.FQDN != "alice.example.cyphonic" || id.Role != pki.RoleNode {
		t.Fatalf("issued %q role %v; want the canonical FQDN as a node", id.FQDN, id.Role)
	}
	root, err := pki.LoadRoot(alice)
	if err != nil {
		t.Fatalf("issue must write the CA cert beside the identity: %v", err)
	}
	v, err := pki.NewVerifier(root, pki.RoleNode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(id.CertDER, "alice.example.cyphonic", time.Now()); err != nil {
		t.Fatalf("fresh certificate does not verify: %v", err)
	}

	serial := regexp.MustCompile(`serial ([0-9a-f]+)`).FindStringSubmatch(stdout)
	if serial == nil {
		t.Fatalf("issue output names no serial: %q", stdout)
	}
	if code, _, stderr := runCmd(t, "ca", "revoke", "--dir", caDir, serial[1]); code != 0 {
		t.Fatalf("ca revoke: exit %d: %s", code, stderr)
	}
	deny, err := pki.LoadDenyList(caDir)
	if err != nil {
		t.Fatal(err)
	}
	v.SetDenyList(deny)
	if _, err := v.Verify(id.CertDER, "", time.Now()); !errors.Is(err, pki.ErrRevoked) {
		t.Fatalf("after revoke: Verify = %v; want ErrRevoked", err)
	}
	if code, stdout, _ := runCmd(t, "ca", "list", "--dir", caDir); code != 0 || !strings.Contains(stdout, serial[1]) {
		t.Fatalf("ca list: exit %d, %q; want the revoked serial", code, stdout)
	}

	svc := filepath.Join(dir, "nms")
	if code, _, stderr := runCmd(t, "ca", "issue", "--dir", caDir, "--service", "nms", "--out", svc); code != 0 {
		t.Fatalf("ca issue --service: exit %d: %s", code, stderr)
	}
	sid, err := pki.LoadIdentity(svc)
	if err != nil || sid.Role != pki.RoleNMS {
		t.Fatalf("service identity: %v, role %v", err, sid.Role)
	}
}

func TestCABadInput(t *testing.T) {
	caDir := filepath.Join(t.TempDir(), "ca")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no subcommand", []string{"ca"}, 2, "need a subcommand"},
		{"unknown subcommand", []string{"ca", "frobnicate"}, 2, "unknown ca subcommand"},
		{"neither fqdn nor service", []string{"ca", "issue", "--dir", caDir}, 2, "exactly one"},
		{"both", []string{"ca", "issue", "--dir", caDir, "--fqdn", "a.b.cyphonic", "--service", "as"}, 2, "exactly one"},
		{"bad fqdn", []string{"ca", "issue", "--dir", caDir, "--fqdn", "not a name"}, 2, "--fqdn"},
		{"bad service", []string{"ca", "issue", "--dir", caDir, "--service", "node"}, 2, "--service"},
		{"no CA", []string{"ca", "issue", "--dir", caDir, "--fqdn", "a.b.cyphonic"}, 1, "ca init"},
		{"bad serial", []string{"ca", "revoke", "--dir", caDir, "zz-top"}, 2, ""},
		{"stray argument", []string{"ca", "init", "--dir", caDir, "extra"}, 2, "unexpected argument"},
		// A negative validity used to reach the CA and fail with a
		// monotonic clock reading in the message.
		{"negative init validity", []string{"ca", "init", "--dir", caDir, "--validity", "-1h"}, 2, "--validity -1h0m0s: must be positive"},
		{"negative issue validity", []string{"ca", "issue", "--dir", caDir, "--fqdn", "a.b.cyphonic", "--validity", "-1h"}, 2, "--validity -1h0m0s: must be positive"},
		{"zero service validity", []string{"ca", "issue-service", "--dir", caDir, "--validity", "0s"}, 2, "--validity 0s: must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCmd(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d mentioning %q", code, stderr, tt.code, tt.want)
			}
		})
	}
}

// TestCARecord: the CA records what it issues; `ca list` shows each
// certificate with its expiry and state, `ca revoke` refuses a serial it
// never issued, and a second certificate for a name says what becomes of
// the first.
func TestCARecord(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	alice := issueNode(t, dir, "alice")
	first, err := pki.LoadIdentity(alice)
	if err != nil {
		t.Fatal(err)
	}
	firstSerial := pki.FormatSerial(first.Cert.SerialNumber)
	issueNode(t, dir, "bob", "--validity", "240h")

	// A second certificate for alice: the first stays valid, and the
	// output says so and how to revoke it.
	code, stdout, stderr := runCmd(t, "ca", "issue", "--dir", caDir, "--fqdn", "alice.example.cyphonic", "--out", filepath.Join(dir, "alice2"))
	if code != 0 {
		t.Fatalf("second issue: %s", stderr)
	}
	if !strings.Contains(stdout, "earlier certificate, serial "+firstSerial) || !strings.Contains(stdout, "stays valid") ||
		!strings.Contains(stdout, "cyphonic ca revoke --dir "+caDir+" "+firstSerial) {
		t.Fatalf("second issue does not say what happens to the first:\n%s", stdout)
	}
	second := regexp.MustCompile(`serial ([0-9a-f]+), valid`).FindStringSubmatch(stdout)[1]

	// Never issued: refused, naming the serial; --force revokes anyway.
	code, _, stderr = runCmd(t, "ca", "revoke", "--dir", caDir, "abcdef")
	if code != 1 || !strings.Contains(stderr, "serial abcdef: this CA") || !strings.Contains(stderr, "no record") {
		t.Fatalf("revoke of an unknown serial: exit %d, %q", code, stderr)
	}
	if deny, _ := pki.LoadDenyList(caDir); deny.Len() != 0 {
		t.Fatalf("a refused revoke changed the deny list: %v", deny.Serials())
	}
	if code, _, stderr = runCmd(t, "ca", "revoke", "--dir", caDir, "--force", "abcdef"); code != 0 {
		t.Fatalf("revoke --force: %s", stderr)
	}
	code, stdout, stderr = runCmd(t, "ca", "revoke", "--dir", caDir, firstSerial)
	if code != 0 || !strings.Contains(stdout, "node alice.example.cyphonic") {
		t.Fatalf("revoke: exit %d, %q %q", code, stdout, stderr)
	}
	if code, stdout, _ = runCmd(t, "ca", "revoke", "--dir", caDir, firstSerial); code != 0 || !strings.Contains(stdout, "already revoked") {
		t.Fatalf("second revoke: exit %d, %q", code, stdout)
	}

	code, stdout, stderr = runCmd(t, "ca", "list", "--dir", caDir)
	if code != 0 {
		t.Fatalf("ca list: %s", stderr)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(stdout, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines[f[0]] = l
		}
	}
	bob, _ := pki.LoadIdentity(filepath.Join(dir, "bob"))
	bobSerial := pki.FormatSerial(bob.Cert.SerialNumber)
	for serial, want := range map[string][]string{
		firstSerial: {"node", "alice.example.cyphonic", first.Cert.NotAfter.UTC().Format(time.RFC3339), "revoked"},
		second:      {"alice.example.cyphonic", "valid"},
		bobSerial:   {"bob.example.cyphonic", "expires in 240h"},
		"abcdef":    {"revoked (not in this CA's record)"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[serial], w) {
				t.Errorf("ca list line for %s lacks %q:\n%s", serial, w, stdout)
			}
		}
	}
	if !strings.Contains(stdout, "3 certificate(s) issued, 2 revoked") {
		t.Errorf("ca list summary:\n%s", stdout)
	}
}

// TestCANameMatchesCloud: `ca init` and a first `cyphonic cloud` name their
// CA alike (they used to differ, which made one look like another's).
func TestCANameMatchesCloud(t *testing.T) {
	dir := t.TempDir()
	if code, _, stderr := runCmd(t, "ca", "init", "--dir", filepath.Join(dir, "ca")); code != 0 {
		t.Fatal(stderr)
	}
	mine, err := pki.LoadRoot(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	out, stop := startCloudCmd(t)
	defer stop()
	m := regexp.MustCompile(`new overlay CA +(\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("the cloud made no CA:\n%s", out.String())
	}
	clouds, err := pki.LoadRoot(m[1])
	if err != nil {
		t.Fatal(err)
	}
	if mine.Subject.CommonName != clouds.Subject.CommonName {
		t.Fatalf("ca init names its CA %q, the cloud %q", mine.Subject.CommonName, clouds.Subject.CommonName)
	}
}

// allCommands are cyphonic-cloud's: this package's and the node's.
func allCommands() []cli.Command { return append(Commands(), nodecmd.Commands()...) }

func issueNode(t *testing.T, dir, name string, extra ...string) string {
	t.Helper()
	return clitest.IssueNode(t, allCommands(), dir, name, extra...)
}
