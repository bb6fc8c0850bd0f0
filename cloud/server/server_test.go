package server_test

import (
	"bufio"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/debug"
	"github.com/cyphonic/cyphonic-go/cloud/relay"
	"github.com/cyphonic/cyphonic-go/cloud/rootca"
	"github.com/cyphonic/cyphonic-go/cloud/server"
	"github.com/cyphonic/cyphonic-go/cloud/server/svc"
	"github.com/cyphonic/cyphonic-go/cloud/store/storetest"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/test/cloudsim"
)

var loopback = []netip.Addr{netip.MustParseAddr("127.0.0.1")}

func node(t *testing.T, ca *rootca.CA, fqdn string, ip byte) *cloudsim.Node {
	t.Helper()
	n, err := cloudsim.NewNodeOn(ca, fqdn, netip.AddrFrom4([4]byte{127, 0, 0, ip}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

func systemNames(s *server.Server) []string {
	var names []string
	for _, sys := range s.Systems() {
		names = append(names, sys.Name())
	}
	return names
}

// TestThreeSystemsOneProcess: AS, NMS and TRS run as three actor systems in
// one process, shown as three top-level nodes of the debug tree, and a
// login (AS -> NMS and back) and a relayed tunnel (NMS -> TRS and back)
// cross between them with no remote: the process has no gateway and every
// frame was delivered locally.
func TestThreeSystemsOneProcess(t *testing.T) {
	s, err := server.Start(context.Background(), server.Config{
		DataDir: t.TempDir(), Ephemeral: true, Listen: loopback, DebugAddr: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	if got := systemNames(s); !slices.Equal(got, []string{svc.TRS, svc.NMS, svc.AS}) {
		t.Fatalf("systems %v, want trs, nms, as and no gateway", got)
	}
	if s.Remote != "" {
		t.Fatalf("a gateway runs at %s", s.Remote)
	}

	alice, bob := node(t, s.CA, "alice.example.cyphonic", 2), node(t, s.CA, "bob.example.cyphonic", 3)
	for n, nat := range map[*cloudsim.Node]messages.NATType{alice: messages.NATSymmetric, bob: messages.NATEndpointIndependent} {
		if _, err := n.Login(s.AS.Addrs()[0], false); err != nil {
			t.Fatalf("login %s: %v", n.FQDN, err)
		}
		if _, err := n.RegisterBehind(nat, false); err != nil {
			t.Fatalf("register %s: %v", n.FQDN, err)
		}
	}
	p, err := alice.Tunnel(bob.FQDN, false)
	if err != nil {
		t.Fatal(err)
	}
	// The NMS minted the tickets under the TRS's key: nothing went to the
	// TRS, which holds the session from alice's first bind on.
	if p.Kind != messages.PathRelay || p.Relay == nil || s.TRS.Table().Stats() != (relay.Stats{}) {
		t.Fatalf("path %+v, TRS %+v: want a relay ticket and nothing at the TRS yet", p, s.TRS.Table().Stats())
	}
	if err := alice.SendBind(*p.Relay); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); s.TRS.Table().Stats().Created != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("alice's bind made no session: %+v", s.TRS.Table().Stats())
		}
	}
	// Two key handovers and their acks.
	if st := s.Router().Stats(); st.Local < 4 || st.Outbound != 0 || st.Inbound != 0 || st.Dropped != 0 {
		t.Fatalf("router %+v: want local deliveries only", st)
	}

	tree, err := debug.FetchTree(t.Context(), s.DebugAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	if len(tree.Actors) != 3 {
		t.Fatalf("tree has %d top-level nodes, want 3 systems: %+v", len(tree.Actors), tree.Actors)
	}
	if want := "cloud services " + svc.TRS + ", " + svc.NMS + ", " + svc.AS; tree.Daemon != want {
		t.Errorf("tree names its daemon %q, want %q", tree.Daemon, want)
	}
	for i, name := range []string{svc.TRS, svc.NMS, svc.AS} {
		sys := tree.Actors[i]
		if sys.ID != name || sys.Kind != server.KindActorSystem || len(sys.Children) == 0 || sys.Children[0].ID != name {
			t.Errorf("system %d: %+v, want %q holding its root actor %q", i, sys, name, name)
		}
	}
}

// TestSplitDeployment runs NMS and TRS in a child process and the AS here,
// sharing a Redis store: the AS hands the session key to the NMS through
// the two processes' gateways (protoactor remote), the NMS's ack comes back
// to the login transaction here, and the node goes on with the NMS.
func TestSplitDeployment(t *testing.T) {
	redisURL := storetest.WithPrefix(t, storetest.RedisURL(t), "server-"+t.Name()+":")
	defer storetest.DeletePrefix(t, redisURL, "server-"+t.Name()+":")
	dir := t.TempDir()
	// Both processes use the service certificates in dir, issued by a CA
	// kept elsewhere: neither process can reach its key.
	ca, err := rootca.Init(t.TempDir(), "test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.Provision(ca, dir, []pki.Role{pki.RoleAS, pki.RoleNMS, pki.RoleTRS}, time.Hour, false); err != nil {
		t.Fatal(err)
	}

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), envChild+"="+dir, envChild+"_STORE="+redisURL, envChild+"_SERVICES=nms,trs")
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		if err := child.Wait(); err != nil {
			t.Errorf("child cloud: %v", err)
		}
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 4 || f[0] != "READY" {
		t.Fatalf("child cloud: %q %v", line, err)
	}
	nmsRemote := f[1]
	nmsAddr, probeAddr := netip.MustParseAddrPort(f[2]), netip.MustParseAddrPort(f[3])

	s, err := server.Start(context.Background(), server.Config{
		DataDir: dir, StoreURL: redisURL, Ephemeral: true, Listen: loopback, Services: []string{svc.AS},
		NMSRemote: nmsRemote, NMSAddrs: []netip.AddrPort{nmsAddr}, ProbeAddrs: []netip.AddrPort{probeAddr},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	if got := systemNames(s); !slices.Equal(got, []string{svc.AS, "gateway"}) || s.Remote == "" || s.NMS != nil {
		t.Fatalf("systems %v, gateway %q: want as and a gateway", got, s.Remote)
	}

	n := node(t, ca, "carol.example.cyphonic", 2)
	rep, err := n.Login(s.AS.Addrs()[0], false)
	if err != nil {
		t.Fatalf("login through the split cloud: %v", err)
	}
	if len(rep.NMS) != 1 || rep.NMS[0] != nmsAddr {
		t.Fatalf("login reply names NMS %v, want %v", rep.NMS, nmsAddr)
	}
	if _, err := n.Register(false); err != nil {
		t.Fatalf("register with the NMS that got the key: %v", err)
	}
	if st := s.Router().Stats(); st.Outbound != 1 || st.Inbound != 1 || st.Dropped != 0 {
		t.Fatalf("router %+v: want the handover out and its ack in", st)
	}
}

// TestSplitTRSStatelessTickets runs the TRS in one child process and AS
// and NMS in another (children both: two gateways in this process would
// race on grpclog's globals, see doc.go): the NMS asks the TRS for its
// ticket key over the gateways (RelayKey) and from then on mints the
// tickets of relayed tunnels, which relay at the TRS over there. Minted
// tokens are told from allocated ones without the key: a side's token
// starts with its node's owner ID, the same in every tunnel (RelayAlloc's
// are random).
func TestSplitTRSStatelessTickets(t *testing.T) {
	redisURL := storetest.WithPrefix(t, storetest.RedisURL(t), "server-"+t.Name()+":")
	defer storetest.DeletePrefix(t, redisURL, "server-"+t.Name()+":")
	dir := t.TempDir()
	ca, err := rootca.Init(t.TempDir(), "test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.Provision(ca, dir, []pki.Role{pki.RoleAS, pki.RoleNMS, pki.RoleTRS}, time.Hour, false); err != nil {
		t.Fatal(err)
	}
	start := func(services string, env ...string) []string {
		child := exec.Command(os.Args[0], "-test.run=^$")
		child.Env = append(os.Environ(), append(env, envChild+"="+dir, envChild+"_STORE="+redisURL, envChild+"_SERVICES="+services)...)
		stdin, _ := child.StdinPipe()
		stdout, _ := child.StdoutPipe()
		child.Stderr = os.Stderr
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			stdin.Close()
			if err := child.Wait(); err != nil {
				t.Errorf("child cloud %s: %v", services, err)
			}
		})
		line, err := bufio.NewReader(stdout).ReadString('\n')
		f := strings.Fields(line)
		if err != nil || len(f) < 4 || f[0] != "READY" {
			t.Fatalf("child cloud %s: %q %v", services, line, err)
		}
		return f
	}
	tf := start("trs")
	trsAddr := netip.MustParseAddrPort(tf[2])
	nf := start("as,nms", envChild+"_TRS="+tf[1]+" "+tf[2])
	if len(nf) != 5 {
		t.Fatalf("child cloud as,nms: %v", nf)
	}
	asAddr := netip.MustParseAddrPort(nf[4])

	alice, bob := node(t, ca, "alice.example.cyphonic", 2), node(t, ca, "bob.example.cyphonic", 3)
	for n, nat := range map[*cloudsim.Node]messages.NATType{alice: messages.NATSymmetric, bob: messages.NATEndpointIndependent} {
		if _, err := n.Login(asAddr, false); err != nil {
			t.Fatalf("login %s: %v", n.FQDN, err)
		}
		if _, err := n.RegisterBehind(nat, false); err != nil {
			t.Fatalf("register %s: %v", n.FQDN, err)
		}
	}
	// The NMS asks for the key at start and every 2 s: once it has it, two
	// tunnels' tickets for alice start with the same owner ID.
	tunnel := func() (messages.Path, messages.RelayTicket) {
		t.Helper()
		p, err := alice.Tunnel(bob.FQDN, false)
		if err != nil {
			t.Fatal(err)
		}
		if p.Kind != messages.PathRelay || p.Relay == nil || p.Relay.TRS4 != trsAddr {
			t.Fatalf("path %+v: want a relay at %v", p, trsAddr)
		}
		for _, d := range bob.Directions() {
			if d.TunnelID == p.TunnelID && d.Relay != nil {
				return p, *d.Relay
			}
		}
		t.Fatal("bob has no Direction for the tunnel")
		return p, messages.RelayTicket{}
	}
	p, tb := tunnel()
	for deadline := time.Now().Add(10 * time.Second); ; {
		p2, tb2 := tunnel()
		if [4]byte(p2.Relay.Token[:4]) == [4]byte(p.Relay.Token[:4]) && [4]byte(tb2.Token[:4]) == [4]byte(tb.Token[:4]) && p2.Relay.Token[15] == 2 && tb2.Token[15] == 3 {
			p, tb = p2, tb2
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tickets are still allocated ones: %x, %x", p2.Relay.Token, tb2.Token)
		}
		p, tb = p2, tb2
		time.Sleep(100 * time.Millisecond)
	}
	// Both bind; alice's frame reaches bob through the other process's TRS.
	inner := []byte{byte(messages.TypeData), 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	for try := 0; ; try++ {
		for _, b := range []struct {
			n  *cloudsim.Node
			tk messages.RelayTicket
		}{{alice, *p.Relay}, {bob, tb}} {
			if err := b.n.SendBind(b.tk); err != nil {
				t.Fatal(err)
			}
		}
		if err := alice.SendRelay(trsAddr, p.Relay.Token, inner); err != nil {
			t.Fatal(err)
		}
		select {
		case pkt := <-bob.Relayed():
			tok, payload, err := messages.ParseRelay(pkt)
			if err != nil || tok != tb.Token || !slices.Equal(payload, inner) {
				t.Fatalf("bob got token %x payload %x err %v", tok, payload, err)
			}
			return
		case <-time.After(200 * time.Millisecond):
			if try == 25 {
				t.Fatal("bob never got alice's frame through the TRS in the other process")
			}
		}
	}
}
