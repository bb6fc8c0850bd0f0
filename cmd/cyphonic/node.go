package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/actors/node"
	"github.com/cyphonic/cyphonic-go/actors/resolver"
	"github.com/cyphonic/cyphonic-go/tun"
)

// defaultNodeDebugAddr is where `cyphonic node` serves its debug endpoint
// and where `cyphonic status` looks for it (the cloud's default is 7480).
const defaultNodeDebugAddr = node.DefaultDebugAddr

func runNode(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("node", stderr)
	var cfg node.Config
	fs.StringVar(&cfg.Cloud, "cloud", "", "the cloud's AS address, host:port (required)")
	fs.StringVar(&cfg.CertDir, "cert", "", "the node's identity directory from 'cyphonic ca issue' (required)")
	fs.StringVar(&cfg.CAFile, "ca", "", "the overlay's root CA certificate (default: ca.crt in --cert)")
	fs.StringVar(&cfg.DNS, "dns", resolver.DefaultAddr, "resolver address for overlay names (UDP and TCP); 'off' disables it")
	fs.StringVar(&cfg.Upstream, "upstream", "", "resolver for other names, host:port (default: the first nameserver in /etc/resolv.conf); 'off' refuses them")
	fs.StringVar(&cfg.Domain, "domain", resolver.DefaultDomain, "the overlay domain")
	fs.StringVar(&cfg.DebugAddr, "debug-addr", defaultNodeDebugAddr, "debug endpoint: /debug/actors, /debug/status, /metrics, /debug/pprof; 'off' disables it")
	fs.StringVar(&cfg.TUN, "tun", node.DefaultTUN, "TUN device name")
	fs.IntVar(&cfg.MTU, "mtu", node.DefaultMTU, "TUN device MTU")
	fs.Func("tun-backend", `TUN backend: "offload" (TSO/GRO, wireguard-go's tun) or "water" (one packet per syscall) (default "offload")`, func(s string) error {
		b, err := tun.ParseBackend(s)
		cfg.TUNBackend = b
		return err
	})
	fs.StringVar(&cfg.Listen4, "listen4", node.DefaultListen4, "IPv4 UDP socket address; 'off' disables IPv4")
	fs.StringVar(&cfg.Listen6, "listen6", node.DefaultListen6, "IPv6 UDP socket address; 'off' disables IPv6")
	fs.DurationVar(&cfg.Keepalive, "keepalive", 0, "cloud keepalive period, also how soon an address change is noticed (default 15s)")
	// Tunnel timers: the defaults suit real networks; tests and demos
	// shorten them so supervision and path changes show within seconds.
	peerKeepalive := fs.Duration("peer-keepalive", 0, "send a tunnel keepalive after this much send silence (default 10s)")
	peerDeadAfter := fs.Duration("peer-dead-after", 0, "restart a tunnel after this much receive silence (default 35s)")
	verbose := fs.Bool("v", false, "log debug messages")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		v    *string
		off  string // how node.Config spells disabled
	}{
		{"dns", &cfg.DNS, node.Off}, {"debug-addr", &cfg.DebugAddr, node.Off},
		{"listen4", &cfg.Listen4, ""}, {"listen6", &cfg.Listen6, ""},
	} {
		v, err := switchable(f.name, *f.v)
		if err != nil {
			return err
		}
		if v == "" {
			v = f.off
		}
		*f.v = v
	}
	if cfg.Upstream == off {
		cfg.Upstream = node.Off
	}
	if *peerKeepalive < 0 || *peerDeadAfter < 0 || cfg.Keepalive < 0 {
		return fmt.Errorf("%w: negative duration", errUsage)
	}
	if *peerKeepalive > 0 || *peerDeadAfter > 0 {
		cfg.TuneDataplane = func(c *dataplane.Config) {
			if *peerKeepalive > 0 {
				c.Keepalive = *peerKeepalive
			}
			if *peerDeadAfter > 0 {
				c.DeadAfter = *peerDeadAfter
			}
		}
	}
	switch {
	case cfg.Cloud == "":
		return fmt.Errorf("%w: --cloud is required", errUsage)
	case cfg.CertDir == "":
		return fmt.Errorf("%w: --cert is required", errUsage)
	case cfg.Listen4 == "" && cfg.Listen6 == "":
		return fmt.Errorf("%w: --listen4 and --listen6 are both off: the node needs a UDP socket", errUsage)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	err := node.Run(ctx, cfg)
	if errors.Is(err, node.ErrConfig) {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return err
}
