package node

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeDNS is an injected Resolver: its records, changed by the test, and
// the lookups it answered.
type fakeDNS struct {
	mu      sync.Mutex
	records map[string][]netip.Addr
	fail    bool
	lookups int
}

func (d *fakeDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lookups++
	if d.fail {
		return nil, errors.New("SERVFAIL")
	}
	a, ok := d.records[host]
	if !ok {
		return nil, errors.New("NXDOMAIN")
	}
	return slices.Clone(a), nil
}

func (d *fakeDNS) set(f func(d *fakeDNS)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d)
}

func (d *fakeDNS) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lookups
}

var ip = netip.MustParseAddr

func TestResolveCloud(t *testing.T) {
	ap := netip.MustParseAddrPort
	dns := &fakeDNS{records: map[string][]netip.Addr{
		"cloud.example": {ip("192.0.2.10"), ip("::ffff:192.0.2.11"), ip("2001:db8::10")},
		"empty.example": {},
	}}
	tests := []struct {
		in   string
		want []netip.AddrPort
		err  bool
	}{
		{in: "192.0.2.1:7401", want: []netip.AddrPort{ap("192.0.2.1:7401")}},
		{in: "192.0.2.1:7401, 192.0.2.2:7401,[2001:db8::1]:7401", want: []netip.AddrPort{ap("192.0.2.1:7401"), ap("192.0.2.2:7401"), ap("[2001:db8::1]:7401")}},
		{in: "[::ffff:192.0.2.1]:7401", want: []netip.AddrPort{ap("192.0.2.1:7401")}},
		// A name stands for every address it resolves to.
		{in: "cloud.example:7401", want: []netip.AddrPort{ap("192.0.2.10:7401"), ap("192.0.2.11:7401"), ap("[2001:db8::10]:7401")}},
		{in: "192.0.2.10:7401,cloud.example:7401", want: []netip.AddrPort{ap("192.0.2.10:7401"), ap("192.0.2.11:7401"), ap("[2001:db8::10]:7401")}},
		{in: "nosuch.example:7401", err: true},
		{in: "empty.example:7401", err: true},
		{in: "192.0.2.1", err: true},
		{in: "cloud.example:http", err: true},
		{in: " , ", err: true},
	}
	for _, tt := range tests {
		_, got, err := resolveCloud(context.Background(), dns, tt.in)
		if tt.err {
			if !errors.Is(err, ErrConfig) {
				t.Errorf("%q: err %v, want ErrConfig", tt.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%q: %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestCloudNamesRefresh: a name's new records replace its old ones; a
// failed or empty lookup keeps them; literal addresses never change.
func TestCloudNamesRefresh(t *testing.T) {
	ap := netip.MustParseAddrPort
	dns := &fakeDNS{records: map[string][]netip.Addr{"cloud.example": {ip("192.0.2.10")}}}
	c, got, err := resolveCloud(context.Background(), dns, "198.51.100.1:7401,cloud.example:7401")
	if err != nil || !slices.Equal(got, []netip.AddrPort{ap("198.51.100.1:7401"), ap("192.0.2.10:7401")}) {
		t.Fatalf("start: %v %v", got, err)
	}
	for _, step := range []struct {
		name    string
		change  func(d *fakeDNS)
		want    []netip.AddrPort
		changed bool
		errs    int
	}{
		{"same records", func(d *fakeDNS) {}, []netip.AddrPort{ap("198.51.100.1:7401"), ap("192.0.2.10:7401")}, false, 0},
		{"a record added", func(d *fakeDNS) { d.records["cloud.example"] = []netip.Addr{ip("192.0.2.10"), ip("192.0.2.11")} },
			[]netip.AddrPort{ap("198.51.100.1:7401"), ap("192.0.2.10:7401"), ap("192.0.2.11:7401")}, true, 0},
		{"lookup fails: kept", func(d *fakeDNS) { d.fail = true },
			[]netip.AddrPort{ap("198.51.100.1:7401"), ap("192.0.2.10:7401"), ap("192.0.2.11:7401")}, false, 1},
		{"name gone: kept", func(d *fakeDNS) { d.fail = false; delete(d.records, "cloud.example") },
			[]netip.AddrPort{ap("198.51.100.1:7401"), ap("192.0.2.10:7401"), ap("192.0.2.11:7401")}, false, 1},
		{"no records: kept", func(d *fakeDNS) { d.records["cloud.example"] = nil },
			[]netip.AddrPort{ap("198.51.100.1:7401"), ap("192.0.2.10:7401"), ap("192.0.2.11:7401")}, false, 1},
		{"a process replaced", func(d *fakeDNS) { d.records["cloud.example"] = []netip.Addr{ip("192.0.2.11"), ip("192.0.2.12")} },
			[]netip.AddrPort{ap("198.51.100.1:7401"), ap("192.0.2.11:7401"), ap("192.0.2.12:7401")}, true, 0},
	} {
		dns.set(step.change)
		got, changed, errs := c.refresh(context.Background(), dns)
		if !slices.Equal(got, step.want) || changed != step.changed || len(errs) != step.errs {
			t.Errorf("%s: %v changed=%v errs=%v, want %v changed=%v %d errors", step.name, got, changed, errs, step.want, step.changed, step.errs)
		}
	}
}

// TestReresolve: the loop looks the names up on its period and at a
// failover (not more than once a resolveGap), and hands the session every
// new list; a failed lookup hands it nothing. No real DNS.
func TestReresolve(t *testing.T) {
	ap := netip.MustParseAddrPort
	dns := &fakeDNS{records: map[string][]netip.Addr{"cloud.example": {ip("192.0.2.10")}}}
	c, _, err := resolveCloud(context.Background(), dns, "cloud.example:7401")
	if err != nil {
		t.Fatal(err)
	}
	sets := make(chan []netip.AddrPort, 16)
	trigger := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		reresolve(ctx, c, dns, 20*time.Millisecond, trigger, func(a []netip.AddrPort) { sets <- a }, slog.New(slog.DiscardHandler))
	}()
	defer func() { cancel(); <-done }()
	wait := func(want []netip.AddrPort) {
		t.Helper()
		select {
		case got := <-sets:
			if !slices.Equal(got, want) {
				t.Fatalf("set %v, want %v", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no new list (want %v)", want)
		}
	}
	// Periodic: the added record arrives.
	dns.set(func(d *fakeDNS) { d.records["cloud.example"] = []netip.Addr{ip("192.0.2.10"), ip("192.0.2.11")} })
	wait([]netip.AddrPort{ap("192.0.2.10:7401"), ap("192.0.2.11:7401")})
	// A failing resolver: lookups go on, nothing is handed on.
	dns.set(func(d *fakeDNS) { d.fail = true })
	n := dns.count()
	for dns.count() < n+3 {
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case got := <-sets:
		t.Fatalf("a failed lookup set %v", got)
	default:
	}
	dns.set(func(d *fakeDNS) { d.fail = false; d.records["cloud.example"] = []netip.Addr{ip("192.0.2.12")} })
	wait([]netip.AddrPort{ap("192.0.2.12:7401")})
}

// TestReresolveAtFailover: with a period far away, a failover alone
// brings the new records; a second failover within resolveGap does not
// query again.
func TestReresolveAtFailover(t *testing.T) {
	ap := netip.MustParseAddrPort
	dns := &fakeDNS{records: map[string][]netip.Addr{"cloud.example": {ip("192.0.2.10")}}}
	c, _, err := resolveCloud(context.Background(), dns, "cloud.example:7401")
	if err != nil {
		t.Fatal(err)
	}
	sets := make(chan []netip.AddrPort, 16)
	trigger := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		reresolve(ctx, c, dns, time.Hour, trigger, func(a []netip.AddrPort) { sets <- a }, slog.New(slog.DiscardHandler))
	}()
	defer func() { cancel(); <-done }()
	dns.set(func(d *fakeDNS) { d.records["cloud.example"] = []netip.Addr{ip("192.0.2.20")} })
	trigger <- struct{}{}
	select {
	case got := <-sets:
		if !slices.Equal(got, []netip.AddrPort{ap("192.0.2.20:7401")}) {
			t.Fatalf("set %v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a failover did not look the name up again")
	}
	before := dns.count()
	trigger <- struct{}{}
	time.Sleep(100 * time.Millisecond)
	if got := dns.count(); got != before {
		t.Fatalf("%d lookups for a second failover within %v", got-before, resolveGap)
	}
}
