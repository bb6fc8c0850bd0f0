package hops

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestProbeLoopback: a probe to a closed port on loopback is answered by
// the destination itself (port unreachable), which the error queue
// reports with the loopback address as the offender. (Routers' time
// exceeded answers need a routed path: test/testbed's
// TestHopProbeBehindCGN.)
func TestProbeLoopback(t *testing.T) {
	for _, network := range []string{"udp4", "udp6"} {
		t.Run(network, func(t *testing.T) {
			// A port that was just free: nothing listens there.
			c, err := net.ListenUDP(network, &net.UDPAddr{IP: loopback(network)})
			if err != nil {
				t.Skipf("no %s loopback: %v", network, err)
			}
			dst := c.LocalAddr().(*net.UDPAddr).AddrPort()
			c.Close()
			hops, err := Probe(context.Background(), dst, 3, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if len(hops) != 3 {
				t.Fatalf("%d hops, want 3", len(hops))
			}
			for _, h := range hops {
				if !h.Reached || h.From != dst.Addr() {
					t.Errorf("hop %+v: want reached, from %s", h, dst.Addr())
				}
			}
			if ttl, learnt := Choose(hops); ttl != Fallback || learnt {
				t.Errorf("Choose = %d, %v on loopback; want the fallback", ttl, learnt)
			}
		})
	}
}

func loopback(network string) net.IP {
	if network == "udp6" {
		return net.IPv6loopback
	}
	return net.IPv4(127, 0, 0, 1)
}

func TestProbeBadArgs(t *testing.T) {
	if _, err := Probe(context.Background(), netip.AddrPort{}, 3, time.Second); err == nil {
		t.Error("probe to no address: no error")
	}
	if _, err := Probe(context.Background(), netip.MustParseAddrPort("127.0.0.1:9"), 0, time.Second); err == nil {
		t.Error("probe to TTL 0: no error")
	}
}
