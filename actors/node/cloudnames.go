package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Resolver looks host names up: net.DefaultResolver, or a test's.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

const (
	// DefaultResolveEvery is how often a node looks its --cloud names up
	// again: an active-active cloud behind one name may gain or lose
	// processes (records) while the node runs.
	DefaultResolveEvery = 5 * time.Minute
	// resolveGap is the least time between two lookups a failover asks
	// for: a session failing over again and again does not become a
	// stream of DNS queries.
	resolveGap = 10 * time.Second
	// resolveTimeout bounds one round of lookups.
	resolveTimeout = 10 * time.Second
)

// cloudNames is the Cloud option, host:port[,host:port...], parsed: each
// entry a literal address or a name with the addresses it last resolved
// to.
type cloudNames struct {
	entries []cloudEntry
}

type cloudEntry struct {
	spec  string // as given, for errors
	host  string // "" for a literal address
	port  uint16
	addrs []netip.AddrPort // the literal, or the name's last good answer
}

// parseCloud checks the Cloud option's syntax; names are not looked up.
func parseCloud(hostports string) (*cloudNames, error) {
	c := &cloudNames{}
	for _, hostport := range strings.Split(hostports, ",") {
		hostport = strings.TrimSpace(hostport)
		if hostport == "" {
			continue
		}
		if ap, err := netip.ParseAddrPort(hostport); err == nil {
			c.entries = append(c.entries, cloudEntry{spec: hostport, addrs: []netip.AddrPort{netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}})
			continue
		}
		host, port, err := net.SplitHostPort(hostport)
		if err != nil {
			return nil, fmt.Errorf("%w: cloud address %q: %v", ErrConfig, hostport, err)
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("%w: cloud address %q: port %q is not a number in 0..65535", ErrConfig, hostport, port)
		}
		c.entries = append(c.entries, cloudEntry{spec: hostport, host: host, port: uint16(p)})
	}
	if len(c.entries) == 0 {
		return nil, fmt.Errorf("%w: no cloud address (--cloud)", ErrConfig)
	}
	return c, nil
}

// hasNames reports whether any entry is a name (something to look up
// again).
func (c *cloudNames) hasNames() bool {
	return slices.ContainsFunc(c.entries, func(e cloudEntry) bool { return e.host != "" })
}

// addrs is every entry's addresses, in order, without repeats.
func (c *cloudNames) addrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, e := range c.entries {
		for _, a := range e.addrs {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// refresh looks every name up again. A name whose lookup fails or comes
// back empty keeps the addresses it had (a DNS outage must not take the
// cloud away from a node that can still reach it); its error is returned.
// changed reports whether addrs differs from before.
func (c *cloudNames) refresh(ctx context.Context, r Resolver) (addrs []netip.AddrPort, changed bool, errs []error) {
	before := c.addrs()
	for i := range c.entries {
		e := &c.entries[i]
		if e.host == "" {
			continue
		}
		ips, err := r.LookupNetIP(ctx, "ip", e.host)
		if err == nil && len(ips) == 0 {
			err = fmt.Errorf("no addresses")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("cloud address %q: %w", e.spec, err))
			continue
		}
		got := make([]netip.AddrPort, 0, len(ips))
		for _, a := range ips {
			if ap := netip.AddrPortFrom(a.Unmap(), e.port); !slices.Contains(got, ap) {
				got = append(got, ap)
			}
		}
		e.addrs = got
	}
	addrs = c.addrs()
	return addrs, !slices.Equal(before, addrs), errs
}

// resolveCloud parses the Cloud option and looks its names up once: at
// start a name that does not resolve is a configuration error.
func resolveCloud(ctx context.Context, r Resolver, hostports string) (*cloudNames, []netip.AddrPort, error) {
	c, err := parseCloud(hostports)
	if err != nil {
		return nil, nil, err
	}
	addrs, _, errs := c.refresh(ctx, r)
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("%w: %v", ErrConfig, errs[0])
	}
	return c, addrs, nil
}

// reresolve looks c's names up again every period, and at once when
// trigger fires (a failover) unless the last lookup was under resolveGap
// ago, and hands set every list that differs from the last. It returns
// when ctx ends.
func reresolve(ctx context.Context, c *cloudNames, r Resolver, every time.Duration, trigger <-chan struct{},
	set func([]netip.AddrPort), log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-trigger:
			if time.Since(last) < resolveGap {
				continue
			}
		}
		last = time.Now()
		rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
		addrs, changed, errs := c.refresh(rctx, r)
		cancel()
		for _, err := range errs {
			log.Warn("cloud name lookup failed: keeping its last addresses", "err", err)
		}
		if changed {
			log.Info("cloud names resolved to new addresses", "cloud", addrs)
			set(addrs)
		}
	}
}
