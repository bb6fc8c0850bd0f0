package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cyphonic/cyphonic-go/actors/debug"
	"github.com/cyphonic/cyphonic-go/actors/metrics"
	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/cloud/admin"
	"github.com/cyphonic/cyphonic-go/cloud/as"
	"github.com/cyphonic/cyphonic-go/cloud/nms"
	"github.com/cyphonic/cyphonic-go/cloud/relay"
	"github.com/cyphonic/cyphonic-go/cloud/rootca"
	"github.com/cyphonic/cyphonic-go/cloud/server/svc"
	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/cloud/trs"
	"github.com/cyphonic/cyphonic-go/pki"
)

// Default ports on the listen addresses.
const (
	DefaultNMSPort    = 7400
	DefaultASPort     = 7401
	DefaultAltPort    = 7402
	DefaultTRSPort    = 7403
	DefaultRemotePort = 7410 // the gateway (protoactor remote, gRPC), when one runs
	DefaultDebugAddr  = "127.0.0.1:7480"
)

// Config configures one cloud process. Zero values take the defaults.
type Config struct {
	DataDir  string   // root certificate, service identities, bbolt store: no CA key (see TrustDir)
	StoreURL string   // default: bbolt file in DataDir
	Services []string // subset of "as", "nms", "trs"; default all
	// Store, if set, is used instead of opening StoreURL (a test's
	// instrumented store); the server closes it. StoreURL still says
	// whether it is shared (a redis:// URL runs the gateway).
	Store store.Store
	// BootstrapCADir is where a first start on an empty DataDir creates
	// the overlay CA (default BootstrapCADir(DataDir), outside DataDir).
	BootstrapCADir string
	// Listen are the IP addresses the UDP services bind (default 127.0.0.1
	// and ::1). Ports: NMSPort, ASPort, AltPort, TRSPort (0 picks one when
	// Ephemeral is set).
	Listen                            []netip.Addr
	NMSPort, ASPort, AltPort, TRSPort int
	Ephemeral                         bool // pick free ports for everything (tests)
	// RemoteHost and RemotePort are the gateway's address (protoactor
	// remote, gRPC; default 127.0.0.1:DefaultRemotePort). The gateway runs
	// only when other processes may need this one: when a service runs
	// elsewhere (not all of as, nms, trs here, or NMSRemote/TRSRemote
	// given) or when the store is shared (Redis: other NMSes may direct
	// this one's nodes).
	RemoteHost string
	RemotePort int
	DebugAddr  string // "" disables; default DefaultDebugAddr
	Version    string // the build, for cyphonic_build_info and the actor page
	// AdminSocket is the operator's channel (cloud/admin), default
	// DataDir/admin.sock; "off" disables it.
	AdminSocket  string
	adminDefault bool // AdminSocket was defaulted
	// Where the services not run here live (the gateway addresses host:port
	// of their processes, and their UDP addresses for LoginReply and tickets).
	NMSRemote, TRSRemote           string
	NMSAddrs, ProbeAddrs, TRSAddrs []netip.AddrPort
	// SessionIdle: NMS drops a node's session not refreshed for this long
	// (default 3 min). RelayIdle: the TRS drops a relay session with no
	// packet for this long (default relay.DefaultIdleTimeout).
	SessionIdle, RelayIdle time.Duration
	// RelayMaxSessions bounds the TRS's relay table (default
	// relay.DefaultMaxSessions); RelayMaxPerNode the sessions one node may
	// hold bound there (default RelayMaxSessions/relay.DefaultOwnerShare).
	RelayMaxSessions, RelayMaxPerNode int
	// NMSTuning sizes NMS's reply cache and store workers (zero fields:
	// nms.Config's defaults).
	NMSTuning NMSTuning
	// SignalWorkers is how many worker actors NMS (sealed packets and
	// their transactions, by session) and AS (login certificate checks and
	// DH) each run; zero: GOMAXPROCS.
	SignalWorkers int
	Logger        *slog.Logger
}

// NMSTuning is the part of nms.Config an operator (or a test) may size.
type NMSTuning struct {
	DedupEntries, DedupPerNode int
	StoreWorkers, StoreQueue   int
	SweepInterval              time.Duration
	WorkerQueue                int // packets waiting for one NMS worker
	// Store lookups of sessions NMS does not hold, made before the packet
	// is authenticated: a second, and at once (nms.Config's).
	LookupRate      float64
	LookupsInFlight int
}

// Server is a running cloud process.
type Server struct {
	cfg     Config
	log     *slog.Logger
	store   store.Store
	CA      *rootca.CA // see CreatedCA
	AS      *as.Service
	NMS     *nms.Service
	TRS     *trs.Service
	router  *svc.Router
	systems []*supervise.System // one per service run here
	gateway *svc.Gateway
	debug   *debug.Server
	debugAt net.Addr
	admin   *admin.Server
	// Remote is the address of this process's gateway, where other cloud
	// processes reach its services ("" when it runs none).
	Remote string
	// CreatedCA is the directory of the CA this start created,
	// bootstrapping an empty data directory, and CA that CA, so a test or
	// the demo can issue node certificates; "" and nil when the data
	// directory was provisioned (the process then never sees a CA key).
	// The services never use it.
	CreatedCA string
	root      *x509.Certificate
	deny      *denyList
	stopOnCRL func() // ends CA's calls to deny (nil: no CA here)
}

func (c *Config) defaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir()
	}
	if c.BootstrapCADir == "" {
		c.BootstrapCADir = BootstrapCADir(c.DataDir)
	}
	if c.StoreURL == "" {
		c.StoreURL = filepath.Join(c.DataDir, "registry.db")
	}
	if len(c.Services) == 0 {
		c.Services = []string{"as", "nms", "trs"}
	}
	if len(c.Listen) == 0 {
		c.Listen = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}
	}
	if c.RemoteHost == "" {
		c.RemoteHost = "127.0.0.1"
	}
	port := func(p *int, d int) {
		if c.Ephemeral {
			return
		}
		if *p == 0 {
			*p = d
		}
	}
	port(&c.NMSPort, DefaultNMSPort)
	port(&c.ASPort, DefaultASPort)
	port(&c.AltPort, DefaultAltPort)
	port(&c.TRSPort, DefaultTRSPort)
	port(&c.RemotePort, DefaultRemotePort)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.AdminSocket == "" {
		c.AdminSocket, c.adminDefault = filepath.Join(c.DataDir, admin.SocketName), true
	}
}

// DefaultDataDir is ./cyphonic-data. A first start there creates the CA in
// ./cyphonic-data-ca, where `cyphonic ca issue` looks by default.
func DefaultDataDir() string { return "cyphonic-data" }

func (c *Config) addrs(port int) []string {
	var out []string
	for _, a := range c.Listen {
		out = append(out, netip.AddrPortFrom(a, uint16(port)).String())
	}
	return out
}

func (c *Config) remote() string {
	p := 0
	if !c.Ephemeral {
		p = c.RemotePort
	}
	return net.JoinHostPort(c.RemoteHost, strconv.Itoa(p))
}

// Start brings the process up. On error everything started is stopped.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	cfg.defaults()
	s := &Server{cfg: cfg, log: cfg.Logger}
	defer func() {
		if err != nil {
			s.Close(context.Background())
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: data dir: %w", err)
	}
	run := func(name string) bool { return slices.Contains(cfg.Services, name) }
	var roles []pki.Role // of the services run here: each needs its certificate
	for _, r := range []pki.Role{pki.RoleAS, pki.RoleNMS, pki.RoleTRS} {
		if run(r.String()) {
			roles = append(roles, r)
		}
	}
	if len(roles) != len(cfg.Services) {
		return nil, fmt.Errorf("server: services %v: want some of as, nms, trs, each once", cfg.Services)
	}
	tr, err := loadTrust(cfg.DataDir, cfg.BootstrapCADir, roles, cfg.Logger)
	if err != nil {
		return nil, err
	}
	s.root, s.CA, s.CreatedCA = tr.root, tr.ca, tr.created
	// Through a local first: a failed Open returns a typed nil, which in
	// s.store would be a non-nil interface that Close then dereferences.
	st := cfg.Store
	if st == nil {
		opened, err := store.Open(ctx, cfg.StoreURL)
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		st = opened
	}
	s.store = st
	deny, err := openDenyList(TrustDir(cfg.DataDir), denyListPoll, cfg.Logger)
	if err != nil {
		return nil, err
	}
	s.deny = deny
	if s.CA != nil {
		// This process's own CA: its revocations reach the services
		// before Revoke returns, not at the next poll.
		s.stopOnCRL = s.CA.OnCRL(deny.refresh)
	}
	// Each service is an actor system of its own; the router carries their
	// frames, straight into the target system when it runs here, through
	// the gateway (the process's one remote) when it runs elsewhere.
	s.router = svc.NewRouter(cfg.Logger)
	if cfg.needsGateway() {
		// Mutual TLS between gateways with the service certificates: the
		// gateway presents one service's run here (gatewayRole), and accepts
		// any cloud service of this overlay that is not revoked; what each
		// may send is svc.Rules.
		peers, err := pki.NewVerifier(s.root, pki.RoleAS, pki.RoleNMS, pki.RoleTRS)
		if err != nil {
			return nil, err
		}
		peers.SetDenySource(deny.Current)
		creds := svc.Credentials{Identity: tr.ids[gatewayRole(roles)], Peers: peers}
		for _, r := range roles {
			if r != creds.Identity.Role {
				creds.Also = append(creds.Also, tr.ids[r]) // proven on each connection: see svc.Credentials
			}
		}
		if s.gateway, err = svc.StartGateway(supervise.New("gateway", cfg.Logger), cfg.remote(), s.router, creds); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		s.Remote = s.gateway.Addr()
	}
	system := func(name string) *supervise.System {
		sys := supervise.New(name, cfg.Logger)
		s.systems = append(s.systems, sys)
		s.router.Attach(name, sys.Actors())
		return sys
	}

	trsRef, trsAddrs := remoteRef(cfg.TRSRemote, svc.TRS), cfg.TRSAddrs
	var trsTickets *relay.Tickets // the TRS here: NMS mints its tickets
	if run(svc.TRS) {
		s.TRS, err = trs.Start(system(svc.TRS), trs.Config{Listen: cfg.addrs(cfg.TRSPort), IdleTimeout: cfg.RelayIdle,
			MaxSessions: cfg.RelayMaxSessions, MaxPerOwner: cfg.RelayMaxPerNode,
			TicketKeyFile: filepath.Join(cfg.DataDir, "trs-ticket.key"),
			Link:          s.router.Link(svc.TRS), Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		trsRef, trsAddrs = svc.RootOf("", svc.TRS), s.TRS.Addrs()
		trsTickets = s.TRS.Tickets()
	}

	nmsRef, nmsAddrs, probeAddrs := remoteRef(cfg.NMSRemote, svc.NMS), cfg.NMSAddrs, cfg.ProbeAddrs
	if run(svc.NMS) {
		s.NMS, err = nms.Start(system(svc.NMS), nms.Config{
			Store: s.store, Listen: cfg.addrs(cfg.NMSPort), AltListen: cfg.addrs(cfg.AltPort),
			Link: s.router.Link(svc.NMS), TRS: trsRef, TRSAddrs: trsAddrs, RelayTickets: trsTickets, Home: s.router.Addr(), SessionIdle: cfg.SessionIdle,
			Revoked: func(serial string) bool {
				n, err := pki.ParseSerial(serial)
				return err == nil && deny.Current().Contains(n)
			},
			DenyList:     deny.CRL,
			DedupEntries: cfg.NMSTuning.DedupEntries, DedupPerNode: cfg.NMSTuning.DedupPerNode,
			StoreWorkers: cfg.NMSTuning.StoreWorkers, StoreQueue: cfg.NMSTuning.StoreQueue,
			SweepInterval: cfg.NMSTuning.SweepInterval,
			Workers:       cfg.SignalWorkers, WorkerQueue: cfg.NMSTuning.WorkerQueue,
			LookupRate: cfg.NMSTuning.LookupRate, LookupsInFlight: cfg.NMSTuning.LookupsInFlight,
			Logger: cfg.Logger,
		})
		if err != nil {
			return nil, err
		}
		nmsRef, nmsAddrs, probeAddrs = svc.RootOf("", svc.NMS), s.NMS.Addrs(), s.NMS.AltAddrs()
	}

	var otherClouds func() []store.LeaseInfo // NMS here: the other processes its leases list
	if s.NMS != nil {
		otherClouds = s.NMS.OtherClouds
	}
	if run(svc.AS) {
		if nmsRef.IsZero() {
			return nil, errors.New("server: AS needs an NMS: run nms here or give its remote address")
		}
		id := tr.ids[pki.RoleAS]
		v, err := pki.NewVerifier(s.root, pki.RoleNode)
		if err != nil {
			return nil, err
		}
		v.SetDenySource(deny.Current)
		s.AS, err = as.Start(system(svc.AS), as.Config{
			Identity: id, Verifier: v, Store: s.store, Listen: cfg.addrs(cfg.ASPort),
			Link: s.router.Link(svc.AS), NMS: nmsRef, NMSAddrs: nmsAddrs, NATProbe: probeAddrs, Workers: cfg.SignalWorkers, Logger: cfg.Logger,
			OtherClouds: otherClouds,
		})
		if err != nil {
			return nil, err
		}
	}
	if cfg.DebugAddr != "" {
		if err := s.startDebug(ctx); err != nil {
			return nil, err
		}
	}
	if cfg.AdminSocket != "off" {
		acfg := admin.Config{Path: cfg.AdminSocket, Store: s.store, Logger: cfg.Logger}
		if s.NMS != nil {
			acfg.NMS, acfg.Home = s.NMS, s.router.Addr()
		}
		s.admin, err = admin.Listen(acfg)
		if errors.Is(err, admin.ErrInUse) && cfg.adminDefault {
			// Cloud processes that share a data directory (a split
			// deployment, or several over one Redis store): the first
			// serves the default socket, the others one of their own.
			acfg.Path = filepath.Join(cfg.DataDir, fmt.Sprintf("admin-%d.sock", os.Getpid()))
			cfg.Logger.Warn("server: another cloud process with this data directory serves its admin socket; this one serves its own",
				"default", cfg.AdminSocket, "admin_socket", acfg.Path)
			s.admin, err = admin.Listen(acfg)
		}
		if err != nil {
			return nil, fmt.Errorf("server: %w (choose another with --admin-socket, or 'off')", err)
		}
	}
	return s, nil
}

// AdminSocket is the operator channel's socket, or "" when it is off.
func (s *Server) AdminSocket() string {
	if s.admin == nil {
		return ""
	}
	return s.admin.Path()
}

// gatewayRole is the role whose certificate the gateway presents in its
// TLS handshakes, of the roles of the services run here; it proves the
// others after the handshake (svc.Credentials.Also). NMS when it runs
// here: it is the service that speaks to all the others across processes,
// so a peer that reads only the TLS certificate still lets its frames
// through.
func gatewayRole(roles []pki.Role) pki.Role {
	if slices.Contains(roles, pki.RoleNMS) {
		return pki.RoleNMS
	}
	return roles[0]
}

// remoteRef is the root of service in the process whose gateway is at
// addr, or zero if addr is "" (no such service).
func remoteRef(addr, service string) svc.Ref {
	if addr == "" {
		return svc.Ref{}
	}
	return svc.RootOf(addr, service)
}

// needsGateway reports whether other processes may have to reach this one
// or this one them: see Config.RemoteHost.
func (c *Config) needsGateway() bool {
	for _, name := range []string{svc.AS, svc.NMS, svc.TRS} {
		if !slices.Contains(c.Services, name) {
			return true
		}
	}
	scheme, _, _ := strings.Cut(c.StoreURL, "://")
	shared := strings.EqualFold(scheme, "redis") || strings.EqualFold(scheme, "rediss")
	return shared || c.NMSRemote != "" || c.TRSRemote != ""
}

func (s *Server) startDebug(ctx context.Context) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, sys := range s.Systems() {
		reg.MustRegister(metrics.NewActorCollector(sys.Registry(), prometheus.Labels{"system": sys.Name()}))
	}
	for route, count := range map[string]func(svc.RouterStats) uint64{
		"local":    func(st svc.RouterStats) uint64 { return st.Local },
		"outbound": func(st svc.RouterStats) uint64 { return st.Outbound },
		"inbound":  func(st svc.RouterStats) uint64 { return st.Inbound },
		"dropped":  func(st svc.RouterStats) uint64 { return st.Dropped },
	} {
		r := s.router
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "cyphonic_cloud_frames_total", Help: "Frames between the cloud services, by route.",
			ConstLabels: prometheus.Labels{"route": route},
		}, func() float64 { return float64(count(r.Stats())) }))
	}
	reg.MustRegister(s.attackSeries(), s.scaleSeries())
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cyphonic_build_info", Help: "The running build: 1, with its version (and commit) as a label.",
		ConstLabels: prometheus.Labels{"version": s.cfg.Version},
	}, func() float64 { return 1 }))
	if s.TRS != nil {
		t := s.TRS.Table()
		reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "cyphonic_trs_forwarded_bytes_total", Help: "Bytes relayed."},
				func() float64 { return float64(t.Stats().Forwarded.Bytes) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "cyphonic_trs_forwarded_packets_total", Help: "Packets relayed."},
				func() float64 { return float64(t.Stats().Forwarded.Packets) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cyphonic_trs_sessions", Help: "Live relay sessions."},
				func() float64 { return float64(t.Stats().Sessions) }),
		)
	}
	if s.NMS != nil {
		n := s.NMS
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cyphonic_nms_sessions", Help: "Live node sessions."},
			func() float64 { return float64(n.Sessions()) }), n.KeepaliveTime)
	}
	s.debug = debug.NewServer(systemsTree(s.Systems()), s.log)
	s.debug.Describe(systemsTree(s.Systems()).daemon(), s.cfg.Version)
	s.debug.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	addr, err := s.debug.Start(ctx, s.cfg.DebugAddr)
	if err != nil {
		return err
	}
	s.debugAt = addr
	return nil
}

// Systems returns the actor systems of this process: one per service run
// here (named after it, in the order trs, nms, as) and the gateway's last,
// if it runs one.
func (s *Server) Systems() []*supervise.System {
	out := slices.Clone(s.systems)
	if s.gateway != nil {
		out = append(out, s.gateway.System())
	}
	return out
}

// Gateway returns this process's gateway, or nil when it runs none.
func (s *Server) Gateway() *svc.Gateway { return s.gateway }

// Router returns the router that carries the services' frames.
func (s *Server) Router() *svc.Router { return s.router }

// DebugAddr is the debug endpoint's address, or nil.
func (s *Server) DebugAddr() net.Addr { return s.debugAt }

// Store is the registry the services share.
func (s *Server) Store() store.Store { return s.store }

// Close stops everything: sockets first, then the services' actor systems,
// the gateway and the store.
func (s *Server) Close(ctx context.Context) error {
	var errs []error
	if s.admin != nil {
		errs = append(errs, s.admin.Close(ctx))
	}
	if s.AS != nil {
		s.AS.Close()
	}
	if s.NMS != nil {
		s.NMS.Close()
	}
	if s.TRS != nil {
		s.TRS.Close()
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, sys := range s.systems {
		s.router.Detach(sys.Name()) // nothing more for a system going down
	}
	for _, sys := range s.systems {
		if err := sys.Shutdown(sctx); err != nil {
			errs = append(errs, err)
		}
	}
	if s.gateway != nil {
		if err := s.gateway.Close(sctx); err != nil {
			errs = append(errs, err)
		}
	}
	if s.debug != nil {
		if err := s.debug.Shutdown(sctx); err != nil {
			errs = append(errs, err)
		}
	}
	if s.stopOnCRL != nil {
		s.stopOnCRL()
	}
	if s.deny != nil {
		s.deny.close()
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	return errors.Join(errs...)
}
