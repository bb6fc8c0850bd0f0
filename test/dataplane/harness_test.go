package dataplane_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/actors/leaktest"
	rt "github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/cloud/rootca"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/transport/udp"
	"github.com/cyphonic/cyphonic-go/tun"
)

func TestMain(m *testing.M) {
	if floodChild() { // this process is an attacker another test started
		return
	}
	leaktest.VerifyTestMain(m)
}

// failsafe turns a hang into a failure; no test asserts on speed.
const failsafe = 2 * time.Minute

const mtu = 1420

type node struct {
	fqdn       string
	id         *pki.Identity
	serial     *big.Int // its certificate's
	vip4, vip6 netip.Addr
	sys        *rt.System
	dp         *dataplane.Dataplane
	app        *tun.MemApp
	addr       netip.AddrPort
	stop       func() // stops the data plane and its actor system (once)
}

type pkiFixture struct {
	ca       *rootca.CA
	verifier *pki.Verifier
}

func newPKI(t testing.TB) *pkiFixture {
	t.Helper()
	ca, err := rootca.Init(t.TempDir(), "test overlay", time.Hour)
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
	id, err := f.ca.Issue(pki.RoleNode, name+".example.cyphonic", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return startNode(t, f, name, id, "127.0.0.1:0", tune)
}

// startNode starts a data plane for id on listen with a fresh in-memory
// TUN and fresh state (what a node process started again has).
func startNode(t testing.TB, f *pkiFixture, name string, id *pki.Identity, listen string, tune func(*dataplane.Config)) *node {
	t.Helper()
	fqdn := name + ".example.cyphonic"
	bind, err := udp.ListenBind(listen, "")
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
	nd := &node{fqdn: fqdn, id: id, serial: id.Cert.SerialNumber, sys: sys, dp: dp, app: app, addr: bind.V4.LocalAddr(),
		vip4: id.VIP4, vip6: id.VIP6} // the CA's allocation, bound in the certificate
	var once sync.Once
	nd.stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := dp.Stop(ctx); err != nil {
				t.Errorf("stop %s: %v", name, err)
			}
			if err := sys.Shutdown(ctx); err != nil {
				t.Errorf("shutdown %s: %v", name, err)
			}
		})
	}
	t.Cleanup(nd.stop)
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
// and checks that they arrive in order, starting at first, and that every
// packet that did not arrive is a counted load-shedding drop (see
// loadDrops): the data plane may drop on a full queue or a long delay
// under load — a loaded CI machine makes that happen — but never reorder,
// duplicate or lose a packet silently.
func stream(t testing.TB, a, b *node, first, count uint64, window int) {
	t.Helper()
	streamWith(t, a, b, first, count, window, nil)
}

// loadShedding are the reasons a sound data plane drops packets under load.
var loadShedding = []string{"queue-full", "queue-delay", "send-error"}

// loadDrops counts n's load-shedding drops: the data plane's own, each
// peer's, and the in-memory TUN's (the application queue was full).
func loadDrops(n *node) uint64 {
	sum := n.app.Dropped()
	maps := []map[string]uint64{n.dp.Drops()}
	for _, st := range n.dp.Status() {
		maps = append(maps, st.Drops)
	}
	for _, m := range maps {
		for _, r := range loadShedding {
			sum += m[r]
		}
	}
	return sum
}

// unexpectedDrops is drops without the load-shedding reasons, which
// stream accounts for.
func unexpectedDrops(drops map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for r, v := range drops {
		if !slices.Contains(loadShedding, r) {
			out[r] = v
		}
	}
	return out
}

// maxLossDivisor bounds how many packets of a stream may be shed under
// load: count/maxLossDivisor + 1. More is a data plane that lost its
// back-pressure, not a busy machine.
const maxLossDivisor = 20

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
	giveCredit := func() {
		select {
		case credits <- struct{}{}:
		default: // a drop that was not this stream's (a keepalive): no credit owed
		}
	}
	baseDrops := loadDrops(a) + loadDrops(b)
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
	report := func() string {
		return fmt.Sprintf("a %+v; b %+v; drops a %v b %v", a.dp.Status(), b.dp.Status(), a.dp.Drops(), b.dp.Drops())
	}
	var (
		next     = first // the lowest sequence number not yet seen
		received uint64
		credited uint64 // drops whose credit went back to the sender
		sendErr  error
		sent     bool // the sender has finished
	)
	for next < first+count {
		// A dropped packet returns its credit when its drop is counted,
		// so the sender never waits on a packet that will not come.
		dropped := loadDrops(a) + loadDrops(b) - baseDrops
		for ; credited < dropped; credited++ {
			giveCredit()
		}
		rctx, rcancel := context.WithTimeout(ctx, 50*time.Millisecond)
		p, err := b.app.Recv(rctx)
		rcancel()
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("after %d of %d packets (next %d): %v; %s", received, count, next, err, report())
			}
			if !sent {
				select {
				case sendErr = <-errc:
					sent = true
				default:
				}
			}
			if sent && received+dropped >= count {
				break // quiet, and the rest were shed: checked below
			}
			continue // poll the drop counters again
		}
		got := seqOf(p)
		if got < next || got >= first+count {
			t.Fatalf("got packet %d, want %d or later (reordered or duplicated); %s", got, next, report())
		}
		if len(p) != 100+int(got%1200) {
			t.Fatalf("packet %d: %d bytes, want %d", got, len(p), 100+int(got%1200))
		}
		next = got + 1
		received++
		giveCredit()
	}
	if !sent {
		sendErr = <-errc
	}
	if sendErr != nil {
		t.Fatal(sendErr)
	}
	lost := count - received
	if dropped := loadDrops(a) + loadDrops(b) - baseDrops; lost > dropped {
		t.Fatalf("%d of %d packets lost but only %d counted as drops; %s", lost, count, dropped, report())
	}
	if lost > count/maxLossDivisor+1 {
		t.Fatalf("%d of %d packets shed under load, more than %d; %s", lost, count, count/maxLossDivisor+1, report())
	}
	if lost > 0 {
		t.Logf("stream %d..%d: %d packets shed under load and counted", first, first+count-1, lost)
	}
}
