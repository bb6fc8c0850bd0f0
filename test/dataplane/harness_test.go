package dataplane_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"log/slog"
	"math/big"
	"net/netip"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/actors/leaktest"
	rt "github.com/cyphonic/cyphonic-go/actors/runtime"
	"github.com/cyphonic/cyphonic-go/cloud/pki"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/udp"
	"github.com/cyphonic/cyphonic-go/tun"
)

func TestMain(m *testing.M) {
	leaktest.VerifyTestMain(m)
}

// failsafe turns a hang into a failure; no test asserts on speed.
const failsafe = 2 * time.Minute

const mtu = 1420

type node struct {
	fqdn       string
	serial     *big.Int // its certificate's
	vip4, vip6 netip.Addr
	sys        *rt.System
	dp         *dataplane.Dataplane
	app        *tun.MemApp
	addr       netip.AddrPort
}

type pkiFixture struct {
	ca       *pki.CA
	verifier *pki.Verifier
}

func newPKI(t testing.TB) *pkiFixture {
	t.Helper()
	ca, err := pki.InitCA(t.TempDir(), "test overlay", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	v, err := pki.NewVerifier(ca.Cert, pki.RoleNode)
	if err != nil {
		t.Fatal(err)
	}
	return &pkiFixture{ca: ca, verifier: v}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newNode starts a data plane on 127.0.0.1 with an in-memory TUN.
func newNode(t testing.TB, f *pkiFixture, name string, n byte, tune func(*dataplane.Config)) *node {
	t.Helper()
	fqdn := name + ".example.cyphonic"
	id, err := f.ca.Issue(pki.RoleNode, fqdn, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bind, err := udp.ListenBind("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	dev, app := tun.NewMemPair("cyph-"+name, mtu, 4096)
	sys := rt.New(name, quiet())
	cfg := dataplane.Config{
		Identity: id, Verify: dataplane.NodeVerifier(f.verifier), Device: dev, Bind: bind,
		Logger:        quiet(),
		MaxQueueDelay: time.Minute, // under -race on a shared machine, never drop for delay
		CoDelTarget:   time.Minute, // ...early (CoDel) or late: these tests count every packet
		GapTimeout:    time.Minute,
	}
	if tune != nil {
		tune(&cfg)
	}
	dp, err := dataplane.New(sys, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := dp.Start(nil); err != nil {
		t.Fatal(err)
	}
	nd := &node{fqdn: fqdn, serial: id.Cert.SerialNumber, sys: sys, dp: dp, app: app, addr: bind.V4.LocalAddr(),
		vip4: id.VIP4, vip6: id.VIP6} // the CA's allocation, bound in the certificate
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := dp.Stop(ctx); err != nil {
			t.Errorf("stop %s: %v", name, err)
		}
		if err := sys.Shutdown(ctx); err != nil {
			t.Errorf("shutdown %s: %v", name, err)
		}
	})
	return nd
}

func tunnelID() messages.MsgID {
	var id messages.MsgID
	_, _ = rand.Read(id[:])
	return id
}

// connect opens a direct tunnel a -> b (a initiates) through the given
// endpoints (the other's socket, or a proxy) and waits until both are up.
func connect(t testing.TB, a, b *node, aSeesB, bSeesA netip.AddrPort) {
	t.Helper()
	id := tunnelID()
	if err := b.dp.Open(messages.PathInfo{PeerFQDN: a.fqdn, PeerVIP4: a.vip4, PeerVIP6: a.vip6,
		Kind: messages.PathDirect, Endpoints: []netip.AddrPort{bSeesA}, TunnelID: id}); err != nil {
		t.Fatal(err)
	}
	if err := a.dp.Open(messages.PathInfo{PeerFQDN: b.fqdn, PeerVIP4: b.vip4, PeerVIP6: b.vip6,
		Kind: messages.PathDirect, Endpoints: []netip.AddrPort{aSeesB}, Initiator: true, TunnelID: id}); err != nil {
		t.Fatal(err)
	}
	waitUp(t, a, b.fqdn)
	waitUp(t, b, a.fqdn)
}

func waitUp(t testing.TB, n *node, peer string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), failsafe)
	defer cancel()
	if err := n.dp.WaitUp(ctx, peer); err != nil {
		t.Fatalf("%s: wait up %s: %v (status %+v)", n.fqdn, peer, err, n.dp.Status())
	}
}

// ipv4 builds an IPv4 packet of size bytes to dst carrying seq.
func ipv4(src, dst netip.Addr, seq uint64, size int) []byte {
	p := make([]byte, size)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:4], uint16(size))
	p[9] = 17
	s, d := src.As4(), dst.As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	binary.BigEndian.PutUint64(p[20:28], seq)
	return p
}

func seqOf(p []byte) uint64 { return binary.BigEndian.Uint64(p[20:28]) }

// stream sends count packets from a to b with at most window outstanding
// and checks they arrive complete and in order, starting at first.
func stream(t testing.TB, a, b *node, first, count uint64, window int) {
	t.Helper()
	streamWith(t, a, b, first, count, window, nil)
}

// streamWith is stream with a hook the sender calls before each packet (it
// may block, e.g. to wait for a rekey while packets are in flight).
func streamWith(t testing.TB, a, b *node, first, count uint64, window int, beforeSend func(seq uint64)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), failsafe)
	defer cancel()
	credits := make(chan struct{}, window)
	for range window {
		credits <- struct{}{}
	}
	errc := make(chan error, 1)
	go func() {
		for s := first; s < first+count; s++ {
			select {
			case <-credits:
			case <-ctx.Done():
				errc <- ctx.Err()
				return
			}
			if beforeSend != nil {
				beforeSend(s)
			}
			if err := a.app.Send(ctx, ipv4(a.vip4, b.vip4, s, 100+int(s%1200))); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for want := first; want < first+count; want++ {
		p, err := b.app.Recv(ctx)
		if err != nil {
			t.Fatalf("after %d of %d packets: %v; a %+v; b %+v; drops a %v b %v", want-first, count, err,
				a.dp.Status(), b.dp.Status(), a.dp.Drops(), b.dp.Drops())
		}
		if got := seqOf(p); got != want {
			t.Fatalf("got packet %d, want %d; a %+v; b %+v; drops a %v b %v", got, want,
				a.dp.Status(), b.dp.Status(), a.dp.Drops(), b.dp.Drops())
		}
		if len(p) != 100+int(want%1200) {
			t.Fatalf("packet %d: %d bytes, want %d", want, len(p), 100+int(want%1200))
		}
		credits <- struct{}{}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
