package resolver

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// captureWriter is a dns.ResponseWriter that keeps what ServeDNS wrote.
type captureWriter struct {
	remote net.Addr
	msgs   []*dns.Msg
}

func (w *captureWriter) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
}
func (w *captureWriter) RemoteAddr() net.Addr {
	return w.remote
}
func (w *captureWriter) WriteMsg(m *dns.Msg) error {
	// Packing is what the real writer does: an answer that cannot be
	// packed would never reach the asker.
	if _, err := m.Pack(); err != nil {
		return err
	}
	w.msgs = append(w.msgs, m)
	return nil
}
func (w *captureWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *captureWriter) Close() error                { return nil }
func (w *captureWriter) TsigStatus() error           { return nil }
func (w *captureWriter) TsigTimersOnly(bool)         {}
func (w *captureWriter) Hijack()                     {}

// FuzzServeDNS: any message a client can send is answered exactly once,
// with its ID, as a response, in a form that packs — never a panic, never
// silence (miekg/dns has already parsed it; everything after is ours).
// No upstream is configured, so nothing leaves the process.
func FuzzServeDNS(f *testing.F) {
	seed := func(name string, qtype uint16) []byte {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	v6name, _ := dns.ReverseAddr("fd00:cafe::2")
	for _, s := range [][]byte{
		seed("bob.example.cyphonic.", dns.TypeA),
		seed("bob.example.cyphonic.", dns.TypeAAAA),
		seed("v6only.example.cyphonic.", dns.TypeA),
		seed("nobody.example.cyphonic.", dns.TypeAAAA),
		seed("bob.example.cyphonic.", dns.TypeMX),
		seed("bob.", dns.TypeA),
		seed("localhost.", dns.TypeA),
		seed("2.0.64.100.in-addr.arpa.", dns.TypePTR),
		seed(v6name, dns.TypePTR),
		seed("1.2.0.192.in-addr.arpa.", dns.TypePTR),
		seed("example.org.", dns.TypeA),
		seed(".", dns.TypeNS),
	} {
		f.Add(s)
	}
	s := startServer(f, Config{Search: "example.cyphonic", Timeout: 50 * time.Millisecond}, reverseBackend{newBackend()})
	f.Fuzz(func(t *testing.T, raw []byte) {
		req := new(dns.Msg)
		if err := req.Unpack(raw); err != nil {
			return // miekg/dns drops it before the handler
		}
		w := &captureWriter{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}}
		s.ServeDNS(w, req)
		if len(w.msgs) != 1 {
			t.Fatalf("%d answers to %v", len(w.msgs), req.Question)
		}
		if m := w.msgs[0]; m.Id != req.Id || !m.Response {
			t.Fatalf("answer id %d response %v to query %d", m.Id, m.Response, req.Id)
		}
	})
}

// FuzzParseReverse: a name parseReverse accepts is the canonical reverse
// name of the address it returns, so one address has one name (no
// aliases that would let a PTR answer disagree with a forward one).
func FuzzParseReverse(f *testing.F) {
	for _, a := range []string{"100.64.0.2", "255.255.255.255", "0.0.0.0", "fd00:cafe::2", "::1", "2001:db8::ff"} {
		n, _ := dns.ReverseAddr(a)
		f.Add(n)
	}
	f.Add("02.0.64.100.in-addr.arpa.")
	f.Add("f.d.ip6.arpa.")
	f.Fuzz(func(t *testing.T, name string) {
		addr, ok := parseReverse(name)
		if !ok {
			return
		}
		var want string
		if addr.Is4() {
			want, _ = dns.ReverseAddr(addr.String())
		} else {
			// dns.ReverseAddr writes a v4-mapped address under
			// in-addr.arpa; spell the 32 nibbles out instead.
			b := addr.As16()
			var sb strings.Builder
			for i := 15; i >= 0; i-- {
				sb.WriteString(hexNibble(b[i]&0xf) + "." + hexNibble(b[i]>>4) + ".")
			}
			want = sb.String() + "ip6.arpa."
		}
		if !strings.EqualFold(name, want) {
			t.Fatalf("parseReverse(%q) = %v, whose reverse name is %q", name, addr, want)
		}
		if addr.Is4() != strings.HasSuffix(name, ".in-addr.arpa.") {
			t.Fatalf("parseReverse(%q) = %v: family does not match the tree", name, addr)
		}
	})
}

func hexNibble(n byte) string { return string("0123456789abcdef"[n]) }
