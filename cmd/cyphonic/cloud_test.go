package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/test/systest"

	"github.com/cyphonic/cyphonic-go/cloud/pki"
	"github.com/cyphonic/cyphonic-go/test/cloudsim"
)

// syncBuffer is a bytes.Buffer safe for the command's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startCloudCmd runs `cyphonic cloud` with free ports until the returned
// stop function is called, and returns its output once it is up.
func startCloudCmd(t *testing.T, extra ...string) (out *syncBuffer, stop func() error) {
	t.Helper()
	args := []string{
		"--data", t.TempDir(), "--listen", "127.0.0.1",
		"--nms-port", fmt.Sprint(freeUDPPort(t)), "--as-port", fmt.Sprint(freeUDPPort(t)),
		"--alt-port", fmt.Sprint(freeUDPPort(t)), "--trs-port", fmt.Sprint(freeUDPPort(t)),
		"--remote", fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t)), "--debug-addr", "127.0.0.1:0",
	}
	args = append(args, extra...)
	ctx, cancel := context.WithCancel(context.Background())
	out = new(syncBuffer)
	done := make(chan error, 1)
	go func() { done <- runCloud(ctx, args, out, io.Discard) }()
	for !strings.Contains(out.String(), "Issue a node certificate") {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("cloud exited early: %v\n%s", err, out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return out, func() error {
		cancel()
		return <-done
	}
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

func TestCloudBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--services", "dns"}, {"--listen", "nowhere"}, {"stray"}, {"--relay-idle", "-1s"}, {"--session-idle", "soon"}, {"--debug-addr", ""}} {
		if err := runCloud(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// TestCloudNoFlagsAnswersLogin is the "done when": `cyphonic cloud`
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
	out := new(syncBuffer)
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

	ca, err := pki.LoadCA(defaultCADir)
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
