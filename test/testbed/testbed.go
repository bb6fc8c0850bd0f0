// Package testbed is netlab for tests: the same topologies, with every
// error a test failure (tb.Fatal), the machine's fitness checked up front
// (Require: a test fails, or skips when opted out, naming what is
// missing), and the Bed torn down by the test's Cleanup, logging the
// output of its processes when the test failed.
package testbed

import (
	"sync"

	"github.com/cyphonic/cyphonic-go/netlab"
	"github.com/cyphonic/cyphonic-go/test/systest"
)

// T is the part of testing.TB a Bed uses.
type T interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Skip(args ...any)
	Failed() bool
	Cleanup(func())
}

// The topology's vocabulary is netlab's.
type (
	Proc     = netlab.Proc
	NAT      = netlab.NAT
	HostOpts = netlab.HostOpts
)

const (
	NATNone       = netlab.NATNone
	NATCone       = netlab.NATCone
	NATSymmetric  = netlab.NATSymmetric
	NATMasquerade = netlab.NATMasquerade
	ExecTimeout   = netlab.ExecTimeout
)

// ErrName is netlab.ErrName: a host or site name that is invalid or taken.
var ErrName = netlab.ErrName

// SiteOpts is netlab.SiteOpts with Behind a testbed Site.
type SiteOpts struct {
	NAT         NAT
	IPv4, IPv6  bool
	NAT66       bool
	LossPercent int
	Behind      *Site
	Silent      bool // the router sends no ICMP time exceeded
}

// Require fails the test, naming what is missing, when the machine cannot
// host a Bed — or skips it when the user opted out of system tests
// (systest.EnvSkip).
func Require(tb T) {
	tb.Helper()
	var needs []systest.Need
	for _, n := range netlab.Needs() {
		needs = append(needs, n)
	}
	systest.Require(tb, needs...)
}

// Bed is a netlab.Bed owned by one test.
type Bed struct {
	*netlab.Bed
	tb T

	mu    sync.Mutex
	sites map[*netlab.Site]*Site // the wrapper of each netlab site
}

// Site is a netlab.Site of a test's Bed.
type Site struct {
	*netlab.Site
	bed *Bed
}

// Host is a netlab.Host of a test's Bed.
type Host struct {
	*netlab.Host
	bed *Bed
}

// New builds an empty internet, failing (or, opted out, skipping) the test
// as Require does when the machine cannot host it, and tears it all down
// at the test's end.
func New(tb T) *Bed {
	tb.Helper()
	Require(tb)
	lab, err := netlab.New(tb.Logf)
	if err != nil {
		tb.Fatal(err)
	}
	b := &Bed{Bed: lab, tb: tb, sites: map[*netlab.Site]*Site{}}
	b.sites[lab.Internet()] = &Site{Site: lab.Internet(), bed: b}
	tb.Cleanup(func() {
		if err := lab.Close(); err != nil {
			tb.Errorf("testbed: %v", err)
		}
		if tb.Failed() {
			for _, p := range lab.Procs() {
				tb.Logf("testbed: output of %v:\n%s", p, p.Output())
			}
		}
	})
	return b
}

// Internet is the global segment.
func (b *Bed) Internet() *Site { return b.site(b.Bed.Internet()) }

func (b *Bed) site(s *netlab.Site) *Site {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sites[s]
}

// AddHost adds a host on the internet with global addresses.
func (b *Bed) AddHost(name string, opts HostOpts) *Host {
	b.tb.Helper()
	h, err := b.Bed.AddHost(name, opts)
	if err != nil {
		b.tb.Fatal(err)
	}
	return &Host{Host: h, bed: b}
}

// AddSite adds a site behind its own router (netlab.Bed.AddSite).
func (b *Bed) AddSite(name string, opts SiteOpts) *Site {
	b.tb.Helper()
	o := netlab.SiteOpts{NAT: opts.NAT, IPv4: opts.IPv4, IPv6: opts.IPv6, NAT66: opts.NAT66, LossPercent: opts.LossPercent,
		Silent: opts.Silent}
	if opts.Behind != nil {
		o.Behind = opts.Behind.Site
	}
	s, err := b.Bed.AddSite(name, o)
	if err != nil {
		b.tb.Fatal(err)
	}
	ts := &Site{Site: s, bed: b}
	b.mu.Lock()
	b.sites[s] = ts
	b.mu.Unlock()
	return ts
}

// Move re-attaches h to site s (netlab.Bed.Move).
func (b *Bed) Move(h *Host, s *Site) {
	b.tb.Helper()
	if err := b.Bed.Move(h.Host, s.Site); err != nil {
		b.tb.Fatal(err)
	}
}

// Start runs argv in the background in namespace ns until the test ends.
func (b *Bed) Start(ns string, argv ...string) *Proc {
	b.tb.Helper()
	p, err := b.Bed.Start(ns, argv...)
	if err != nil {
		b.tb.Fatal(err)
	}
	return p
}

// AddHost adds a host on the site's LAN.
func (s *Site) AddHost(name string) *Host {
	s.bed.tb.Helper()
	h, err := s.Site.AddHost(name)
	if err != nil {
		s.bed.tb.Fatal(err)
	}
	return &Host{Host: h, bed: s.bed}
}

// Site is where the host is attached now.
func (h *Host) Site() *Site { return h.bed.site(h.Host.Site()) }

// Start is Bed.Start in the host's namespace.
func (h *Host) Start(argv ...string) *Proc {
	h.bed.tb.Helper()
	return h.bed.Start(h.NS(), argv...)
}
