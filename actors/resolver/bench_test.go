package resolver

import (
	"net"
	"testing"

	"github.com/miekg/dns"
)

// BenchmarkOverlayQuery measures one overlay A query over loopback UDP,
// answered from a backend that has the tunnel up already (client included).
func BenchmarkOverlayQuery(b *testing.B) {
	s, err := NewServer(Config{Addr: "127.0.0.1:0"}, newBackend(), quiet())
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	defer s.Shutdown(b.Context())
	conn, err := net.Dial("udp", s.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	co := &dns.Conn{Conn: conn}
	m := new(dns.Msg)
	m.SetQuestion("bob.example.cyphonic.", dns.TypeA)
	b.ReportAllocs()
	for b.Loop() {
		if err := co.WriteMsg(m); err != nil {
			b.Fatal(err)
		}
		r, err := co.ReadMsg()
		if err != nil || len(r.Answer) != 1 {
			b.Fatal(r, err)
		}
	}
}
