package testbed

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/transport/hops"
)

// probeFrom runs hops.Probe toward dst inside namespace ns.
func probeFrom(t *testing.T, b *Bed, ns string, dst netip.AddrPort) []hops.Hop {
	t.Helper()
	var hs []hops.Hop
	if err := b.Do(ns, func() error {
		var err error
		hs, err = hops.Probe(context.Background(), dst, hops.MaxTTL, 2*time.Second)
		return err
	}); err != nil {
		t.Fatalf("probe from %s: %v", ns, err)
	}
	return hs
}

// TestHopProbe: the routers' ICMP time-exceeded answers (ICMPv6 for the
// NAT66 site) come back through the NATs (Linux translates an ICMP error of a connection back to the
// inside host), so a node learns how far it is from the public internet:
// TTL 2 behind one router, 3 behind a home router and a CGN, and the last
// private hop + 1 when the CGN sends no ICMP (the primer then stops
// before the silent hop, which may be a NAT: the punch is lost, never the
// peer's mapping).
func TestHopProbe(t *testing.T) {
	bed := New(t)
	srv := bed.AddHost("srv", HostOpts{})
	server := listenUDP(t, bed, srv.NS(), "udp4", netip.AddrPortFrom(srv.IPv4(), 7000))
	dst := server.LocalAddr().(*net.UDPAddr).AddrPort()
	dst6 := netip.AddrPortFrom(srv.IPv6(), 7000) // nothing listens: srv answers port unreachable
	one := bed.AddSite("one", SiteOpts{NAT: NATMasquerade, IPv4: true})
	nat66 := bed.AddSite("six", SiteOpts{NAT: NATMasquerade, IPv6: true, NAT66: true})
	cgn := bed.AddSite("cgn", SiteOpts{NAT: NATMasquerade, IPv4: true})
	home := bed.AddSite("home", SiteOpts{NAT: NATMasquerade, Behind: cgn})
	quiet := bed.AddSite("quiet", SiteOpts{NAT: NATMasquerade, IPv4: true, Silent: true})
	qhome := bed.AddSite("qhome", SiteOpts{NAT: NATMasquerade, Behind: quiet})
	for _, tt := range []struct {
		name   string
		host   *Host
		dst    netip.AddrPort
		ttl    int
		learnt bool
	}{
		{"one NAT", one.AddHost("a"), dst, 2, true},
		{"home behind CGN", home.AddHost("b"), dst, 3, true},
		{"home behind a silent CGN", qhome.AddHost("c"), dst, 2, true},
		{"IPv6 behind NAT66", nat66.AddHost("d"), dst6, 2, true},
		{"global", srv, dst, hops.Fallback, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hs := probeFrom(t, bed, tt.host.NS(), tt.dst)
			ttl, learnt := hops.Choose(hs)
			t.Logf("hops %v: TTL %d, learnt %v", hs, ttl, learnt)
			if ttl != tt.ttl || learnt != tt.learnt {
				t.Errorf("Choose = %d, %v; want %d, %v", ttl, learnt, tt.ttl, tt.learnt)
			}
		})
	}
}

// TestLearntTTLPunchesThroughCGN is TestLowTTLPunchThroughMasquerade for a
// node behind a home router and a CGN, both plain masquerade, and a node
// behind one masquerade router: each primes its mappings with a packet of
// the TTL its path gave (3 and 2), and the other's packets then arrive as
// replies of those mappings, both ways, from the observed mappings. With
// TTL 2 the CGN node's primer opens only its home router: the peer's
// packet reaches the CGN first, takes the mapping's reply tuple, and the
// CGN remaps the node (the failure a fixed TTL 2 leaves).
func TestLearntTTLPunchesThroughCGN(t *testing.T) {
	bed := New(t)
	srv := bed.AddHost("srv", HostOpts{IPv4: true})
	server := listenUDP(t, bed, srv.NS(), "udp4", netip.AddrPortFrom(srv.IPv4(), 7000))
	// The probes go to a port nothing listens on: those that get to srv
	// must not land in server's queue.
	dst := netip.AddrPortFrom(srv.IPv4(), 7999)
	cgn := bed.AddSite("cgn", SiteOpts{NAT: NATMasquerade, IPv4: true})
	home := bed.AddSite("home", SiteOpts{NAT: NATMasquerade, Behind: cgn})
	sb := bed.AddSite("sb", SiteOpts{NAT: NATMasquerade, IPv4: true})
	ha, hb := home.AddHost("a"), sb.AddHost("b")
	ttlA, _ := hops.Choose(probeFrom(t, bed, ha.NS(), dst))
	ttlB, _ := hops.Choose(probeFrom(t, bed, hb.NS(), dst))
	if ttlA != 3 || ttlB != 2 {
		t.Fatalf("learnt TTLs %d and %d, want 3 and 2", ttlA, ttlB)
	}
	for _, tt := range []struct {
		name  string
		ttlA  int
		punch bool
	}{{"learnt TTL", ttlA, true}, {"fixed TTL 2", 2, false}} {
		t.Run(tt.name, func(t *testing.T) {
			ca := listenUDP(t, bed, ha.NS(), "udp4", netip.AddrPort{})
			cb := listenUDP(t, bed, hb.NS(), "udp4", netip.AddrPort{})
			ma, mb := observe(t, ca, server), observe(t, cb, server)
			for _, p := range []struct {
				c   *net.UDPConn
				ttl int
				to  netip.AddrPort
			}{{ca, tt.ttlA, mb}, {cb, ttlB, ma}} {
				setTTL(t, p.c, p.ttl)
				if _, err := p.c.WriteToUDPAddrPort([]byte("prime"), p.to); err != nil {
					t.Fatal(err)
				}
				setTTL(t, p.c, 64)
			}
			time.Sleep(50 * time.Millisecond)
			// b's packet first: without a's mapping open at the CGN, it
			// is the one that takes the reply tuple there.
			var got []string
			for _, d := range []struct {
				from, to  *net.UDPConn
				dst, want netip.AddrPort
			}{{cb, ca, ma, mb}, {ca, cb, mb, ma}} {
				if punched(t, d.from, d.to, d.dst, d.want) {
					got = append(got, "ok")
				}
			}
			if ok := len(got) == 2; ok != tt.punch {
				var out []string
				for _, s := range []*Site{cgn, home, sb} {
					o, err := bed.Exec(s.NS(), "conntrack", "-L", "-p", "udp")
					out = append(out, s.Name()+": "+string(o)+errString(err))
				}
				t.Errorf("punched both ways: %v, want %v; conntrack:\n%s", ok, tt.punch, strings.Join(out, "\n"))
			}
		})
	}
}

// punched sends "punch" from one socket to dst (three tries) and reports
// whether it arrived at the other from want; a "prime" arriving means a
// primer crossed the internet, which must never happen.
func punched(t *testing.T, from, to *net.UDPConn, dst, want netip.AddrPort) bool {
	t.Helper()
	buf := make([]byte, 64)
	for try := 0; try < 3; try++ {
		if _, err := from.WriteToUDPAddrPort([]byte("punch"), dst); err != nil {
			t.Fatal(err)
		}
		_ = to.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			n, src, err := to.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			switch string(buf[:n]) {
			case "prime":
				t.Errorf("a primer crossed the internet to %v", to.LocalAddr())
			case "punch":
				return src == want
			}
		}
	}
	return false
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return " (" + err.Error() + ")"
}
