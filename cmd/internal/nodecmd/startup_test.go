package nodecmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/rootca"
	"github.com/cyphonic/cyphonic-go/cmd/internal/clitest"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/test/systest"
)

// localDeadline bounds how long a locally caused start error may take:
// the issue asks for "within a second"; the bound is generous for a
// shared, race-instrumented machine, and no network wait comes close.
const localDeadline = 3 * time.Second

// tunName is a TUN device name unique to this test process.
func tunName(tag string) string { return fmt.Sprintf("ops%s%d", tag, os.Getpid()%100000) }

// startNodeCmd runs `cyphonic node` in-process until the returned stop is
// called, once its log says it started.
func startNodeCmd(t *testing.T, args ...string) (stderr *clitest.SyncBuffer, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr = new(clitest.SyncBuffer)
	done := make(chan error, 1)
	go func() { done <- runNode(ctx, args, io.Discard, stderr) }()
	deadline := time.After(20 * time.Second)
	for !strings.Contains(stderr.String(), "node started") {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("node exited early: %v\n%s", err, stderr.String())
		case <-deadline:
			cancel()
			t.Fatalf("node did not start:\n%s", stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return stderr, func() error {
		cancel()
		return <-done
	}
}

// TestSecondNodeCollisions: a second node on one host collides on the TUN
// name, the resolver port, the debug port and a fixed UDP port in turn;
// each fails at once naming the flag to change (they said only "device or
// resource busy" or "address already in use").
func TestSecondNodeCollisions(t *testing.T) {
	systest.Require(t, systest.Root(), systest.File("/dev/net/tun"))
	dir := t.TempDir()
	alice := issueNode(t, dir, "alice")
	bob := issueNode(t, dir, "bob")
	udp, dns, dbg := clitest.FreeUDPPort(t), clitest.FreeUDPPort(t), clitest.FreeTCPPort(t)
	tunA := tunName("a")
	common := []string{"--cloud", "127.0.0.1:9", "--listen6", "off", "--upstream", "off"}
	first := append([]string{"--cert", alice, "--tun", tunA, "--listen4", fmt.Sprintf("127.0.0.1:%d", udp),
		"--dns", fmt.Sprintf("127.0.0.1:%d", dns), "--debug-addr", fmt.Sprintf("127.0.0.1:%d", dbg)}, common...)
	_, stop := startNodeCmd(t, first...)
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()

	free := func() []string {
		return []string{"--tun", tunName("b"), "--listen4", "127.0.0.1:0",
			"--dns", fmt.Sprintf("127.0.0.1:%d", clitest.FreeUDPPort(t)), "--debug-addr", "127.0.0.1:0"}
	}
	tests := []struct {
		name     string
		override []string
		want     string
	}{
		{"TUN name", []string{"--tun", tunA}, "--tun: TUN device " + tunA + " is in use (another node on this host?): give this node another name with --tun"},
		{"resolver port", []string{"--dns", fmt.Sprintf("127.0.0.1:%d", dns)}, "--dns: resolver address 127.0.0.1:"},
		{"debug port", []string{"--debug-addr", fmt.Sprintf("127.0.0.1:%d", dbg)}, "--debug-addr: debug address 127.0.0.1:"},
		{"UDP port", []string{"--listen4", fmt.Sprintf("127.0.0.1:%d", udp)}, "--listen4: UDP socket 127.0.0.1:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Later flags win: the free ones first, then the colliding one.
			args := append(append(append([]string{"node", "--cert", bob}, common...), free()...), tt.override...)
			start := time.Now()
			code, _, stderr := runCmd(t, args...)
			if code != 1 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want exit 1 and %q", code, stderr, tt.want)
			}
			if tt.name != "TUN name" && !strings.Contains(stderr, "in use (another node on this host?)") {
				t.Fatalf("stderr %q does not say the address is in use", stderr)
			}
			if d := time.Since(start); d > localDeadline {
				t.Fatalf("took %v", d)
			}
		})
	}
}

// TestNodeTrustErrors: a wrong --ca, a certificate from another CA and an
// expired certificate stop the node at once, naming the flag and the
// file; they used to show as "no answer from the cloud" after 15 s.
func TestNodeTrustErrors(t *testing.T) {
	dir := t.TempDir()
	alice := issueNode(t, dir, "alice")
	if code, _, stderr := runCmd(t, "ca", "init", "--dir", filepath.Join(dir, "other")); code != 0 {
		t.Fatal(stderr)
	}
	otherCA := filepath.Join(dir, "other", pki.CACertFile)
	foreign := filepath.Join(dir, "foreign")
	if code, _, stderr := runCmd(t, "ca", "issue", "--dir", filepath.Join(dir, "other"), "--fqdn", "mallory.example.cyphonic", "--out", foreign); code != 0 {
		t.Fatal(stderr)
	}
	// Give the foreign identity our CA's root, as a copy from the wrong
	// CA directory would.
	data, _ := os.ReadFile(filepath.Join(alice, pki.CACertFile))
	clitest.WriteFile(t, filepath.Join(foreign, pki.CACertFile), string(data))
	ca, err := rootca.Load(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	old, err := ca.IssueAt(pki.RoleNode, "old.example.cyphonic", now.Add(-48*time.Hour), now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	expired := filepath.Join(dir, "old")
	if err := pki.WriteIdentity(expired, old); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteRoot(expired, ca.Cert); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"wrong --ca", []string{"--cert", alice, "--ca", otherCA}, []string{"--ca: the certificate in " + alice, "was not issued by the CA in " + otherCA}},
		{"another CA's certificate", []string{"--cert", foreign}, []string{"--ca: the certificate in " + foreign, "mallory.example.cyphonic"}},
		{"a leaf as --ca", []string{"--cert", alice, "--ca", filepath.Join(alice, "node.crt")}, []string{"--ca: ", "is not a CA certificate"}},
		{"expired", []string{"--cert", expired}, []string{"--cert: the certificate in " + expired, "expired on", "cyphonic ca issue"}},
		{"missing --ca", []string{"--cert", alice, "--ca", filepath.Join(dir, "nope.crt")}, []string{"--ca: ", "nope.crt"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"node", "--cloud", "127.0.0.1:9", "--listen4", "127.0.0.1:0", "--listen6", "off",
				"--dns", "off", "--debug-addr", "off"}, tt.args...)
			start := time.Now()
			code, _, stderr := runCmd(t, args...)
			if code != 1 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q lacks %q", stderr, w)
				}
			}
			if d := time.Since(start); d > localDeadline {
				t.Fatalf("took %v", d)
			}
		})
	}
}

// reexec runs this test binary as the cyphonic binary under setpriv.
func reexec(t *testing.T, setpriv []string, bin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("setpriv", append(append(setpriv, "--", bin), args...)...)
	cmd.Env = append(os.Environ(), asBinaryEnv+"=1")
	return cmd
}

// TestNodeWithoutPrivilege: without CAP_NET_ADMIN the node says it needs
// root or the capability (it said only "operation not permitted").
func TestNodeWithoutPrivilege(t *testing.T) {
	systest.Require(t, systest.Root(), systest.Tool("setpriv", "util-linux"), systest.File("/dev/net/tun"))
	dir := t.TempDir()
	alice := issueNode(t, dir, "alice")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Root with no capabilities at all: still owns the files, cannot make
	// a TUN device.
	cmd := reexec(t, []string{"--bounding-set=-all", "--inh-caps=-all"}, self, "node", "--cloud", "127.0.0.1:9",
		"--cert", alice, "--tun", tunName("p"), "--listen4", "127.0.0.1:0", "--listen6", "off", "--dns", "off", "--debug-addr", "off")
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(out), "needs root or the CAP_NET_ADMIN capability") {
		t.Fatalf("exit %d (%v): %s", code, err, out)
	}
}

// TestNodeRunsWithCapNetAdminOnly is the systemd unit's claim run for
// real: as an unprivileged user holding CAP_NET_ADMIN alone, the node
// makes its TUN device, binds its sockets, resolver and debug port (above
// 1024), logs in and configures the device's addresses and routes.
func TestNodeRunsWithCapNetAdminOnly(t *testing.T) {
	systest.Require(t, systest.Root(), systest.Tool("setpriv", "util-linux"), systest.File("/dev/net/tun"))
	out, stopCloud := startCloudCmd(t)
	defer stopCloud()
	caDir := regexp.MustCompile(`new overlay CA +(\S+)`).FindStringSubmatch(out.String())[1]
	// A directory the unprivileged user can reach, with the binary and the
	// node's identity in it.
	base, err := os.MkdirTemp("", "cyphonic-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "cyphonic")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cert := filepath.Join(base, "alice")
	if code, _, stderr := runCmd(t, "ca", "issue", "--dir", caDir, "--fqdn", "alice.example.cyphonic", "--out", cert); code != 0 {
		t.Fatal(stderr)
	}
	const nobody = 65534
	filepath.Walk(cert, func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, nobody, nobody) })

	tun := tunName("u")
	var stderr clitest.SyncBuffer
	cmd := reexec(t, []string{"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all,+net_admin",
		"--ambient-caps=-all,+net_admin", "--bounding-set=-all,+net_admin"}, bin,
		"node", "--cloud", clitest.ASAddr(t, out.String()).String(), "--cert", cert, "--tun", tun,
		"--listen4", "127.0.0.1:0", "--listen6", "off", "--upstream", "off",
		"--dns", fmt.Sprintf("127.0.0.1:%d", clitest.FreeUDPPort(t)), "--debug-addr", fmt.Sprintf("127.0.0.1:%d", clitest.FreeTCPPort(t)))
	if fi, err := os.Stat("/dev/net/tun"); err == nil && fi.Mode().Perm()&0o006 != 0o006 {
		// This host lets only root open the device (Debian's udev makes it
		// 0666): show the node a standard one, in a mount namespace of its
		// own, leaving the host's alone.
		systest.Require(t, systest.Tool("unshare", "util-linux"))
		node := filepath.Join(base, "tun")
		script := fmt.Sprintf(`mknod %s c 10 200 && chmod 0666 %s && mount --bind %s /dev/net/tun && exec "$@"`, node, node, node)
		cmd.Args = append([]string{"unshare", "-m", "sh", "-c", script, "sh"}, cmd.Args...)
		cmd.Path, _ = exec.LookPath("unshare")
	}
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(stderr.String(), "TUN configured") {
		select {
		case err := <-exited:
			t.Fatalf("node exited (%v):\n%s", err, stderr.String())
		case <-deadline:
			cmd.Process.Kill()
			<-exited
			t.Fatalf("the node did not log in and configure %s:\n%s", tun, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	addrs, err := exec.Command("ip", "-o", "addr", "show", "dev", tun).CombinedOutput()
	if err != nil || !strings.Contains(string(addrs), "100.64.") {
		t.Errorf("%s has no VIP (%v): %s", tun, err, addrs)
	}
	// Without CAP_BPF the default is one TUN queue, and the log says why.
	if !strings.Contains(stderr.String(), "needs CAP_BPF") || strings.Contains(stderr.String(), "TUN queues") {
		t.Errorf("the node without CAP_BPF did not fall back to one TUN queue, saying why:\n%s", stderr.String())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		t.Fatalf("stop: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "node stopped") {
		t.Errorf("no clean stop:\n%s", stderr.String())
	}
}

// TestSecondCloudCollisions: a second cloud on one host is refused,
// naming the flag to change: its store, a port another holds, an address
// that is not this host's. (A store failure used to panic in the cleanup.)
func TestSecondCloudCollisions(t *testing.T) {
	out, stop := startCloudCmd(t)
	defer stop()
	text := out.String()
	port := func(re string) string {
		m := regexp.MustCompile(re + `\s+udp 127\.0\.0\.1:(\d+)`).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("no %s in:\n%s", re, text)
		}
		return m[1]
	}
	asPort, trsPort := port(`AS   \(login\)`), port(`TRS  \(relay\)`)
	data := regexp.MustCompile(`data in (\S+),`).FindStringSubmatch(text)[1]
	free := func() []string {
		return []string{"--data", t.TempDir(), "--listen", "127.0.0.1", "--debug-addr", "off",
			"--nms-port", fmt.Sprint(clitest.FreeUDPPort(t)), "--as-port", fmt.Sprint(clitest.FreeUDPPort(t)),
			"--alt-port", fmt.Sprint(clitest.FreeUDPPort(t)), "--trs-port", fmt.Sprint(clitest.FreeUDPPort(t))}
	}
	tests := []struct {
		name     string
		override []string
		want     string
	}{
		{"same data directory", []string{"--data", data}, "give this one another --data"},
		{"AS port", []string{"--as-port", asPort}, "is in use (another cloud on this host?): choose another with --as-port"},
		{"TRS port", []string{"--trs-port", trsPort}, "choose another with --trs-port"},
		{"foreign address", []string{"--listen", "192.0.2.99"}, "192.0.2.99 is not an address of this host: fix --listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{"cloud"}, free()...), tt.override...)
			code, _, stderr := runCmd(t, args...)
			if code != 1 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want exit 1 and %q", code, stderr, tt.want)
			}
		})
	}
}

// TestSplitDNSRegistersWithResolved: once logged in and configured, the
// node routes the overlay domain, the reverse zones of its prefixes and its
// own domain (short names) to its resolver on its TUN link through
// resolvectl. A stand-in resolvectl on PATH records the exact calls;
// TestSplitDNSWithRealResolved runs them against systemd-resolved.
func TestSplitDNSRegistersWithResolved(t *testing.T) {
	systest.Require(t, systest.Root(), systest.File("/dev/net/tun"))
	out, stopCloud := startCloudCmd(t)
	defer stopCloud()
	caDir := regexp.MustCompile(`new overlay CA +(\S+)`).FindStringSubmatch(out.String())[1]
	dir := t.TempDir()
	cert := filepath.Join(dir, "alice")
	if code, _, stderr := runCmd(t, "ca", "issue", "--dir", caDir, "--fqdn", "alice.example.cyphonic", "--out", cert); code != 0 {
		t.Fatal(stderr)
	}
	record := filepath.Join(dir, "calls")
	clitest.WriteFile(t, filepath.Join(dir, "resolvectl"), "#!/bin/sh\necho \"$*\" >>"+record+"\n")
	if err := os.Chmod(filepath.Join(dir, "resolvectl"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	tun, dns := tunName("s"), fmt.Sprintf("127.0.0.1:%d", clitest.FreeUDPPort(t))
	logs, stop := startNodeCmd(t, "--cloud", clitest.ASAddr(t, out.String()).String(), "--cert", cert, "--tun", tun,
		"--listen4", "127.0.0.1:0", "--listen6", "off", "--upstream", "off", "--dns", dns, "--debug-addr", "off", "--split-dns", "on")
	defer stop()
	// The overlay domain, the reverse zones of the cloud's prefixes
	// (100.64.0.0/10: 64 of them, then the IPv6 prefix's), the search
	// domain.
	want := regexp.MustCompile(`^dns ` + tun + ` ` + regexp.QuoteMeta(dns) + `\ndomain ` + tun +
		` ~cyphonic ~64\.100\.in-addr\.arpa( ~[0-9]+\.100\.in-addr\.arpa){63} ~[0-9a-f.]+\.ip6\.arpa example\.cyphonic\n$`)
	deadline := time.Now().Add(20 * time.Second)
	// The log line follows the last call's return: wait for both.
	const said = "split DNS: systemd-resolved sends the overlay domain"
	for {
		b, _ := os.ReadFile(record)
		if want.Match(b) && strings.Contains(logs.String(), said) {
			break
		}
		if time.Now().After(deadline) {
			if !want.Match(b) {
				t.Fatalf("resolvectl calls %q, want %s\n%s", b, want, logs.String())
			}
			t.Fatalf("the node does not say it registered:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
