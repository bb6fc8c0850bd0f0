package cloudsim

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/server"
	"github.com/cyphonic/cyphonic-go/test/attack"
	"github.com/cyphonic/cyphonic-go/test/systest"
)

// BenchmarkCloud measures, against one cloud process over loopback UDP, how
// many logins (with registration) and tunnel setups per second it completes
// with 32 concurrent nodes, and the heap held per registered node.
//
//	go test ./test/cloudsim -run '^$' -bench Cloud -benchtime 200x
func BenchmarkCloud(b *testing.B) {
	s := startCloud(b, b.TempDir())
	if u := os.Getenv("CLOUDSIM_BENCH_STORE"); u != "" { // e.g. redis://127.0.0.1:6379/15
		s.Close(context.Background())
		var err error
		s, err = server.Start(context.Background(), server.Config{DataDir: b.TempDir(), StoreURL: u, Ephemeral: true,
			Listen: []netip.Addr{netip.MustParseAddr("127.0.0.1")}})
		if err != nil {
			b.Fatal(err)
		}
	}
	defer s.Close(context.Background())
	asAddr := s.AS.Addrs()[0]
	nodes := make([]*Node, b.N)
	for i := range nodes {
		nodes[i] = newNode(b, s, fmt.Sprintf("b%d.example.cyphonic", i))
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	const workers = 32
	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < len(nodes); i = int(next.Add(1)) - 1 {
				if _, err := nodes[i].Login(asAddr, false); err != nil {
					b.Error(err)
					return
				}
				if _, err := nodes[i].Register(false); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	loginDur := time.Since(start)

	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)

	start = time.Now()
	next.Store(0)
	pairs := len(nodes) / 2
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < pairs; i = int(next.Add(1)) - 1 {
				if _, err := nodes[i].Tunnel(nodes[len(nodes)-1-i].FQDN, false); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	tunnelDur := time.Since(start)
	b.StopTimer()

	b.ReportMetric(float64(len(nodes))/loginDur.Seconds(), "logins/s")
	if pairs > 0 {
		b.ReportMetric(float64(pairs)/tunnelDur.Seconds(), "tunnels/s")
	}
	// Heap growth across logins, per node. It includes the simulated nodes'
	// own sessions (a few hundred bytes each), so it is an upper bound.
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(len(nodes)), "heapB/node")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkLoginUnderFlood measures a real node's login (to the sealed
// LoginReply) while 16 sources send forged logins built from another
// node's certificate as fast as one goroutine can (issue 9's login-flood
// row in BENCHMARKS.md). ns/op is one login's latency; flood/s is the rate
// the flood was sent at, admitted/s how many of those the AS spent a
// certificate check and a DH on.
//
//	go test ./test/cloudsim -run '^$' -bench LoginUnderFlood -benchtime 20x
//	CLOUDSIM_NO_FLOOD=1 go test ./test/cloudsim -run '^$' -bench LoginUnderFlood -benchtime 20x # baseline
func BenchmarkLoginUnderFlood(b *testing.B) {
	s := startCloudWith(b, server.Config{})
	asAddr := s.AS.Addrs()[0]
	victim := newNode(b, s, "victim.example.cyphonic")
	if _, err := victim.Login(asAddr, false); err != nil {
		b.Fatal(err)
	}
	// Each node from its own address (127.0.0.20..99): a node behind a
	// flooding address shares that address's budget under load.
	nodes := make([]*Node, b.N)
	for i := range nodes {
		nodes[i] = nodeAt(b, s, fmt.Sprintf("f%d.example.cyphonic", i), byte(20+i%80))
	}
	stop := make(chan struct{})
	var sent atomic.Uint64
	wg := &sync.WaitGroup{}
	if os.Getenv("CLOUDSIM_NO_FLOOD") == "" { // the baseline: the same logins without a flood
		wg = flood(b, victim, asAddr, 100, 16, stop, &sent)
		time.Sleep(time.Second) // the flood is on, the AS under load
	}
	challenged := s.AS.Counters.Challenged.Load()
	b.ResetTimer()
	start, sent0 := time.Now(), sent.Load()
	var worst time.Duration
	for _, n := range nodes {
		t0 := time.Now()
		if _, err := n.Login(asAddr, false); err != nil {
			b.Fatal(err)
		}
		worst = max(worst, time.Since(t0))
	}
	b.StopTimer()
	dur := time.Since(start)
	close(stop)
	wg.Wait()
	b.ReportMetric(float64(sent.Load()-sent0)/dur.Seconds(), "flood/s")
	b.ReportMetric(float64(s.AS.Counters.Challenged.Load()-challenged-uint64(b.N))/dur.Seconds(), "admitted/s")
	b.ReportMetric(float64(worst.Milliseconds()), "worst-ms")
}

// BenchmarkLoginUnderSpoofedFlood is BenchmarkLoginUnderFlood with the
// flood from a raw socket, every packet from a source address of its own
// that nothing holds (127.64.0.0/10), as fast as one goroutine sends: what
// per-source limits cannot hold and the login cookie does.
func BenchmarkLoginUnderSpoofedFlood(b *testing.B) {
	systest.Require(b, systest.Root())
	s := startCloudWith(b, server.Config{})
	asAddr := s.AS.Addrs()[0]
	victim := newNode(b, s, "victim.example.cyphonic")
	if _, err := victim.Login(asAddr, false); err != nil {
		b.Fatal(err)
	}
	nodes := make([]*Node, b.N)
	for i := range nodes {
		nodes[i] = nodeAt(b, s, fmt.Sprintf("f%d.example.cyphonic", i), byte(20+i%80))
	}
	pkts := make([][]byte, 512)
	for i := range pkts {
		pkts[i] = forgedLogin(b, victim, false).Packet()
	}
	spoof, err := attack.NewSpoofer()
	if err != nil {
		b.Fatal(err)
	}
	defer spoof.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var sent atomic.Uint64
	var wg sync.WaitGroup
	wg.Go(func() { sent.Store(spoof.FloodSpoofed(ctx, asAddr, pkts, attack.LoopbackSource, 1<<40, time.Hour, 0)) })
	time.Sleep(time.Second) // the flood is on, the AS under load
	challenged := s.AS.Counters.Challenged.Load()
	b.ResetTimer()
	start := time.Now()
	var worst time.Duration
	for _, n := range nodes {
		t0 := time.Now()
		if _, err := n.Login(asAddr, false); err != nil {
			cancel()
			b.Fatal(err)
		}
		worst = max(worst, time.Since(t0))
	}
	b.StopTimer()
	dur := time.Since(start)
	cancel()
	wg.Wait()
	b.ReportMetric(float64(sent.Load())/(dur+time.Second).Seconds(), "flood/s")
	b.ReportMetric(float64(s.AS.Counters.Cookies.Load())/float64(max(sent.Load(), 1)), "cookied/sent")
	b.ReportMetric(float64(s.AS.Counters.Challenged.Load()-challenged-uint64(b.N))/dur.Seconds(), "admitted/s")
	b.ReportMetric(float64(worst.Milliseconds()), "worst-ms")
}
