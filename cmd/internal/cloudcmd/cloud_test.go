package cloudcmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cmd/internal/clitest"
	"github.com/cyphonic/cyphonic-go/test/systest"

	"github.com/cyphonic/cyphonic-go/cloud/rootca"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/test/cloudsim"
)

// startCloudCmd runs `cyphonic cloud` with free ports until the returned
// stop function is called, and returns its output once it is up.
func startCloudCmd(t *testing.T, extra ...string) (out *clitest.SyncBuffer, stop func() error) {
	t.Helper()
	return clitest.StartCloud(t, runCloud, extra...)
}

func TestCloudAllServices(t *testing.T) {
	out, stop := startCloudCmd(t)
	text := out.String()
	for _, want := range []string{"AS   (login)", "NMS  (signaling)", "NMS  (NAT probe)", "TRS  (relay)", "cyphonic ca issue --dir"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	// The debug endpoint serves the live actor tree with the three services.
	i := strings.Index(text, "http://")
	url := strings.Fields(text[i:])[0]
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, svc := range []string{`"as"`, `"nms"`, `"trs"`} {
		if !bytes.Contains(body, []byte(svc)) {
			t.Errorf("/debug/actors lacks %s: %s", svc, body)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func TestCloudOneService(t *testing.T) {
	out, stop := startCloudCmd(t, "--services", "nms")
	text := out.String()
	if !strings.Contains(text, "NMS  (signaling)") || strings.Contains(text, "AS   (login)") || strings.Contains(text, "TRS  (relay)") {
		t.Errorf("--services nms output:\n%s", text)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestCloudDebugOff: "off" disables the cloud's debug endpoint, as it does
// the node's.
func TestCloudDebugOff(t *testing.T) {
	out, stop := startCloudCmd(t, "--debug-addr", "off")
	if text := out.String(); strings.Contains(text, "debug ") || strings.Contains(text, "http://") {
		t.Errorf("--debug-addr off still serves a debug endpoint:\n%s", text)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestCloudFlagErrors: each bad option is refused at once (exit 2),
// naming the flag; --as-port 99999 used to become port 34463.
func TestCloudFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--as-port", "99999"}, "--as-port: port 99999 outside 0..65535"},
		{[]string{"--nms-port", "-1"}, "--nms-port: port -1 outside"},
		{[]string{"--trs-port", "65536"}, "--trs-port: port 65536 outside"},
		{[]string{"--alt-port", "70000"}, "--alt-port: port 70000 outside"},
		{[]string{"--listen", "1.2.3"}, `--listen: "1.2.3" is not an IP address`},
		{[]string{"--listen", ","}, "--listen: no address given"},
		{[]string{"--remote", "127.0.0.1"}, `--remote: "127.0.0.1"`},
		{[]string{"--debug-addr", "127.0.0.1:99999"}, `--debug-addr: "127.0.0.1:99999"`},
		{[]string{"--services", "dns"}, `--services: unknown service "dns"`},
		{[]string{"--nms-addrs", "1.2.3.4"}, `--nms-addrs: "1.2.3.4"`},
		{[]string{"--log-format", "yaml"}, `--log-format: "yaml"`},
	}
	for _, tt := range tests {
		code, _, stderr := runCmd(t, append([]string{"cloud"}, tt.args...)...)
		if code != 2 || !strings.Contains(stderr, tt.want) {
			t.Errorf("cloud %v: exit %d, stderr %q; want exit 2 mentioning %q", tt.args, code, stderr, tt.want)
		}
	}
}

func TestCloudBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--services", "dns"}, {"--listen", "nowhere"}, {"stray"}, {"--relay-idle", "-1s"}, {"--session-idle", "soon"}, {"--signal-workers", "-1"}, {"--session-lookup-rate", "-1"}, {"--relay-max-sessions", "-1"}, {"--relay-max-per-node", "-2"}, {"--debug-addr", ""}} {
		if err := runCloud(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// TestCloudNoFlagsAnswersLogin is the issue's "done when": `cyphonic cloud`
// with no flags at all, in an empty directory, creates its CA and store and
// answers a simulated node's login on the default loopback address.
func TestCloudNoFlagsAnswersLogin(t *testing.T) {
	for _, p := range []string{"udp4/127.0.0.1:7400", "udp4/127.0.0.1:7401", "udp4/127.0.0.1:7402", "udp4/127.0.0.1:7403", "tcp4/127.0.0.1:7410", "tcp4/127.0.0.1:7480"} {
		network, addr, _ := strings.Cut(p, "/")
		var c io.Closer
		var err error
		if strings.HasPrefix(network, "udp") {
			c, err = net.ListenPacket(network, addr)
		} else {
			c, err = net.Listen(network, addr)
		}
		if err != nil {
			systest.Missing(t, fmt.Sprintf("the cloud's default address %s free (%v)", p, err))
			return
		}
		c.Close()
	}
	t.Chdir(t.TempDir())

	ctx, cancel := context.WithCancel(context.Background())
	out := new(clitest.SyncBuffer)
	done := make(chan error, 1)
	go func() { done <- runCloud(ctx, nil, out, io.Discard) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(out.String(), "Issue a node certificate") {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("cloud exited early: %v\n%s", err, out.String())
		case <-deadline:
			t.Fatalf("cloud did not come up:\n%s", out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}

	ca, err := rootca.Load(defaultCADir)
	if err != nil {
		t.Fatalf("the cloud did not create its CA in ./%s: %v", defaultCADir, err)
	}
	node, err := cloudsim.NewNode(ca, "alice.example.cyphonic")
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	reply, err := node.Login(netip.MustParseAddrPort("127.0.0.1:7401"), false)
	if err != nil {
		t.Fatalf("login to the default AS: %v", err)
	}
	if reply.FQDN != "alice.example.cyphonic" || !reply.VIP6.IsValid() || !reply.VIP4.IsValid() {
		t.Fatalf("login reply %+v: want the FQDN and both VIPs", reply)
	}
}

// loginWith logs a simulated node with the identity in dir (as `ca issue`
// wrote it) in at as.
func loginWith(t *testing.T, dir string, as netip.AddrPort) {
	t.Helper()
	id, err := pki.LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	root, err := pki.LoadRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	n, err := cloudsim.NewNodeWithIdentity(&rootca.CA{Signer: &pki.Signer{Cert: root}}, id)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if _, err := n.Login(as, false); err != nil {
		t.Fatalf("login %s: %v", id.FQDN, err)
	}
	if _, err := n.Register(false); err != nil {
		t.Fatalf("register %s: %v", id.FQDN, err)
	}
}

// TestCloudRunsWithCAKeyDeleted: the first `cyphonic cloud` on an empty
// data directory makes the CA beside it and says where; a node certificate
// is issued; with ca.key deleted the cloud starts again on the same data
// directory and logs the node in.
func TestCloudRunsWithCAKeyDeleted(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	out, stop := startCloudCmd(t, "--data", data)
	caDir := data + "-ca"
	if !strings.Contains(out.String(), "new overlay CA     "+caDir) || !strings.Contains(out.String(), "--dir "+caDir) {
		t.Errorf("output does not say where the CA went:\n%s", out)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	alice := filepath.Join(t.TempDir(), "alice")
	if code, _, stderr := runCmd(t, "ca", "issue", "--dir", caDir, "--fqdn", "alice.example.cyphonic", "--out", alice); code != 0 {
		t.Fatalf("ca issue: %s", stderr)
	}
	if err := os.Remove(filepath.Join(caDir, rootca.KeyFile)); err != nil {
		t.Fatal(err)
	}
	out, stop = startCloudCmd(t, "--data", data)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	if strings.Contains(out.String(), "new overlay CA") {
		t.Fatalf("second start made a CA:\n%s", out)
	}
	loginWith(t, alice, clitest.ASAddr(t, out.String()))
}

// TestCloudProvisionedByIssueService: the CA made with `ca init` stays in
// its own directory; `ca issue-service` fills the cloud's; the cloud runs
// on it (one process with all services, then NMS alone) and logs in a node
// of that CA.
func TestCloudProvisionedByIssueService(t *testing.T) {
	dir := t.TempDir()
	caDir, data := filepath.Join(dir, "offline-ca"), filepath.Join(dir, "data")
	if code, _, stderr := runCmd(t, "ca", "init", "--dir", caDir); code != 0 {
		t.Fatalf("ca init: %s", stderr)
	}
	code, stdout, stderr := runCmd(t, "ca", "issue-service", "--dir", caDir, "--data", data)
	if code != 0 || strings.Count(stdout, "issued ") != 3 {
		t.Fatalf("ca issue-service: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, _, stderr := runCmd(t, "ca", "issue-service", "--dir", caDir, "--data", data, "--services", "nms"); code == 0 || !strings.Contains(stderr, "--renew") {
		t.Fatalf("issue-service over an existing certificate: exit %d, %s", code, stderr)
	}
	if code, _, stderr := runCmd(t, "ca", "issue-service", "--dir", caDir, "--data", data, "--services", "nms", "--renew"); code != 0 {
		t.Fatalf("issue-service --renew: %s", stderr)
	}
	if code, _, _ := runCmd(t, "ca", "issue-service", "--dir", caDir, "--data", data, "--services", "node"); code == 0 {
		t.Fatal("issue-service issued a node certificate")
	}
	bob := filepath.Join(dir, "bob")
	if code, _, stderr := runCmd(t, "ca", "issue", "--dir", caDir, "--fqdn", "bob.example.cyphonic", "--out", bob); code != 0 {
		t.Fatalf("ca issue: %s", stderr)
	}
	out, stop := startCloudCmd(t, "--data", data)
	if strings.Contains(out.String(), "new overlay CA") {
		t.Errorf("a provisioned cloud made a CA:\n%s", out)
	}
	if _, err := os.Stat(data + "-ca"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a provisioned cloud made a CA dir: %v", err)
	}
	loginWith(t, bob, clitest.ASAddr(t, out.String()))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	out, stop = startCloudCmd(t, "--data", data, "--services", "nms")
	if !strings.Contains(out.String(), "NMS  (signaling)") {
		t.Errorf("nms alone:\n%s", out)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
