package dataplane

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cyphonic/cyphonic-go/transport/hops"
)

// The primer's TTL, learnt from the path (issue 10).
//
// A primer must pass every NAT of our own side, so that each makes its
// mapping toward the peer, and die at the first router beyond them, before
// the peer's NAT (punch.go). A node right behind its NAT needs TTL 2; one
// behind a home router and a carrier-grade NAT needs 3, and a TTL-2 primer
// would open only the home router. So the data plane learns the hop count
// to the first public router from the path toward the cloud, the only
// public address it knows before any peer (package hops: probes with TTL
// 1, 2, … read back as ICMP time exceeded, which our NATs translate back
// to us). Up to our outermost NAT the path to any peer is the path to the
// cloud.
//
// What Linux does at each hop, which is why that TTL is the right one: a
// router whose NAT the primer passes creates and confirms its conntrack
// entry (the mapping) when it forwards the packet; the router where the
// TTL runs out drops the packet in the forward path before the entry is
// confirmed, so it keeps nothing; and a packet reaching the peer's router
// is delivered there locally, where the TTL is not looked at — it must
// never get that far. The answer is cached per local source address
// (another network gives another address) and forgotten on Rebind (our
// mapping moved: maybe another network behind the same address).
// Probing is bounded: one series of hops.MaxTTL datagrams (those still
// unanswered sent once more) at a time, at most one series per
// primerProbeEvery and primerSeries per address, and only from behind a
// NAT.
const (
	primerProbeEvery = 10 * time.Second        // at most one probe series this often
	primerProbeWait  = 1500 * time.Millisecond // how long one series waits for answers
	primerCheckEvery = time.Second             // SendControl looks at the cache at most this often
	maxPrimerTTLs    = 8                       // local addresses remembered
)

// primerTTLs is the cache. Safe for concurrent use.
type primerTTLs struct {
	probing atomic.Bool // a probe series runs

	mu      sync.Mutex
	ttl     map[netip.Addr]learntTTL // by local source address toward the cloud
	checked time.Time                // last look from SendControl
	probed  time.Time                // last probe series started
	gen     int                      // bumped by forget: a series started before it is stale
}

// learntTTL is one probe series' answer.
type learntTTL struct {
	ttl       int
	confirmed bool      // a public router answered (hops.Choose)
	at        time.Time // unconfirmed answers are probed again after primerReprobe
	series    int       // probe series run for this address
}

// An unconfirmed TTL is probed again once it is primerReprobe old (a
// rate-limited router may answer the next series), up to primerSeries
// series per address in all; then it stands until the address changes or
// the mapping moves.
const (
	primerReprobe = 30 * time.Second
	primerSeries  = 3
)

// primerHops is the TTL a primer toward ep gets, and false when no primer
// goes: the source address toward ep is not behind a NAT (natSource).
func (d *Dataplane) primerHops(ep netip.AddrPort) (int, bool) {
	src, ok := natSource(ep)
	if !ok {
		return 0, false
	}
	return d.primerTTL.get(src), true
}

// get is the TTL for primers from src: the learnt one, or hops.Fallback.
func (c *primerTTLs) get(src netip.Addr) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l, ok := c.ttl[src]; ok {
		return l.ttl
	}
	return hops.Fallback
}

// due reports whether a probe series for src should start now: nothing
// learnt for it (or only an unconfirmed answer older than primerReprobe),
// and no series started within primerProbeEvery.
func (c *primerTTLs) due(src netip.Addr, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.ttl[src]
	known := ok && (l.confirmed || l.series >= primerSeries || now.Sub(l.at) < primerReprobe)
	recent := !c.probed.IsZero() && now.Sub(c.probed) < primerProbeEvery
	return !known && !recent
}

// begin records that a series starts now and returns the generation its
// answer is stored under.
func (c *primerTTLs) begin(now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.probed = now
	return c.gen
}

// store keeps a series' answer for src, unless forget ran since the series
// began (gen), or the answer is unconfirmed and a confirmed one is held.
// It reports whether the answer was kept.
func (c *primerTTLs) store(src netip.Addr, ttl int, confirmed bool, gen int, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return false // forgotten meanwhile: the next SendControl probes again
	}
	old, ok := c.ttl[src]
	if ok && old.confirmed && !confirmed {
		return false
	}
	if c.ttl == nil || len(c.ttl) >= maxPrimerTTLs {
		c.ttl = make(map[netip.Addr]learntTTL, 2)
	}
	c.ttl[src] = learntTTL{ttl: ttl, confirmed: confirmed, at: now, series: old.series + 1}
	return true
}

// learnPrimerTTL starts a probe series toward the cloud address to, if the
// cache has no TTL for the local address we send to it from. Called on
// every SendControl (logins, registrations, keepalives), it looks at most
// once per primerCheckEvery and never blocks: the probe runs on a
// goroutine of its own.
func (d *Dataplane) learnPrimerTTL(to netip.AddrPort) {
	c := &d.primerTTL
	now := time.Now()
	c.mu.Lock()
	if c.probing.Load() || now.Sub(c.checked) < primerCheckEvery {
		c.mu.Unlock()
		return
	}
	c.checked = now
	c.mu.Unlock()
	src, ok := natSource(to)
	if !ok {
		return // a global address primes nothing
	}
	if !c.due(src, now) || !c.probing.CompareAndSwap(false, true) {
		return
	}
	// Stop waits for d.wg once running is false: Add only while it holds.
	d.mu.Lock()
	running := d.running
	if running {
		d.wg.Add(1)
	}
	d.mu.Unlock()
	if !running {
		c.probing.Store(false)
		return
	}
	go d.probePrimerTTL(to, src, c.begin(now))
}

func (d *Dataplane) probePrimerTTL(to netip.AddrPort, src netip.Addr, gen int) {
	defer d.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-d.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	hs, err := hops.Probe(ctx, to, hops.MaxTTL, primerProbeWait)
	ttl, confirmed := hops.Choose(hs)
	c := &d.primerTTL
	defer c.probing.Store(false)
	if err != nil {
		d.log.Warn("primer TTL: probe failed; primers keep the default", "toward", to, "ttl", ttl, "err", err)
		return
	}
	if c.store(src, ttl, confirmed, gen, time.Now()) {
		d.log.Info("primer TTL", "local", src, "toward", to, "ttl", ttl, "confirmed", confirmed, "hops", hopsString(hs))
	}
}

// forget drops every cached TTL (our address or mapping moved).
func (c *primerTTLs) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.ttl)
	c.gen++
	c.checked = time.Time{}
}

// hopsString is hs for a log line: "1:10.0.0.1 2:* 3:198.51.100.1".
func hopsString(hs []hops.Hop) string {
	parts := make([]string, len(hs))
	for i, h := range hs {
		from := "*"
		if h.From.IsValid() {
			from = h.From.String()
		}
		parts[i] = strconv.Itoa(h.TTL) + ":" + from
	}
	return strings.Join(parts, " ")
}

// natSource returns the address the kernel would send from toward ep,
// and whether it is a private one (RFC 1918, RFC 6598, a ULA), so that a
// NAT sits between us and ep. It asks the kernel by connecting a
// throwaway UDP socket, which sends nothing; a failure counts as not
// NATed (no primer, the old behaviour).
func natSource(ep netip.AddrPort) (netip.Addr, bool) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ep))
	if err != nil {
		return netip.Addr{}, false
	}
	defer c.Close()
	src := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	return src, privateSource(src)
}
