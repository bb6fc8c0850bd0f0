package resolver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeBackend knows a fixed set of peers. "slow.example.cyphonic" never
// comes up (it waits for ctx); a name whose gate is set waits for the gate.
type fakeBackend struct {
	peers map[string]Answer
	calls atomic.Int64
	gate  chan struct{} // when non-nil, every lookup waits for it
}

func (b *fakeBackend) Resolve(ctx context.Context, fqdn string) (Answer, error) {
	b.calls.Add(1)
	if fqdn == "slow.example.cyphonic" {
		<-ctx.Done()
		return Answer{}, ctx.Err()
	}
	if b.gate != nil {
		select {
		case <-b.gate:
		case <-ctx.Done():
			return Answer{}, ctx.Err()
		}
	}
	a, ok := b.peers[fqdn]
	if !ok {
		return Answer{}, fmt.Errorf("nms: %s: %w", fqdn, ErrUnknownName)
	}
	return a, nil
}

func newBackend() *fakeBackend {
	return &fakeBackend{peers: map[string]Answer{
		"bob.example.cyphonic": {
			VIP6: netip.MustParseAddr("fd00:cafe::2"),
			VIP4: netip.MustParseAddr("100.64.0.2"),
		},
		"v6only.example.cyphonic": {VIP6: netip.MustParseAddr("fd00:cafe::3")},
	}}
}

// fakeUpstream answers every A query with 192.0.2.1 and counts them.
func fakeUpstream(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	pc, ln, err := listenPair("127.0.0.1:0") // the server's own way to a UDP+TCP port
	if err != nil {
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		n.Add(1)
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		if q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30},
				A:   net.IPv4(192, 0, 2, 1),
			})
		}
		w.WriteMsg(m)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return pc.LocalAddr().String(), &n
}

func startServer(t testing.TB, cfg Config, b Backend) *Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	s, err := NewServer(cfg, b, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return s
}

func query(t *testing.T, addr net.Addr, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: network, Timeout: 30 * time.Second}
	r, _, err := c.Exchange(m, addr.String())
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	if r.Id != m.Id {
		t.Fatalf("answer ID %d for query %d", r.Id, m.Id)
	}
	return r
}

func addrsOf(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	return out
}

func TestAnswers(t *testing.T) {
	up, upCount := fakeUpstream(t)
	s := startServer(t, Config{Upstream: up}, newBackend())
	tests := []struct {
		name    string
		qname   string
		qtype   uint16
		rcode   int
		want    []string
		forward bool
	}{
		{"overlay A", "bob.example.cyphonic", dns.TypeA, dns.RcodeSuccess, []string{"100.64.0.2"}, false},
		{"overlay AAAA", "bob.example.cyphonic", dns.TypeAAAA, dns.RcodeSuccess, []string{"fd00:cafe::2"}, false},
		{"case-insensitive", "BoB.Example.CYPHONIC", dns.TypeA, dns.RcodeSuccess, []string{"100.64.0.2"}, false},
		{"no VIP of that family is NODATA", "v6only.example.cyphonic", dns.TypeA, dns.RcodeSuccess, nil, false},
		{"unknown overlay name", "nobody.example.cyphonic", dns.TypeA, dns.RcodeNameError, nil, false},
		{"other type under overlay is NODATA", "bob.example.cyphonic", dns.TypeMX, dns.RcodeSuccess, nil, false},
		{"domain apex is not overlay", "cyphonic", dns.TypeA, dns.RcodeSuccess, []string{"192.0.2.1"}, true},
		{"lookalike suffix is forwarded", "bob.notcyphonic", dns.TypeA, dns.RcodeSuccess, []string{"192.0.2.1"}, true},
		{"other names are forwarded", "example.org", dns.TypeA, dns.RcodeSuccess, []string{"192.0.2.1"}, true},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tt := range tests {
			t.Run(network+"/"+tt.name, func(t *testing.T) {
				before := upCount.Load()
				r := query(t, s.Addr(), network, tt.qname, tt.qtype)
				if r.Rcode != tt.rcode {
					t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.rcode])
				}
				if got := addrsOf(r); fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Fatalf("answers %v, want %v", got, tt.want)
				}
				if forwarded := upCount.Load() > before; forwarded != tt.forward {
					t.Fatalf("forwarded=%v, want %v", forwarded, tt.forward)
				}
				if !tt.forward && tt.rcode == dns.RcodeSuccess && !r.Authoritative {
					t.Fatal("overlay answer not authoritative")
				}
			})
		}
	}
	st := s.Stats()
	if st.NXDomain != 2 || st.Forwarded != 6 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTimeoutIsServFail(t *testing.T) {
	b := newBackend()
	s := startServer(t, Config{Timeout: 50 * time.Millisecond}, b)
	r := query(t, s.Addr(), "udp", "slow.example.cyphonic", dns.TypeA)
	if r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	if st := s.Stats(); st.ServFail != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNoUpstreamRefuses(t *testing.T) {
	s := startServer(t, Config{}, newBackend())
	if r := query(t, s.Addr(), "udp", "example.org", dns.TypeA); r.Rcode != dns.RcodeRefused {
		t.Fatalf("rcode %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
}

func TestUpstreamDownIsServFail(t *testing.T) {
	// A bound but silent UDP socket: the forward times out... too slowly for
	// a test, so use a closed TCP port instead (connection refused).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	s := startServer(t, Config{Upstream: dead}, newBackend())
	if r := query(t, s.Addr(), "tcp", "example.org", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	if st := s.Stats(); st.Upstream != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Concurrent queries for one name wait together for one backend call, and
// all get the answer once the tunnel is up.
func TestConcurrentQueriesShareOneLookup(t *testing.T) {
	b := newBackend()
	b.gate = make(chan struct{})
	s := startServer(t, Config{}, b)
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			qtype := dns.TypeA
			if i%2 == 1 {
				qtype = dns.TypeAAAA
			}
			m := new(dns.Msg)
			m.SetQuestion("bob.example.cyphonic.", qtype)
			r, _, err := (&dns.Client{Timeout: 30 * time.Second}).Exchange(m, s.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			if len(r.Answer) != 1 {
				errs <- fmt.Errorf("answer %v", r.Answer)
			}
		}()
	}
	// Release the lookup once every query is waiting on it.
	for b.calls.Load() == 0 || s.flights.waiting("bob.example.cyphonic") < n-1 {
		time.Sleep(time.Millisecond)
	}
	close(b.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if c := b.calls.Load(); c != 1 {
		t.Fatalf("backend called %d times, want 1", c)
	}
}

func TestBusyIsServFail(t *testing.T) {
	b := newBackend()
	b.gate = make(chan struct{})
	s := startServer(t, Config{MaxPending: 1}, b)
	done := make(chan *dns.Msg)
	go func() {
		m := new(dns.Msg)
		m.SetQuestion("bob.example.cyphonic.", dns.TypeA)
		r, _, _ := (&dns.Client{Timeout: 30 * time.Second}).Exchange(m, s.Addr().String())
		done <- r
	}()
	for b.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if r := query(t, s.Addr(), "udp", "other.example.cyphonic", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	close(b.gate)
	if r := <-done; r == nil || len(r.Answer) != 1 {
		t.Fatalf("held query: %v", r)
	}
	if st := s.Stats(); st.Busy != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Shutdown answers held queries instead of waiting for their tunnels.
func TestShutdownReleasesHeldQueries(t *testing.T) {
	b := newBackend()
	s, err := NewServer(Config{Addr: "127.0.0.1:0", Timeout: time.Hour}, b, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		m := new(dns.Msg)
		m.SetQuestion("slow.example.cyphonic.", dns.TypeA)
		(&dns.Client{Timeout: 5 * time.Second}).Exchange(m, s.Addr().String())
	}()
	for b.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		b    Backend
	}{
		{"bad domain", Config{Domain: "bad domain!"}, newBackend()},
		{"bad upstream", Config{Upstream: "1.1.1.1"}, newBackend()},
		{"nil backend", Config{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewServer(tt.cfg, tt.b, quiet()); !errors.Is(err, ErrConfig) {
				t.Fatalf("err %v, want ErrConfig", err)
			}
		})
	}
	s, err := NewServer(Config{Addr: "256.0.0.1:53"}, newBackend(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		s.Shutdown(context.Background())
		t.Fatal("Start on a bad address succeeded")
	}
}

func TestUpstreamFromResolvConf(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(p, []byte("nameserver 127.0.0.1\nnameserver 192.0.2.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := UpstreamFromResolvConf(p, "127.0.0.1:53")
	if err != nil || got != "192.0.2.53:53" {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := UpstreamFromResolvConf(filepath.Join(dir, "missing"), ""); err == nil {
		t.Fatal("missing file accepted")
	}
}

// TestListenPairTakenTCP: a fixed port whose TCP side another program
// holds fails with the TCP error (and leaves no UDP socket bound); port 0
// finds a pair that is free on both.
func TestListenPairTakenTCP(t *testing.T) {
	// The test holds a port's TCP side; its UDP side must be free, which
	// the machine's other programs (tests running in parallel) can spoil
	// between our check and the call: then try another port.
	var addr string
	for attempt := 0; ; attempt++ {
		held, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		addr = held.Addr().String()
		_, _, err = listenPair(addr)
		if err != nil && strings.Contains(err.Error(), "listen udp") && attempt < 20 {
			continue // the UDP twin was taken by someone else
		}
		if err == nil || !strings.Contains(err.Error(), "listen tcp") {
			t.Fatalf("listenPair(%s) with TCP taken: %v, want a listen tcp error", addr, err)
		}
		break
	}
	pc, err := net.ListenPacket("udp", addr) // the failed try released its UDP socket
	if err != nil {
		t.Fatalf("UDP %s still bound after the failed pair: %v", addr, err)
	}
	pc.Close()
	pc, ln, err := listenPair("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc.Close()
	ln.Close()
}
