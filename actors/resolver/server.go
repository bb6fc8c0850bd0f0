package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
)

// Defaults for Config's zero fields.
const (
	// DefaultAddr is loopback on an unprivileged port: the daemon need not
	// run as root for the resolver, and it does not collide with
	// systemd-resolved's 127.0.0.53:53. Point a split-DNS rule for the
	// overlay domain (or resolv.conf) at it.
	DefaultAddr       = "127.0.0.1:5353"
	DefaultDomain     = "cyphonic"
	DefaultTimeout    = 10 * time.Second
	DefaultTTL        = 60
	DefaultMaxPending = 256
	upstreamTimeout   = 5 * time.Second
)

// Config configures a Server. Zero fields take the defaults above.
type Config struct {
	// Addr is where to listen, UDP and TCP on the same address. Port 0
	// picks one (the same for both).
	Addr string
	// Domain is the overlay suffix, e.g. "cyphonic": names under it are
	// answered from the Backend.
	Domain string
	// Search is the domain a single-label name ("bob") is taken to be in:
	// the node's own ("example.cyphonic" for alice.example.cyphonic), so
	// a short name finds a peer of the same domain. Empty: no short names.
	// It must lie under Domain.
	Search string
	// Upstream is where other names are forwarded (host:port). Empty means
	// no forwarding: other names are answered REFUSED.
	Upstream string
	// Timeout is how long an overlay query waits for its tunnel before the
	// answer is SERVFAIL.
	Timeout time.Duration
	// TTL of overlay answers, in seconds.
	TTL uint32
	// MaxPending bounds the queries being worked on at once (overlay
	// lookups and forwards); more are answered SERVFAIL at once.
	MaxPending int
}

func (c Config) withDefaults() (Config, error) {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Domain == "" {
		c.Domain = DefaultDomain
	}
	c.Domain = strings.ToLower(strings.Trim(c.Domain, "."))
	if !validDomain(c.Domain) {
		return c, fmt.Errorf("%w: domain %q", ErrConfig, c.Domain)
	}
	c.Search = strings.ToLower(strings.Trim(c.Search, "."))
	if c.Search != "" && (!validDomain(c.Search) || !strings.HasSuffix(c.Search, "."+c.Domain)) {
		return c, fmt.Errorf("%w: search domain %q is not under %q", ErrConfig, c.Search, c.Domain)
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.Upstream != "" {
		if _, _, err := net.SplitHostPort(c.Upstream); err != nil {
			return c, fmt.Errorf("%w: upstream %q: %v", ErrConfig, c.Upstream, err)
		}
	}
	return c, nil
}

// Errors returned by NewServer and Start.
var (
	ErrConfig  = errors.New("resolver: bad config")
	ErrStarted = errors.New("resolver: already started")
)

// Stats counts answers by outcome.
type Stats struct {
	Overlay   uint64 // overlay queries answered with addresses (or NODATA)
	NXDomain  uint64 // overlay names the backend does not know
	ServFail  uint64 // overlay lookups that failed or timed out
	Forwarded uint64 // queries answered by the upstream
	Upstream  uint64 // forwards that failed (answered SERVFAIL)
	Busy      uint64 // queries refused because MaxPending were in progress
	Refused   uint64 // non-overlay queries with no upstream configured
	Short     uint64 // single-label queries answered as a name of the search domain
	Reverse   uint64 // PTR queries for VIPs answered with their holder
}

// Server is the DNS server. Make it with NewServer, then Start it.
type Server struct {
	cfg     Config
	backend Backend
	logger  *slog.Logger
	suffix  string             // "." + domain + "."
	slots   *supervise.Limiter // queries being worked on; its drops are Stats.Busy
	flights flightGroup

	mu      sync.Mutex
	udp     *dns.Server
	tcp     *dns.Server
	udpAddr net.Addr
	cancel  context.CancelFunc
	ctx     context.Context
	served  sync.WaitGroup

	overlay, nxdomain, servfail, forwarded, upstreamErr, refused, short, reverse atomic.Uint64
}

// NewServer validates cfg. backend must not be nil; nil logger means
// slog.Default().
func NewServer(cfg Config, backend Backend, logger *slog.Logger) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if backend == nil {
		return nil, fmt.Errorf("%w: nil backend", ErrConfig)
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Server{
		cfg:     cfg,
		backend: backend,
		logger:  logger.With("component", "resolver"),
		suffix:  "." + cfg.Domain + ".",
		slots:   supervise.NewLimiter(cfg.MaxPending),
	}, nil
}

// Config returns the effective configuration.
func (s *Server) Config() Config { return s.cfg }

// listenPairTries bounds listenPair's attempts with port 0.
const listenPairTries = 8

// listenPair binds UDP and then TCP on addr's port. With port 0 the kernel
// picks the UDP port, which another program may hold for TCP: then it
// tries another port rather than failing.
func listenPair(addr string) (net.PacketConn, net.Listener, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("resolver: address %q: %w", addr, err)
	}
	for try := 1; ; try++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("resolver: listen udp %s: %w", addr, err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != "0" || try == listenPairTries {
			return nil, nil, fmt.Errorf("resolver: listen tcp %s: %w", pc.LocalAddr(), err)
		}
	}
}

// Start binds UDP and TCP on Config.Addr and serves until Shutdown. The TCP
// listener takes the UDP socket's port, so Addr with port 0 works.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.udp != nil {
		return ErrStarted
	}
	pc, ln, err := listenPair(s.cfg.Addr)
	if err != nil {
		return err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.udp = &dns.Server{PacketConn: pc, Handler: s, UDPSize: dns.DefaultMsgSize}
	s.tcp = &dns.Server{Listener: ln, Handler: s}
	s.udpAddr = pc.LocalAddr()
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		// Wait until the server counts as started, so that Shutdown right
		// after Start does not find it "not started" and leave it running.
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		exited := make(chan struct{})
		s.served.Add(1)
		go func() {
			defer s.served.Done()
			defer close(exited)
			if err := srv.ActivateAndServe(); err != nil {
				s.logger.Error("dns server stopped", "err", err)
			}
		}()
		select {
		case <-started:
		case <-exited:
		}
	}
	s.logger.Info("resolver listening", "addr", s.udpAddr.String(), "domain", s.cfg.Domain, "upstream", s.cfg.Upstream)
	return nil
}

// Addr returns the bound UDP address (the TCP one has the same port), or nil
// before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.udpAddr
}

// Shutdown cancels the queries in progress (they answer SERVFAIL), closes the
// sockets and waits for the server goroutines, or for ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	udp, tcp, cancel := s.udp, s.tcp, s.cancel
	s.udp, s.tcp = nil, nil
	s.mu.Unlock()
	if udp == nil {
		return nil
	}
	cancel()
	var errs []error
	for _, srv := range []*dns.Server{udp, tcp} {
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	done := make(chan struct{})
	go func() { s.served.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("resolver: shutdown: %w", err)
	}
	return nil
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Overlay:   s.overlay.Load(),
		NXDomain:  s.nxdomain.Load(),
		ServFail:  s.servfail.Load(),
		Forwarded: s.forwarded.Load(),
		Upstream:  s.upstreamErr.Load(),
		Busy:      s.slots.Dropped(),
		Refused:   s.refused.Load(),
		Short:     s.short.Load(),
		Reverse:   s.reverse.Load(),
	}
}

// IsOverlay reports whether name (any case, with or without the trailing
// dot) lies under the overlay domain, and returns it lower-cased without the
// trailing dot.
func (s *Server) IsOverlay(name string) (string, bool) {
	n := strings.ToLower(dns.Fqdn(name))
	if n == s.suffix[1:] || !strings.HasSuffix(n, s.suffix) {
		return "", false
	}
	return strings.TrimSuffix(n, "."), true
}

// ServeDNS implements dns.Handler. It runs on miekg/dns's per-query goroutine.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		s.reply(w, req, dns.RcodeNotImplemented)
		return
	}
	if !s.slots.Acquire() {
		s.reply(w, req, dns.RcodeServerFailure)
		return
	}
	defer s.slots.Release()
	q := req.Question[0]
	if fqdn, ok := s.IsOverlay(q.Name); ok {
		s.answerOverlay(w, req, q, fqdn)
		return
	}
	if fqdn, ok := s.shortName(q.Name); ok {
		if s.answerShort(w, req, q, fqdn) {
			return
		}
	}
	if q.Qtype == dns.TypePTR && q.Qclass == dns.ClassINET {
		if s.answerReverse(w, req, q) {
			return
		}
	}
	s.forward(w, req)
}

// shortName turns a single-label name into a name of the search domain.
func (s *Server) shortName(name string) (string, bool) {
	n := strings.ToLower(dns.Fqdn(name))
	label := strings.TrimSuffix(n, ".")
	if s.cfg.Search == "" || label == "" || strings.Contains(label, ".") || label == "localhost" {
		return "", false
	}
	return label + "." + s.cfg.Search, true
}

// answerShort answers a short name as its name in the search domain (the
// answer keeps the asked name, as a search list's expansion would not).
// A name no overlay node holds is left to the upstream: short names of
// the local network keep working.
func (s *Server) answerShort(w dns.ResponseWriter, req *dns.Msg, q dns.Question, fqdn string) bool {
	if q.Qclass != dns.ClassINET || (q.Qtype != dns.TypeA && q.Qtype != dns.TypeAAAA) {
		return false
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	ans, err := s.flights.do(ctx, fqdn, s.backend.Resolve)
	switch {
	case errors.Is(err, ErrUnknownName):
		return false
	case err != nil:
		s.servfail.Add(1)
		s.logger.Info("overlay lookup failed", "name", fqdn, "short", q.Name, "err", err)
		s.replyAuth(w, req, dns.RcodeServerFailure)
		return true
	}
	s.short.Add(1)
	s.writeAnswer(w, req, q, ans)
	return true
}

// answerReverse answers a PTR query for a VIP with its holder's FQDN. It
// reports false for a name that is not an overlay address, to forward.
func (s *Server) answerReverse(w dns.ResponseWriter, req *dns.Msg, q dns.Question) bool {
	rb, ok := s.backend.(ReverseBackend)
	if !ok {
		return false
	}
	n := strings.ToLower(dns.Fqdn(q.Name))
	addr, ok := parseReverse(n)
	if !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	fqdn, err := rb.Reverse(ctx, addr)
	switch {
	case errors.Is(err, ErrNotOverlay):
		return false
	case errors.Is(err, ErrUnknownName):
		s.nxdomain.Add(1)
		s.replyAuth(w, req, dns.RcodeNameError)
		return true
	case err != nil:
		s.servfail.Add(1)
		s.replyAuth(w, req, dns.RcodeServerFailure)
		return true
	}
	s.reverse.Add(1)
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.Answer = append(m.Answer, &dns.PTR{
		Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: s.cfg.TTL},
		Ptr: dns.Fqdn(fqdn),
	})
	s.write(w, m)
	return true
}

func (s *Server) answerOverlay(w dns.ResponseWriter, req *dns.Msg, q dns.Question, fqdn string) {
	if q.Qclass != dns.ClassINET || (q.Qtype != dns.TypeA && q.Qtype != dns.TypeAAAA) {
		// Other types: NODATA, without asking for a tunnel nobody needs.
		s.replyAuth(w, req, dns.RcodeSuccess)
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	ans, err := s.flights.do(ctx, fqdn, s.backend.Resolve)
	switch {
	case errors.Is(err, ErrUnknownName):
		s.nxdomain.Add(1)
		s.replyAuth(w, req, dns.RcodeNameError)
		return
	case err != nil:
		s.servfail.Add(1)
		s.logger.Info("overlay lookup failed", "name", fqdn, "err", err)
		s.replyAuth(w, req, dns.RcodeServerFailure)
		return
	}
	s.overlay.Add(1)
	s.writeAnswer(w, req, q, ans)
}

// writeAnswer answers q with ans's address of the asked family (none:
// NODATA).
func (s *Server) writeAnswer(w dns.ResponseWriter, req *dns.Msg, q dns.Question, ans Answer) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: s.cfg.TTL}
	switch {
	case q.Qtype == dns.TypeA && ans.VIP4.Is4():
		hdr.Rrtype = dns.TypeA
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: ans.VIP4.AsSlice()})
	case q.Qtype == dns.TypeAAAA && ans.VIP6.Is6():
		hdr.Rrtype = dns.TypeAAAA
		m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: ans.VIP6.AsSlice()})
	}
	s.write(w, m)
}

func (s *Server) forward(w dns.ResponseWriter, req *dns.Msg) {
	if s.cfg.Upstream == "" {
		s.refused.Add(1)
		s.reply(w, req, dns.RcodeRefused)
		return
	}
	network := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	ctx, cancel := context.WithTimeout(s.ctx, upstreamTimeout)
	defer cancel()
	resp, err := exchange(ctx, network, s.cfg.Upstream, req)
	if err != nil {
		s.upstreamErr.Add(1)
		s.logger.Debug("forward failed", "name", req.Question[0].Name, "upstream", s.cfg.Upstream, "err", err)
		s.reply(w, req, dns.RcodeServerFailure)
		return
	}
	s.forwarded.Add(1)
	resp.Id = req.Id
	s.write(w, resp)
}

func (s *Server) reply(w dns.ResponseWriter, req *dns.Msg, rcode int) {
	m := new(dns.Msg)
	m.SetRcode(req, rcode)
	s.write(w, m)
}

// replyAuth answers for the overlay domain, which this server is the
// authority for.
func (s *Server) replyAuth(w dns.ResponseWriter, req *dns.Msg, rcode int) {
	m := new(dns.Msg)
	m.SetRcode(req, rcode)
	m.Authoritative = true
	s.write(w, m)
}

// validDomain accepts host-name labels (letters, digits, inner hyphens).
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range []byte(l) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func (s *Server) write(w dns.ResponseWriter, m *dns.Msg) {
	if err := w.WriteMsg(m); err != nil {
		s.logger.Debug("write dns answer", "err", err)
	}
}

// exchange sends req to upstream over network ("udp" or "tcp") on a
// connection of its own and returns the answer, all within ctx.
//
// It dials itself rather than through dns.Client.ExchangeContext, which can
// also dial DNS over TLS and so links crypto/tls's client into the node:
// about 0.4 MB of its binary, mapped at rest (issue 12), for a forward that
// is only ever plain DNS. TestNodeBinaryLinks (cmd/cyphonic) keeps it out.
func exchange(ctx context.Context, network, upstream string, req *dns.Msg) (*dns.Msg, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, upstream)
	if err != nil {
		return nil, err
	}
	co := &dns.Conn{Conn: conn, UDPSize: dns.DefaultMsgSize}
	defer co.Close()
	c := &dns.Client{Net: network, Timeout: upstreamTimeout, UDPSize: dns.DefaultMsgSize}
	resp, _, err := c.ExchangeWithConnContext(ctx, req, co)
	return resp, err
}
