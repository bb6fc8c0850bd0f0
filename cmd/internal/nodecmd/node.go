package nodecmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/cyphonic/cyphonic-go/cmd/internal/cli"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/actors/dataplane/fallback"
	"github.com/cyphonic/cyphonic-go/actors/node"
	"github.com/cyphonic/cyphonic-go/actors/resolver"
	"github.com/cyphonic/cyphonic-go/tun"
)

// defaultNodeDebugAddr is where `cyphonic node` serves its debug endpoint
// and where `cyphonic status` looks for it (the cloud's default is 7480).
const defaultNodeDebugAddr = node.DefaultDebugAddr

func runNode(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("node", stderr)
	o := cli.NewOptions(fs, "node")
	var cfg node.Config
	fs.StringVar(&cfg.Cloud, "cloud", "", "the cloud's AS address, host:port (required); several, comma-separated (or a name with several records): cloud processes sharing one store, the node fails over among them")
	fs.StringVar(&cfg.CertDir, "cert", "", "the node's identity directory from 'cyphonic ca issue' (required)")
	fs.StringVar(&cfg.CAFile, "ca", "", "the overlay's root CA certificate (default: ca.crt in --cert)")
	fs.StringVar(&cfg.DNS, "dns", resolver.DefaultAddr, "resolver address for overlay names (UDP and TCP); 'off' disables it")
	fs.StringVar(&cfg.Upstream, "upstream", "", "resolver for other names, host:port (default: the first nameserver in /etc/resolv.conf); 'off' refuses them")
	fs.StringVar(&cfg.Domain, "domain", resolver.DefaultDomain, "the overlay domain")
	fs.StringVar(&cfg.SplitDNS, "split-dns", node.SplitDNSAuto, "register the resolver with systemd-resolved for the overlay domain on the TUN link: auto (when resolved runs and the node is in the host's network namespace), on or off")
	fs.StringVar(&cfg.DebugAddr, "debug-addr", defaultNodeDebugAddr, "debug endpoint: /debug/actors, /debug/status, /metrics, /debug/pprof; 'off' disables it")
	fs.StringVar(&cfg.TUN, "tun", node.DefaultTUN, "TUN device name")
	fs.IntVar(&cfg.MTU, "mtu", node.DefaultMTU, "TUN device MTU")
	backend := fs.String("tun-backend", string(tun.DefaultBackend), `TUN backend: "offload-raw" (TSO/GRO, its reads and its writes without GRO as raw syscalls), "offload" (TSO/GRO through wireguard-go's tun for every read and write) or "water" (one packet per syscall)`)
	fs.IntVar(&cfg.TUNQueues, "tun-queues", 0, fmt.Sprintf("TUN queues, 1..%d (0: %d with the offload backends where the node may steer the host's packets (CAP_BPF), else 1): with 2 or more a reader and a writer per queue, the last queue only for ICMP, so an idle peer's ping skips the bulk writes (offload backends only)", dataplane.MaxTUNQueues, node.DefaultTUNQueues))
	fs.StringVar(&cfg.Listen4, "listen4", node.DefaultListen4, "IPv4 UDP socket address; 'off' disables IPv4")
	fs.StringVar(&cfg.Listen6, "listen6", node.DefaultListen6, "IPv6 UDP socket address; 'off' disables IPv6")
	fs.DurationVar(&cfg.Keepalive, "keepalive", 0, "cloud keepalive period, also how soon an address change is noticed (0: 15s)")
	// Tunnel timers: the defaults suit real networks; tests and demos
	// shorten them so supervision and path changes show within seconds.
	peerKeepalive := fs.Duration("peer-keepalive", 0, "send a tunnel keepalive after this much send silence (0: 10s)")
	peerDeadAfter := fs.Duration("peer-dead-after", 0, "restart a tunnel after this much receive silence (0: 35s)")
	var timers connTimers
	fs.DurationVar(&timers.fallbackAfter, "fallback-after", 0, fmt.Sprintf("try a direct or punched path alone this long before also trying the relay (0: %v; %v..%v)", fallback.DefaultAfter, minFallbackAfter, maxFallbackAfter))
	fs.DurationVar(&timers.passive, "peer-passive-keepalive", 0, fmt.Sprintf("answer a peer that sends with a keepalive once our last send is this old (0: %v; %v..%v)", dataplane.DefaultPassiveKeepalive, minPassiveKeepalive, maxPassiveKeepalive))
	fs.DurationVar(&timers.silence, "peer-silence-after", 0, fmt.Sprintf("set up a new session beside a tunnel that sent this long with nothing back: the peer may have restarted (0: %v; over twice --peer-passive-keepalive, under --peer-dead-after)", dataplane.DefaultSilenceAfter))
	verbose := fs.Bool("v", false, "log debug messages")
	memLimit := fs.String("memory-limit", defaultNodeMemoryLimit, "soft limit of the daemon's Go memory (heap, stacks, runtime), as GOMEMLIMIT: the GC works harder near it; 'off' disables it (default: GOMEMLIMIT if set, else "+defaultNodeMemoryLimit+")")
	gomaxprocs := fs.String("gomaxprocs", defaultNodeProcs, "Go Ps (GOMAXPROCS): auto (one P while the node uses under half a CPU, all of them when it needs more), a count, or Nx for N times the CPUs (2x lets the data path's readers run as soon as a packet wakes them on a busy machine) (default: GOMAXPROCS if set, else "+defaultNodeProcs+")")
	if err := o.Parse(args); err != nil {
		return err
	}
	applyProcs, workers, err := nodeProcs(o, *gomaxprocs)
	if err != nil {
		return err
	}
	b, err := tun.ParseBackend(*backend)
	if err != nil {
		return o.UsageErr("tun-backend", "%v", err)
	}
	setLimit, err := nodeMemoryLimit(o, *memLimit)
	if err != nil {
		return err
	}
	cfg.TUNBackend = b
	switch {
	case cfg.TUNQueues < 0 || cfg.TUNQueues > dataplane.MaxTUNQueues:
		return o.UsageErr("tun-queues", "%d is out of range: want 1..%d (or 0 for the default)", cfg.TUNQueues, dataplane.MaxTUNQueues)
	case cfg.TUNQueues > 1 && b == tun.BackendWater:
		return o.UsageErr("tun-queues", "%d queues need --tun-backend %s or %s (the %s backend opens one queue)", cfg.TUNQueues, tun.BackendOffloadRaw, tun.BackendOffload, b)
	}
	switch cfg.SplitDNS {
	case node.SplitDNSAuto, node.SplitDNSOn, node.SplitDNSOff:
	default:
		return o.UsageErr("split-dns", "%q: want auto, on or off", cfg.SplitDNS)
	}
	for _, f := range []struct {
		name string
		v    *string
		off  string // how node.Config spells disabled
	}{
		{"dns", &cfg.DNS, node.Off}, {"debug-addr", &cfg.DebugAddr, node.Off},
		{"listen4", &cfg.Listen4, ""}, {"listen6", &cfg.Listen6, ""},
	} {
		v, err := cli.Switchable(f.name, *f.v)
		if err != nil {
			return o.Relabel(f.name, err)
		}
		if v == "" {
			v = f.off
		}
		*f.v = v
	}
	if cfg.Upstream == cli.Off {
		cfg.Upstream = node.Off
	}
	for _, d := range []struct {
		name string
		v    int64
	}{{"keepalive", int64(cfg.Keepalive)}, {"peer-keepalive", int64(*peerKeepalive)}, {"peer-dead-after", int64(*peerDeadAfter)}} {
		if d.v < 0 {
			return o.UsageErr(d.name, "negative duration")
		}
	}
	timers.deadAfter = *peerDeadAfter
	if err := timers.check(o); err != nil {
		return err
	}
	if *peerKeepalive > 0 || *peerDeadAfter > 0 || timers != (connTimers{deadAfter: *peerDeadAfter}) || workers > 0 {
		cfg.TuneDataplane = func(c *dataplane.Config) {
			if workers > 0 {
				c.Workers = workers
			}
			if *peerKeepalive > 0 {
				c.Keepalive = *peerKeepalive
			}
			if *peerDeadAfter > 0 {
				c.DeadAfter = *peerDeadAfter
			}
			for _, d := range []struct{ dst, v *time.Duration }{
				{&c.FallbackAfter, &timers.fallbackAfter}, {&c.PassiveKeepalive, &timers.passive}, {&c.SilenceAfter, &timers.silence},
			} {
				if *d.v > 0 {
					*d.dst = *d.v
				}
			}
		}
	}
	switch {
	case cfg.Cloud == "":
		return fmt.Errorf("%w: --cloud is required", cli.ErrUsage)
	case cfg.CertDir == "":
		return fmt.Errorf("%w: --cert is required", cli.ErrUsage)
	case cfg.Listen4 == "" && cfg.Listen6 == "":
		return fmt.Errorf("%w: --listen4 and --listen6 are both off: the node needs a UDP socket", cli.ErrUsage)
	}
	if err := checkNodeAddrs(o, cfg); err != nil {
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	if cfg.Logger, err = o.Logger(stderr, level); err != nil {
		return err
	}
	cfg.Version = cli.FullVersion()
	if o.CheckConfig() {
		id, err := node.Check(ctx, cfg)
		if err != nil {
			return nodeErr(o, err)
		}
		if err := o.WriteConfig(stdout); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "# ok: %s, certificate serial %x valid until %s\n", id.FQDN, id.Cert.SerialNumber, id.Cert.NotAfter.UTC().Format("2006-01-02T15:04:05Z"))
		return nil
	}
	if applyProcs != nil {
		defer applyProcs(cfg.Logger)()
	}
	if setLimit != nil {
		setLimit()
	}
	return nodeErr(o, node.Run(ctx, cfg))
}

// Bounds of the connectivity timers: below them a node floods its peers or
// the relay with handshakes and keepalives, above them a broken path
// strands a tunnel for longer than anyone waits.
const (
	minFallbackAfter    = 100 * time.Millisecond
	maxFallbackAfter    = time.Minute
	minPassiveKeepalive = 50 * time.Millisecond
	maxPassiveKeepalive = 10 * time.Second
)

// connTimers are the tunnel timers of --fallback-after,
// --peer-passive-keepalive and --peer-silence-after (0: the data plane's
// default), and --peer-dead-after, which the silence timer must undercut.
type connTimers struct {
	fallbackAfter, passive, silence, deadAfter time.Duration
}

// check refuses values the data plane would misbehave with, naming the
// flag (or config key).
func (c connTimers) check(o *cli.Options) error {
	for _, d := range []struct {
		name     string
		v        time.Duration
		min, max time.Duration
	}{
		{"fallback-after", c.fallbackAfter, minFallbackAfter, maxFallbackAfter},
		{"peer-passive-keepalive", c.passive, minPassiveKeepalive, maxPassiveKeepalive},
		{"peer-silence-after", c.silence, 0, 0},
	} {
		switch {
		case d.v < 0:
			return o.UsageErr(d.name, "negative duration")
		case d.v > 0 && d.max > 0 && (d.v < d.min || d.v > d.max):
			return o.UsageErr(d.name, "%v is out of range: want %v..%v (or 0 for the default)", d.v, d.min, d.max)
		}
	}
	passive, silence, dead := orDefault(c.passive, dataplane.DefaultPassiveKeepalive),
		orDefault(c.silence, dataplane.DefaultSilenceAfter), orDefault(c.deadAfter, dataplane.DefaultDeadAfter)
	switch {
	case silence <= 2*passive:
		// A peer that only receives answers every passive interval: a
		// shorter silence would take every such tunnel for a restarted peer.
		return o.UsageErr("peer-silence-after", "%v must be more than twice --peer-passive-keepalive (%v): a healthy peer's keepalives would count as silence", silence, passive)
	case silence >= dead:
		return o.UsageErr("peer-silence-after", "%v must be less than --peer-dead-after (%v): the tunnel would be restarted before a new session is tried", silence, dead)
	}
	return nil
}

func orDefault(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

// nodeErr names the option behind a node's start error as the operator
// gave it; config errors are usage errors.
func nodeErr(o *cli.Options, err error) error {
	var oe *node.OptionError
	if errors.As(err, &oe) {
		err = o.Relabel(oe.Option, err)
	}
	if errors.Is(err, node.ErrConfig) {
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	return err
}

// checkNodeAddrs checks the node's addresses before anything opens, so a
// malformed one is refused at once, naming its option.
func checkNodeAddrs(o *cli.Options, cfg node.Config) error {
	for _, c := range strings.Split(cfg.Cloud, ",") {
		c = strings.TrimSpace(c)
		if err := cli.CheckHostPort(c, false); err != nil {
			return o.UsageErr("cloud", "%q: %v (want host:port, such as 192.0.2.1:7401, or several, comma-separated)", c, err)
		}
	}
	for _, a := range []struct {
		name, v string
		family  int // 4, 6 or 0 for either
	}{{"listen4", cfg.Listen4, 4}, {"listen6", cfg.Listen6, 6}, {"dns", cfg.DNS, 0}, {"debug-addr", cfg.DebugAddr, 0}} {
		if a.v == "" || a.v == node.Off {
			continue
		}
		ap, err := netip.ParseAddrPort(a.v)
		switch {
		case err != nil:
			return o.UsageErr(a.name, "%q: want an IP address and port, such as %s", a.v, example(a.family))
		case a.family == 4 && !ap.Addr().Is4():
			return o.UsageErr(a.name, "%q is not an IPv4 address and port, such as %s", a.v, example(4))
		case a.family == 6 && (!ap.Addr().Is6() || ap.Addr().Is4In6()):
			return o.UsageErr(a.name, "%q is not an IPv6 address and port, such as %s", a.v, example(6))
		}
	}
	if cfg.Upstream != "" && cfg.Upstream != node.Off {
		if err := cli.CheckHostPort(cfg.Upstream, false); err != nil {
			return o.UsageErr("upstream", "%q: %v (want host:port, such as 192.0.2.53:53)", cfg.Upstream, err)
		}
	}
	return nil
}

func example(family int) string {
	switch family {
	case 4:
		return "0.0.0.0:7400"
	case 6:
		return "[::]:7400"
	}
	return "127.0.0.1:5353"
}
