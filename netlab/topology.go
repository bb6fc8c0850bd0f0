package netlab

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
)

// Interface names inside the namespaces. Bridge ports are "v-" + name.
const (
	hostIf         = "eth0" // a host's link to its segment
	wanIf          = "wan0" // a site router's link to the internet
	lanBridge      = "lan0" // a site router's LAN bridge
	internetBridge = "br0"  // the internet's bridge
)

// SiteOpts shapes a site. Setting neither IPv4 nor IPv6 means both.
type SiteOpts struct {
	NAT  NAT
	IPv4 bool
	IPv6 bool
	// NAT66 also masquerades IPv6 (LAN in fd00::/8). Without it the site's
	// IPv6 LAN is routed global space, as most real IPv6 sites are.
	NAT66 bool
	// LossPercent drops that share of packets the router forwards, both
	// ways, at random (nftables numgen). See Site.SetLoss.
	LossPercent int
	// Behind puts the site's router on another site's LAN instead of the
	// internet: a home router behind a carrier-grade NAT is a NAT site
	// Behind a NAT site. Such a site is IPv4-only and must translate.
	Behind *Site
	// Silent: the router sends no ICMP time exceeded (a silent hop in a
	// traceroute), as many routers in the wild do.
	Silent bool
}

// HostOpts shapes a host on the internet. Setting neither IPv4 nor IPv6
// means both. Secondary adds a second global address per family
// (203.0.113.0/25, 2001:db8:1::/64), e.g. for a NAT-type probe.
type HostOpts struct {
	IPv4      bool
	IPv6      bool
	Secondary bool
}

// Site is a layer-2 segment with a router: the internet, or a site behind
// its own router namespace.
type Site struct {
	bed    *Bed
	name   string
	ns     string // the router's namespace
	bridge string
	opts   SiteOpts
	lan    lan
	wan    attachment // zero for the internet

	mu   sync.Mutex
	next int // host number of the next attachment
}

// Name is the site's name ("inet" for the internet).
func (s *Site) Name() string { return s.name }

// NS is the router's namespace (for the internet, the internet's).
func (s *Site) NS() string { return s.ns }

// NAT is the site's address translation.
func (s *Site) NAT() NAT { return s.opts.NAT }

// PublicIPv4 is the router's global IPv4 address: what a server on the
// internet sees as the source of the site's NATed traffic (for a site
// Behind another, that site's public address). Zero for the internet or a
// site without IPv4.
func (s *Site) PublicIPv4() netip.Addr {
	if s.opts.Behind != nil {
		return s.opts.Behind.PublicIPv4()
	}
	return s.wan.v4
}

// PublicIPv6 is the router's global IPv6 address (zero if none).
func (s *Site) PublicIPv6() netip.Addr { return s.wan.v6 }

// LAN4 is the site's IPv4 LAN prefix (invalid if it has no IPv4).
func (s *Site) LAN4() netip.Prefix { return s.lan.v4 }

// LAN6 is the site's IPv6 LAN prefix (invalid if it has no IPv6).
func (s *Site) LAN6() netip.Prefix { return s.lan.v6 }

// SetLoss makes the router drop percent of the packets it forwards, at
// random; 0 removes the impairment.
func (s *Site) SetLoss(percent int) error {
	if err := nftApply(s.ns, impairRuleset(percent)); err != nil {
		return fmt.Errorf("netlab: site %s loss %d%%: %w", s.name, percent, err)
	}
	return nil
}

// UplinkIPv4 is the site router's IPv4 address on the segment it is
// attached to (zero for the internet itself).
func (s *Site) UplinkIPv4() netip.Addr { return s.wan.v4 }

// AddHost adds a host on the site's LAN with every IP version the site has.
func (s *Site) AddHost(name string) (*Host, error) {
	return s.bed.addHost(name, s, HostOpts{})
}

// attachment is one namespace's link to a segment and the addresses it got.
type attachment struct {
	site             *Site
	ifname           string
	v4, v6, v4b, v6b netip.Addr
}

// Host is a namespace with one link, to the internet or to a site's LAN.
type Host struct {
	bed  *Bed
	name string
	ns   string
	opts HostOpts

	mu sync.Mutex
	at attachment
}

// Name is the host's name.
func (h *Host) Name() string { return h.name }

// NS is the host's namespace, for Bed.Exec, Bed.Start, Bed.Do.
func (h *Host) NS() string { return h.ns }

func (h *Host) attachment() attachment {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.at
}

// Site is where the host is attached now (Internet for a global host).
func (h *Host) Site() *Site { return h.attachment().site }

// IPv4 is the host's current IPv4 address (zero if it has none).
func (h *Host) IPv4() netip.Addr { return h.attachment().v4 }

// IPv6 is the host's current IPv6 address (zero if it has none).
func (h *Host) IPv6() netip.Addr { return h.attachment().v6 }

// SecondaryIPv4 is the host's second global IPv4 address (zero if none).
func (h *Host) SecondaryIPv4() netip.Addr { return h.attachment().v4b }

// SecondaryIPv6 is the host's second global IPv6 address (zero if none).
func (h *Host) SecondaryIPv6() netip.Addr { return h.attachment().v6b }

// Exec is Bed.Exec in the host's namespace.
func (h *Host) Exec(argv ...string) ([]byte, error) { return h.bed.Exec(h.ns, argv...) }

// Start is Bed.Start in the host's namespace.
func (h *Host) Start(argv ...string) (*Proc, error) {
	return h.bed.Start(h.ns, argv...)
}

// Do is Bed.Do in the host's namespace.
func (h *Host) Do(f func() error) error { return doIn(h.ns, f) }

// SetResolvers points the host's resolv.conf (for programs run by Exec and
// Start) at servers; none means 127.0.0.1, the default.
func (h *Host) SetResolvers(servers ...netip.Addr) error {
	return writeEtc(h.ns, "resolv.conf", resolvConf(servers))
}

// SetHosts rewrites the host's /etc/hosts with localhost, its own name and
// entries.
func (h *Host) SetHosts(entries map[string]netip.Addr) error {
	return writeEtc(h.ns, "hosts", hostsFile(h.name, entries))
}

// AddHost adds a host on the internet with global addresses.
func (b *Bed) AddHost(name string, opts HostOpts) (*Host, error) {
	return b.addHost(name, b.internet, opts)
}

// AddSite adds a site: a router namespace linked to the internet, with a
// LAN bridge and, per opts.NAT, nftables masquerade on its uplink.
func (b *Bed) AddSite(name string, opts SiteOpts) (*Site, error) {
	s, err := b.addSite(name, opts)
	if err != nil {
		return nil, fmt.Errorf("netlab: add site %s: %w", name, err)
	}
	return s, nil
}

// Move re-attaches h to site s (Internet for a global address): the old
// link and addresses go, the namespace and its processes stay, as when a
// device changes networks. Sockets bound to the old address stop working;
// wildcard-bound ones follow the new route.
func (b *Bed) Move(h *Host, s *Site) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := ipBatch(h.ns, "link del "+hostIf); err != nil {
		return fmt.Errorf("netlab: move %s: %w", h.name, err)
	}
	at, err := b.attach(h.ns, hostIf, "v-"+h.name, s, h.opts)
	if err != nil {
		return fmt.Errorf("netlab: move %s to %s: %w", h.name, s.name, err)
	}
	h.at = at
	return nil
}

func (b *Bed) claimName(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.names[name] {
		return fmt.Errorf("%w: %q already used", ErrName, name)
	}
	b.names[name] = true
	return nil
}

func (b *Bed) addHost(name string, s *Site, opts HostOpts) (*Host, error) {
	h, err := b.newHost(name, s, opts)
	if err != nil {
		return nil, fmt.Errorf("netlab: add host %s: %w", name, err)
	}
	return h, nil
}

func (b *Bed) newHost(name string, s *Site, opts HostOpts) (*Host, error) {
	if !opts.IPv4 && !opts.IPv6 {
		opts.IPv4, opts.IPv6 = true, true
	}
	if err := b.claimName(name); err != nil {
		return nil, err
	}
	h := &Host{bed: b, name: name, ns: b.nsName(name), opts: opts}
	if err := b.addNamespace(name); err != nil {
		return nil, err
	}
	at, err := b.attach(h.ns, hostIf, "v-"+name, s, opts)
	if err != nil {
		return nil, err
	}
	h.at = at
	return h, nil
}

func (b *Bed) setupInternet() error {
	s := &Site{
		bed: b, name: internetName, ns: b.nsName(internetName), bridge: internetBridge,
		opts: SiteOpts{IPv4: true, IPv6: true}, lan: internetLAN(), next: 2,
	}
	if err := b.setupRouter(s); err != nil {
		return err
	}
	// Site routers hang off the internet on links of their own (uplink)
	// with addresses of the bridge's prefixes: the internet answers
	// neighbour discovery for them on the bridge.
	// Without delay: the kernel holds a proxied answer to a broadcast
	// request up to proxy_delay (0.8 s) by default, which would slow a
	// global host's first packet to a site by as much; an internet
	// router on a routed link answers at once.
	if err := setSysctls(s.ns,
		"net.ipv4.conf."+internetBridge+".proxy_arp", "1",
		"net.ipv6.conf."+internetBridge+".proxy_ndp", "1",
		"net.ipv4.neigh."+internetBridge+".proxy_delay", "0",
		"net.ipv6.neigh."+internetBridge+".proxy_delay", "0",
	); err != nil {
		return err
	}
	b.internet = s
	return nil
}

func (b *Bed) addSite(name string, opts SiteOpts) (*Site, error) {
	up := b.internet
	if opts.Behind != nil {
		// Only IPv4 is translated twice in the wild (CGN); a nested
		// routed prefix would need routes through every router above.
		if opts.IPv6 || opts.NAT == NATNone || !opts.Behind.lan.v4.IsValid() {
			return nil, fmt.Errorf("netlab: site %s behind %s must be IPv4-only with NAT on an IPv4 site", name, opts.Behind.name)
		}
		up, opts.IPv4 = opts.Behind, true
	}
	if !opts.IPv4 && !opts.IPv6 {
		opts.IPv4, opts.IPv6 = true, true
	}
	if opts.LossPercent < 0 || opts.LossPercent > 100 {
		return nil, fmt.Errorf("netlab: loss %d%% out of range", opts.LossPercent)
	}
	if err := b.claimName(name); err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.sites++
	index, routed := b.sites, 0
	if opts.IPv4 && opts.NAT == NATNone {
		b.routed4++
		routed = b.routed4
	}
	b.mu.Unlock()
	l, err := siteLAN(index, routed, opts)
	if err != nil {
		return nil, err
	}
	s := &Site{bed: b, name: name, ns: b.nsName(name), bridge: lanBridge, opts: opts, lan: l, next: 2}
	if err := b.addNamespace(name); err != nil {
		return nil, err
	}
	// The uplink first, so the router's IPv6 is settled before the LAN.
	// A router behind another site (CGN) sits on that site's LAN; one on
	// the internet gets a routed link of its own (uplink).
	if opts.Behind != nil {
		s.wan, err = b.attach(s.ns, wanIf, "v-"+name, up, HostOpts{IPv4: opts.IPv4, IPv6: opts.IPv6})
	} else {
		s.wan, err = b.uplink(s.ns, "v-"+name, HostOpts{IPv4: opts.IPv4, IPv6: opts.IPv6})
	}
	if err != nil {
		return nil, err
	}
	if err := b.setupRouter(s); err != nil {
		return nil, err
	}
	if err := nftApply(s.ns, natRuleset(wanIf, opts.NAT, opts.IPv4, opts.IPv6, opts.NAT66)); err != nil {
		return nil, err
	}
	if opts.Silent {
		if err := nftApply(s.ns, silentRuleset()); err != nil {
			return nil, err
		}
	}
	if opts.LossPercent > 0 {
		if err := s.SetLoss(opts.LossPercent); err != nil {
			return nil, err
		}
	}
	// The internet routes a site's global LAN prefixes to its router.
	var routes []string
	if opts.IPv4 && opts.NAT == NATNone {
		routes = append(routes, fmt.Sprintf("route add %s via %s", l.v4, s.wan.v4))
	}
	if opts.IPv6 && !l.v6.Addr().IsPrivate() {
		routes = append(routes, fmt.Sprintf("route add %s via %s", l.v6, s.wan.v6))
	}
	if len(routes) > 0 {
		if err := ipBatch(b.internet.ns, routes...); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// setupRouter turns on forwarding in s's namespace and creates its bridge
// with the gateway addresses.
func (b *Bed) setupRouter(s *Site) error {
	kv := []string{"net.ipv4.ip_forward", "1"}
	if s.lan.v6.IsValid() {
		kv = append(kv, "net.ipv6.conf.all.forwarding", "1")
	} else {
		kv = append(kv, "net.ipv6.conf.all.disable_ipv6", "1", "net.ipv6.conf.default.disable_ipv6", "1")
	}
	if err := setSysctls(s.ns, kv...); err != nil {
		return err
	}
	cmds := []string{
		"link set lo up",
		// Without snooping the bridge floods multicast, so neighbour
		// discovery works from the first packet.
		fmt.Sprintf("link add %s type bridge mcast_snooping 0", s.bridge),
	}
	for _, p := range []netip.Prefix{s.lan.v4, s.lan.v4b, s.lan.v6, s.lan.v6b} {
		if p.IsValid() {
			cmds = append(cmds, addrAdd(netip.PrefixFrom(gateway(p), p.Bits()), s.bridge))
		}
	}
	cmds = append(cmds, fmt.Sprintf("link set %s up", s.bridge))
	return ipBatch(s.ns, cmds...)
}

// plug gives namespace ns the next addresses of site s in the families
// both sides have (with secondaries if opts asks), switches IPv6 in ns on
// or off to match, and creates the veth pair: ifname inside ns, port
// inside s's namespace. The caller wires port up (a bridge port, a routed
// link) and configures ifname.
func (s *Site) plug(ns, ifname, port string, opts HostOpts) (at attachment, want4, want6 bool, err error) {
	at = attachment{site: s, ifname: ifname}
	want4 = opts.IPv4 && s.lan.v4.IsValid()
	want6 = opts.IPv6 && s.lan.v6.IsValid()
	if !want4 && !want6 {
		return at, false, false, fmt.Errorf("netlab: %s and site %s share no IP version", ns, s.name)
	}
	s.mu.Lock()
	n := s.next
	s.next++
	s.mu.Unlock()

	if want4 {
		if at.v4, err = nth(s.lan.v4, n); err != nil {
			return at, false, false, err
		}
		if opts.Secondary && s.lan.v4b.IsValid() {
			if at.v4b, err = nth(s.lan.v4b, n); err != nil {
				return at, false, false, err
			}
		}
	}
	if want6 {
		if at.v6, err = nth(s.lan.v6, n); err != nil {
			return at, false, false, err
		}
		if opts.Secondary && s.lan.v6b.IsValid() {
			if at.v6b, err = nth(s.lan.v6b, n); err != nil {
				return at, false, false, err
			}
		}
	}

	// An IPv4-only namespace has no IPv6 at all, not even link-local, so
	// nothing in it can reach for IPv6 by accident.
	disable6 := "0"
	if !want6 {
		disable6 = "1"
	}
	// Written only when it changes: the kernel applies a write to "all"
	// to every interface, so rewriting the same value on a Move would
	// turn IPv6 off on the devices the host's programs made (a node's
	// TUN with its overlay address), which a device changing networks
	// never does.
	if err := setSysctlsIfChanged(ns,
		"net.ipv6.conf.all.disable_ipv6", disable6,
		"net.ipv6.conf.default.disable_ipv6", disable6,
	); err != nil {
		return at, false, false, err
	}
	// Created straight inside both namespaces: nothing ever appears in
	// the root namespace, so names cannot clash with the machine's or
	// another run's.
	if _, err := run(context.Background(), "", "ip", "link", "add", ifname, "netns", ns,
		"type", "veth", "peer", "name", port, "netns", s.ns); err != nil {
		return at, false, false, err
	}
	return at, want4, want6, nil
}

// attach links namespace ns to site s with a veth pair (ifname inside ns,
// port on s's bridge) and gives it the next addresses of the families both
// sides have.
func (b *Bed) attach(ns, ifname, port string, s *Site, opts HostOpts) (attachment, error) {
	at, want4, want6, err := s.plug(ns, ifname, port, opts)
	if err != nil {
		return at, err
	}
	if err := ipBatch(s.ns,
		fmt.Sprintf("link set %s master %s", port, s.bridge),
		fmt.Sprintf("link set %s up", port),
	); err != nil {
		return at, err
	}
	cmds := []string{"link set lo up"}
	for _, a := range []struct {
		addr netip.Addr
		p    netip.Prefix
	}{{at.v4, s.lan.v4}, {at.v4b, s.lan.v4b}, {at.v6, s.lan.v6}, {at.v6b, s.lan.v6b}} {
		if a.addr.IsValid() {
			cmds = append(cmds, addrAdd(netip.PrefixFrom(a.addr, a.p.Bits()), ifname))
		}
	}
	cmds = append(cmds, fmt.Sprintf("link set %s up", ifname))
	if want4 {
		cmds = append(cmds, fmt.Sprintf("route add default via %s dev %s", gateway(s.lan.v4), ifname))
	}
	if want6 {
		cmds = append(cmds, fmt.Sprintf("route add default via %s dev %s", gateway(s.lan.v6), ifname))
	}
	return at, ipBatch(ns, cmds...)
}

// addrAdd is the ip command adding p to dev; IPv6 skips DAD so the address
// is usable at once.
func addrAdd(p netip.Prefix, dev string) string {
	if p.Addr().Is6() {
		return fmt.Sprintf("addr add %s dev %s nodad", p, dev)
	}
	return fmt.Sprintf("addr add %s dev %s", p, dev)
}

// uplinkGateway6 is the internet's link-local address on every routed
// uplink: a router's default IPv6 route points at it.
const uplinkGateway6 = "fe80::1"

// uplink links site router namespace ns to the internet namespace over a
// point-to-point veth of its own (wanIf inside ns, port inside the
// internet's namespace), not a port of the internet's bridge. The router
// keeps an address of the internet's prefixes (a /32 and a /128), and the
// internet routes it to the port and answers neighbour discovery for it on
// its bridge (proxy ARP, proxy NDP), so global hosts reach it as before.
// What that buys: the internet namespace is a real router hop between any
// two sites, as the internet always has one or more. Their routers never
// share a link, so a packet's TTL counts hops as it would out there (a
// punch packet with a low TTL opens the sender's own NAT mapping and dies
// at the internet router before it reaches the peer's NAT).
func (b *Bed) uplink(ns, port string, opts HostOpts) (attachment, error) {
	s := b.internet
	at, want4, want6, err := s.plug(ns, wanIf, port, HostOpts{IPv4: opts.IPv4, IPv6: opts.IPv6})
	if err != nil {
		return at, err
	}
	// The internet's side: up, the gateway's link-local address, a route
	// to the router's addresses, and neighbour answers for them on the
	// bridge (the router's addresses are inside the bridge's prefixes).
	inet := []string{fmt.Sprintf("link set %s up", port)}
	router := []string{"link set lo up", fmt.Sprintf("link set %s up", wanIf)}
	if want4 {
		gw := gateway(s.lan.v4)
		inet = append(inet, fmt.Sprintf("route add %s/32 dev %s", at.v4, port))
		router = append(router,
			fmt.Sprintf("addr add %s/32 dev %s", at.v4, wanIf),
			fmt.Sprintf("route add %s/32 dev %s", gw, wanIf),
			fmt.Sprintf("route add default via %s dev %s", gw, wanIf))
	}
	if want6 {
		inet = append(inet,
			fmt.Sprintf("addr add %s/64 dev %s nodad", uplinkGateway6, port),
			fmt.Sprintf("route add %s/128 dev %s", at.v6, port),
			fmt.Sprintf("neigh add proxy %s dev %s", at.v6, s.bridge))
		router = append(router,
			fmt.Sprintf("addr add %s/128 dev %s nodad", at.v6, wanIf),
			fmt.Sprintf("route add default via %s dev %s", uplinkGateway6, wanIf))
	}
	if err := ipBatch(s.ns, inet...); err != nil {
		return at, err
	}
	return at, ipBatch(ns, router...)
}
