package cloudsim

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/rootca"
	"github.com/cyphonic/cyphonic-go/cloud/server"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
)

// The load tool: BenchmarkLoad drives simulated nodes (this package's Node,
// the real protocol over loopback UDP) against one cloud in a separate
// process (this test binary re-run as a cloud, so the cloud's heap and RSS
// are its own), through
//
//  1. logins with registration, -load.nodes of them, -load.conc at a time;
//  2. keepalives at the real period (-load.keepalive, 15 s) from every node,
//     for the rest of the run, each node at a random phase;
//  3. after -load.settle of keepalives, a burst of tunnel setups
//     (-load.tunnels, between random pairs, -load.conc at a time);
//  4. churn for -load.churn: extra nodes that log in, register, set up a
//     tunnel and then log out or vanish (stop talking; their sessions
//     expire after SessionIdle).
//
// It prints rates, latency percentiles, the cloud's heap and RSS per
// registered node, its goroutines and live actors, NMS's refusal counters,
// and the CPU time used so far by the cloud and by the nodes. Example:
//
//	go test ./test/cloudsim -run '^$' -bench Load -benchtime 1x -timeout 30m \
//	    -load.nodes 5000 -load.settle 60s -load.churn 60s
//
// Nodes and the cloud share the machine: on two cores the nodes' own CPU
// (sealing, opening, one goroutine per socket) is part of what is measured.
//
// Registered nodes share sockets (socket.go) when a socket each would take
// more than half the open-files limit (-load.nodespersocket overrides):
// to the cloud, nodes behind one CGN mapping; each socket has a loopback
// address of its own (loadBind).
var (
	loadNodes     = flag.Int("load.nodes", 1000, "load: registered nodes that keepalive for the whole run")
	loadConc      = flag.Int("load.conc", 64, "load: logins or tunnel setups in flight at once")
	loadKeepalive = flag.Duration("load.keepalive", 15*time.Second, "load: keepalive period (the node's real one is 15 s)")
	loadSettle    = flag.Duration("load.settle", 30*time.Second, "load: keepalive-only phase before the tunnel burst")
	loadTunnels   = flag.Int("load.tunnels", 0, "load: tunnel setups in the burst (default load.nodes)")
	loadChurn     = flag.Duration("load.churn", 30*time.Second, "load: churn phase")
	loadStore     = flag.String("load.store", "", "load: store URL for the cloud (default bbolt)")
	loadProfile   = flag.String("load.profile", "", "load: directory to save the cloud's heap profile after each phase (go tool pprof -base), and its CPU profile over the keepalive-only phase")
	loadProcs     = flag.Int("load.cloudprocs", 0, "load: GOMAXPROCS of the cloud process alone (default: inherited)")
	loadDrain     = flag.Duration("load.drain", 0, "load: after the churn, keep the registered nodes keepaliving this long and report again (the vanished churn nodes' sessions end after the cloud's SessionIdle, 3 min)")
	loadTunConc   = flag.Int("load.tunnelconc", 0, "load: tunnel setups in flight at once (default load.conc)")
	loadPerSocket = flag.Int("load.nodespersocket", 0, "load: registered nodes sharing one UDP socket (default: 1 while the sockets fit in half the open-files limit, else the fewest that fit)")
	loadKAEarly   = flag.Bool("load.kaearly", false, "load: each node starts keepaliving as soon as it has registered, not once all have: with many nodes the login phase can outlast the cloud's SessionIdle (3 min), and the first nodes' sessions would expire before their first keepalive (login figures then include the keepalives' load)")
	loadMemRate   = flag.Int("load.memprofilerate", 4096, "load: runtime.MemProfileRate of the cloud process: the default samples finely enough to attribute a few hundred bytes a node in the heap profiles, and costs the cloud ~15% more CPU on allocation-heavy phases (tunnel setups); 0 is Go's default (512 KiB), for CPU figures")
	loadCloudCPUs = flag.String("load.cloudcpus", "", "load: CPUs for the cloud process (a list as taskset -c takes it, e.g. 1); its GOMAXPROCS follows unless load.cloudprocs is set")
	loadNodeCPUs  = flag.String("load.nodecpus", "", "load: CPUs for the simulated nodes (this process), e.g. 0; GOMAXPROCS follows")
	loadTunnelFor = flag.Duration("load.tunnelfor", 0, "load: run the tunnel phase for this long, load.conc setups in flight, instead of load.tunnels setups (with load.profile: the cloud's CPU profile over it, cpu-tunnels.pb.gz)")
)

// loadNode makes load node number i with a certificate signed by ca
// directly, its VIPs numbered from loadVIPBase up: the CA's Issue rewrites
// its whole registry (issued.json) for every certificate, which at 100k
// nodes is hours of JSON. The numbers stay clear of what the registry hands
// out (it counts from 1), so the VIPs are unique in the cloud.
//
// With ss, the node uses that shared socket (socket.go) instead of one of
// its own.
func loadNode(ca *rootca.CA, fqdn string, i uint64, ss *SharedSocket) (*Node, error) {
	const loadVIPBase = 1 << 21 // of the /10's 4M IPv4 VIPs
	vip6, vip4, err := pki.VIPPair(pki.DefaultVIP6, pki.DefaultVIP4, loadVIPBase+i)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	id, err := pki.NewIdentity(pki.CertRequest{Role: pki.RoleNode, FQDN: fqdn, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(2 * time.Hour),
		VIP6: vip6, VIP4: vip4}, ca.Sign)
	if err != nil {
		return nil, err
	}
	if ss != nil {
		return NewNodeSharing(ca, id, ss)
	}
	return makeNode(ca, id, loadBind(i))
}

// loadBind is socket i's address: each socket on an address of its own
// in 127/8 (all local on Linux's lo), 127.c.b.a with a and c in 1-254,
// distinct for the first 16.5M. Nodes on 8 addresses, as before, looked
// to the AS like 8 sources of thousands of logins each: once the login
// burst made it count as loaded, its per-source limit (2 a second per
// IPv4 address, cloud/as/limit.go) held each to its share and logins
// stalled (a 30k run: 8,229 logins, then none, 18k packets "limited").
// Real nodes come from many addresses; a shared socket is one CGN
// mapping.
func loadBind(i uint64) netip.Addr {
	a := byte(1 + i%254)
	i /= 254
	b := byte(i % 256)
	i /= 256
	return netip.AddrFrom4([4]byte{127, byte(1 + i%254), b, a})
}

// loadSockets opens the shared sockets for n nodes, per to a socket: nil
// for a socket each. Node i goes on socket i mod len: consecutive nodes,
// which log in at the same time, are on different sockets and never wait
// for each other's login slot.
func loadSockets(b *testing.B, n, per int) []*SharedSocket {
	if per <= 1 {
		return nil
	}
	socks := make([]*SharedSocket, (n+per-1)/per)
	for i := range socks {
		ss, err := NewSharedSocket(loadBind(uint64(i)))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(ss.Close) // after the nodes' Close: their last one closed it
		socks[i] = ss
	}
	return socks
}

// latencies collects one operation's durations and errors.
type latencies struct {
	mu    sync.Mutex
	d     []time.Duration
	errs  atomic.Int64
	phase *latencies // also collects into this one (mark)
}

func (l *latencies) add(d time.Duration, err error) {
	l.mu.Lock()
	ph := l.phase
	if err == nil {
		l.d = append(l.d, d)
	}
	l.mu.Unlock()
	if err != nil {
		l.errs.Add(1)
	}
	if ph != nil {
		ph.add(d, err)
	}
}

// mark makes l also collect into ph from now on (nil: stop), for one
// phase's figures beside the whole run's.
func (l *latencies) mark(ph *latencies) {
	l.mu.Lock()
	l.phase = ph
	l.mu.Unlock()
}

func (l *latencies) time(f func() error) error {
	start := time.Now()
	err := f()
	l.add(time.Since(start), err)
	return err
}

// count is the operations done so far.
func (l *latencies) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.d)
}

func (l *latencies) String() string {
	l.mu.Lock()
	d := slices.Clone(l.d)
	l.mu.Unlock()
	slices.Sort(d)
	p := func(q float64) time.Duration {
		if len(d) == 0 {
			return 0
		}
		return d[min(len(d)-1, int(q*float64(len(d))))].Round(10 * time.Microsecond)
	}
	return fmt.Sprintf("n=%d errors=%d p50=%v p90=%v p99=%v max=%v", len(d), l.errs.Load(), p(0.5), p(0.9), p(0.99), p(1))
}

// cloudProc is the cloud under load, in its own process.
type cloudProc struct {
	as    netip.AddrPort
	debug string
	ca    *rootca.CA
	pid   int
}

func startLoadCloud(b testing.TB) *cloudProc {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "cloud")
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), envChild+"="+dir, envChild+"_STORE="+*loadStore, envChild+"_DEBUG=127.0.0.1:0",
		fmt.Sprintf("%s_MEMRATE=%d", envChild, *loadMemRate))
	if *loadProcs > 0 {
		child.Env = append(child.Env, fmt.Sprintf("GOMAXPROCS=%d", *loadProcs))
	} else if *loadCloudCPUs != "" {
		// The runtime sizes GOMAXPROCS from the CPUs it may use at start,
		// before pinLoad pins it.
		if set, err := parseCPUs(*loadCloudCPUs); err == nil {
			child.Env = append(child.Env, fmt.Sprintf("GOMAXPROCS=%d", set.Count()))
		}
	}
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		child.Wait()
	})
	r := bufio.NewReader(stdout)
	var c cloudProc
	for _, want := range []string{"READY ", "DEBUG "} {
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, want) {
			b.Fatalf("load cloud: %q %v", line, err)
		}
		v := strings.TrimSpace(strings.TrimPrefix(line, want))
		if want == "READY " {
			c.as = netip.MustParseAddrPort(v)
		} else {
			c.debug = v
		}
	}
	go io.Copy(io.Discard, r)
	ca, err := rootca.Load(server.BootstrapCADir(dir))
	if err != nil {
		b.Fatal(err)
	}
	c.ca, c.pid = ca, child.Process.Pid
	return &c
}

// metrics scrapes the cloud's /metrics, after a GC when gc is set (through
// pprof's heap endpoint), so heap figures are live memory.
func (c *cloudProc) metrics(b testing.TB, gc bool) map[string]float64 {
	b.Helper()
	if gc {
		if resp, err := http.Get("http://" + c.debug + "/debug/pprof/heap?gc=1"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	resp, err := http.Get("http://" + c.debug + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// saveProfile fetches a pprof endpoint of the cloud into -load.profile.
func (c *cloudProc) saveProfile(path, name string) {
	resp, err := http.Get("http://" + c.debug + path)
	if err != nil {
		fmt.Printf("load: profile %s: %v\n", name, err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(filepath.Join(*loadProfile, name))
	if err != nil {
		fmt.Printf("load: profile %s: %v\n", name, err)
		return
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		fmt.Printf("load: profile %s: %v\n", name, err)
	}
}

// report prints the cloud's state after a phase and returns the metrics
// it read (after a GC).
func (c *cloudProc) report(b *testing.B, what string, base map[string]float64, nodes int) map[string]float64 {
	m := c.metrics(b, true)
	if *loadProfile != "" {
		if resp, err := http.Get("http://" + c.debug + "/debug/pprof/heap"); err == nil {
			f, err := os.Create(filepath.Join(*loadProfile, "heap-"+strings.ReplaceAll(what, " ", "-")+".pb.gz"))
			if err == nil {
				io.Copy(f, resp.Body)
				f.Close()
			}
			resp.Body.Close()
		}
	}
	heap, rss := m["go_memstats_heap_alloc_bytes"], m["process_resident_memory_bytes"]
	per := func(v, v0 float64) string {
		if nodes == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f B/node", (v-v0)/float64(nodes))
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	nodesCPU := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	fmt.Printf("%-24s heap %.1f MiB (%s over baseline)  RSS %.1f MiB (%s)  goroutines %.0f  sessions: nms %.0f store %.0f  tunnel-map %.0f  pending-deletes %.0f  CPU cloud %.1fs nodes %.1fs\n",
		what, heap/(1<<20), per(heap, base["go_memstats_heap_alloc_bytes"]), rss/(1<<20), per(rss, base["process_resident_memory_bytes"]),
		m["go_goroutines"], m["cyphonic_nms_sessions"], m["cyphonic_store_sessions"], m["cyphonic_nms_tunnel_nodes"], m["cyphonic_nms_session_deletions_pending"],
		m["process_cpu_seconds_total"], nodesCPU.Seconds())
	var actors []string
	for k, v := range m {
		if strings.HasPrefix(k, "cyphonic_actor_live{") && v > 0 {
			actors = append(actors, fmt.Sprintf("%s=%.0f", strings.TrimPrefix(k, "cyphonic_actor_live"), v))
		}
	}
	slices.Sort(actors)
	fmt.Printf("%-24s live actors: %s\n", "", strings.Join(actors, " "))
	var refused []string
	for _, r := range []string{"busy", "stale", "session-expired", "cache-full", "node-limit", "replayed"} {
		refused = append(refused, fmt.Sprintf("%s=%.0f", r, m[`cyphonic_nms_refused_total{reason="`+r+`"}`]))
	}
	fmt.Printf("%-24s refused: %s  cache %.0f/%.0f hits %.0f evicted %.0f failed %.0f  store queue nms %.0f as %.0f  as busy %.0f\n",
		"", strings.Join(refused, " "), m["cyphonic_nms_reply_cache_entries"], m["cyphonic_nms_reply_cache_capacity"],
		m[`cyphonic_nms_reply_cache_total{event="hit"}`], m[`cyphonic_nms_reply_cache_total{event="evicted"}`],
		m[`cyphonic_nms_reply_cache_total{event="failed"}`], m[`cyphonic_store_queue_depth{service="nms"}`],
		m[`cyphonic_store_queue_depth{service="as"}`], m[`cyphonic_as_dropped_total{reason="busy"}`])
	return m
}

// churnTolerance is issue 14's bar for the state after churn: within 10 %
// of the state before it.
const churnTolerance = 0.10

// backToBaseline is one line of the churn summary per item the issue
// names (sessions in the store, NMS's tunnels map, heap): its value before
// the churn, now, the change, and whether it is within churnTolerance.
type backToBaseline struct {
	item, metric string
	unit         float64 // divisor for printing (1 MiB for heap)
}

var churnItems = []backToBaseline{
	{"store sessions", "cyphonic_store_sessions", 1},
	{"tunnel map", "cyphonic_nms_tunnel_nodes", 1},
	{"heap MiB", "go_memstats_heap_alloc_bytes", 1 << 20},
}

// withinBaseline reports whether now is within tol of before (both zero
// counts as within).
func withinBaseline(before, now, tol float64) bool {
	if before == 0 {
		return now == 0
	}
	return math.Abs(now-before) <= tol*before
}

// churnSummary prints, for each churnItems entry, before (the state after
// the tunnel burst, the churn's baseline) against now, and pass or fail
// within churnTolerance; it returns whether all passed.
func churnSummary(what string, before, now map[string]float64) bool {
	all := true
	var parts []string
	for _, it := range churnItems {
		b, n := before[it.metric], now[it.metric]
		ok := withinBaseline(b, n, churnTolerance) && b >= 0 && n >= 0 // -1: the store could not be read
		all = all && ok
		verdict := "pass"
		if !ok {
			verdict = "FAIL"
		}
		change := "-"
		if b != 0 {
			change = fmt.Sprintf("%+.1f%%", 100*(n-b)/b)
		}
		parts = append(parts, fmt.Sprintf("%s %.1f -> %.1f (%s) %s", it.item, b/it.unit, n/it.unit, change, verdict))
	}
	verdict := "pass"
	if !all {
		verdict = "FAIL"
	}
	fmt.Printf("%-24s vs before churn (±%.0f%%): %s: %s\n", what, 100*churnTolerance, verdict, strings.Join(parts, "; "))
	return all
}

// parallel runs f(i) for i in [0, n), conc at a time.
func parallel(n, conc int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(conc, n) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				f(i)
			}
		})
	}
	wg.Wait()
}

func BenchmarkLoad(b *testing.B) {
	if *loadProfile != "" {
		if err := os.MkdirAll(*loadProfile, 0o755); err != nil {
			b.Fatalf("load.profile: %v", err)
		}
	}
	N, conc := *loadNodes, *loadConc
	tunnels := *loadTunnels
	if tunnels <= 0 {
		tunnels = N
	}
	per := *loadPerSocket
	if per <= 0 {
		per = NodesPerSocket(N)
	}
	c := startLoadCloud(b)
	if said, err := pinLoad(c.pid, *loadCloudCPUs, *loadNodeCPUs); err != nil {
		b.Fatal(err)
	} else if said != "" {
		fmt.Printf("load: pinned: %s\n", said)
	}
	socks := loadSockets(b, N, per)
	nsock := N
	if socks != nil {
		nsock = len(socks)
	}
	fmt.Printf("load: %d nodes on %d sockets (%d per socket), keepalive every %v, %d tunnels, churn %v, %d in flight; cloud pid %d\n",
		N, nsock, per, *loadKeepalive, tunnels, *loadChurn, conc, c.pid)
	if len(socks) > 0 && len(socks) < conc {
		fmt.Printf("load: WARNING: %d sockets < %d logins in flight: logins wait for their socket's login slot, and login latency includes that wait\n", len(socks), conc)
	}
	base := c.metrics(b, true)
	c.report(b, "baseline", base, 0)

	nodes := make([]*Node, N)
	for i := range nodes {
		var ss *SharedSocket
		if socks != nil {
			ss = socks[i%len(socks)]
		}
		n, err := loadNode(c.ca, fmt.Sprintf("l%d.load.cyphonic", i), uint64(i), ss)
		if err != nil {
			b.Fatal(err)
		}
		n.AckDenyLists = true // as real nodes do: no re-push on every keepalive
		b.Cleanup(n.Close)
		nodes[i] = n
	}
	b.ResetTimer()

	// Keepalives at the real period, each node at a random phase, from
	// the end of the logins (or its registration: -load.kaearly) on.
	var ka latencies
	stop := make(chan struct{})
	var kaWG sync.WaitGroup
	keepalive := func(n *Node) {
		kaWG.Go(func() {
			t := time.NewTimer(rand.N(*loadKeepalive))
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				ka.time(func() error { _, err := n.Keepalive(); return err })
				t.Reset(*loadKeepalive)
			}
		})
	}

	// 1. Logins and registrations.
	var login, register latencies
	up := make([]bool, N)
	cpu0 := c.metrics(b, false)["process_cpu_seconds_total"]
	start := time.Now()
	parallel(N, conc, func(i int) {
		n := nodes[i]
		if login.time(func() error { _, err := n.Login(c.as, false); return err }) == nil {
			up[i] = register.time(func() error { _, err := n.Register(false); return err }) == nil
			if up[i] && *loadKAEarly {
				keepalive(n)
			}
		}
	})
	el := time.Since(start)
	cpu1 := c.metrics(b, false)["process_cpu_seconds_total"]
	fmt.Printf("%-24s %.0f/s over %v, cloud CPU %.0f µs each\n  login    %v\n  register %v\n", "logins+registrations", float64(N)/el.Seconds(), el.Round(time.Millisecond),
		(cpu1-cpu0)*1e6/float64(N), &login, &register)
	c.report(b, "after logins", base, N)

	// 2. Keepalives at the real period, in the background from now on.
	for i, n := range nodes {
		if up[i] && !*loadKAEarly {
			keepalive(n)
		}
	}
	var cpuDone chan struct{}
	if *loadProfile != "" && *loadSettle > 2*time.Second {
		cpuDone = make(chan struct{})
		go func() {
			defer close(cpuDone)
			c.saveProfile(fmt.Sprintf("/debug/pprof/profile?seconds=%d", int((*loadSettle-time.Second)/time.Second)), "cpu-keepalives.pb.gz")
		}()
	}
	ka0, settleStart := ka.count(), time.Now()
	m0 := c.metrics(b, false)
	cpu0, kaCloud0 := m0["process_cpu_seconds_total"], kaHistogram(m0)
	var kaSettle latencies // the sim-side latencies of the settle phase alone
	ka.mark(&kaSettle)
	time.Sleep(*loadSettle)
	ka.mark(nil)
	kaDone, settled := ka.count()-ka0, time.Since(settleStart)
	m1 := c.metrics(b, false)
	cpu1 = m1["process_cpu_seconds_total"]
	fmt.Printf("%-24s %.0f/s expected, %.0f/s answered, cloud CPU %.0f µs each\n  keepalive (nodes) %v\n  keepalive (cloud) %v\n", "keepalives (settle)", float64(N)/loadKeepalive.Seconds(),
		float64(kaDone)/settled.Seconds(), (cpu1-cpu0)*1e6/float64(max(kaDone, 1)), &kaSettle, kaHistogram(m1).since(kaCloud0))
	if cpuDone != nil {
		<-cpuDone
	}
	c.report(b, "after settle", base, N)

	// 3. Tunnel burst between random pairs: load.tunnels setups, or as
	// many as load.tunnelconc at a time give in load.tunnelfor.
	var tun latencies
	tconc := conc
	if *loadTunConc > 0 {
		tconc = *loadTunConc
	}
	// Between nodes that are up: a node whose login failed has no session
	// to ask with (its failure is already counted under login).
	var upNodes []*Node
	for i, n := range nodes {
		if up[i] {
			upNodes = append(upNodes, n)
		}
	}
	if len(upNodes) < 2 {
		b.Fatalf("%d of %d nodes up: no tunnels to set up", len(upNodes), N)
	}
	setup := func() {
		ai := rand.N(len(upNodes))
		pi := rand.N(len(upNodes) - 1)
		if pi >= ai {
			pi++ // a peer other than the asker
		}
		tun.time(func() error { _, err := upNodes[ai].Tunnel(upNodes[pi].FQDN, false); return err })
	}
	cpu0 = c.metrics(b, false)["process_cpu_seconds_total"]
	start = time.Now()
	if *loadTunnelFor > 0 {
		if *loadProfile != "" && *loadTunnelFor > 2*time.Second {
			cpuDone = make(chan struct{})
			go func() {
				defer close(cpuDone)
				c.saveProfile(fmt.Sprintf("/debug/pprof/profile?seconds=%d", int((*loadTunnelFor-time.Second)/time.Second)), "cpu-tunnels.pb.gz")
			}()
		}
		deadline := start.Add(*loadTunnelFor)
		var wg sync.WaitGroup
		for range tconc {
			wg.Go(func() {
				for time.Now().Before(deadline) {
					setup()
				}
			})
		}
		wg.Wait()
		if cpuDone != nil {
			<-cpuDone
		}
	} else {
		parallel(tunnels, tconc, func(int) { setup() })
	}
	el = time.Since(start)
	cpu1 = c.metrics(b, false)["process_cpu_seconds_total"]
	done := tun.count() + int(tun.errs.Load())
	fmt.Printf("%-24s %.0f/s over %v, cloud CPU %.0f µs each (keepalives included), relay sessions %.0f\n  tunnel %v\n", "tunnel setups", float64(done)/el.Seconds(), el.Round(time.Millisecond),
		(cpu1-cpu0)*1e6/float64(max(done, 1)), c.metrics(b, false)["cyphonic_trs_sessions"], &tun)
	preChurn := c.report(b, "after tunnels", base, N)

	// 4. Churn: fresh nodes log in, register, tunnel to a registered node,
	// then log out (3 in 4) or vanish.
	var cLogin, cTunnel, cLogout latencies
	var iters, vanished atomic.Int64
	var churnVIPs atomic.Uint64 // churn nodes' VIP numbers, after the registered nodes'
	deadline := time.Now().Add(*loadChurn)
	var churnWG sync.WaitGroup
	for w := range conc / 4 {
		churnWG.Go(func() {
			for k := 0; time.Now().Before(deadline); k++ {
				n, err := loadNode(c.ca, fmt.Sprintf("c%d-%d.load.cyphonic", w, k), uint64(N)+churnVIPs.Add(1), nil)
				if err != nil {
					b.Error(err)
					return
				}
				n.AckDenyLists = true
				if cLogin.time(func() error {
					if _, err := n.Login(c.as, false); err != nil {
						return err
					}
					_, err := n.Register(false)
					return err
				}) == nil {
					cTunnel.time(func() error { _, err := n.Tunnel(nodes[rand.N(N)].FQDN, false); return err })
					if rand.N(4) > 0 {
						cLogout.time(func() error {
							env, err := n.Request(n.Reply.NMS[0], messages.Logout{}, false)
							if err == nil && env.Type != messages.MsgLogoutAck {
								err = errors.New("no logout ack")
							}
							return err
						})
					} else {
						vanished.Add(1)
					}
				}
				n.Close()
				iters.Add(1)
			}
		})
	}
	churnWG.Wait()
	fmt.Printf("%-24s %.1f iterations/s over %v, %d vanished\n  login+register %v\n  tunnel %v\n  logout %v\n", "churn",
		float64(iters.Load())/loadChurn.Seconds(), *loadChurn, vanished.Load(), &cLogin, &cTunnel, &cLogout)
	churnSummary("after churn", preChurn, c.report(b, "after churn", base, N))
	if *loadDrain > 0 {
		time.Sleep(*loadDrain)
		churnSummary("after drain", preChurn, c.report(b, "after drain", base, N))
		if *loadDrain <= 3*time.Minute {
			fmt.Printf("%-24s load.drain %v is not beyond the cloud's SessionIdle (3 min): the vanished nodes' sessions may not have expired yet\n", "", *loadDrain)
		}
	}
	close(stop)
	kaWG.Wait()
	var unclaimed int64
	for _, ss := range socks {
		unclaimed += ss.Unclaimed()
	}
	fmt.Printf("%-24s\n  keepalive (nodes) %v\n  keepalive (cloud) %v\n  packets on shared sockets for none of their nodes: %d\n", "keepalives (whole run)", &ka,
		kaHistogram(c.metrics(b, false)), unclaimed)
	b.StopTimer()
}

func TestWithinBaseline(t *testing.T) {
	for _, tt := range []struct {
		before, now float64
		want        bool
	}{
		{100, 100, true}, {100, 110, true}, {100, 90, true}, {100, 110.1, false}, {100, 89.9, false},
		{0, 0, true}, {0, 1, false}, {10000, 11000, true}, {10000, 8230 + 10000, false},
	} {
		if got := withinBaseline(tt.before, tt.now, churnTolerance); got != tt.want {
			t.Errorf("withinBaseline(%v, %v) = %v, want %v", tt.before, tt.now, got, tt.want)
		}
	}
}
