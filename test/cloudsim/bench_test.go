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
