package cloudsim

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/session"
	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/cloud/rootca"
	"github.com/cyphonic/cyphonic-go/cloud/server"
	"github.com/cyphonic/cyphonic-go/cloud/store/storetest"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
)

// failoverBound is the issue's: kill -9 any one of the cloud processes and
// no node loses its ability to set up tunnels for more than 5 s. A
// functional deadline, not a speed goal.
const failoverBound = 5 * time.Second

// TestActiveActiveFailover runs three real cloud processes (AS, NMS and
// TRS each) on one redis-server and two nodes whose session actors are the
// real node's (actors/session, over UDP on loopback, with every cloud
// process's address configured). The nodes set up a tunnel; then the
// process one or both of them use is killed with SIGKILL, and at once each
// asks for a new tunnel to the other: both must be set up (the path
// answered to the asker, the Direction delivered to the peer) within 5 s
// of the kill.
func TestActiveActiveFailover(t *testing.T) {
	for _, tt := range []struct {
		name string
		// the index of the first cloud process each node tries; process 0
		// is killed.
		alice, bob int
		// onlyAlice: bob sends nothing after the kill, so nothing tells
		// him his process is gone: only the cloud can reach him.
		onlyAlice bool
	}{
		{"both on the killed process", 0, 0, false},
		{"the peer on the killed process", 1, 0, false},
		{"an idle peer on the killed process", 1, 0, true},
		{"the asker on the killed process", 0, 2, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cl := startClouds(t, 3)
			cl.waitDirectory(t)
			stopLoad := cl.load(t, 8)
			defer stopLoad()
			alice := startFailoverNode(t, cl, "alice.example.cyphonic", netip.MustParseAddr("127.0.0.2"), tt.alice)
			bob := startFailoverNode(t, cl, "bob.example.cyphonic", netip.MustParseAddr("127.0.0.3"), tt.bob)
			for _, n := range []*failoverNode{alice, bob} {
				n.waitOnline(t, cl.as[n.first])
			}
			// The pair has a tunnel before the kill.
			if err := alice.tunnel(bob, 20*time.Second); err != nil {
				t.Fatalf("tunnel before the kill: %v", err)
			}

			killed := time.Now()
			cl.kill(t, 0)
			var wg sync.WaitGroup
			errs := make([]error, 2)
			pairs := [][2]*failoverNode{{alice, bob}, {bob, alice}}
			if tt.onlyAlice {
				pairs = pairs[:1]
			}
			for i, p := range pairs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = p[0].tunnel(p[1], time.Until(killed.Add(failoverBound)))
					t.Logf("%s → %s: %v after the kill (%v)", p[0].fqdn, p[1].fqdn, time.Since(killed).Round(time.Millisecond), errs[i])
				}()
			}
			wg.Wait()
			for i, who := range []string{"alice → bob", "bob → alice"} {
				if errs[i] != nil {
					t.Errorf("%s: no new tunnel within %v of the kill: %v", who, failoverBound, errs[i])
				}
			}
			for _, n := range []*failoverNode{alice, bob} {
				st := n.sess.Status()
				t.Logf("%s: as %v nms %v logins %d failovers %d last error %q", n.fqdn, st.AS, st.NMS, st.Logins, st.Failovers, st.LastError)
				if n.first == 0 && st.AS == cl.as[0] && (n == alice || !tt.onlyAlice) {
					t.Errorf("%s still on the killed process", n.fqdn)
				}
				// A node that lost its process moved its session to
				// another process's NMS (LoginReply listed them) with a
				// registration: no second login, no AS work for it.
				if st.Logins != 1 {
					t.Errorf("%s logged in %d times, want once (failover by registration)", n.fqdn, st.Logins)
				}
			}
		})
	}
}

// clouds is a set of cloud processes, children of the test binary
// (runChild), sharing one CA and one Redis store.
type clouds struct {
	ca    *rootca.CA
	as    []netip.AddrPort // each process's AS address
	procs []*exec.Cmd
}

func startClouds(t *testing.T, n int) *clouds {
	t.Helper()
	prefix := "cloudsim-" + strings.ReplaceAll(t.Name(), "/", "-") + ":"
	redisURL := storetest.WithPrefix(t, storetest.RedisURL(t), prefix)
	t.Cleanup(func() { storetest.DeletePrefix(t, redisURL, prefix) })
	// One CA, one provisioned data directory the processes share (each
	// serves an admin socket of its own): the processes start at once, so
	// none may bootstrap a CA.
	dir := t.TempDir()
	ca, err := rootca.Init(filepath.Join(dir, "ca"), "failover test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if _, err := server.Provision(ca, data, []pki.Role{pki.RoleAS, pki.RoleNMS, pki.RoleTRS}, time.Hour, false); err != nil {
		t.Fatal(err)
	}
	cl := &clouds{ca: ca}
	for range n {
		cmd, as := startCloudProc(t, data, redisURL)
		cl.procs = append(cl.procs, cmd)
		cl.as = append(cl.as, as)
	}
	return cl
}

// waitDirectory waits until every process's NMS has read the others'
// addresses from their leases (store.LeaseDirectory), so that a login at
// any of them lists the others: a login before that (just after the
// processes started) would leave its node nowhere to move its session but
// a new login.
func (c *clouds) waitDirectory(t *testing.T) {
	t.Helper()
	for i, as := range c.as {
		n, err := NewNodeOn(c.ca, fmt.Sprintf("directory%d.example.cyphonic", i), netip.MustParseAddr("127.0.0.1"))
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			rep, err := n.Login(as, false)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.NMS) == len(c.as) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("process %d's logins list %d NMS addresses, want %d", i, len(rep.NMS), len(c.as))
			}
			time.Sleep(200 * time.Millisecond)
		}
		n.Close()
	}
}

// startCloudProc starts one cloud process (see startChildCloud), stopped
// when t ends unless killed before.
func startCloudProc(t *testing.T, dir, storeURL string) (*exec.Cmd, netip.AddrPort) {
	t.Helper()
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), envChild+"="+dir, envChild+"_STORE="+storeURL)
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		child.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "READY ") {
		t.Fatalf("child cloud: %q %v", line, err)
	}
	return child, netip.MustParseAddrPort(strings.TrimSpace(strings.TrimPrefix(line, "READY ")))
}

// load keeps the processes busy while the test runs: perProc simulated
// nodes on each, in pairs asking for tunnels to each other and
// keepaliving, over and over (those on a killed process then fail, as
// they should). It returns what stops it.
func (c *clouds) load(t *testing.T, perProc int) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	for p, as := range c.as {
		var nodes []*Node
		for i := range perProc {
			n, err := NewNodeOn(c.ca, fmt.Sprintf("load%d-%d.example.cyphonic", p, i), netip.AddrFrom4([4]byte{127, 0, 1, byte(p*perProc + i + 1)}))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(n.Close)
			if _, err := n.Login(as, false); err != nil {
				t.Fatal(err)
			}
			if _, err := n.Register(false); err != nil {
				t.Fatal(err)
			}
			nodes = append(nodes, n)
		}
		for i := 0; i+1 < len(nodes); i += 2 {
			a, b := nodes[i], nodes[i+1]
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-done:
						return
					case <-time.After(20 * time.Millisecond):
					}
					_, _ = a.Tunnel(b.FQDN, false)
					_, _ = b.Keepalive()
				}
			}()
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}

// kill ends process i with SIGKILL: no logout, no store cleanup, its
// sockets and gateway gone at once.
func (c *clouds) kill(t *testing.T, i int) {
	t.Helper()
	if err := c.procs[i].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
}

// failoverNode is a node's cloud session (the real node's session actor)
// over a UDP socket on loopback; its data plane only records the paths it
// is told to open.
type failoverNode struct {
	fqdn  string
	first int
	sess  *session.Session
	plane *recordingPlane
}

func startFailoverNode(t *testing.T, cl *clouds, fqdn string, bind netip.Addr, first int) *failoverNode {
	t.Helper()
	id, err := cl.ca.Issue(pki.RoleNode, fqdn, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	v, err := pki.NewVerifier(cl.ca.Cert, pki.RoleAS)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(bind, 0)))
	if err != nil {
		t.Fatal(err)
	}
	plane := &recordingPlane{conn: conn, opened: make(chan messages.PathInfo, 16)}
	// The order of the cloud addresses puts process first first (the
	// session starts there: InOrder), the others after it.
	order := append(append([]netip.AddrPort(nil), cl.as[first:]...), cl.as[:first]...)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("test_node", fqdn)
	sess, err := session.New(session.Config{
		Identity: id, VerifyAS: v.HandshakeFunc(pki.RoleAS, pki.RoleAS.ServiceFQDN()),
		Clouds: order, InOrder: true, Dataplane: plane, Logger: log,
		Interfaces: func() []netip.Addr { return []netip.Addr{bind} },
	})
	if err != nil {
		t.Fatal(err)
	}
	plane.sess = sess
	sys := supervise.New("node-"+fqdn, slog.New(slog.NewTextHandler(io.Discard, nil)))
	plane.wg.Add(1)
	go plane.read()
	if _, err := sess.Spawn(sys.Root()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sys.Shutdown(context.Background())
		conn.Close()
		plane.wg.Wait()
		sess.Close()
	})
	return &failoverNode{fqdn: fqdn, first: first, sess: sess, plane: plane}
}

func (n *failoverNode) waitOnline(t *testing.T, as netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := n.sess.Status()
		if st.State == session.StateOnline {
			if st.AS != as {
				t.Fatalf("%s online at %v, want %v", n.fqdn, st.AS, as)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not online: %+v", n.fqdn, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tunnel asks NMS for a tunnel to peer and waits, within d, for the path
// and for the peer's Direction of the same tunnel.
func (n *failoverNode) tunnel(peer *failoverNode, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	p, err := n.sess.RequestTunnel(ctx, peer.fqdn)
	if err != nil {
		return err
	}
	for {
		select {
		case dir := <-peer.plane.opened:
			if dir.TunnelID == p.TunnelID && dir.PeerFQDN == n.fqdn {
				return nil
			}
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// recordingPlane is the session's data plane: a UDP socket for the
// cloud's packets; the paths NMS directs it to open (Directions, not the
// asker's own paths) go to opened.
type recordingPlane struct {
	conn   *net.UDPConn
	sess   *session.Session
	opened chan messages.PathInfo
	wg     sync.WaitGroup
}

func (p *recordingPlane) read() {
	defer p.wg.Done()
	buf := make([]byte, messages.MaxPacket)
	for {
		n, from, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if n > 0 {
			p.sess.Inbound(append([]byte(nil), buf[:n]...), from)
		}
	}
}

func (p *recordingPlane) SendControl(pkt []byte, to netip.AddrPort) error {
	_, err := p.conn.WriteToUDPAddrPort(pkt, to)
	return err
}

func (p *recordingPlane) Open(messages.PathInfo) error { return nil }

func (p *recordingPlane) OpenThen(info messages.PathInfo, ready func(error)) error {
	select {
	case p.opened <- info:
	default:
	}
	ready(nil)
	return nil
}

func (p *recordingPlane) PeerUpdate(string, []netip.AddrPort) error { return nil }
func (p *recordingPlane) LocalAddrs() []netip.AddrPort {
	return []netip.AddrPort{p.conn.LocalAddr().(*net.UDPAddr).AddrPort()}
}
func (p *recordingPlane) Rebind() error                 { return nil }
func (p *recordingPlane) PrimeNAT(netip.AddrPort) error { return nil }
