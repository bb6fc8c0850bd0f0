package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cyphonic/cyphonic-go/actors/debug"
	"github.com/cyphonic/cyphonic-go/actors/metrics"
	"github.com/cyphonic/cyphonic-go/actors/runtime"
	"github.com/cyphonic/cyphonic-go/cloud/as"
	"github.com/cyphonic/cyphonic-go/cloud/nms"
	"github.com/cyphonic/cyphonic-go/cloud/pki"
	"github.com/cyphonic/cyphonic-go/cloud/server/svc"
	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/cloud/trs"
)

// Default ports on the listen addresses.
const (
	DefaultNMSPort    = 7400
	DefaultASPort     = 7401
	DefaultAltPort    = 7402
	DefaultTRSPort    = 7403
	DefaultRemotePort = 7410 // the actor system (protoactor remote, gRPC)
	DefaultDebugAddr  = "127.0.0.1:7480"
)

// Config configures one cloud process. Zero values take the defaults.
type Config struct {
	DataDir  string   // CA, service identities, bbolt store
	StoreURL string   // default: bbolt file in DataDir
	Services []string // subset of "as", "nms", "trs"; default all
	// Listen are the IP addresses the UDP services bind (default 127.0.0.1
	// and ::1). Ports: NMSPort, ASPort, AltPort, TRSPort (0 picks one when
	// Ephemeral is set).
	Listen                            []netip.Addr
	NMSPort, ASPort, AltPort, TRSPort int
	Ephemeral                         bool   // pick free ports for everything (tests)
	RemoteHost                        string // gRPC host for the actor systems (default 127.0.0.1)
	RemotePort                        int    // base port: AS, NMS, TRS at +0, +1, +2
	DebugAddr                         string // "" disables; default DefaultDebugAddr
	// Where the services not run here live (remote addresses host:port of
	// their actor systems, and their UDP addresses for LoginReply and tickets).
	NMSRemote, TRSRemote           string
	NMSAddrs, ProbeAddrs, TRSAddrs []netip.AddrPort
	// SessionIdle: NMS drops a node's session not refreshed for this long
	// (default 3 min). RelayIdle: the TRS drops a relay session with no
	// packet for this long (default relay.DefaultIdleTimeout).
	SessionIdle, RelayIdle time.Duration
	Logger                 *slog.Logger
}

// Server is a running cloud process.
type Server struct {
	cfg     Config
	log     *slog.Logger
	store   store.Store
	CA      *pki.CA
	AS      *as.Service
	NMS     *nms.Service
	TRS     *trs.Service
	sys     *runtime.System
	remote  *remote.Remote
	debug   *debug.Server
	debugAt net.Addr
	// Remote is the address of this process's actor system: the services
	// here are the actors "as", "nms" and "trs" at this address.
	Remote string
}

func (c *Config) defaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir()
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
}

// DefaultDataDir is ./cyphonic-data: its ca/ subdirectory is where
// `cyphonic ca issue` looks by default.
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
	if s.CA, err = loadOrInitCA(filepath.Join(cfg.DataDir, "ca")); err != nil {
		return nil, err
	}
	if s.store, err = store.Open(ctx, cfg.StoreURL, store.Config{}); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	deny, err := pki.NewDenyListFile(s.CA.Dir(), cfg.Logger)
	if err != nil {
		return nil, err
	}
	run := func(name string) bool { return slices.Contains(cfg.Services, name) }
	// One actor system per process, the services its top-level actors: see
	// the package comment for why not one system per service.
	s.sys = runtime.New("cloud", cfg.Logger)
	if s.remote, s.Remote, err = svc.StartRemote(s.sys.Actors(), cfg.remote()); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	addr, sys := s.Remote, s.sys

	trsPID, trsAddrs := pidAt(cfg.TRSRemote, "trs"), cfg.TRSAddrs
	if run("trs") {
		if s.TRS, err = trs.Start(sys, trs.Config{Listen: cfg.addrs(cfg.TRSPort), IdleTimeout: cfg.RelayIdle, Logger: cfg.Logger}); err != nil {
			return nil, err
		}
		trsPID, trsAddrs = actor.NewPID(addr, "trs"), s.TRS.Addrs()
	}

	nmsPID, nmsAddrs, probeAddrs := pidAt(cfg.NMSRemote, "nms"), cfg.NMSAddrs, cfg.ProbeAddrs
	if run("nms") {
		s.NMS, err = nms.Start(sys, nms.Config{
			Store: s.store, Listen: cfg.addrs(cfg.NMSPort), AltListen: cfg.addrs(cfg.AltPort),
			TRS: trsPID, TRSAddrs: trsAddrs, Home: addr, SessionIdle: cfg.SessionIdle,
			Revoked: func(serial string) bool {
				n, err := pki.ParseSerial(serial)
				return err == nil && deny.Current().Contains(n)
			},
			Logger: cfg.Logger,
		})
		if err != nil {
			return nil, err
		}
		nmsPID, nmsAddrs, probeAddrs = actor.NewPID(addr, "nms"), s.NMS.Addrs(), s.NMS.AltAddrs()
	}

	if run("as") {
		if nmsPID == nil {
			return nil, errors.New("server: AS needs an NMS: run nms here or give its remote address")
		}
		id, err := serviceIdentity(s.CA, cfg.DataDir, pki.RoleAS)
		if err != nil {
			return nil, err
		}
		v, err := pki.NewVerifier(s.CA.Cert, pki.RoleNode)
		if err != nil {
			return nil, err
		}
		v.SetDenySource(deny.Current)
		s.AS, err = as.Start(sys, as.Config{
			Identity: id, Verifier: v, Store: s.store, Listen: cfg.addrs(cfg.ASPort),
			NMS: nmsPID, NMSAddrs: nmsAddrs, NATProbe: probeAddrs, Logger: cfg.Logger,
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
	return s, nil
}

func pidAt(addr, id string) *actor.PID {
	if addr == "" {
		return nil
	}
	return actor.NewPID(addr, id)
}

func loadOrInitCA(dir string) (*pki.CA, error) {
	if _, err := os.Stat(filepath.Join(dir, pki.CACertFile)); err == nil {
		return pki.LoadCA(dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("server: CA dir: %w", err)
	}
	return pki.InitCA(dir, "CYPHONIC overlay CA", 10*365*24*time.Hour)
}

// serviceIdentity loads the service's certificate from DataDir/<role>, or
// issues one (valid a year) on first start.
func serviceIdentity(ca *pki.CA, dataDir string, role pki.Role) (*pki.Identity, error) {
	dir := filepath.Join(dataDir, role.String())
	if _, err := os.Stat(filepath.Join(dir, pki.CertFile)); err == nil {
		id, err := pki.LoadIdentity(dir)
		if err == nil && time.Until(id.Cert.NotAfter) > 24*time.Hour {
			return id, nil
		}
		if err != nil {
			return nil, err
		}
		os.RemoveAll(dir) // expiring: issue a fresh one
	}
	id, err := ca.Issue(role, "", 365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	if err := pki.WriteIdentity(dir, id); err != nil {
		return nil, err
	}
	return id, nil
}

func (s *Server) startDebug(ctx context.Context) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(metrics.NewActorCollector(s.sys.Registry(), prometheus.Labels{"system": s.sys.Name()}))
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
			func() float64 { return float64(n.Sessions()) }))
	}
	s.debug = debug.NewServer(s.sys.Registry(), s.log)
	s.debug.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	addr, err := s.debug.Start(ctx, s.cfg.DebugAddr)
	if err != nil {
		return err
	}
	s.debugAt = addr
	return nil
}

// DebugAddr is the debug endpoint's address, or nil.
func (s *Server) DebugAddr() net.Addr { return s.debugAt }

// Store is the registry the services share.
func (s *Server) Store() store.Store { return s.store }

// Close stops everything: sockets first, then actors, remotes and the store.
func (s *Server) Close(ctx context.Context) error {
	if s.AS != nil {
		s.AS.Close()
	}
	if s.NMS != nil {
		s.NMS.Close()
	}
	if s.TRS != nil {
		s.TRS.Close()
	}
	var errs []error
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if s.sys != nil {
		if err := s.sys.Shutdown(sctx); err != nil {
			errs = append(errs, err)
		}
	}
	if s.remote != nil {
		// Graceful: it also closes the endpoint writers' client connections.
		s.remote.Shutdown(true)
	}
	if s.debug != nil {
		if err := s.debug.Shutdown(sctx); err != nil {
			errs = append(errs, err)
		}
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	return errors.Join(errs...)
}
