package nodecmd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cmd/internal/clitest"
	"github.com/cyphonic/cyphonic-go/test/systest"
)

// resolvedRootEnv names a directory holding systemd-resolved's files as
// its Debian package lays them out (scripts/test unpacks the package there
// rather than installing it: installing it points the host's
// /etc/resolv.conf at resolved's stub).
const resolvedRootEnv = "CYPHONIC_RESOLVED_ROOT"

// resolvedBinaries finds systemd-resolved and resolvectl, under
// $CYPHONIC_RESOLVED_ROOT or installed.
func resolvedBinaries() (daemon, ctl string, err error) {
	for _, root := range []string{os.Getenv(resolvedRootEnv), "/"} {
		if root == "" {
			continue
		}
		ctl = filepath.Join(root, "usr/bin/resolvectl")
		for _, d := range []string{"lib/systemd/systemd-resolved", "usr/lib/systemd/systemd-resolved"} {
			daemon = filepath.Join(root, d)
			if isExec(daemon) && isExec(ctl) {
				return daemon, ctl, nil
			}
		}
	}
	return "", "", errors.New("systemd-resolved and resolvectl (Debian package systemd-resolved, or its files unpacked under $" +
		resolvedRootEnv + " as scripts/test does)")
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// privateBus is a D-Bus system bus for the namespace's resolved only: it
// listens where resolvectl and resolved look for the system bus, on the
// namespace's own /run.
const privateBus = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`

// resolvedNS runs in a new mount and network namespace: a tmpfs over /run
// (resolved's runtime files and the bus socket stay in it), the bind
// mounts of passwd and group that add resolved's user when the host lacks
// it, loopback up, a private system bus, resolved. It says "ready" once
// resolved answers on the bus, then waits; killing its process group ends
// all of it. The host's /run, /etc/resolv.conf and resolved (if any) are
// never touched: resolved only reads /etc/resolv.conf ("foreign" mode).
const resolvedNS = `set -eu
mount -t tmpfs tmpfs /run
mkdir -p /run/dbus /run/systemd
if [ -n "${NS_PASSWD:-}" ]; then mount --bind "$NS_PASSWD" /etc/passwd; mount --bind "$NS_GROUP" /etc/group; fi
ip link set lo up
dbus-daemon --nofork --nopidfile --config-file="$NS_BUS" &
until [ -S /run/dbus/system_bus_socket ]; do sleep 0.05; done
SYSTEMD_LOG_LEVEL=debug "$NS_RESOLVED" >"$NS_LOG" 2>&1 &
resolved=$!
until "$NS_RESOLVECTL" status >/dev/null 2>&1; do
  kill -0 "$resolved" 2>/dev/null || { echo "resolved exited"; exit 1; }
  sleep 0.05
done
echo ready
wait
`

// TestSplitDNSWithRealResolved: the node's split DNS against the real
// systemd-resolved, in a namespace of the test's own with a private D-Bus:
// alice registers her resolver on her TUN link; resolved then answers
// PTR for bob's VIP (through the reverse zone alice registered),
// bob.example.cyphonic, and the short name bob through the search domain,
// by asking alice's resolver on that link.
func TestSplitDNSWithRealResolved(t *testing.T) {
	daemon, ctl, err := resolvedBinaries()
	needs := []systest.Need{systest.Root(), systest.File("/dev/net/tun"), systest.Tool("unshare", "util-linux"),
		systest.Tool("nsenter", "util-linux"), systest.Tool("dbus-daemon", "dbus-daemon"), systest.Tool("ip", "iproute2")}
	if err != nil {
		needs = append(needs, func() error { return err })
	}
	systest.Require(t, needs...)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The namespace, and resolved in it.
	clitest.WriteFile(t, filepath.Join(dir, "bus.conf"), privateBus)
	env := []string{"NS_BUS=" + filepath.Join(dir, "bus.conf"), "NS_RESOLVED=" + daemon, "NS_RESOLVECTL=" + ctl,
		"NS_LOG=" + filepath.Join(dir, "resolved.log")}
	if _, err := user.Lookup("systemd-resolve"); err != nil {
		// resolved started as root drops to this user; add it in the
		// namespace's view of passwd and group only.
		env = append(env, "NS_PASSWD="+withLine(t, dir, "/etc/passwd", "systemd-resolve:x:997:997:systemd Resolver:/:/usr/sbin/nologin"),
			"NS_GROUP="+withLine(t, dir, "/etc/group", "systemd-resolve:x:997:"))
	}
	ns := exec.Command("unshare", "--mount", "--net", "--propagation", "private", "bash", "-c", resolvedNS)
	ns.Env = append(os.Environ(), env...)
	ns.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	nsOut, err := ns.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	ns.Stderr = os.Stderr
	if err := ns.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(-ns.Process.Pid, syscall.SIGKILL)
		ns.Wait()
	}()
	resolvedLog := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "resolved.log"))
		if len(b) > 8000 {
			b = b[len(b)-8000:]
		}
		return "--- resolved's log (tail):\n" + string(b)
	}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(nsOut).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("namespace said %q", line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("resolved in the namespace: %v\n%s", err, resolvedLog())
		}
	case <-ctx.Done():
		t.Fatalf("resolved never answered on the private bus\n%s", resolvedLog())
	}
	pid := fmt.Sprint(ns.Process.Pid)
	// inNS runs this test binary as cyphonic, or a tool, in the namespace.
	inNS := func(name string, args ...string) *exec.Cmd {
		c := exec.CommandContext(ctx, "nsenter", append([]string{"--target", pid, "--mount", "--net", "--", name}, args...)...)
		c.Env = append(os.Environ(), asBinaryEnv+"=1", "PATH="+filepath.Dir(ctl)+":"+os.Getenv("PATH"))
		return c
	}
	type daemonProc struct {
		cmd *exec.Cmd
		out *clitest.SyncBuffer
	}
	var daemons []daemonProc
	defer func() {
		for _, d := range daemons {
			d.cmd.Process.Signal(syscall.SIGTERM)
			d.cmd.Wait()
		}
	}()
	start := func(waitFor string, args ...string) *clitest.SyncBuffer {
		t.Helper()
		c := inNS(self, args...)
		out := new(clitest.SyncBuffer)
		c.Stdout, c.Stderr = out, out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		daemons = append(daemons, daemonProc{c, out})
		for !strings.Contains(out.String(), waitFor) {
			if ctx.Err() != nil {
				t.Fatalf("%s never said %q:\n%s", args[0], waitFor, out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		return out
	}

	// A cloud and two nodes in the namespace: alice registers with
	// resolved, bob is only there to be resolved.
	cloud := start("Issue a node certificate", "cloud", "--data", filepath.Join(dir, "cloud"), "--listen", "127.0.0.1", "--debug-addr", "off")
	caDir := regexp.MustCompile(`(?m)^ +new overlay CA +(\S+)`).FindStringSubmatch(cloud.String())[1]
	as := clitest.ASAddr(t, cloud.String()).String()
	certs := map[string]string{}
	for _, name := range []string{"alice", "bob"} {
		certs[name] = filepath.Join(dir, name)
		if code, _, stderr := runCmd(t, "ca", "issue", "--dir", caDir, "--fqdn", name+".example.cyphonic", "--out", certs[name]); code != 0 {
			t.Fatal(stderr)
		}
	}
	common := []string{"--cloud", as, "--listen4", "127.0.0.1:0", "--listen6", "off", "--upstream", "off", "--debug-addr", "off"}
	bob := start("node started", append([]string{"node", "--cert", certs["bob"], "--tun", "cy-bob", "--dns", "127.0.0.1:5354", "--split-dns", "off"}, common...)...)
	const said = "split DNS: systemd-resolved sends the overlay domain"
	alice := start(said, append([]string{"node", "--cert", certs["alice"], "--tun", "cy-alice", "--dns", "127.0.0.1:5353", "--split-dns", "on"}, common...)...)
	logs := func() string {
		return "--- alice:\n" + alice.String() + "--- bob:\n" + bob.String() + resolvedLog()
	}

	status, err := inNS(ctl, "status", "cy-alice").CombinedOutput()
	if err != nil {
		t.Fatalf("resolvectl status: %v: %s\n%s", err, status, logs())
	}
	for _, want := range []string{"127.0.0.1:5353", "~cyphonic", "example.cyphonic"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("resolved's view of alice's link lacks %q:\n%s", want, status)
		}
	}
	vip := regexp.MustCompile(`vip4=(\S+)`).FindStringSubmatch(bob.String())
	if vip == nil {
		t.Fatalf("bob's log names no VIP:\n%s", bob.String())
	}
	// PTR for bob's VIP, routed by the reverse zone alice registered
	// (alice has no tunnel with bob: her resolver asks NMS).
	out, err := inNS(ctl, "query", vip[1]).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "bob.example.cyphonic") {
		t.Errorf("resolvectl query %s: %v\n%s\nwant bob.example.cyphonic\n%s", vip[1], err, out, logs())
	}
	// Only alice's resolver can answer: the namespace has no other DNS
	// server resolved could reach (it read the host's resolv.conf, whose
	// servers are not in this network namespace), and bob registered none.
	for _, name := range []string{"bob.example.cyphonic", "bob"} {
		out, err := inNS(ctl, "query", "-4", name).CombinedOutput()
		if err != nil || !strings.Contains(string(out), ": "+vip[1]) || !strings.Contains(string(out), "Data from: network") {
			t.Errorf("resolvectl query %s: %v\n%s\nwant bob's %s from alice's resolver\n%s", name, err, out, vip[1], logs())
		}
	}
}

// withLine writes a copy of file with line appended into dir.
func withLine(t *testing.T, dir, file, line string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, filepath.Base(file))
	clitest.WriteFile(t, out, strings.TrimRight(string(b), "\n")+"\n"+line+"\n")
	return out
}
