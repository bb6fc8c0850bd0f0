// Package node composes the node daemon (DESIGN.md §4): the identity, the
// UDP sockets and TUN device, the data plane, the cloud session, the
// resolver and the debug endpoint, under one root actor "node" that
// supervises them all. Run is what `cyphonic node` calls; Start and Stop
// let tests run several nodes in one process.
package node

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/actors/debug"
	"github.com/cyphonic/cyphonic-go/actors/metrics"
	"github.com/cyphonic/cyphonic-go/actors/resolver"
	"github.com/cyphonic/cyphonic-go/actors/session"
	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
	"github.com/cyphonic/cyphonic-go/tun"
)

// Defaults for Config's zero fields.
const (
	DefaultListen4 = "0.0.0.0:0"
	DefaultListen6 = "[::]:0"
	DefaultTUN     = "cyph0"
	DefaultMTU     = 1280
	// DefaultTUNQueues is how many queues an offload backend's TUN gets
	// when Config.TUNQueues is 0 and the node may steer the host's packets
	// (tun.CanSteer: CAP_BPF; without it, one): a bulk queue and a
	// ping-only one. Against one queue, interleaved on a quiet machine,
	// they cut the idle peer's RTT under ten pushers from 4.8-5.7 to
	// 3.4-3.9 ms avg (p99 14.6-16.9 to 10.8-13.4 ms) and moved 6 % more,
	// for 0.3 MiB more RSS at rest (BENCHMARKS.md, session 12).
	DefaultTUNQueues = 2
	DefaultDebugAddr = "127.0.0.1:7481"
	// Off disables the resolver (Config.DNS), forwarding of other names
	// (Config.Upstream) or the debug server (Config.DebugAddr).
	Off = "off"
)

// ErrConfig is wrapped by every error about an unusable Config.
var ErrConfig = errors.New("node: bad config")

// Config is the node daemon's configuration (the `cyphonic node` flags).
type Config struct {
	CertDir string // identity: node.crt, node.key, noise.key; and ca.crt unless CAFile is set (required)
	CAFile  string // the overlay's root CA certificate (PEM); default CertDir/ca.crt
	// Cloud is the AS address, host:port (required), or several, comma
	// separated: cloud processes sharing one store, among which the node
	// fails over by itself (session.Config.Clouds). A host name stands for
	// every address it resolves to, looked up again every ResolveEvery and
	// when the node fails over (keeping its last addresses if the lookup
	// fails).
	Cloud string
	// Resolver looks the Cloud names up (default net.DefaultResolver).
	Resolver Resolver
	// ResolveEvery is how often the Cloud names are looked up again
	// (default DefaultResolveEvery; negative: only at start).
	ResolveEvery time.Duration

	Listen4, Listen6 string // UDP sockets (default any address, a random port); "" with the other set: skip the family

	DNS      string // resolver address (default resolver.DefaultAddr); Off disables it
	Upstream string // where non-overlay names go (default: /etc/resolv.conf's first nameserver); Off refuses them
	Domain   string // the overlay domain (default resolver.DefaultDomain)

	DebugAddr string // /debug/actors, /debug/status, /metrics, /debug/pprof (default DefaultDebugAddr); Off disables it
	Version   string // the build, for cyphonic_build_info and the actor page (the binary's version and commit)

	// SplitDNS registers the resolver with systemd-resolved for the
	// overlay domain on the TUN link: SplitDNSAuto (default), SplitDNSOn
	// or SplitDNSOff.
	SplitDNS string

	TUN string // device name (default DefaultTUN)
	MTU int    // device MTU (default DefaultMTU)
	// TUNBackend opens the device: tun.BackendOffloadRaw (TSO/GRO, the
	// default), tun.BackendOffload (the same through wireguard-go's tun
	// for every read and write) or tun.BackendWater.
	TUNBackend tun.Backend
	// TUNQueues is how many queues the TUN is opened with
	// (1..dataplane.MaxTUNQueues; 0: DefaultTUNQueues with the offload
	// backends if the node may steer the host's packets, else 1): with
	// more than one the device is opened multi-queue (offload backends
	// only), each queue gets a reader and a writer, and the last carries
	// only ICMP, so an idle peer's ping never waits behind bulk writes.
	TUNQueues int
	// Device, if set, is used instead of opening TUN (tests: tun.NewMemPair);
	// the node then does not configure addresses or routes on it.
	Device tun.Device

	Logger *slog.Logger

	// Tuning, mostly for tests; zero values take the session's and data
	// plane's defaults.
	Keepalive time.Duration
	Retry     signaling.Retry
	// TuneDataplane, if set, may adjust the data plane's config before it
	// is built (timeouts, workers).
	TuneDataplane func(*dataplane.Config)
}

// Node is a running node daemon.
type Node struct {
	cfg     Config
	log     *slog.Logger
	id      *pki.Identity
	sys     *supervise.System
	dp      *dataplane.Dataplane
	sess    *session.Session
	dns     *resolver.Server
	debug   *debug.Server
	debugAt net.Addr
	rootPID *actor.PID

	logins chan messages.LoginReply // to the TUN configurer
	// overlay is the overlay's prefixes and our VIPs from the last login,
	// for the data plane's Overlay check.
	overlay atomic.Pointer[overlayAddrs]
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	expiryMu     sync.Mutex
	expiryTimer  *time.Timer // the next expiry warning or error; nil once stopped
	expiryClosed bool

	stopOnce sync.Once
	stopErr  error
}

// Run starts a node and runs it until ctx ends, then stops it cleanly
// (logout, device removed).
func Run(ctx context.Context, cfg Config) error {
	n, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	<-ctx.Done()
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return n.Stop(stopCtx)
}

func (c Config) withDefaults() (Config, error) {
	if c.CertDir == "" {
		return c, fmt.Errorf("%w: no certificate directory (--cert)", ErrConfig)
	}
	if c.Cloud == "" {
		return c, fmt.Errorf("%w: no cloud address (--cloud)", ErrConfig)
	}
	if c.CAFile == "" {
		c.CAFile = filepath.Join(c.CertDir, pki.CACertFile)
	}
	if c.Listen4 == "" && c.Listen6 == "" {
		c.Listen4, c.Listen6 = DefaultListen4, DefaultListen6
	}
	if c.DNS == "" {
		c.DNS = resolver.DefaultAddr
	}
	if c.DebugAddr == "" {
		c.DebugAddr = DefaultDebugAddr
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	if c.ResolveEvery == 0 {
		c.ResolveEvery = DefaultResolveEvery
	}
	if c.TUN == "" {
		c.TUN = DefaultTUN
	}
	switch c.SplitDNS {
	case "":
		c.SplitDNS = SplitDNSAuto
	case SplitDNSAuto, SplitDNSOn, SplitDNSOff:
	default:
		return c, fmt.Errorf("%w: --split-dns %q: want auto, on or off", ErrConfig, c.SplitDNS)
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	b, err := tun.ParseBackend(string(c.TUNBackend))
	if err != nil {
		return c, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	c.TUNBackend = b
	if c.TUNQueues == 0 && c.TUNBackend == tun.BackendWater {
		c.TUNQueues = 1 // water opens one queue
	}
	switch {
	case c.TUNQueues < 0 || c.TUNQueues > dataplane.MaxTUNQueues:
		return c, fmt.Errorf("%w: --tun-queues %d outside [1, %d]", ErrConfig, c.TUNQueues, dataplane.MaxTUNQueues)
	case c.TUNQueues > 1 && c.TUNBackend == tun.BackendWater && c.Device == nil:
		return c, fmt.Errorf("%w: --tun-queues %d needs --tun-backend %s or %s (the %s backend opens one queue)", ErrConfig, c.TUNQueues, tun.BackendOffloadRaw, tun.BackendOffload, c.TUNBackend)
	}
	if c.MTU < 576 || c.MTU > messages.MaxInner {
		return c, fmt.Errorf("%w: MTU %d outside [576, %d]", ErrConfig, c.MTU, messages.MaxInner)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// trust is the node's identity, the root it trusts and the deny list it
// holds.
type trust struct {
	id   *pki.Identity
	root *x509.Certificate
	crls *pki.CRLState
}

// loadTrust reads the identity, the CA and the saved deny list, and checks
// the identity against them (checkIdentity).
func loadTrust(cfg Config, log *slog.Logger) (*trust, error) {
	id, err := pki.LoadIdentity(cfg.CertDir)
	if err != nil {
		return nil, &OptionError{Option: "cert", Err: err}
	}
	if id.Role != pki.RoleNode {
		return nil, fmt.Errorf("%w: %s holds a %s certificate, not a node's", ErrConfig, cfg.CertDir, id.Role)
	}
	root, _, err := pki.ReadCertFile(cfg.CAFile) // not LoadRootFile: a non-CA certificate gets the error below
	if err != nil {
		return nil, &OptionError{Option: "ca", Err: fmt.Errorf("CA certificate: %w", err)}
	}
	if !root.IsCA || !root.BasicConstraintsValid {
		return nil, optionErr("ca", "%s is not a CA certificate (it names %q): give the overlay's ca.crt", cfg.CAFile, root.Subject.CommonName)
	}
	// The deny list: CA-signed, the newest one seen, kept in the identity
	// directory across restarts; NMS brings newer ones. Every handshake
	// and rekey checks it, and peers it names are closed.
	crls := pki.NewCRLState(root)
	if c, err := pki.LoadCRL(cfg.CertDir, root); err != nil {
		log.Warn("ignoring the saved deny list", "err", err)
	} else if c != nil {
		_, _ = crls.Offer(c.DER)
	}
	if err := checkIdentity(id, root, crls.DenyList(), cfg.CertDir, cfg.CAFile, time.Now()); err != nil {
		return nil, err
	}
	return &trust{id: id, root: root, crls: crls}, nil
}

// Check is what Start checks before it opens anything: the config, the
// cloud's address, the identity and the CA (`cyphonic node --check-config`).
// It returns the identity on success.
func Check(ctx context.Context, cfg Config) (*pki.Identity, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if _, _, err := resolveCloud(ctx, cfg.Resolver, cfg.Cloud); err != nil {
		return nil, err
	}
	t, err := loadTrust(cfg, cfg.Logger)
	if err != nil {
		return nil, err
	}
	return t.id, nil
}

// Start brings a node up: it returns once every part is running (the cloud
// login proceeds in the background; see Status). On error, whatever was
// started is stopped again.
func Start(ctx context.Context, cfg Config) (_ *Node, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger, logins: make(chan messages.LoginReply, 1)}
	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	names, cloud, err := resolveCloud(ctx, cfg.Resolver, cfg.Cloud)
	if err != nil {
		return nil, err
	}
	reresolveNow := make(chan struct{}, 1)
	t, err := loadTrust(cfg, n.log)
	if err != nil {
		return nil, err
	}
	root, crls := t.root, t.crls
	n.id = t.id
	n.log = n.log.With("node", n.id.FQDN)
	nodes, err := pki.NewVerifier(root, pki.RoleNode)
	if err != nil {
		return nil, optionErr("ca", "%s: %w", cfg.CAFile, err)
	}
	services, err := pki.NewVerifier(root, pki.RoleAS)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	nodes.SetDenySource(crls.DenyList)
	services.SetDenySource(crls.DenyList)
	n.watchExpiry()
	cleanup = append(cleanup, n.stopExpiry)

	bind, err := listen(cfg.CertDir, cfg.Listen4, cfg.Listen6, n.log)
	if err != nil {
		return nil, bindError(err)
	}
	dev, queues := cfg.Device, []tun.Device(nil)
	if dev == nil {
		if dev, queues, err = openTUN(cfg, n.log); err != nil {
			bind.Close()
			return nil, tunError(cfg.TUN, err)
		}
	}

	dpCfg := dataplane.Config{
		Identity:        n.id,
		Verify:          dataplane.NodeVerifier(nodes),
		Device:          dev,
		Queues:          queues,
		Bind:            bind,
		Logger:          n.log,
		OnControl:       func(pkt []byte, from netip.AddrPort) { n.sess.Inbound(pkt, from) },
		OnPeerNeedsPath: func(fqdn string) { n.sess.NeedPath(fqdn) },
		// A packet to an overlay address with no tunnel sets one up, as a
		// DNS query for the holder's name would.
		Overlay:   n.isOverlay,
		OnNoRoute: func(vip netip.Addr) { n.sess.NeedVIP(vip) },
		Revoked:   func(serial *big.Int) bool { return crls.DenyList().Contains(serial) },
	}
	if cfg.TuneDataplane != nil {
		cfg.TuneDataplane(&dpCfg)
	}
	n.sys = supervise.New("node", n.log)
	if n.dp, err = dataplane.New(n.sys, dpCfg); err != nil {
		dev.Close()
		for _, q := range queues {
			q.Close()
		}
		bind.Close()
		n.sys.Shutdown(context.Background())
		return nil, fmt.Errorf("node: %w", err)
	}
	cleanup = append(cleanup, func() {
		n.sys.Shutdown(context.Background())
		n.dp.Stop(context.Background()) // closes the device and sockets
	})

	n.sess, err = session.New(session.Config{
		Identity:    n.id,
		VerifyAS:    services.HandshakeFunc(pki.RoleAS, pki.RoleAS.ServiceFQDN()),
		Clouds:      cloud,
		Dataplane:   n.dp,
		Software:    "cyphonic-go node",
		OnLogin:     n.onLogin,
		OnVIPFailed: func(vip netip.Addr, unknown bool) { n.dp.LookupFailed(vip, unknown) },
		OnFailover: func() {
			select {
			case reresolveNow <- struct{}{}:
			default:
			}
		},
		DenyList:  func(der []byte) uint64 { return n.takeDenyList(crls, der) },
		Logger:    n.log,
		Keepalive: cfg.Keepalive,
		Retry:     cfg.Retry,
	})
	if err != nil {
		return nil, err
	}
	cleanup = append(cleanup, n.sess.Close)

	if cfg.DNS != Off {
		upstream := cfg.Upstream
		switch upstream {
		case Off:
			upstream = "" // the resolver refuses non-overlay names
			n.log.Info("upstream DNS off: only overlay names will resolve")
		case "":
			if upstream, err = resolver.UpstreamFromResolvConf(resolver.ResolvConf, cfg.DNS); err != nil {
				n.log.Warn("no upstream DNS: only overlay names will resolve (--upstream names one)", "err", err)
				upstream, err = "", nil
			} else {
				n.log.Info("resolver: names outside the overlay go to the upstream", "upstream", upstream, "from", resolver.ResolvConf)
			}
		}
		// Short names: "bob" is bob in our own domain, when that lies in
		// the overlay's.
		var search string
		if _, own, ok := strings.Cut(n.id.FQDN, "."); ok && strings.HasSuffix(own, "."+strings.Trim(cfg.Domain, ".")) {
			search = own
		}
		n.dns, err = resolver.NewServer(resolver.Config{Addr: cfg.DNS, Domain: cfg.Domain, Search: search, Upstream: upstream},
			nodeBackend{n}, n.log)
		if err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		// Bind now, so a taken port is an error here rather than a crash
		// loop in the actor.
		if err := n.dns.Start(); err != nil {
			return nil, listenError("dns", "resolver address", cfg.DNS, err)
		}
		cleanup = append(cleanup, func() { n.dns.Shutdown(context.Background()) })
	}

	if err := n.spawnRoot(); err != nil {
		return nil, err
	}

	if cfg.DebugAddr != Off {
		n.debug = debug.NewServer(n.sys.Registry(), n.log)
		n.debug.Describe("node "+n.id.FQDN, cfg.Version)
		n.debug.Annotate(annotateTree(n.dp.Status))
		n.debug.Handle("GET "+PathStatus, statusHandler(n.Status))
		n.debug.Handle("GET "+PathPing, pingHandler(n))
		n.debug.Handle("GET "+PathSojourn, sojournHandler(n.dp))
		reg := metrics.NewRegistry(n.sys.Registry(), prometheus.Labels{"system": "node"})
		reg.MustRegister(&nodeCollector{peers: n.dp.Status, drops: n.dp.Drops, version: cfg.Version,
			resolver: func() (resolver.Stats, bool) {
				if n.dns == nil {
					return resolver.Stats{}, false
				}
				return n.dns.Stats(), true
			}})
		n.debug.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		if n.debugAt, err = n.debug.Start(context.Background(), cfg.DebugAddr); err != nil {
			return nil, listenError("debug-addr", "debug address", cfg.DebugAddr, err)
		}
	}

	cctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	if cfg.Device == nil {
		n.wg.Add(1)
		go n.configureTUN(cctx, dev.Name())
	}
	if names.hasNames() && cfg.ResolveEvery > 0 {
		n.wg.Go(func() { reresolve(cctx, names, cfg.Resolver, cfg.ResolveEvery, reresolveNow, n.sess.SetClouds, n.log) })
	}
	n.log.Info("node started", "cloud", cloud, "dns", n.DNSAddr(), "debug", n.debugAt)
	return n, nil
}

// openTUN opens the node's TUN: one queue, or cfg.TUNQueues queues of
// one multi-queue interface, the first returned as the device and the rest
// as its further queues (dataplane.Config.Queues); cfg.TUNQueues 0 is
// DefaultTUNQueues where the node may steer, else one.
// The host's packets are steered to the bulk queues, away from the last,
// which the data plane writes only ICMP on (tun.SteerToFirst): so an echo
// reply is read by a reader that is awake under load. Where the node may
// not load the steering program (no CAP_BPF), the default is one queue,
// and queues asked for keep the kernel's own steering, the replies coming
// out on the ICMP queue.
func openTUN(cfg Config, log *slog.Logger) (tun.Device, []tun.Device, error) {
	queues := cfg.TUNQueues
	if queues == 0 {
		queues = DefaultTUNQueues
		if err := tun.CanSteer(); err != nil {
			queues = 1
			log.Info("TUN: one queue; a ping-only queue needs the host's packets steered off it, which needs CAP_BPF", "err", err)
		}
	}
	if queues <= 1 {
		dev, err := tun.OpenBackend(cfg.TUNBackend, cfg.TUN, cfg.MTU)
		return dev, nil, err
	}
	devs, err := tun.OpenBackendQueues(cfg.TUNBackend, cfg.TUN, cfg.MTU, queues)
	if err != nil {
		return nil, nil, err
	}
	if err := tun.SteerToFirst(devs, len(devs)-1); err != nil {
		log.Warn("TUN queues: the host's echo replies are read on the ICMP queue (kernel steering)", "err", err)
	}
	log.Info("TUN queues", "queues", len(devs), "icmp-queue", len(devs)-1)
	return devs[0], devs[1:], nil
}

// spawnRoot spawns the root actor "node" and waits until it has spawned its
// children (the data plane's, session, resolver), reporting their errors.
func (n *Node) spawnRoot() error {
	strategy, err := n.sys.NewBackoffStrategy(supervise.Backoff{MaxRetries: -1}, nil)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	started := make(chan error, 1)
	props := actor.PropsFromProducer(func() actor.Actor {
		return &rootActor{n: n, started: started}
	}, supervise.WithBackoff(strategy))
	pid, err := n.sys.Spawn(nil, "node", "node", props)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.rootPID = pid
	if err := <-started; err != nil {
		return fmt.Errorf("node: start: %w", err)
	}
	return nil
}

// rootActor is "node": it spawns and supervises the daemon's parts.
type rootActor struct {
	n       *Node
	started chan<- error // reported once, on the first Started
}

func (a *rootActor) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*actor.Started); !ok {
		return
	}
	err := a.spawnChildren(ctx)
	if a.started != nil {
		a.started <- err
		a.started = nil
	}
}

func (a *rootActor) spawnChildren(ctx actor.Context) error {
	n := a.n
	if err := n.dp.Start(ctx); err != nil {
		return err
	}
	if _, err := n.sess.Spawn(ctx); err != nil {
		return err
	}
	if n.dns != nil {
		if _, err := supervise.Spawn(ctx, "resolver", "resolver", resolver.Props(n.dns)); err != nil {
			return err
		}
	}
	return nil
}

// takeDenyList runs in the session actor: it keeps der if it is a valid,
// newer list (the peers then close their revoked tunnels within a tick)
// and returns the number of the list held.
func (n *Node) takeDenyList(crls *pki.CRLState, der []byte) uint64 {
	if der == nil {
		return crls.Number()
	}
	changed, err := crls.Offer(der)
	switch {
	case err != nil:
		n.log.Warn("deny list from the cloud refused", "err", err, "holding", crls.Number())
	case changed:
		c := crls.Current()
		n.log.Info("deny list updated", "number", c.Number, "revoked", c.DenyList().Len())
		if err := pki.SaveCRL(n.cfg.CertDir, c); err != nil {
			n.log.Warn("deny list not saved", "err", err)
		}
	}
	return crls.Number()
}

// onLogin runs in the session actor: hand the VIPs to the configurer
// without blocking (the newest login wins).
// overlayAddrs is what isOverlay checks against.
type overlayAddrs struct {
	prefix6, prefix4 netip.Prefix
	vip6, vip4       netip.Addr
}

// isOverlay reports whether a packet to a is one a tunnel could carry: in
// the overlay's prefixes, and not one of our own VIPs. Nothing is until
// the first login names the prefixes.
func (n *Node) isOverlay(a netip.Addr) bool {
	o := n.overlay.Load()
	if o == nil || a == o.vip6 || a == o.vip4 {
		return false
	}
	return o.prefix6.IsValid() && o.prefix6.Contains(a) || o.prefix4.IsValid() && o.prefix4.Contains(a)
}

func (n *Node) onLogin(r messages.LoginReply) {
	// Our VIPs are the ones our certificate binds: peers accept no other
	// source from us, whatever AS says.
	if r.VIP6 != n.id.VIP6 || r.VIP4 != n.id.VIP4 {
		n.log.Warn("AS named other VIPs than our certificate's; using the certificate's",
			"as_vip6", r.VIP6, "as_vip4", r.VIP4, "vip6", n.id.VIP6, "vip4", n.id.VIP4)
		r.VIP6, r.VIP4 = n.id.VIP6, n.id.VIP4
	}
	n.overlay.Store(&overlayAddrs{prefix6: r.Prefix6, prefix4: r.Prefix4, vip6: r.VIP6, vip4: r.VIP4})
	for {
		select {
		case n.logins <- r:
			return
		default:
		}
		select {
		case <-n.logins:
		default:
		}
	}
}

// configureTUN assigns the VIPs and overlay routes to the device after each
// login that changes them. It runs on its own goroutine: netlink calls are
// syscalls an actor should not wait on.
func (n *Node) configureTUN(ctx context.Context, name string) {
	defer n.wg.Done()
	var last messages.LoginReply
	registered := false
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-n.logins:
			if r.VIP6 == last.VIP6 && r.VIP4 == last.VIP4 && r.Prefix6 == last.Prefix6 && r.Prefix4 == last.Prefix4 {
				continue
			}
			if err := tun.Configure(name, r.VIP6, r.Prefix6, r.VIP4, r.Prefix4, n.cfg.MTU); err != nil {
				n.log.Error("configure TUN", "dev", name, "err", err)
				continue
			}
			last = r
			n.log.Info("TUN configured", "dev", name, "vip6", r.VIP6, "vip4", r.VIP4)
			if !registered {
				// Once the link is up with its addresses: resolved keeps
				// per-link DNS only for links it knows.
				n.registerSplitDNS(ctx, name, r.Prefix4, r.Prefix6)
				registered = true
			}
		}
	}
}

// nodeBackend is the resolver's backend: names through resolve, VIPs
// through reverse.
type nodeBackend struct{ n *Node }

func (b nodeBackend) Resolve(ctx context.Context, fqdn string) (resolver.Answer, error) {
	return b.n.resolve(ctx, fqdn)
}

func (b nodeBackend) Reverse(ctx context.Context, a netip.Addr) (string, error) {
	return b.n.reverse(ctx, a)
}

// reverse names the holder of an overlay address: ourselves, a peer we
// have a tunnel with (its certificate binds the VIP), or else whoever NMS
// says holds it (a VIPLookup: nothing is set up), within the data plane's
// lookup budget and its memory of addresses nobody holds. An overlay
// address nobody holds is unknown; anything else is not ours to answer.
func (n *Node) reverse(ctx context.Context, a netip.Addr) (string, error) {
	a = a.Unmap()
	o := n.overlay.Load()
	switch {
	case o == nil:
		return "", resolver.ErrNotOverlay // no login yet: the prefixes are unknown
	case a == o.vip6 || a == o.vip4:
		return n.id.FQDN, nil
	case !(o.prefix6.IsValid() && o.prefix6.Contains(a)) && !(o.prefix4.IsValid() && o.prefix4.Contains(a)):
		return "", resolver.ErrNotOverlay
	}
	for _, p := range n.dp.Status() {
		if p.VIP6 == a || p.VIP4 == a {
			return p.FQDN, nil
		}
	}
	if err := n.dp.AskVIP(a); errors.Is(err, dataplane.ErrUnknownVIP) {
		return "", resolver.ErrUnknownName
	} else if err != nil {
		return "", fmt.Errorf("node: who holds %s: %w", a, err)
	}
	fqdn, err := n.sess.LookupVIP(ctx, a)
	switch {
	case errors.Is(err, session.ErrUnknownPeer):
		n.dp.LookupFailed(a, true) // remembered: packets and PTRs for a are refused a while
		return "", resolver.ErrUnknownName
	case err != nil:
		return "", fmt.Errorf("node: who holds %s: %w", a, err)
	}
	return fqdn, nil
}

// resolve is the resolver's backend: a tunnel already up answers at once;
// otherwise ask NMS through the session and hold the answer until the
// tunnel is up.
func (n *Node) resolve(ctx context.Context, fqdn string) (resolver.Answer, error) {
	for _, p := range n.dp.Status() {
		if p.FQDN == fqdn && p.State == dataplane.StateUp {
			return resolver.Answer{VIP6: p.VIP6, VIP4: p.VIP4}, nil
		}
	}
	path, err := n.sess.RequestTunnel(ctx, fqdn)
	if errors.Is(err, session.ErrUnknownPeer) {
		return resolver.Answer{}, fmt.Errorf("%w: %w", resolver.ErrUnknownName, err)
	}
	if err != nil {
		return resolver.Answer{}, err
	}
	if err := n.dp.WaitUp(ctx, fqdn); err != nil {
		return resolver.Answer{}, fmt.Errorf("node: tunnel to %s: %w", fqdn, err)
	}
	return resolver.Answer{VIP6: path.PeerVIP6, VIP4: path.PeerVIP4}, nil
}

// watchExpiry warns, now or when the time comes, that the certificate
// expires soon, and says at ERROR when it has expired: a node runs for
// months, and peers and the cloud refuse an expired certificate.
func (n *Node) watchExpiry() {
	c := n.id.Cert
	warnAt := c.NotAfter.Add(-expiryWarning(c))
	attrs := []any{"cert", n.cfg.CertDir, "serial", pki.FormatSerial(c.SerialNumber), "not_after", c.NotAfter.UTC()}
	var next func()
	arm := func(at time.Time, f func()) {
		n.expiryMu.Lock()
		defer n.expiryMu.Unlock()
		if !n.expiryClosed {
			n.expiryTimer = time.AfterFunc(time.Until(at), f)
		}
	}
	expired := func() {
		n.log.Error("the node's certificate has expired: the cloud and peers refuse it; issue a new one and restart", attrs...)
	}
	next = func() {
		left := time.Until(c.NotAfter)
		n.log.Warn("the node's certificate expires soon: issue a new one", append(attrs, "left", left.Round(time.Second))...)
		arm(c.NotAfter, expired)
	}
	if time.Now().After(warnAt) {
		next()
		return
	}
	arm(warnAt, next)
}

func (n *Node) stopExpiry() {
	n.expiryMu.Lock()
	defer n.expiryMu.Unlock()
	n.expiryClosed = true
	if n.expiryTimer != nil {
		n.expiryTimer.Stop()
	}
}

// FQDN is the node's name.
func (n *Node) FQDN() string { return n.id.FQDN }

// Session is the cloud session's handle.
func (n *Node) Session() *session.Session { return n.sess }

// Dataplane is the node's data plane.
func (n *Node) Dataplane() *dataplane.Dataplane { return n.dp }

// System is the node's actor system.
func (n *Node) System() *supervise.System { return n.sys }

// DNSAddr is the resolver's address, or nil when it is off.
func (n *Node) DNSAddr() net.Addr {
	if n.dns == nil {
		return nil
	}
	return n.dns.Addr()
}

// DebugAddr is the debug server's address, or nil when it is off.
func (n *Node) DebugAddr() net.Addr { return n.debugAt }

// Status is a snapshot of the node.
func (n *Node) Status() Status {
	st := Status{Session: n.sess.Status(), Peers: n.dp.Status(), Drops: n.dp.Drops(), Hold: n.dp.HoldStats(),
		GoMaxProcs: runtime.GOMAXPROCS(0)}
	if n.dns != nil {
		rs := n.dns.Stats()
		st.Resolver = &rs
		if a := n.dns.Addr(); a != nil {
			st.DNS = a.String()
		}
	}
	return st
}

// Stop logs out, stops every actor, closes the device and the sockets, and
// waits for the goroutines (or ctx). Calling it again returns the first
// result.
func (n *Node) Stop(ctx context.Context) error {
	n.stopOnce.Do(func() { n.stopErr = n.stop(ctx) })
	return n.stopErr
}

func (n *Node) stop(ctx context.Context) error {
	var errs []error
	if n.debug != nil {
		if err := n.debug.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	// The session first, while the data plane can still carry its logout.
	if pid := n.sessionPID(); pid != nil {
		n.sys.Root().Stop(pid)
		if err := n.sys.Registry().WaitGone(ctx, pid.Id); err != nil {
			errs = append(errs, fmt.Errorf("stop session: %w", err))
		}
	}
	if err := n.dp.Stop(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := n.sys.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	if n.dns != nil {
		if err := n.dns.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	n.stopExpiry()
	n.cancel()
	n.wg.Wait()
	n.sess.Close()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("node: stop: %w", err)
	}
	n.log.Info("node stopped")
	return nil
}

func (n *Node) sessionPID() *actor.PID {
	if n.rootPID == nil {
		return nil
	}
	return n.sys.Actors().NewLocalPID(n.rootPID.Id + "/session")
}
