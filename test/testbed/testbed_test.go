package testbed

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/netlab"
)

// The internet's address plan, as documented (netlab.HostOpts): global
// addresses from documentation ranges only.
var (
	internet4  = netip.MustParsePrefix("198.51.100.0/24")
	internet4b = netip.MustParsePrefix("203.0.113.0/25")
	internet6  = netip.MustParsePrefix("2001:db8::/64")
	internet6b = netip.MustParsePrefix("2001:db8:1::/64")
)

// ping reports whether host reaches dst, with a bounded number of tries
// (the first echo may wait on neighbour discovery).
func ping(h *Host, dst netip.Addr) error {
	var err error
	for range 3 {
		if _, err = h.Exec("ping", "-n", "-c", "1", "-W", "2", dst.String()); err == nil {
			return nil
		}
	}
	return err
}

// unreachable reports whether dst stays silent to one echo from h, after a
// ping of a reachable address has already settled neighbour discovery.
func unreachable(h *Host, dst netip.Addr) bool {
	_, err := h.Exec("ping", "-n", "-c", "1", "-W", "1", dst.String())
	return err != nil
}

// listenUDP opens a UDP socket in ns, closed at the end of the test.
func listenUDP(t *testing.T, b *Bed, ns string, network string, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := b.Do(ns, func() error {
		var err error
		c, err = net.ListenUDP(network, net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// observe sends from client to server and returns the source address the
// server saw: the client's mapping as seen from the internet. Bounded
// retries cover a first datagram lost to neighbour discovery.
func observe(t *testing.T, client, server *net.UDPConn) netip.AddrPort {
	t.Helper()
	dst := server.LocalAddr().(*net.UDPAddr).AddrPort()
	buf := make([]byte, 64)
	for try := range 5 {
		if try > 0 {
			t.Logf("no datagram reached %s, retrying", dst)
		}
		if _, err := client.WriteToUDPAddrPort([]byte("probe"), dst); err != nil {
			t.Fatalf("send to %s: %v", dst, err)
		}
		_ = server.SetReadDeadline(time.Now().Add(time.Second))
		n, src, err := server.ReadFromUDPAddrPort(buf)
		if err == nil && string(buf[:n]) == "probe" {
			return netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		}
	}
	t.Fatalf("no datagram reached %s", dst)
	return netip.AddrPort{}
}

// TestTopology builds the internet, a global dual-stack server, a cone
// site, a symmetric site, an IPv4-only site and an IPv6-only site, and
// checks that each behaves as its kind of network does.
func TestTopology(t *testing.T) {
	bed := New(t)
	srv := bed.AddHost("srv", HostOpts{Secondary: true})
	cone := bed.AddSite("cone", SiteOpts{NAT: NATCone})
	sym := bed.AddSite("sym", SiteOpts{NAT: NATSymmetric, IPv4: true})
	only4 := bed.AddSite("only4", SiteOpts{NAT: NATCone, IPv4: true})
	only6 := bed.AddSite("only6", SiteOpts{IPv6: true})
	hc, hs, h4, h6 := cone.AddHost("hc"), sym.AddHost("hs"), only4.AddHost("h4"), only6.AddHost("h6")

	t.Run("addresses", func(t *testing.T) {
		for _, tt := range []struct {
			host     *Host
			in4, in6 netip.Prefix
		}{
			{srv, internet4, internet6},
			{hc, cone.LAN4(), cone.LAN6()},
			{hs, sym.LAN4(), netip.Prefix{}},
			{h4, only4.LAN4(), netip.Prefix{}},
			{h6, netip.Prefix{}, only6.LAN6()},
		} {
			if got := tt.host.IPv4(); got.IsValid() != tt.in4.IsValid() || got.IsValid() && !tt.in4.Contains(got) {
				t.Errorf("%s IPv4 %v, want in %v", tt.host.Name(), got, tt.in4)
			}
			if got := tt.host.IPv6(); got.IsValid() != tt.in6.IsValid() || got.IsValid() && !tt.in6.Contains(got) {
				t.Errorf("%s IPv6 %v, want in %v", tt.host.Name(), got, tt.in6)
			}
		}
		if !internet4b.Contains(srv.SecondaryIPv4()) || !internet6b.Contains(srv.SecondaryIPv6()) {
			t.Errorf("srv secondary %v %v", srv.SecondaryIPv4(), srv.SecondaryIPv6())
		}
		out, err := bed.Exec(cone.NS(), "sysctl", "-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")
		if err != nil || strings.Fields(string(out))[0] != "1" || strings.Fields(string(out))[1] != "1" {
			t.Errorf("router forwarding: %q %v", out, err)
		}
		if out, err := hc.Exec("sysctl", "-n", "net.ipv4.ip_forward"); err != nil || strings.TrimSpace(string(out)) != "0" {
			t.Errorf("host forwarding: %q %v", out, err)
		}
	})

	t.Run("reach", func(t *testing.T) {
		for _, tt := range []struct {
			from *Host
			to   netip.Addr
		}{
			{hc, srv.IPv4()}, {hc, srv.IPv6()}, {hc, srv.SecondaryIPv4()},
			{hs, srv.IPv4()}, {h4, srv.IPv4()}, {h6, srv.IPv6()}, {h6, srv.SecondaryIPv6()},
			{srv, hc.IPv6()}, // routed IPv6 in a NAT site is reachable
			{srv, h6.IPv6()},
		} {
			if err := ping(tt.from, tt.to); err != nil {
				t.Errorf("%s -> %s: %v", tt.from.Name(), tt.to, err)
			}
		}
		// A NATed private address is not reachable from the internet.
		if !unreachable(srv, hc.IPv4()) {
			t.Errorf("srv reached the cone site's private %s", hc.IPv4())
		}
	})

	t.Run("mapping", func(t *testing.T) {
		servers := []*net.UDPConn{
			listenUDP(t, bed, srv.NS(), "udp4", netip.AddrPortFrom(srv.IPv4(), 7000)),
			listenUDP(t, bed, srv.NS(), "udp4", netip.AddrPortFrom(srv.IPv4(), 7001)),
			listenUDP(t, bed, srv.NS(), "udp4", netip.AddrPortFrom(srv.SecondaryIPv4(), 7000)),
		}
		mappings := func(h *Host) map[netip.AddrPort]bool {
			client := listenUDP(t, bed, h.NS(), "udp4", netip.AddrPort{})
			seen := map[netip.AddrPort]bool{}
			for _, s := range servers {
				seen[observe(t, client, s)] = true
			}
			return seen
		}
		coneSeen := mappings(hc)
		if len(coneSeen) != 1 {
			t.Errorf("cone site: %d mappings %v for one socket, want 1 (endpoint-independent)", len(coneSeen), coneSeen)
		}
		for m := range coneSeen {
			if m.Addr() != cone.PublicIPv4() {
				t.Errorf("cone mapping %v not on the router's %v", m, cone.PublicIPv4())
			}
		}
		// fully-random draws each port at random: all three equal by
		// chance is about one in a billion.
		symSeen := mappings(hs)
		if len(symSeen) < 2 {
			t.Errorf("symmetric site: mappings %v for three destinations, want them to differ", symSeen)
		}
		for m := range symSeen {
			if m.Addr() != sym.PublicIPv4() {
				t.Errorf("symmetric mapping %v not on the router's %v", m, sym.PublicIPv4())
			}
		}
		// IPv6 in the cone site is routed: the server sees the host itself.
		server6 := listenUDP(t, bed, srv.NS(), "udp6", netip.AddrPortFrom(srv.IPv6(), 7000))
		client6 := listenUDP(t, bed, hc.NS(), "udp6", netip.AddrPortFrom(hc.IPv6(), 0))
		want := client6.LocalAddr().(*net.UDPAddr).AddrPort()
		if got := observe(t, client6, server6); got != want {
			t.Errorf("cone site IPv6 seen as %v, want untranslated %v", got, want)
		}
	})

	t.Run("families", func(t *testing.T) {
		for _, tt := range []struct {
			host    *Host
			network string
			to      netip.Addr
			family  string
		}{
			{h4, "udp6", srv.IPv6(), "-6"},
			{h6, "udp4", srv.IPv4(), "-4"},
		} {
			if out, err := tt.host.Exec("ip", tt.family, "route", "show"); err != nil || len(bytes.TrimSpace(out)) != 0 {
				t.Errorf("%s has %s routes %q (%v), want none", tt.host.Name(), tt.family, out, err)
			}
			err := tt.host.Do(func() error {
				c, err := net.DialUDP(tt.network, nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(tt.to, 7)))
				if err == nil {
					c.Close()
				}
				return err
			})
			if err == nil {
				t.Errorf("%s can dial %s %s", tt.host.Name(), tt.network, tt.to)
			}
		}
	})

	t.Run("etc", func(t *testing.T) {
		out, err := hs.Exec("cat", "/etc/resolv.conf")
		if err != nil || !strings.HasPrefix(string(out), "nameserver 127.0.0.1\n") {
			t.Errorf("default resolv.conf %q %v", out, err)
		}
		if err := hc.SetResolvers(hc.IPv4()); err != nil {
			t.Fatal(err)
		}
		out, err = hc.Exec("cat", "/etc/resolv.conf")
		if err != nil || !strings.HasPrefix(string(out), "nameserver "+hc.IPv4().String()+"\n") {
			t.Errorf("resolv.conf %q %v", out, err)
		}
		if err := hc.SetHosts(map[string]netip.Addr{"srv.test": srv.IPv4()}); err != nil {
			t.Fatal(err)
		}
		if err := ping(hc, srv.IPv4()); err != nil {
			t.Fatal(err)
		}
		if out, err := hc.Exec("getent", "hosts", "srv.test"); err != nil || !strings.HasPrefix(string(out), srv.IPv4().String()) {
			t.Errorf("getent hosts srv.test = %q %v", out, err)
		}
	})

	t.Run("loss", func(t *testing.T) {
		if err := only4.SetLoss(100); err != nil {
			t.Fatal(err)
		}
		if !unreachable(h4, srv.IPv4()) {
			t.Error("ping crossed a router dropping 100%")
		}
		if err := only4.SetLoss(0); err != nil {
			t.Fatal(err)
		}
		if err := ping(h4, srv.IPv4()); err != nil {
			t.Errorf("after removing loss: %v", err)
		}
	})

	// Last: it changes the topology the other subtests use.
	t.Run("move", func(t *testing.T) {
		server := listenUDP(t, bed, srv.NS(), "udp4", netip.AddrPortFrom(srv.IPv4(), 7100))
		client := listenUDP(t, bed, hc.NS(), "udp4", netip.AddrPort{})
		proc := hc.Start("sleep", "600")
		if got := observe(t, client, server); got.Addr() != cone.PublicIPv4() {
			t.Fatalf("before the move seen as %v", got)
		}
		old := hc.IPv4()
		bed.Move(hc, sym)
		if hc.Site() != sym || !sym.LAN4().Contains(hc.IPv4()) || hc.IPv6().IsValid() || hc.IPv4() == old {
			t.Errorf("after the move: site %s, addresses %v %v", hc.Site().Name(), hc.IPv4(), hc.IPv6())
		}
		// The same socket now leaves through the symmetric router.
		if got := observe(t, client, server); got.Addr() != sym.PublicIPv4() {
			t.Errorf("after moving to sym seen as %v, want %v", got, sym.PublicIPv4())
		}
		bed.Move(hc, bed.Internet())
		if got := observe(t, client, server); got.Addr() != hc.IPv4() || !internet4.Contains(got.Addr()) {
			t.Errorf("after moving to the internet seen as %v, want %v", got, hc.IPv4())
		}
		select {
		case <-proc.Done():
			t.Errorf("process in the moved namespace exited: %v", proc.Wait())
		default:
		}
	})
}

// helperEnv makes TestHelperBed build a bed and end in the given way, for
// TestCleanup, which runs it in a child process.
const helperEnv = "CYTB_HELPER_MODE"

func TestHelperBed(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper for TestCleanup")
	}
	bed := New(t)
	site := bed.AddSite("site", SiteOpts{NAT: NATCone})
	h := site.AddHost("h")
	p := h.Start("sleep", "600")
	fmt.Printf("HELPER prefix=%s pid=%d\n", bed.Prefix(), p.Pid())
	switch mode {
	case "fail":
		t.Fatal("failing on purpose")
	case "panic":
		panic("panicking on purpose")
	}
}

// TestCleanup checks that a bed leaves no namespace, /etc/netns entry or
// process behind, whether its test passes, fails or panics.
func TestCleanup(t *testing.T) {
	Require(t)
	for _, tt := range []struct {
		mode   string
		exitOK bool
	}{{"pass", true}, {"fail", false}, {"panic", false}} {
		t.Run(tt.mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperBed$", "-test.v", "-test.timeout=120s")
			cmd.Env = append(os.Environ(), helperEnv+"="+tt.mode)
			out, err := cmd.CombinedOutput()
			if (err == nil) != tt.exitOK {
				t.Fatalf("helper exit %v, want success=%v; output:\n%s", err, tt.exitOK, out)
			}
			var prefix string
			var pid int
			sc := bufio.NewScanner(bytes.NewReader(out))
			for sc.Scan() {
				if rest, ok := strings.CutPrefix(sc.Text(), "HELPER "); ok {
					for _, f := range strings.Fields(rest) {
						k, v, _ := strings.Cut(f, "=")
						switch k {
						case "prefix":
							prefix = v
						case "pid":
							pid, _ = strconv.Atoi(v)
						}
					}
				}
			}
			if prefix == "" || pid == 0 {
				t.Fatalf("helper did not report its bed:\n%s", out)
			}
			assertGone(t, prefix)
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("process %d still exists after cleanup (%v)", pid, err)
			}
		})
	}
}

// assertGone checks that nothing named prefix-* is left.
func assertGone(t *testing.T, prefix string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	if strings.Contains(string(out), prefix+"-") {
		t.Errorf("namespaces of %s left:\n%s", prefix, out)
	}
	left, _ := filepath.Glob(filepath.Join("/etc/netns", prefix+"-*"))
	if len(left) > 0 {
		t.Errorf("/etc/netns entries left: %v", left)
	}
}

func TestRejectsBadNames(t *testing.T) {
	Require(t)
	bed := New(t)
	bed.AddHost("dup", HostOpts{IPv4: true})
	for _, name := range []string{"dup", "inet", "toolongname", "Bad"} {
		if _, err := bed.Bed.AddHost(name, HostOpts{}); !errors.Is(err, ErrName) {
			t.Errorf("host %q: err = %v, want ErrName", name, err)
		}
	}
	if _, err := bed.Bed.AddSite("dup", netlab.SiteOpts{}); !errors.Is(err, ErrName) {
		t.Errorf("site dup: err = %v, want ErrName", err)
	}
}

// TestHolePunchThroughCone: two hosts behind separate cone NATs reach
// each other by sending to each other's observed mapping, even when one
// side's packet reaches the other's router before that side sent anything
// (the order that used to poison the mapping; see natRuleset).
func TestHolePunchThroughCone(t *testing.T) {
	bed := New(t)
	srv := bed.AddHost("srv", HostOpts{IPv4: true})
	sa := bed.AddSite("sa", SiteOpts{NAT: NATCone, IPv4: true})
	sb := bed.AddSite("sb", SiteOpts{NAT: NATCone, IPv4: true})
	server := listenUDP(t, bed, srv.NS(), "udp4", netip.AddrPortFrom(srv.IPv4(), 7000))
	ca := listenUDP(t, bed, sa.AddHost("a").NS(), "udp4", netip.AddrPort{})
	cb := listenUDP(t, bed, sb.AddHost("b").NS(), "udp4", netip.AddrPort{})
	ma, mb := observe(t, ca, server), observe(t, cb, server)

	// b's first packet reaches a's router before a has sent anything.
	if _, err := cb.WriteToUDPAddrPort([]byte("early"), ma); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		from, to *net.UDPConn
		dst      netip.AddrPort
		want     netip.AddrPort
	}{{ca, cb, mb, ma}, {cb, ca, ma, mb}} {
		got := false
		buf := make([]byte, 64)
		for try := 0; try < 5 && !got; try++ {
			if _, err := tt.from.WriteToUDPAddrPort([]byte("punch"), tt.dst); err != nil {
				t.Fatal(err)
			}
			_ = tt.to.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			for {
				n, src, err := tt.to.ReadFromUDPAddrPort(buf)
				if err != nil {
					break
				}
				if string(buf[:n]) == "punch" {
					if src != tt.want {
						t.Errorf("punch to %v arrived from %v, want the observed mapping %v", tt.dst, src, tt.want)
					}
					got = true
					break
				}
			}
		}
		if !got {
			t.Errorf("no punch reached %v", tt.dst)
		}
	}
}

// TestMasqueradeRemapsAfterEarlyPunch shows what NATMasquerade is for:
// with no input firewall, b's packet reaching a's router before a has sent
// leaves an UNREPLIED conntrack entry holding the reply tuple of a's
// mapping, so a's own punch leaves from another port and never reaches b
// from the mapping b aims at (the crossing of issue 10).
func TestMasqueradeRemapsAfterEarlyPunch(t *testing.T) {
	bed := New(t)
	srv := bed.AddHost("srv", HostOpts{IPv4: true})
	sa := bed.AddSite("sa", SiteOpts{NAT: NATMasquerade, IPv4: true})
	sb := bed.AddSite("sb", SiteOpts{NAT: NATMasquerade, IPv4: true})
	server := listenUDP(t, bed, srv.NS(), "udp4", netip.AddrPortFrom(srv.IPv4(), 7000))
	ca := listenUDP(t, bed, sa.AddHost("a").NS(), "udp4", netip.AddrPort{})
	cb := listenUDP(t, bed, sb.AddHost("b").NS(), "udp4", netip.AddrPort{})
	ma, mb := observe(t, ca, server), observe(t, cb, server)

	if _, err := cb.WriteToUDPAddrPort([]byte("early"), ma); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	for try := 0; try < 3; try++ {
		if _, err := ca.WriteToUDPAddrPort([]byte("punch"), mb); err != nil {
			t.Fatal(err)
		}
		_ = cb.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			n, src, err := cb.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			if string(buf[:n]) == "punch" && src == ma {
				t.Fatalf("a's punch reached b from its observed mapping %v: masquerade kept the mapping", ma)
			}
		}
	}
	out, err := bed.Exec(sa.NS(), "conntrack", "-L", "-p", "udp")
	t.Logf("conntrack on a's router (%v):\n%s", err, out)
}

// TestDoubleNAT: a host behind a home router that is itself behind a
// carrier-grade NAT is seen on the internet at the CGN's address, and
// its router is on the CGN's LAN.
func TestDoubleNAT(t *testing.T) {
	bed := New(t)
	srv := bed.AddHost("srv", HostOpts{IPv4: true})
	cgn := bed.AddSite("cgn", SiteOpts{NAT: NATMasquerade, IPv4: true})
	home := bed.AddSite("home", SiteOpts{NAT: NATCone, Behind: cgn})
	if _, err := bed.Bed.AddSite("bad", netlab.SiteOpts{NAT: NATCone, IPv6: true, Behind: cgn.Site}); err == nil {
		t.Error("an IPv6 site behind a CGN was accepted")
	}
	server := listenUDP(t, bed, srv.NS(), "udp4", netip.AddrPortFrom(srv.IPv4(), 7000))
	c := listenUDP(t, bed, home.AddHost("h").NS(), "udp4", netip.AddrPort{})
	if got := observe(t, c, server); got.Addr() != cgn.PublicIPv4() || home.PublicIPv4() != cgn.PublicIPv4() {
		t.Errorf("seen as %v, want the CGN's %v (home says %v)", got, cgn.PublicIPv4(), home.PublicIPv4())
	}
	if !cgn.LAN4().Contains(home.UplinkIPv4()) {
		t.Errorf("home router's uplink %v is not on the CGN's LAN %v", home.UplinkIPv4(), cgn.LAN4())
	}
}

// TestMoveKeepsOtherInterfaces: moving an IPv4-only host to another
// IPv4-only site leaves the IPv6 of interfaces the host's programs made
// (a VPN's TUN with its overlay address) alone.
func TestMoveKeepsOtherInterfaces(t *testing.T) {
	bed := New(t)
	a := bed.AddSite("a", SiteOpts{NAT: NATCone, IPv4: true})
	b := bed.AddSite("b", SiteOpts{NAT: NATCone, IPv4: true})
	h := a.AddHost("h")
	for _, cmd := range [][]string{
		{"ip", "tuntap", "add", "dev", "ovl0", "mode", "tun"},
		{"sysctl", "-w", "net.ipv6.conf.ovl0.disable_ipv6=0"},
		{"ip", "addr", "add", "fd00:abcd::1/128", "dev", "ovl0", "nodad"},
		{"ip", "link", "set", "ovl0", "up"},
	} {
		if out, err := h.Exec(cmd...); err != nil {
			t.Fatalf("%v: %v\n%s", cmd, err, out)
		}
	}
	bed.Move(h, b)
	out, err := h.Exec("ip", "-6", "addr", "show", "dev", "ovl0")
	if err != nil || !strings.Contains(string(out), "fd00:abcd::1") {
		t.Errorf("after the move ovl0 has %q (%v), want fd00:abcd::1 still", out, err)
	}
}

// setTTL sets the IPv4 TTL of c's packets.
func setTTL(t *testing.T, c *net.UDPConn, ttl int) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_TTL, ttl)
	}); err != nil || serr != nil {
		t.Fatalf("IP_TTL %d: %v %v", ttl, err, serr)
	}
}

// TestLowTTLPunchThroughMasquerade: sites are a router hop apart (the
// internet namespace routes between them, as the internet does), so a
// punch packet with TTL 2 leaves its own NAT, opening the sender's
// mapping, and dies at the internet router before it reaches the peer's
// NAT. The peer's packet then arrives as the reply of that mapping, even
// through plain masquerade, and both sides reach each other's observed
// mapping: the crossing that TestMasqueradeRemapsAfterEarlyPunch loses.
// With the sites' routers on one shared link the TTL-2 packet reaches b's
// router and poisons b's mapping, and this fails.
func TestLowTTLPunchThroughMasquerade(t *testing.T) {
	bed := New(t)
	srv := bed.AddHost("srv", HostOpts{IPv4: true})
	sa := bed.AddSite("sa", SiteOpts{NAT: NATMasquerade, IPv4: true})
	sb := bed.AddSite("sb", SiteOpts{NAT: NATMasquerade, IPv4: true})
	server := listenUDP(t, bed, srv.NS(), "udp4", netip.AddrPortFrom(srv.IPv4(), 7000))
	ca := listenUDP(t, bed, sa.AddHost("a").NS(), "udp4", netip.AddrPort{})
	cb := listenUDP(t, bed, sb.AddHost("b").NS(), "udp4", netip.AddrPort{})
	ma, mb := observe(t, ca, server), observe(t, cb, server)

	// a primes its own mapping toward b with a packet that cannot reach
	// b's router...
	setTTL(t, ca, 2)
	if _, err := ca.WriteToUDPAddrPort([]byte("prime"), mb); err != nil {
		t.Fatal(err)
	}
	setTTL(t, ca, 64)
	time.Sleep(50 * time.Millisecond)
	// ... so b's packet, arriving at a's router before a sent anything at
	// full TTL, is the reply of a's mapping, and a's later packets leave
	// from that mapping.
	for _, tt := range []struct {
		from, to *net.UDPConn
		dst      netip.AddrPort
		want     netip.AddrPort
	}{{cb, ca, ma, mb}, {ca, cb, mb, ma}} {
		got := false
		buf := make([]byte, 64)
		for try := 0; try < 3 && !got; try++ {
			if _, err := tt.from.WriteToUDPAddrPort([]byte("punch"), tt.dst); err != nil {
				t.Fatal(err)
			}
			_ = tt.to.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			for {
				n, src, err := tt.to.ReadFromUDPAddrPort(buf)
				if err != nil {
					break
				}
				if string(buf[:n]) == "prime" {
					t.Errorf("the TTL-2 packet crossed the internet to %v", tt.to.LocalAddr())
				}
				if string(buf[:n]) == "punch" {
					if src != tt.want {
						t.Errorf("punch to %v arrived from %v, want the observed mapping %v", tt.dst, src, tt.want)
					}
					got = true
					break
				}
			}
		}
		if !got {
			t.Errorf("no punch reached %v", tt.dst)
		}
	}
	if t.Failed() {
		out, err := bed.Exec(sb.NS(), "conntrack", "-L", "-p", "udp")
		t.Logf("conntrack on b's router (%v):\n%s", err, out)
	}
}

// TestMasqueradeRemapSpreads shows why a node primes and holds on direct
// paths too, not only on punched ones: once a peer's early packet has
// made plain masquerade remap one connection of a socket, the router hands
// the remapped port to the socket's later connections as well (Linux NAT
// reuses an existing mapping of the same source before trying the
// socket's own port), so the mapping the cloud observed no longer predicts
// where the socket's packets to a new peer come from.
func TestMasqueradeRemapSpreads(t *testing.T) {
	bed := New(t)
	srv := bed.AddHost("srv", HostOpts{IPv4: true, Secondary: true})
	sa := bed.AddSite("sa", SiteOpts{NAT: NATMasquerade, IPv4: true})
	server := listenUDP(t, bed, srv.NS(), "udp4", netip.AddrPortFrom(srv.IPv4(), 7000))
	early := listenUDP(t, bed, srv.NS(), "udp4", netip.AddrPortFrom(srv.IPv4(), 7001))
	later := listenUDP(t, bed, srv.NS(), "udp4", netip.AddrPortFrom(srv.SecondaryIPv4(), 7002))
	ca := listenUDP(t, bed, sa.AddHost("a").NS(), "udp4", netip.AddrPort{})
	ma := observe(t, ca, server)

	// A global peer's packet reaches a's router before a has sent to it.
	if _, err := early.WriteToUDPAddrPort([]byte("early"), ma); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	remapped := observe(t, ca, early)
	if remapped == ma {
		out, err := bed.Exec(sa.NS(), "conntrack", "-L", "-p", "udp")
		t.Fatalf("a's packet to the early peer kept the mapping %v: no clash; conntrack (%v):\n%s", ma, err, out)
	}
	// A third destination that never sent anything sees the remapped port.
	if got := observe(t, ca, later); got != remapped {
		t.Errorf("a new connection of the socket is seen as %v, want the remapped %v (observed mapping %v)", got, remapped, ma)
	}
}
