package cloudcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"syscall"

	"github.com/cyphonic/cyphonic-go/cmd/internal/cli"

	berrors "go.etcd.io/bbolt/errors"

	"github.com/cyphonic/cyphonic-go/cloud/server"
)

// runCloud runs the cloud services until ctx ends.
func runCloud(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		if _, ok := cloudAdminCommands[args[0]]; ok {
			return runCloudAdmin(ctx, args[0], args[1:], stdout, stderr)
		}
	}
	fs := cli.NewFlagSet("cloud", stderr)
	o := cli.NewOptions(fs, "cloud")
	data := fs.String("data", server.DefaultDataDir(), "data directory: CA certificate, service certificates, bbolt store (no CA key; a first start creates the CA in <data>-ca)")
	storeURL := fs.String("store", "", "registry: a bbolt path or redis://host:port/db (default: bbolt in --data)")
	services := fs.String("services", "as,nms,trs", "services to run here (comma-separated: as, nms, trs)")
	listen := fs.String("listen", "127.0.0.1,::1", "IP addresses the UDP services bind (comma-separated)")
	nmsPort := fs.Int("nms-port", server.DefaultNMSPort, "NMS signaling UDP port")
	asPort := fs.Int("as-port", server.DefaultASPort, "AS login UDP port")
	altPort := fs.Int("alt-port", server.DefaultAltPort, "NMS second observation point (NAT probes) UDP port")
	trsPort := fs.Int("trs-port", server.DefaultTRSPort, "TRS relay UDP port")
	remoteAddr := fs.String("remote", fmt.Sprintf("127.0.0.1:%d", server.DefaultRemotePort), "gateway address (protoactor remote, gRPC) host:port, used when a service runs in another process or the store is Redis")
	adminSocket := fs.String("admin-socket", "", "the operator's socket for 'cyphonic cloud nodes|node|end-session' (default: admin.sock in --data; 'off' disables it)")
	debugAddr := fs.String("debug-addr", server.DefaultDebugAddr, "debug endpoint (/debug/actors, /metrics, /debug/pprof); 'off' disables it")
	nmsRemote := fs.String("nms-remote", "", "gateway address of the NMS's process when it does not run here")
	trsRemote := fs.String("trs-remote", "", "gateway address of the TRS's process when it does not run here")
	nmsAddrs := fs.String("nms-addrs", "", "NMS UDP addresses to tell nodes when NMS does not run here")
	probeAddrs := fs.String("probe-addrs", "", "NAT probe UDP addresses to tell nodes when NMS does not run here")
	trsAddrs := fs.String("trs-addrs", "", "TRS UDP addresses for relay tickets when TRS does not run here")
	sessionIdle := fs.Duration("session-idle", 0, "drop a node's session not refreshed for this long (default 3m)")
	relayIdle := fs.Duration("relay-idle", 0, "drop a relay session with no authenticated bind for this long (default 2m)")
	relayMax := fs.Int("relay-max-sessions", 0, "relay sessions the TRS holds at most (a session exists once a node has bound its ticket; default 65536)")
	relayPerNode := fs.Int("relay-max-per-node", 0, "relay sessions one node may hold bound at the TRS (default relay-max-sessions/64)")
	signalWorkers := fs.Int("signal-workers", 0, "worker actors NMS (sealed packets, by session) and AS (login DH) each run (default: one per CPU, GOMAXPROCS)")
	lookupRate := fs.Float64("session-lookup-rate", 0, "store lookups a second NMS makes for packets of sessions it does not hold, before they are authenticated (nodes moving here from another process, or after a restart; default 5000)")
	verbose := fs.Bool("v", false, "log every login and transaction")
	if err := o.Parse(args); err != nil {
		return err
	}
	dbg, err := cli.Switchable("debug-addr", *debugAddr)
	if err != nil {
		return o.Relabel("debug-addr", err)
	}
	// Ports: flag.Int takes any int, and the services' uint16 conversion
	// would turn 99999 into 34463 without a word.
	for _, p := range []struct {
		name string
		v    int
	}{{"nms-port", *nmsPort}, {"as-port", *asPort}, {"alt-port", *altPort}, {"trs-port", *trsPort}} {
		if p.v < 0 || p.v > 65535 {
			return o.UsageErr(p.name, "port %d outside 0..65535", p.v)
		}
	}
	if dbg != "" {
		if err := cli.CheckHostPort(dbg, true); err != nil {
			return o.UsageErr("debug-addr", "%q: %v (want host:port, such as 127.0.0.1:7480)", dbg, err)
		}
	}
	cfg := server.Config{
		DataDir: *data, StoreURL: *storeURL, Services: splitList(*services),
		NMSPort: *nmsPort, ASPort: *asPort, AltPort: *altPort, TRSPort: *trsPort,
		DebugAddr: dbg, NMSRemote: *nmsRemote, TRSRemote: *trsRemote,
		SessionIdle: *sessionIdle, RelayIdle: *relayIdle, AdminSocket: *adminSocket,
		Version: cli.FullVersion(),
	}
	if *sessionIdle < 0 {
		return o.UsageErr("session-idle", "negative duration")
	}
	if *relayIdle < 0 {
		return o.UsageErr("relay-idle", "negative duration")
	}
	if *signalWorkers < 0 {
		return o.UsageErr("signal-workers", "negative count")
	}
	cfg.SignalWorkers = *signalWorkers
	if *relayMax < 0 {
		return o.UsageErr("relay-max-sessions", "negative count")
	}
	if *relayPerNode < 0 {
		return o.UsageErr("relay-max-per-node", "negative count")
	}
	cfg.RelayMaxSessions, cfg.RelayMaxPerNode = *relayMax, *relayPerNode
	if *lookupRate < 0 {
		return o.UsageErr("session-lookup-rate", "negative rate")
	}
	cfg.NMSTuning.LookupRate = *lookupRate
	if len(cfg.Services) == 0 {
		return o.UsageErr("services", "none given (want some of as, nms, trs)")
	}
	for _, svc := range cfg.Services {
		if svc != "as" && svc != "nms" && svc != "trs" {
			return o.UsageErr("services", "unknown service %q (want as, nms, trs)", svc)
		}
	}
	for _, a := range splitList(*listen) {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return o.UsageErr("listen", "%q is not an IP address (the services bind each given address, e.g. 0.0.0.0,:: for all)", a)
		}
		cfg.Listen = append(cfg.Listen, ip)
	}
	if len(cfg.Listen) == 0 {
		return o.UsageErr("listen", "no address given")
	}
	host, port, err := splitHostPort(*remoteAddr)
	if err != nil {
		return o.UsageErr("remote", "%q: want an IP address and port, such as 127.0.0.1:%d", *remoteAddr, server.DefaultRemotePort)
	}
	cfg.RemoteHost, cfg.RemotePort = host, port
	for _, l := range []struct {
		name string
		v    string
		dst  *[]netip.AddrPort
	}{{"nms-addrs", *nmsAddrs, &cfg.NMSAddrs}, {"probe-addrs", *probeAddrs, &cfg.ProbeAddrs}, {"trs-addrs", *trsAddrs, &cfg.TRSAddrs}} {
		for _, a := range splitList(l.v) {
			ap, err := netip.ParseAddrPort(a)
			if err != nil {
				return o.UsageErr(l.name, "%q: want an IP address and port", a)
			}
			*l.dst = append(*l.dst, ap)
		}
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	if cfg.Logger, err = o.Logger(stderr, level); err != nil {
		return err
	}
	if o.CheckConfig() {
		// The cloud's local files are checked as it starts them (the data
		// directory may not exist yet: a first start makes it).
		return o.WriteConfig(stdout)
	}

	s, err := server.Start(ctx, cfg)
	if err != nil {
		return cloudErr(o, cfg, *data, err)
	}
	var names []string
	for _, sys := range s.Systems() {
		names = append(names, sys.Name())
	}
	fmt.Fprintf(stdout, "cyphonic cloud: data in %s, actor systems %s\n", *data, strings.Join(names, ", "))
	if s.Remote != "" {
		fmt.Fprintf(stdout, "  gateway (remote)  grpc %s\n", s.Remote)
	}
	if s.AS != nil {
		fmt.Fprintf(stdout, "  AS   (login)      udp %s\n", joinAddrs(s.AS.Addrs()))
	}
	if s.NMS != nil {
		fmt.Fprintf(stdout, "  NMS  (signaling)  udp %s\n", joinAddrs(s.NMS.Addrs()))
		fmt.Fprintf(stdout, "  NMS  (NAT probe)  udp %s\n", joinAddrs(s.NMS.AltAddrs()))
	}
	if s.TRS != nil {
		fmt.Fprintf(stdout, "  TRS  (relay)      udp %s\n", joinAddrs(s.TRS.Addrs()))
	}
	if a := s.AdminSocket(); a != "" {
		fmt.Fprintf(stdout, "  admin             %s (cyphonic cloud nodes --data %s)\n", a, *data)
	}
	if a := s.DebugAddr(); a != nil {
		fmt.Fprintf(stdout, "  debug             http://%s/debug/actors  http://%s/metrics\n", a, a)
	}
	caDir := "CA_DIR"
	if s.CreatedCA != "" {
		caDir = s.CreatedCA
		fmt.Fprintf(stdout, "  new overlay CA     %s (its key is not in %s: keep it offline, e.g. move it away)\n", caDir, *data)
	}
	fmt.Fprintf(stdout, "Issue a node certificate with:\n  cyphonic ca issue --dir %s --fqdn alice.example.cyphonic\n", caDir)
	<-ctx.Done()
	fmt.Fprintln(stdout, "cyphonic cloud: shutting down")
	return s.Close(context.Background())
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func splitHostPort(s string) (string, int, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return "", 0, err
	}
	return ap.Addr().String(), int(ap.Port()), nil
}

func joinAddrs(as []netip.AddrPort) string {
	var parts []string
	for _, a := range as {
		parts = append(parts, a.String())
	}
	return strings.Join(parts, " ")
}

// cloudErr names the option behind a start error the operator can fix by
// changing one: a port or address another process holds, a data directory
// another cloud has open.
func cloudErr(o *cli.Options, cfg server.Config, data string, err error) error {
	if errors.Is(err, berrors.ErrTimeout) {
		return fmt.Errorf("%w: another cloud process has the store in %s open: stop it, or give this one another %s (or a shared --store redis://...)",
			err, data, o.Label("data"))
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Addr == nil || !errors.Is(err, syscall.EADDRINUSE) && !errors.Is(err, syscall.EADDRNOTAVAIL) {
		return err
	}
	ap, perr := netip.ParseAddrPort(op.Addr.String())
	if perr != nil {
		return err
	}
	option := "listen"
	if errors.Is(err, syscall.EADDRINUSE) {
		option = ""
		for _, p := range []struct {
			name string
			port int
		}{{"as-port", cfg.ASPort}, {"nms-port", cfg.NMSPort}, {"alt-port", cfg.AltPort}, {"trs-port", cfg.TRSPort}, {"remote", cfg.RemotePort}} {
			if int(ap.Port()) == p.port {
				option = p.name
				break
			}
		}
		if option == "" && cfg.DebugAddr != "" && strings.HasSuffix(cfg.DebugAddr, fmt.Sprintf(":%d", ap.Port())) {
			option = "debug-addr"
		}
		if option == "" {
			return err
		}
		return fmt.Errorf("%w: %s is in use (another cloud on this host?): choose another with %s", err, ap, o.Label(option))
	}
	return fmt.Errorf("%w: %s is not an address of this host: fix %s", err, ap.Addr(), o.Label(option))
}
