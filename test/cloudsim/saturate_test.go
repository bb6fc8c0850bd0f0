package cloudsim

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	satNodes = flag.Int("sat.nodes", 256, "saturate: nodes, each one closed loop (one request in flight)")
	satFor   = flag.Duration("sat.for", 10*time.Second, "saturate: length of the keepalive and tunnel phases")
)

// BenchmarkLoadSaturate finds the cloud's ceilings rather than its
// behaviour at a real load (BenchmarkLoad): against the same separate
// cloud process (-load.cloudprocs sets its GOMAXPROCS), -sat.nodes nodes
// log in and register (64 at a time), then for -sat.for each send
// keepalives back to back (a new one as soon as the last is answered),
// then tunnel requests back to back to random other nodes. It prints each
// phase's rate and the cloud's CPU per operation. The nodes' own work per
// keepalive or tunnel request (one seal, one open, two syscalls) is a
// fraction of the cloud's, but they share the machine with it: on two
// cores the rates are the machine's, not the cloud's alone.
//
//	go test ./test/cloudsim -run '^$' -bench LoadSaturate -benchtime 1x -load.cloudprocs 2
func BenchmarkLoadSaturate(b *testing.B) {
	N := *satNodes
	c := startLoadCloud(b)
	nodes := make([]*Node, N)
	for i := range nodes {
		n, err := NewNode(c.ca, fmt.Sprintf("s%d.sat.cyphonic", i))
		if err != nil {
			b.Fatal(err)
		}
		n.AckDenyLists = true
		b.Cleanup(n.Close)
		nodes[i] = n
	}
	b.ResetTimer()
	cpu := func() float64 { return c.metrics(b, false)["process_cpu_seconds_total"] }

	var login latencies
	cpu0, start := cpu(), time.Now()
	parallel(N, 64, func(i int) {
		login.time(func() error {
			if _, err := nodes[i].Login(c.as, false); err != nil {
				return err
			}
			_, err := nodes[i].Register(false)
			return err
		})
	})
	el, cpu1 := time.Since(start), cpu()
	fmt.Printf("%-22s %6.0f/s  cloud CPU %5.0f µs each  %v\n", "logins+registrations", float64(N)/el.Seconds(), (cpu1-cpu0)*1e6/float64(N), &login)

	phase := func(what string, op func(i int) error) {
		var lat latencies
		var done atomic.Int64
		deadline := time.Now().Add(*satFor)
		cpu0, start := cpu(), time.Now()
		var wg sync.WaitGroup
		for i := range nodes {
			wg.Go(func() {
				for time.Now().Before(deadline) {
					if lat.time(func() error { return op(i) }) == nil {
						done.Add(1)
					}
				}
			})
		}
		wg.Wait()
		el, cpu1 := time.Since(start), cpu()
		fmt.Printf("%-22s %6.0f/s  cloud CPU %5.0f µs each  %v\n", what, float64(done.Load())/el.Seconds(), (cpu1-cpu0)*1e6/float64(max(done.Load(), 1)), &lat)
	}
	phase("keepalives", func(i int) error { _, err := nodes[i].Keepalive(); return err })
	phase("tunnel setups", func(i int) error {
		p := rand.N(N - 1)
		if p >= i {
			p++
		}
		_, err := nodes[i].Tunnel(nodes[p].FQDN, false)
		return err
	})
	m := c.metrics(b, false)
	var drops float64
	for k, v := range m {
		if len(k) > 35 && k[:35] == "cyphonic_worker_queue_dropped_total" {
			drops += v
		}
	}
	fmt.Printf("%-22s nms refused busy=%.0f replayed=%.0f; worker queue drops %.0f\n", "", m[`cyphonic_nms_refused_total{reason="busy"}`],
		m[`cyphonic_nms_refused_total{reason="replayed"}`], drops)
	b.StopTimer()
}
