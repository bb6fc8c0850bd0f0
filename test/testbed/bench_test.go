package testbed

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// BenchmarkBuildSite measures what a topology costs to build: one site
// (router, NAT, LAN) with one host per iteration, on one bed. A bed holds
// at most 255 sites: keep -benchtime at 1s or below.
func BenchmarkBuildSite(b *testing.B) {
	bed := New(b)
	i := 0
	for b.Loop() {
		i++
		s := bed.AddSite("s"+strconv.Itoa(i), SiteOpts{NAT: NATCone, IPv4: true})
		s.AddHost("h" + strconv.Itoa(i))
	}
}

// BenchmarkUDPRoundTripCone is the baseline RTT of the testbed itself: a
// UDP echo from a host behind cone NAT to a global server and back
// (veth + bridge + conntrack), to compare overlay runs against.
func BenchmarkUDPRoundTripCone(b *testing.B) {
	bed := New(b)
	srv := bed.AddHost("srv", HostOpts{IPv4: true})
	h := bed.AddSite("cone", SiteOpts{NAT: NATCone, IPv4: true}).AddHost("h")
	var server, client *net.UDPConn
	if err := bed.Do(srv.NS(), func() (err error) {
		server, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(srv.IPv4(), 7000)))
		return err
	}); err != nil {
		b.Fatal(err)
	}
	if err := bed.Do(h.NS(), func() (err error) {
		client, err = net.DialUDP("udp4", nil, server.LocalAddr().(*net.UDPAddr))
		return err
	}); err != nil {
		server.Close()
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { // echo until the socket closes
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := server.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = server.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	b.Cleanup(func() {
		server.Close()
		client.Close()
		<-done
	})
	msg := make([]byte, 64)
	buf := make([]byte, 2048)
	for b.Loop() {
		if _, err := client.Write(msg); err != nil {
			b.Fatal(err)
		}
		_ = client.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := client.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}
