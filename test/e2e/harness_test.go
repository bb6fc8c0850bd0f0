package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	nodepkg "github.com/cyphonic/cyphonic-go/actors/node"
	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/test/testbed"
)

// Where things listen. Every namespace has its own loopback, so the same
// ports serve every node and every Bed at once.
const (
	asPort         = 7401             // the cloud's default AS port: what --cloud names
	cloudDebugAddr = "127.0.0.1:7480" // in the cloud's namespace
	nodeDebugAddr  = "127.0.0.1:7481" // in each node's namespace
	nodeDNSAddr    = "127.0.0.1:53"   // where the namespace's resolv.conf points
	// nodeUpstream is a closed port on the node's own loopback: a name
	// outside the overlay fails at once instead of looping back through
	// resolv.conf into the node's resolver.
	nodeUpstream = "127.0.0.1:9"
	xferPort     = "5001"
	domain       = ".e2e.cyphonic" // under the nodes' default overlay domain
)

// Bounds on how long a scenario waits for something to happen. They are
// liveness bounds, generous for a loaded 2-core machine, not speed goals.
const (
	startTimeout    = 30 * time.Second // a daemon comes up
	tunnelTimeout   = 60 * time.Second // a name resolves (the tunnel is up)
	transferTimeout = 2 * time.Minute  // a transfer finishes
	pollInterval    = 200 * time.Millisecond
)

// Short timers for the nodes, so supervision, mobility and path upgrades
// happen within a scenario's time (the production defaults are 10-35 s).
var nodeTuning = []string{
	"--keepalive", "2s", // cloud keepalive: also how soon a move is noticed
	"--peer-keepalive", "1s",
	"--peer-dead-after", deadAfter.String(),
}

// deadAfter is the nodes' --peer-dead-after.
const deadAfter = 6 * time.Second

// world is one scenario: a Bed, a global dual-stack cloud host running
// `cyphonic cloud`, and the nodes the scenario adds.
type world struct {
	t         *testing.T
	bed       *testbed.Bed
	dir       string
	cloudHost *testbed.Host
	cloud     *testbed.Proc
	nodes     []*node
}

// newWorld builds the Bed with its cloud host and starts the cloud.
func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, bed: testbed.New(t), dir: t.TempDir()}
	w.cloudHost = w.bed.AddHost("cloud", testbed.HostOpts{})
	w.startCloud()
	// Registered after the Bed's cleanup, so it runs first, while the
	// daemons still answer: a failed scenario shows every node's view.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, n := range w.nodes {
			body, err := httpGet(n.host, nodeDebugAddr, nodepkg.PathStatus)
			t.Logf("status of %s (%v):\n%s", n.fqdn, err, body)
		}
	})
	return w
}

// startCloud runs `cyphonic cloud` (again, after stopCloud: same data
// directory, so the same CA and registry) and waits until it serves.
func (w *world) startCloud() {
	w.t.Helper()
	h := w.cloudHost
	w.cloud = h.Start(cyphonicBin, "cloud",
		"--data", filepath.Join(w.dir, "cloud"),
		"--listen", h.IPv4().String()+","+h.IPv6().String(),
		"--debug-addr", cloudDebugAddr,
		"--remote", "127.0.0.1:7410",
		"-v")
	w.eventually("cloud up", startTimeout, func() error {
		if err := exited(w.cloud); err != nil {
			return err
		}
		if !strings.Contains(w.cloud.Output(), "AS   (login)") {
			return errors.New("AS not listening yet")
		}
		_, err := httpGet(h, cloudDebugAddr, "/debug/actors")
		return err
	})
}

// stopCloud stops the cloud process (SIGTERM) and waits for it.
func (w *world) stopCloud() {
	w.t.Helper()
	if err := w.cloud.Stop(); err != nil {
		w.t.Fatalf("stop cloud: %v\n%s", err, w.cloud.Output())
	}
}

// caDir is where the cloud's first start made its CA, for `cyphonic ca
// issue`: beside its data directory, never in it.
func (w *world) caDir() string { return filepath.Join(w.dir, "cloud-ca") }

// relayedBytes is what the TRS has forwarded, from the cloud's /metrics.
func (w *world) relayedBytes() uint64 {
	w.t.Helper()
	body, err := httpGet(w.cloudHost, cloudDebugAddr, "/metrics")
	if err != nil {
		w.t.Fatalf("cloud metrics: %v", err)
	}
	v, ok := metricValue(body, "cyphonic_trs_forwarded_bytes_total")
	if !ok {
		w.t.Fatalf("cloud metrics have no cyphonic_trs_forwarded_bytes_total:\n%s", body)
	}
	return uint64(v)
}

// node is one `cyphonic node` daemon on a host.
type node struct {
	w     *world
	host  *testbed.Host
	fqdn  string
	certs string
	cloud netip.AddrPort
	proc  *testbed.Proc
	extra []string // flags after nodeTuning (a later flag wins)
	// primerTTL is the primer TTL the node must learn (0: not checked).
	primerTTL int
	// upstream is the router in front of the node's site router (a
	// CGN), for debug dumps; nil if none.
	upstream *testbed.Site
	// lostSeen is how many "cloud session lost" the node's current
	// process had logged when logSessionLosses last looked.
	lostSeen int
}

// addNode issues a certificate for host's name and starts a node on it,
// logging in over IPv4 if the host has it, else IPv6. It returns once the
// node is registered with NMS.
func (w *world) addNode(h *testbed.Host) *node {
	w.t.Helper()
	n := &node{w: w, host: h, fqdn: h.Name() + domain, certs: filepath.Join(w.dir, "certs", h.Name())}
	if out, err := runLocal(cyphonicBin, "ca", "issue", "--dir", w.caDir(), "--fqdn", n.fqdn, "--out", n.certs); err != nil {
		w.t.Fatalf("issue %s: %v\n%s", n.fqdn, err, out)
	}
	if h.IPv4().IsValid() {
		n.cloud = netip.AddrPortFrom(w.cloudHost.IPv4(), asPort)
	} else {
		n.cloud = netip.AddrPortFrom(w.cloudHost.IPv6(), asPort)
	}
	// The namespace's programs resolve through the node (127.0.0.1 is
	// the testbed's default already; said here because it matters).
	if err := h.SetResolvers(netip.MustParseAddr("127.0.0.1")); err != nil {
		w.t.Fatal(err)
	}
	n.start()
	w.nodes = append(w.nodes, n)
	return n
}

// start runs the node process and waits until it is online.
func (n *node) start() {
	n.w.t.Helper()
	args := append([]string{cyphonicBin, "node",
		"--cloud", n.cloud.String(),
		"--cert", n.certs,
		"--dns", nodeDNSAddr,
		"--upstream", nodeUpstream,
		"--debug-addr", nodeDebugAddr,
		"-v",
	}, nodeTuning...)
	args = append(args, n.extra...)
	n.proc = n.host.Start(args...)
	n.lostSeen = 0
	n.waitOnline()
}

// forgetPort removes the UDP ports the node saved for its next start
// (node.PortFile), so that it starts on a new random port, as a node
// whose port was taken meanwhile does, with fresh NAT mappings.
func (n *node) forgetPort() {
	n.w.t.Helper()
	if err := os.Remove(filepath.Join(n.certs, nodepkg.PortFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		n.w.t.Fatal(err)
	}
}

// savedPorts is the node's node.PortFile: the ports it listens on.
func (n *node) savedPorts() string {
	n.w.t.Helper()
	b, err := os.ReadFile(filepath.Join(n.certs, nodepkg.PortFile))
	if err != nil {
		n.w.t.Fatal(err)
	}
	return string(b)
}

// waitOnline waits until the node's session is registered with NMS.
func (n *node) waitOnline() nodepkg.Status {
	n.w.t.Helper()
	var st nodepkg.Status
	n.w.eventually(n.fqdn+" online", startTimeout, func() error {
		var err error
		if st, err = n.status(); err != nil {
			return err
		}
		if st.Session.State != "online" {
			return fmt.Errorf("session %s (%s)", st.Session.State, st.Session.LastError)
		}
		return nil
	})
	return st
}

// kill ends the node process at once (SIGKILL: no logout, no cleanup),
// as a crash would.
func (n *node) kill() {
	n.w.t.Helper()
	if err := n.proc.Signal(9); err != nil {
		n.w.t.Fatal(err)
	}
	<-n.proc.Done()
}

// status fetches the node's /debug/status.
func (n *node) status() (nodepkg.Status, error) {
	var st nodepkg.Status
	if err := exited(n.proc); err != nil {
		return st, err
	}
	body, err := httpGet(n.host, nodeDebugAddr, nodepkg.PathStatus)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("status of %s: %w", n.fqdn, err)
	}
	return st, nil
}

// mustStatus is status or a fatal error.
func (n *node) mustStatus() nodepkg.Status {
	n.w.t.Helper()
	st, err := n.status()
	if err != nil {
		n.w.t.Fatal(err)
	}
	return st
}

// peer is the node's tunnel to fqdn, if it has one.
func (n *node) peer(fqdn string) (dataplane.PeerStatus, error) {
	st, err := n.status()
	if err != nil {
		return dataplane.PeerStatus{}, err
	}
	for _, p := range st.Peers {
		if p.FQDN == fqdn {
			return p, nil
		}
	}
	return dataplane.PeerStatus{}, fmt.Errorf("%s has no peer %s", n.fqdn, fqdn)
}

// waitPeerUp waits until the node's tunnel to fqdn is up and returns it.
func (n *node) waitPeerUp(fqdn string, what string) dataplane.PeerStatus {
	n.w.t.Helper()
	var p dataplane.PeerStatus
	n.w.eventually(what, tunnelTimeout, func() error {
		var err error
		if p, err = n.peer(fqdn); err != nil {
			return err
		}
		if p.State != dataplane.StateUp {
			return fmt.Errorf("peer %s is %s", fqdn, p.State)
		}
		return nil
	})
	return p
}

// actors fetches the node's live actor tree.
func (n *node) actors() (supervise.Tree, error) {
	var tree supervise.Tree
	body, err := httpGet(n.host, nodeDebugAddr, "/debug/actors")
	if err != nil {
		return tree, err
	}
	if err := json.Unmarshal(body, &tree); err != nil {
		return tree, fmt.Errorf("actors of %s: %w", n.fqdn, err)
	}
	return tree, nil
}

// resolve looks fqdn up the way applications on n's host do (getent:
// libc, the namespace's resolv.conf, the node's resolver). The first
// query asks NMS for the tunnel and is held until it is up; libc gives up
// on a held answer after a few seconds, so it is retried, bounded.
func (n *node) resolve(fqdn string) []netip.Addr {
	n.w.t.Helper()
	var addrs []netip.Addr
	n.w.eventually("resolve "+fqdn+" on "+n.host.Name(), tunnelTimeout, func() error {
		if err := exited(n.proc); err != nil {
			return err
		}
		out, err := n.host.Exec("getent", "ahosts", fqdn)
		if err != nil {
			return fmt.Errorf("getent: %w: %s", err, out)
		}
		addrs = addrs[:0]
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || f[1] != "STREAM" {
				continue
			}
			if a, err := netip.ParseAddr(f[0]); err == nil {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) == 0 {
			return fmt.Errorf("getent: no addresses in %q", out)
		}
		return nil
	})
	return addrs
}

// ping pings fqdn by name from n's host.
func (n *node) ping(fqdn string) {
	n.w.t.Helper()
	for _, fam := range []string{"-4", "-6"} {
		out, err := n.host.Exec("ping", fam, "-n", "-c", "3", "-i", "0.2", "-W", "3", fqdn)
		if err != nil {
			n.w.t.Fatalf("ping %s %s from %s: %v\n%s", fam, fqdn, n.host.Name(), err, out)
		}
	}
}

// cyPing runs `cyphonic ping` on n's host toward to, and checks that every
// probe came back and that the lines name the path: via, such as "via TRS
// 192.0.2.1:" for the relay or "via 198.51.100.2:" for a direct endpoint.
func (n *node) cyPing(to *node, via string) {
	n.w.t.Helper()
	out, err := n.host.Exec(cyphonicBin, "ping", "--debug-addr", nodeDebugAddr, "-c", "3", "-i", "100ms", to.fqdn)
	if err != nil {
		n.w.t.Fatalf("cyphonic ping %s from %s: %v\n%s", to.fqdn, n.fqdn, err, out)
	}
	n.w.t.Logf("cyphonic ping %s:\n%s", to.fqdn, out)
	if c := strings.Count(string(out), "pong from "+to.fqdn+" "+via); c != 3 || !strings.Contains(string(out), "3 received, 0 lost") {
		n.w.t.Errorf("cyphonic ping %s from %s: %d pongs %q, want 3:\n%s", to.fqdn, n.fqdn, c, via, out)
	}
}

// talk is what every scenario checks between two nodes: from resolves
// to's FQDN through its resolver (getting to's VIPs), pings it by name
// over both overlay families, and sends size bytes over TCP with the
// SHA-256 equal at both ends.
func talk(t *testing.T, from, to *node, size int64) {
	t.Helper()
	want := to.mustStatus().Session
	got := from.resolve(to.fqdn)
	for _, a := range got {
		if a != want.VIP4 && a != want.VIP6 {
			t.Fatalf("%s resolves %s to %v, want its VIPs %v %v", from.fqdn, to.fqdn, got, want.VIP4, want.VIP6)
		}
	}
	from.ping(to.fqdn)
	startTransfer(t, from, to, size, 0).wait()
}

// transfer is a TCP transfer between two nodes' hosts.
type transfer struct {
	t          *testing.T
	recv, send *testbed.Proc
	size       int64
}

// startTransfer starts a receiver on to's host and a sender on from's,
// which dials to's FQDN. rate > 0 paces the sender (bytes per second).
func startTransfer(t *testing.T, from, to *node, size, rate int64) *transfer {
	t.Helper()
	x := &transfer{t: t, size: size}
	x.recv = to.host.Start(xferBin, "recv", "--listen", ":"+xferPort)
	from.w.eventually("receiver listening", startTimeout, func() error {
		if err := exited(x.recv); err != nil {
			return err
		}
		if !strings.Contains(x.recv.Output(), "listening") {
			return errors.New("not yet")
		}
		return nil
	})
	x.send = from.host.Start(xferBin, "send", "--to", to.fqdn+":"+xferPort,
		"--bytes", strconv.FormatInt(size, 10), "--rate", strconv.FormatInt(rate, 10))
	return x
}

// xferResult is what internal/xfer prints.
type xferResult struct {
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
	Local  string `json:"local"`
	Remote string `json:"remote"`
}

// wait waits for both ends and checks they saw the same bytes.
func (x *transfer) wait() (sent, got xferResult) {
	x.t.Helper()
	timer := time.NewTimer(transferTimeout)
	defer timer.Stop()
	for _, p := range []*testbed.Proc{x.send, x.recv} {
		select {
		case <-p.Done():
		case <-timer.C:
			x.t.Fatalf("transfer did not finish within %v:\nsender: %s\nreceiver: %s", transferTimeout, x.send.Output(), x.recv.Output())
		}
	}
	if err := x.send.Wait(); err != nil {
		x.t.Fatalf("sender: %v\n%s\nreceiver: %s", err, x.send.Output(), x.recv.Output())
	}
	if err := x.recv.Wait(); err != nil {
		x.t.Fatalf("receiver: %v\n%s", err, x.recv.Output())
	}
	sent, got = parseResult(x.t, x.send), parseResult(x.t, x.recv)
	if sent.Bytes != x.size || got.Bytes != x.size || sent.SHA256 != got.SHA256 {
		x.t.Fatalf("transfer: sent %d bytes sha256 %s, received %d bytes sha256 %s (want %d)",
			sent.Bytes, sent.SHA256, got.Bytes, got.SHA256, x.size)
	}
	x.t.Logf("transfer: %d bytes, sha256 %s, %s -> %s", got.Bytes, got.SHA256, sent.Local, sent.Remote)
	return sent, got
}

func parseResult(t *testing.T, p *testbed.Proc) xferResult {
	t.Helper()
	for _, line := range strings.Split(p.Output(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var r xferResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%v: %v", p, err)
		}
		return r
	}
	t.Fatalf("%v printed no result:\n%s", p, p.Output())
	return xferResult{}
}

// eventually calls f until it returns nil, at most for timeout; then it
// fails the test with f's last error.
func (w *world) eventually(what string, timeout time.Duration, f func() error) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// exited reports an error if p has exited.
func exited(p *testbed.Proc) error {
	select {
	case <-p.Done():
		return fmt.Errorf("%v exited: %v\n%s", p, p.Wait(), tail(p.Output(), 4000))
	default:
		return nil
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// httpGet fetches http://addr/path from inside h's namespace. The socket
// is opened on Do's thread, so it lives in the namespace; the request is
// written and read there too, with no client goroutines that could dial
// from elsewhere.
func httpGet(h *testbed.Host, addr, path string) ([]byte, error) {
	var body []byte
	err := h.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s%s: %s", addr, path, resp.Status)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("in %s: %w", h.Name(), err)
	}
	return body, nil
}

// metricValue sums a Prometheus metric's samples (all label sets) in a
// text exposition.
func metricValue(body []byte, name string) (float64, bool) {
	var sum float64
	found := false
	for _, line := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		sum += v
		found = true
	}
	return sum, found
}

// runLocal runs a command in the test's own namespace (for file-only
// commands such as `cyphonic ca issue`).
func runLocal(argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), testbed.ExecTimeout)
	defer cancel()
	return exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
}

// assertPath checks that a's tunnel to b has path kind want and sends to
// the address of endpoint (a zero port: any port).
func assertPath(t *testing.T, a, b *node, want messages.PathKind, endpoint netip.AddrPort) {
	t.Helper()
	p, err := a.peer(b.fqdn)
	if err != nil {
		t.Fatal(err)
	}
	ep := netip.AddrPortFrom(p.Endpoint.Addr().Unmap(), p.Endpoint.Port())
	if p.Path != want || ep.Addr() != endpoint.Addr() || (endpoint.Port() != 0 && ep.Port() != endpoint.Port()) {
		t.Errorf("%s -> %s: path %v via %v, want %v via %v", a.fqdn, b.fqdn, p.Path, p.Endpoint, want, endpoint)
	}
}

// assertNotRelayed checks the TRS forwarded nothing.
func assertNotRelayed(t *testing.T, w *world) {
	t.Helper()
	if n := w.relayedBytes(); n != 0 {
		t.Errorf("the TRS relayed %d bytes, want 0", n)
	}
}

// assertRelayed checks the TRS forwarded at least min bytes.
func assertRelayed(t *testing.T, w *world, min uint64) {
	t.Helper()
	if n := w.relayedBytes(); n < min {
		t.Errorf("the TRS relayed %d bytes, want at least %d", n, min)
	}
}

// mustPeer is a's tunnel to b or a fatal error.
func mustPeer(t *testing.T, a, b *node) dataplane.PeerStatus {
	t.Helper()
	p, err := a.peer(b.fqdn)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// resolveBoth has a and b look each other up by name at the same moment,
// so both ask NMS and both initiate at once: the crossing that poisons
// plain masquerade's mappings. It returns when both names answered.
func resolveBoth(t *testing.T, a, b *node) {
	t.Helper()
	done := make(chan error, 2)
	for _, q := range [][2]*node{{a, b}, {b, a}} {
		go func(from, to *node) {
			out, err := from.host.Exec("getent", "ahosts", to.fqdn)
			if err != nil {
				err = fmt.Errorf("%s resolves %s: %w: %s", from.fqdn, to.fqdn, err, out)
			}
			done <- err
		}(q[0], q[1])
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Logf("simultaneous lookup: %v (retried by talk)", err)
		}
	}
}

// netip4 is a with any port, for assertPath.
func netip4(a netip.Addr) netip.AddrPort { return netip.AddrPortFrom(a, 0) }
