package dataplane

import (
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
)

// TestPushLanes: a peer's ICMP packets go on its ICMP lane at the device
// writer, everything else on its flow, each in its order; a batch of one
// kind moves whole, a mixed one is split without copying, and every buffer
// and in-flight slot comes back. Per direction: inbound the opened packet
// is read, outbound the flag the peer actor set before sealing.
func TestPushLanes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		pkts      string // per packet: T a TCP packet, I ICMP, x dropped before
		flow      string // what the flow's batch holds, live, in order
		lane      string // what the ICMP lane's holds
		flowFresh bool   // the flow's batch is the one that came in (not split)
	}{
		{"bulk only", "TTTT", "0123", "", true},
		{"a ping alone goes on the lane", "I", "", "0", false},
		{"a ping among bulk is split off", "TTITT", "0134", "2", true},
		{"pings keep their order", "ITTIxT", "125", "03", true},
		{"dropped packets stay behind", "xIx", "", "1", false},
	} {
		for _, out := range []bool{false, true} {
			name := tc.name + map[bool]string{false: " (in)", true: " (out)"}[out]
			t.Run(name, func(t *testing.T) {
				pool := newBatchPool(128)
				d := &Dataplane{pool: pool}
				pipe := &peerPipe{Flow: newFlow(4), InFlow: newFlow(4), FlowICMP: newFlow(4), InFlowICMP: newFlow(4)}
				q := newFairQueue(1)
				b := pool.Get()
				bufs, sizes, _ := b.ReadSlices(0)
				for i, k := range tc.pkts {
					bufs[i][0], bufs[i][9], bufs[i][1] = 0x45, 6, byte(i) // IPv4 TCP; [1] names it
					if k == 'I' {
						bufs[i][9] = 1
					}
					sizes[i] = 20
				}
				b.Filled(len(tc.pkts), 0)
				for i, k := range tc.pkts {
					b.Pkts[i].ICMP = out && k == 'I'
					if k == 'x' {
						b.Pkts[i].Drop = Auth
					}
				}
				b.op, b.pipe, b.born, b.stats = opOpen, pipe, time.Now(), &peerStats{}
				icmp, flow, lane := openedICMP, pipe.InFlow, pipe.InFlowICMP
				if out {
					b.op, icmp, flow, lane = opSeal, sealedICMP, pipe.Flow, pipe.FlowICMP
				}
				inflight := supervise.NewLimiter(1)
				inflight.Acquire()
				b.track(inflight)
				if !d.pushLanes(q, q, b, icmp) {
					t.Fatal("pushLanes refused")
				}
				got := map[*flowQueue]string{}
				for {
					it, ok := q.Next()
					if !ok {
						break
					}
					f := it.Batch.flow()
					if f != flow && f != lane {
						t.Fatalf("a batch on neither of the peer's flows")
					}
					if it.Batch.born != b.born || it.Batch.stats != b.stats || it.Batch.pipe != pipe {
						t.Fatal("the split batch lost its stamps")
					}
					if f == flow && (it.Batch == b) != tc.flowFresh {
						t.Fatalf("the flow's batch is the original: %v, want %v", it.Batch == b, tc.flowFresh)
					}
					for _, p := range it.Batch.Payloads() {
						got[f] += string(rune('0' + p[1]))
					}
					it.Batch.Release()
				}
				if got[flow] != tc.flow || got[lane] != tc.lane {
					t.Fatalf("flow %q lane %q, want %q and %q", got[flow], got[lane], tc.flow, tc.lane)
				}
				if inflight.Len() != 0 {
					t.Fatal("the in-flight slot was not given back")
				}
				if r := pool.Get(); r.held != maxBatch {
					t.Fatalf("buffers lost: the pool's batch holds %d", r.held)
				}
			})
		}
	}
}
