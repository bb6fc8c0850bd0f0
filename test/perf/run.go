package perf

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cyphonic/cyphonic-go/test/testbed"
)

// MaxDuration bounds one load: every command runs under the testbed's
// ExecTimeout, and iperf3 needs a few seconds beyond its -t.
const MaxDuration = testbed.ExecTimeout - 8*time.Second

// iperfBasePort is the first iperf3 server port on the responder; pusher i
// uses iperfBasePort+i, since one iperf3 server serves one test at a time.
const iperfBasePort = 5201

// Config shapes a measurement.
type Config struct {
	Duration     time.Duration // of each load, whole seconds, at most MaxDuration
	Peers        []int         // pusher counts to measure, each at most the topology's pushers
	PingInterval time.Duration // at least 10 ms (ping's limit for root is lower, the report's meaning is not)
	// Rate, if set, is each pusher's target rate (iperf3 -b: "150M"):
	// a fixed, slow flow per pusher, so a daemon's cost per GB at a low
	// per-flow rate can be measured without ten pushers saturating the
	// machine. Empty: as fast as TCP goes.
	Rate string
	// ProfileDir, if set, receives CPU profiles of the responder's and
	// the pusher's daemons (where the target serves pprof) taken during
	// the 1-pusher load (see profile).
	ProfileDir string
}

// DefaultConfig is the full measurement: 10-second loads with 1, 3 and 10
// pushers, a ping every 50 ms (160 echoes a load, so the p99 is not
// simply the maximum).
func DefaultConfig() Config {
	return Config{Duration: 10 * time.Second, Peers: []int{1, 3, 10}, PingInterval: 50 * time.Millisecond}
}

// ErrConfig means a Config cannot be run.
var ErrConfig = errors.New("perf: bad config")

// Validate checks c against a topology with pushers initiators.
func (c Config) Validate(pushers int) error {
	switch {
	case c.Duration < 2*time.Second || c.Duration > MaxDuration || c.Duration%time.Second != 0:
		return fmt.Errorf("%w: duration %s (whole seconds, 2s to %s)", ErrConfig, c.Duration, MaxDuration)
	case c.PingInterval < 10*time.Millisecond || c.PingInterval > time.Second:
		return fmt.Errorf("%w: ping interval %s", ErrConfig, c.PingInterval)
	case len(c.Peers) == 0:
		return fmt.Errorf("%w: no peer counts", ErrConfig)
	case c.Rate != "" && !validRate(c.Rate):
		return fmt.Errorf("%w: rate %q (iperf3 -b: digits and an optional K, M or G)", ErrConfig, c.Rate)
	}
	for _, n := range c.Peers {
		if n < 1 || n > pushers {
			return fmt.Errorf("%w: %d pushers (topology has %d)", ErrConfig, n, pushers)
		}
	}
	return nil
}

// validRate reports whether r is an iperf3 -b rate we pass on: digits
// and an optional unit, nothing iperf3 would read as another flag.
func validRate(r string) bool {
	digits := strings.TrimRight(r, "KMGkmg")
	if len(r)-len(digits) > 1 || digits == "" {
		return false
	}
	_, err := strconv.ParseUint(digits, 10, 64)
	return err == nil
}

// pingCount is how many echoes fit in a load, leaving a second at each end
// for TCP to ramp up and wind down.
func (c Config) pingCount() int {
	return max(int((c.Duration-2*time.Second)/c.PingInterval), 5)
}

// pingArgs is a ping of count echoes whose total time is bounded by -w.
// With -w, ping keeps sending until count replies came or the deadline
// passed, so under loss it sends more than count: the loss it reports is
// still replies over echoes sent.
func pingArgs(addr string, count int, interval time.Duration) []string {
	deadline := int(math.Ceil((time.Duration(count)*interval + 3*time.Second).Seconds()))
	return []string{"ping", "-n", "-c", strconv.Itoa(count), "-i", strconv.FormatFloat(interval.Seconds(), 'f', 3, 64),
		"-w", strconv.Itoa(deadline), addr}
}

// Measure runs the idle ping and then each load of cfg against target.
// It starts iperf3 servers on the responder (the Bed stops any left).
func Measure(ctx context.Context, topo *Topology, target Target, cfg Config) (Result, error) {
	var res Result
	if err := cfg.Validate(len(topo.Pushers)); err != nil {
		return res, err
	}
	var err error
	if res.IdleMem, err = readMemory(target.PID); err != nil {
		return res, err
	}
	if cfg.ProfileDir != "" && target.Pprof != "" {
		if err := heapProfile(ctx, topo, target, cfg, 0); err != nil {
			return res, err
		}
	}
	if res.Idle, err = ping(ctx, topo.Bed, topo.Idle, target, cfg.pingCount(), cfg.PingInterval); err != nil {
		return res, fmt.Errorf("perf: idle ping: %w", err)
	}
	for _, n := range cfg.Peers {
		l, err := measureLoad(ctx, topo, target, cfg, n)
		if err != nil {
			return res, fmt.Errorf("perf: load with %d pushers: %w", n, err)
		}
		res.Loads = append(res.Loads, l)
		// Let the queues drain so one load does not bleed into the next.
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(AfterSettle - time.Second):
	}
	if res.AfterMem, err = readMemory(target.PID); err != nil {
		return res, err
	}
	return res, nil
}

// startIperfServers starts n one-off iperf3 servers on the responder, one
// per pusher, and waits until they listen. One-off servers exit by
// themselves after their test, so each load starts fresh ones.
func startIperfServers(ctx context.Context, topo *Topology, n int) error {
	for i := range n {
		topo.Responder.Start("iperf3", "--server", "--one-off", "-p", strconv.Itoa(iperfBasePort+i))
	}
	return poll(ctx, 50, func() error {
		out, err := topo.Bed.ExecContext(ctx, topo.Responder.NS(), "ss", "-Htln")
		if err != nil {
			return err
		}
		for i := range n {
			if !strings.Contains(string(out), ":"+strconv.Itoa(iperfBasePort+i)+" ") {
				return fmt.Errorf("perf: iperf3 server on port %d not listening", iperfBasePort+i)
			}
		}
		return nil
	})
}

// ping runs one bounded ping from h to the target and parses it. ping's
// exit status is ignored: partial loss exits 1 but is still a result.
func ping(ctx context.Context, bed *testbed.Bed, h *testbed.Host, target Target, count int, interval time.Duration) (RTT, error) {
	out, _ := bed.ExecContext(ctx, h.NS(), pingArgs(target.Addr.String(), count, interval)...)
	r, err := ParsePing(out)
	if err != nil {
		return r, fmt.Errorf("perf: ping from %s: %w: %s", h.Name(), err, tail(out, 500))
	}
	return r, nil
}

// measureLoad pushes TCP from n pushers at once while the idle peer and
// the first pusher ping the responder and a sampler watches its memory.
func measureLoad(ctx context.Context, topo *Topology, target Target, cfg Config, n int) (Load, error) {
	l := Load{Peers: n, PerPeer: make([]float64, n)}
	if err := startIperfServers(ctx, topo, n); err != nil {
		return l, err
	}
	_, _, counts0, err := sojourn(ctx, topo, target, cfg, n, nil)
	if err != nil {
		return l, err
	}
	gc0, err := numGC(ctx, topo, target)
	if err != nil {
		return l, err
	}
	comm := processName(target.PID)
	netns, err := namespaceInodes(topo.Bed.Namespaces())
	if err != nil {
		return l, err
	}
	cpu0, err := daemonsCPU(comm, netns)
	if err != nil {
		return l, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, n+3) // pushers, the two pings, the profile
	secs := strconv.Itoa(int(cfg.Duration / time.Second))
	for i := range n {
		wg.Go(func() {
			h := topo.Pushers[i]
			args := []string{"iperf3", "-c", target.Addr.String(),
				"-p", strconv.Itoa(iperfBasePort + i), "-t", secs, "-J", "--connect-timeout", "3000"}
			if cfg.Rate != "" {
				args = append(args, "-b", cfg.Rate)
			}
			out, err := topo.Bed.ExecContext(ctx, h.NS(), args...)
			bps, perr := ParseIperf3(out)
			if perr != nil {
				errs[i] = fmt.Errorf("iperf3 from %s: %w", h.Name(), errors.Join(perr, err))
				cancel() // a failed flow spoils the load: stop the rest now
				return
			}
			l.PerPeer[i] = bps
		})
	}
	for j, h := range []*testbed.Host{topo.Idle, topo.Pushers[0]} {
		dst := []*RTT{&l.IdlePeer, &l.PushingPeer}[j]
		wg.Go(func() {
			// Ping once TCP has ramped up, not during slow start.
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			var err error
			if *dst, err = ping(ctx, topo.Bed, h, target, cfg.pingCount(), cfg.PingInterval); err != nil {
				errs[n+j] = err
			}
		})
	}
	if cfg.ProfileDir != "" && target.Pprof != "" && (n == 1 || n == slices.Max(cfg.Peers)) {
		wg.Go(func() {
			errs[n+2] = profile(ctx, topo, target, cfg, n)
		})
	}
	peak := sampleMemory(target.PID, &wg)
	wg.Wait()
	rss := <-peak
	if err := errors.Join(errs...); err != nil {
		return l, err
	}
	cpu1, err := daemonsCPU(comm, netns)
	if err != nil {
		return l, err
	}
	l.CPU = cpu1 - cpu0
	gc1, err := numGC(ctx, topo, target)
	if err != nil {
		return l, err
	}
	if gc0 >= 0 && gc1 >= 0 {
		l.GCs, l.GCsKnown = gc1-gc0, true
	}
	mem, err := readMemory(target.PID)
	if err != nil {
		return l, err
	}
	l.Memory = Memory{RSS: max(rss, mem.RSS), HWM: mem.HWM}
	if cfg.ProfileDir != "" && target.Pprof != "" {
		if err := heapProfile(ctx, topo, target, cfg, n); err != nil {
			return l, err
		}
	}
	if l.Responder, l.Pushers, _, err = sojourn(ctx, topo, target, cfg, n, counts0); err != nil {
		return l, err
	}
	l.CountsKnown = counts0 != nil
	for _, bps := range l.PerPeer {
		l.Aggregate += bps
	}
	l.Bytes = l.Aggregate / 8 * cfg.Duration.Seconds()
	return l, nil
}

// numGC is the responder daemon's count of GC cycles so far, from the
// MemStats at the end of its pprof heap profile; -1 if the target serves
// no pprof.
func numGC(ctx context.Context, topo *Topology, target Target) (int, error) {
	if target.Pprof == "" {
		return -1, nil
	}
	b, err := topo.Bed.ExecContext(ctx, topo.Responder.NS(), "curl", "-sSf", target.Pprof+"/heap?debug=1")
	if err != nil {
		return 0, fmt.Errorf("perf: heap profile on %s: %w: %s", topo.Responder.Name(), err, tail(b, 300))
	}
	return ParseNumGC(b)
}

// sampleMemory samples pid's VmRSS every quarter second until wg's
// goroutines are done and then sends the peak.
func sampleMemory(pid int, wg *sync.WaitGroup) <-chan uint64 {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	peak := make(chan uint64, 1)
	go func() {
		var hi uint64
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			if m, err := readMemory(pid); err == nil {
				hi = max(hi, m.RSS)
			}
			select {
			case <-done:
				peak <- hi
				return
			case <-tick.C:
			}
		}
	}()
	return peak
}

// profile saves CPU profiles, as long as the n-pusher load (the 1-pusher
// and the largest), of the responder (cfg.ProfileDir/cpu-<n>-responder.pprof:
// the receive path) and of the first pusher (cpu-<n>-pusher.pprof: the send
// path). curl runs in each host's namespace, where its daemon's debug
// endpoint listens on loopback.
func profile(ctx context.Context, topo *Topology, target Target, cfg Config, n int) error {
	if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
		return fmt.Errorf("perf: profile: %w", err)
	}
	url := target.Pprof + "/profile?seconds=" + strconv.Itoa(int(cfg.Duration/time.Second))
	var wg sync.WaitGroup
	var errs [2]error
	for i, h := range []*testbed.Host{topo.Responder, topo.Pushers[0]} {
		out := filepath.Join(cfg.ProfileDir, "cpu-"+strconv.Itoa(n)+"-"+[]string{"responder", "pusher"}[i]+".pprof")
		wg.Go(func() {
			if b, err := topo.Bed.ExecContext(ctx, h.NS(), "curl", "-sSf", "-o", out, url); err != nil {
				errs[i] = fmt.Errorf("perf: profile %s on %s: %w: %s", url, h.Name(), err, tail(b, 300))
			}
		})
	}
	wg.Wait()
	return errors.Join(errs[:]...)
}

// heapProfile saves the responder's heap profile right after the n-pusher
// load, n = 0 before any (cfg.ProfileDir/heap-<n>-responder.txt, pprof's
// text form, which ends with the runtime's MemStats), and the kernel's view
// of its memory beside it (smaps-<n>-responder.txt: /proc/PID/smaps_rollup,
// which splits RSS into anonymous memory, the heap's part, and file pages,
// the binary's text and data).
func heapProfile(ctx context.Context, topo *Topology, target Target, cfg Config, n int) error {
	if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
		return fmt.Errorf("perf: heap profile: %w", err)
	}
	out := filepath.Join(cfg.ProfileDir, "heap-"+strconv.Itoa(n)+"-responder.txt")
	if b, err := topo.Bed.ExecContext(ctx, topo.Responder.NS(), "curl", "-sSf", "-o", out, target.Pprof+"/heap?debug=1"); err != nil {
		return fmt.Errorf("perf: heap profile on %s: %w: %s", topo.Responder.Name(), err, tail(b, 300))
	}
	smaps, err := os.ReadFile("/proc/" + strconv.Itoa(target.PID) + "/smaps_rollup")
	if err != nil {
		return fmt.Errorf("perf: heap profile: %w", err)
	}
	if err := os.WriteFile(filepath.Join(cfg.ProfileDir, "smaps-"+strconv.Itoa(n)+"-responder.txt"), smaps, 0o644); err != nil {
		return fmt.Errorf("perf: heap profile: %w", err)
	}
	return nil
}

// sojourn resets (before the n-pusher load) or saves (after it) the
// per-stage sojourn histograms of the responder's and the idle peer's
// daemons (cfg.ProfileDir/sojourn-<n>-responder.txt, -idle.txt), where
// the target serves them. It also reads the packet counters of the
// responder (the sojourn report's, over the load) and of each pusher
// (its /debug/status totals: no recording switched on in a pusher) with
// each namespace's kernel UDP error counters, and after the load returns
// the responder's and the pushers' sum over the load: where the pushers'
// packets were lost. before is what the reset returned.
func sojourn(ctx context.Context, topo *Topology, target Target, cfg Config, n int, before []Counts) (resp, push Counts, now []Counts, err error) {
	if cfg.ProfileDir == "" || target.Sojourn == "" || target.Status == "" {
		return resp, push, nil, nil
	}
	if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
		return resp, push, nil, fmt.Errorf("perf: sojourn: %w", err)
	}
	hosts := append([]*testbed.Host{topo.Responder, topo.Idle}, topo.Pushers[:n]...)
	now = make([]Counts, len(hosts))
	for i, h := range hosts {
		var c Counts
		switch {
		case i < 2:
			args := []string{"curl", "-sSf", "-m", "10", "-o", "/dev/null", target.Sojourn + "?reset=1"}
			out := filepath.Join(cfg.ProfileDir, "sojourn-"+strconv.Itoa(n)+"-"+[]string{"responder", "idle"}[i]+".txt")
			if before != nil {
				args = []string{"curl", "-sSf", "-m", "10", "-o", out, target.Sojourn}
			}
			if b, err := topo.Bed.ExecContext(ctx, h.NS(), args...); err != nil {
				return resp, push, nil, fmt.Errorf("perf: sojourn on %s: %w: %s", h.Name(), err, tail(b, 300))
			}
			if i == 1 || before == nil {
				break
			}
			b, err := os.ReadFile(out)
			if err != nil {
				return resp, push, nil, fmt.Errorf("perf: sojourn: %w", err)
			}
			if c, err = ParseSojournCounts(b); err != nil {
				return resp, push, nil, fmt.Errorf("perf: sojourn on %s: %w", h.Name(), err)
			}
		default:
			b, err := topo.Bed.ExecContext(ctx, h.NS(), "curl", "-sSf", "-m", "10", target.Status)
			if err != nil {
				return resp, push, nil, fmt.Errorf("perf: status on %s: %w: %s", h.Name(), err, tail(b, 300))
			}
			if c, err = ParseStatusCounts(b); err != nil {
				return resp, push, nil, fmt.Errorf("perf: status on %s: %w", h.Name(), err)
			}
		}
		// The namespace's kernel counters (RcvbufErrors: datagrams the
		// kernel dropped at a full socket buffer; the TCP senders'
		// retransmits and timeouts).
		raw, err := topo.Bed.ExecContext(ctx, h.NS(), "cat", "/proc/net/snmp", "/proc/net/netstat")
		if err != nil {
			return resp, push, nil, fmt.Errorf("perf: snmp on %s: %w", h.Name(), err)
		}
		if c.Kernel, err = ParseKernelCounters(raw); err != nil {
			return resp, push, nil, err
		}
		now[i] = c
		switch {
		case before == nil || i == 1:
		case i == 0:
			// The sojourn report's counters are the load's already.
			resp = c
			resp.Kernel = diffCounts(before[i].Kernel, c.Kernel)
			// The responder namespace's whole snmp, since it was made.
			if err := os.WriteFile(filepath.Join(cfg.ProfileDir, "snmp-"+strconv.Itoa(n)+"-responder.txt"), raw, 0o644); err != nil {
				return resp, push, nil, fmt.Errorf("perf: snmp: %w", err)
			}
		default:
			push.Add(c.Sub(before[i]))
		}
	}
	return resp, push, now, nil
}
