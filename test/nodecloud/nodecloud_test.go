// Package nodecloud runs a cloud and two nodes in one process, with
// in-memory TUN devices (no root): login, name resolution through the
// resolver, tunnels set up by NMS, traffic both ways, the cloud restarted
// under live tunnels, and a crashed peer actor re-established through NMS.
package nodecloud

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/actors/leaktest"
	"github.com/cyphonic/cyphonic-go/actors/node"
	"github.com/cyphonic/cyphonic-go/actors/session"
	"github.com/cyphonic/cyphonic-go/cloud/server"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
	"github.com/cyphonic/cyphonic-go/tun"
)

func TestMain(m *testing.M) {
	leaktest.VerifyTestMain(m)
}

func logger() *slog.Logger {
	if os.Getenv("NODECLOUD_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type cloud struct {
	dir string
	srv *server.Server
	cfg server.Config
}

func startCloud(t *testing.T, dir string, ports *server.Config) *cloud {
	t.Helper()
	cfg := server.Config{
		DataDir:     dir,
		Listen:      []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		Ephemeral:   true,
		DebugAddr:   "",
		SessionIdle: time.Minute,
		Logger:      logger(),
	}
	if ports != nil {
		cfg.NMSPort, cfg.ASPort, cfg.AltPort, cfg.TRSPort = ports.NMSPort, ports.ASPort, ports.AltPort, ports.TRSPort
	}
	srv, err := server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start cloud: %v", err)
	}
	// Remember the ports, to start it again on the same ones.
	cfg.ASPort = int(srv.AS.Addrs()[0].Port())
	cfg.NMSPort = int(srv.NMS.Addrs()[0].Port())
	cfg.AltPort = int(srv.NMS.AltAddrs()[0].Port())
	if srv.TRS != nil && len(srv.TRS.Addrs()) > 0 {
		cfg.TRSPort = int(srv.TRS.Addrs()[0].Port())
	}
	return &cloud{dir: dir, srv: srv, cfg: cfg}
}

func (c *cloud) close(t *testing.T) {
	t.Helper()
	if err := c.srv.Close(context.Background()); err != nil {
		t.Errorf("close cloud: %v", err)
	}
}

type testNode struct {
	*node.Node
	app    *tun.MemApp
	serial *big.Int // its certificate's
}

func startNode(t *testing.T, c *cloud, fqdn string) *testNode {
	t.Helper()
	return startNodeWith(t, c, fqdn, nil)
}

// startNodeWith is startNode with a chance to change the node's config.
func startNodeWith(t *testing.T, c *cloud, fqdn string, tweak func(*node.Config)) *testNode {
	t.Helper()
	id, err := c.srv.CA.Issue(pki.RoleNode, fqdn, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), fqdn)
	if err := pki.WriteIdentity(dir, id); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteRoot(dir, c.srv.CA.Cert); err != nil {
		t.Fatal(err)
	}
	dev, app := tun.NewMemPair("mem-"+fqdn[:3], 1280, 256)
	cfg := node.Config{
		CertDir:   dir,
		Cloud:     c.srv.AS.Addrs()[0].String(),
		Listen4:   "127.0.0.1:0",
		DNS:       "127.0.0.1:0",
		Upstream:  "127.0.0.1:1", // nothing outside the overlay is asked here
		DebugAddr: "127.0.0.1:0",
		Device:    dev,
		Logger:    logger().With("node", fqdn),
		Keepalive: 100 * time.Millisecond,
		Retry:     signaling.Retry{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond, Attempts: 4},
		TuneDataplane: func(c *dataplane.Config) {
			c.HandshakeRetry = 100 * time.Millisecond
		},
	}
	if tweak != nil {
		tweak(&cfg)
	}
	n, err := node.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start node %s: %v", fqdn, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := n.Stop(ctx); err != nil {
			t.Errorf("stop %s: %v", fqdn, err)
		}
	})
	return &testNode{Node: n, app: app, serial: id.Cert.SerialNumber}
}

// eventually waits for cond; the deadline only ends a hung test.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func online(n *testNode) func() bool {
	return func() bool { return n.Session().Status().State == session.StateOnline }
}

// ipv4UDP builds a minimal IPv4/UDP packet from src to dst carrying seq.
func ipv4UDP(src, dst netip.Addr, seq uint32) []byte {
	p := make([]byte, 20+8+4)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8] = 64
	p[9] = 17
	s, d := src.As4(), dst.As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(p[20:], 40000)
	binary.BigEndian.PutUint16(p[22:], 40001)
	binary.BigEndian.PutUint16(p[24:], 12)
	binary.BigEndian.PutUint32(p[28:], seq)
	return p
}

// roundTrip sends a packet from a to b over the tunnel and waits for it.
func roundTrip(t *testing.T, from, to *testNode, seq uint32) {
	t.Helper()
	src, dst := from.Session().Status().VIP4, to.Session().Status().VIP4
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The first packets may be dropped while a handshake completes: resend
	// until one arrives.
	got := make(chan error, 1)
	go func() {
		for {
			pkt, err := to.app.Recv(ctx)
			if err != nil {
				got <- err
				return
			}
			if len(pkt) == 32 && binary.BigEndian.Uint32(pkt[28:]) == seq {
				got <- nil
				return
			}
		}
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := from.app.Send(ctx, ipv4UDP(src, dst, seq)); err != nil {
			t.Fatalf("send %d: %v", seq, err)
		}
		select {
		case err := <-got:
			if err != nil {
				t.Fatalf("packet %d from %s to %s: %v", seq, from.FQDN(), to.FQDN(), err)
			}
			return
		case <-tick.C:
		}
	}
}

func resolveA(t *testing.T, via *testNode, name string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	r, _, err := (&dns.Client{Timeout: 30 * time.Second}).Exchange(m, via.DNSAddr().String())
	if err != nil {
		t.Fatalf("resolve %s: %v", name, err)
	}
	return r
}

func peerState(n *testNode, fqdn string) (dataplane.PeerStatus, bool) {
	for _, p := range n.Dataplane().Status() {
		if p.FQDN == fqdn {
			return p, true
		}
	}
	return dataplane.PeerStatus{}, false
}

func TestNodesThroughCloud(t *testing.T) {
	dataDir := t.TempDir()
	c := startCloud(t, dataDir, nil)
	cloudUp := true
	defer func() {
		if cloudUp {
			c.close(t)
		}
	}()
	alice := startNode(t, c, "alice.example.cyphonic")
	bob := startNode(t, c, "bob.example.cyphonic")
	eventually(t, "alice online", online(alice))
	eventually(t, "bob online", online(bob))

	// Name resolution through alice's resolver brings the tunnel up.
	r := resolveA(t, alice, "bob.example.cyphonic")
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("resolve bob: %v", r)
	}
	if got, want := r.Answer[0].(*dns.A).A.String(), bob.Session().Status().VIP4.String(); got != want {
		t.Fatalf("bob resolved to %s, his VIP is %s", got, want)
	}
	if p, ok := peerState(alice, "bob.example.cyphonic"); !ok || p.State != dataplane.StateUp {
		t.Fatalf("after the answer, alice's tunnel to bob is %+v", p)
	}
	if r := resolveA(t, alice, "nobody.example.cyphonic"); r.Rcode != dns.RcodeNameError {
		t.Fatalf("unknown name: rcode %s", dns.RcodeToString[r.Rcode])
	}

	seq := uint32(0)
	next := func() uint32 { seq++; return seq }
	roundTrip(t, alice, bob, next())
	roundTrip(t, bob, alice, next())

	// The status endpoint shows the tunnel.
	st, err := node.FetchStatus(context.Background(), alice.DebugAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Peers) != 1 || st.Peers[0].FQDN != "bob.example.cyphonic" || st.Peers[0].TxPackets+st.Peers[0].RxPackets == 0 {
		t.Fatalf("status peers %+v", st.Peers)
	}

	// The cloud goes away: the tunnel keeps carrying traffic.
	c.close(t)
	cloudUp = false
	roundTrip(t, alice, bob, next())
	roundTrip(t, bob, alice, next())
	eventually(t, "alice notices the cloud is gone", func() bool { return !online(alice)() })

	// The cloud comes back on the same ports: both nodes log in again by
	// themselves, and the tunnel never stopped.
	c = startCloud(t, dataDir, &c.cfg)
	cloudUp = true
	for _, n := range []*testNode{alice, bob} {
		eventually(t, n.FQDN()+" logged in again", func() bool {
			s := n.Session().Status()
			return s.State == session.StateOnline && s.Logins >= 2
		})
	}
	roundTrip(t, alice, bob, next())
	roundTrip(t, bob, alice, next())

	// A crashed peer actor is restarted and re-established through NMS.
	before, _ := peerState(alice, "bob.example.cyphonic")
	pid := alice.Dataplane().Peer("bob.example.cyphonic")
	if pid == nil {
		t.Fatal("no peer actor for bob")
	}
	alice.System().Root().Send(pid, dataplane.Crash{Reason: "test"})
	eventually(t, "peer restarted", func() bool {
		p, ok := peerState(alice, "bob.example.cyphonic")
		return ok && p.Restarts > before.Restarts && p.State == dataplane.StateUp
	})
	roundTrip(t, alice, bob, next())
	roundTrip(t, bob, alice, next())
}
