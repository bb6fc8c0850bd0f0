package dataplane

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/tun"
)

func TestBornAt(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name  string
		stamp int64
		want  time.Time
	}{
		{"no stamp", 0, now},
		{"from the future", now.UnixNano() + int64(time.Second), now},
		{"waited 3ms", now.Add(-3 * time.Millisecond).UnixNano(), now.Add(-3 * time.Millisecond)},
	} {
		if got := bornAt(tc.stamp, now); !got.Equal(tc.want) {
			t.Errorf("%s: bornAt = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestTunWriterCoalesces: one write takes whole batches of several peers,
// in fair order, until it holds about maxBatch packets; the rest waits for
// the next write. Every batch is released (its in-flight count returned).
func TestTunWriterCoalesces(t *testing.T) {
	dev, app := tun.NewMemPair("t0", 1420, 256)
	defer dev.Close()
	pool := newBatchPool(128)
	q := newFairQueue(1)
	inflight := supervise.NewLimiter(6)
	flows := []*flowQueue{newFlow(4), newFlow(4), newFlow(4)}
	for round := range 2 {
		for peer, f := range flows {
			b := pool.Get()
			bufs, sizes, _ := b.ReadSlices(0)
			for i := range 30 {
				bufs[i][0] = 0x45
				bufs[i][1] = byte(peer)
				bufs[i][2] = byte(round)
				sizes[i] = 20
			}
			b.Filled(30, 0)
			b.born, b.stats = time.Now(), &peerStats{}
			inflight.Acquire()
			b.track(inflight)
			if !q.Push(f, b) {
				t.Fatal("push refused")
			}
		}
	}
	w := tunWriter{dev: dev, global: &dropCounters{}, maxDelay: time.Minute}
	var writes [][2]int // per write: packets, and the peer of its first packet
	for w.fill(q) {
		n := len(w.pkts)
		w.flush()
		first := -1
		for i := range n {
			pkt, err := app.Recv(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				first = int(pkt[1])
			}
		}
		writes = append(writes, [2]int{n, first})
	}
	// 6 batches of 30: writes of 60 (2 batches: the second crosses
	// tunWritePkts, 32), one per peer. Peers share by packets, 64 a turn:
	// each peer's two batches (60) are its turn.
	want := [][2]int{{60, 0}, {60, 1}, {60, 2}}
	if !slices.Equal(writes, want) {
		t.Fatalf("writes (packets, first peer) = %v, want %v", writes, want)
	}
	if n := inflight.Len(); n != 0 {
		t.Fatalf("%d batches not released", n)
	}
}

// TestInGroupsKeepPeerOrder: a read batch splits into one batch per
// session without reordering a peer's packets. Around a rekey the socket
// can hold [new, old..., new...] for one peer (the initiator's keepalive
// on the new session leaves ahead of its queued old-session data): the
// groups, taken in order (the order toCrypto numbers them in), must give
// the packets back in arrival order for every peer, while packets of one
// session that arrive in a run still share a batch.
func TestInGroupsKeepPeerOrder(t *testing.T) {
	alice, bob := &peerPipe{}, &peerPipe{}
	aOld, aNew := &peerSession{Pipe: alice}, &peerSession{Pipe: alice}
	bOnly := &peerSession{Pipe: bob}
	arrival := []*peerSession{aNew, aOld, aOld, bOnly, aOld, aNew, aNew, bOnly, aOld, aNew}
	pool := newBatchPool(128)
	src := pool.Get()
	bufs, sizes, _ := src.ReadSlices(0)
	stamps := make([]int64, len(arrival))
	for i := range arrival {
		bufs[i][0] = byte(i) // arrival position
		sizes[i] = 1
		stamps[i] = int64(1000 - i)
	}
	src.Filled(len(arrival), 0)
	var gs inGroups
	for i, s := range arrival {
		gs.add(s, src, i, stamps[i], pool)
	}
	src.Release()

	// Per pipe, the packets in group order, and which groups there are.
	got := map[*peerPipe][]int{}
	var shape []int // group sizes
	for i := range gs.n {
		g := gs.g[i]
		n := 0
		for j := range g.b.N {
			p := &g.b.Pkts[j]
			pos := int(p.Bytes()[0])
			if arrival[pos] != g.key {
				t.Fatalf("group %d (a batch of one session) holds packet %d of another", i, pos)
			}
			got[g.key.Pipe] = append(got[g.key.Pipe], pos)
			if min := stamps[pos]; gs.oldest[i] > min {
				t.Fatalf("group %d: oldest stamp %d, but it holds one stamped %d", i, gs.oldest[i], min)
			}
			n++
		}
		shape = append(shape, n)
	}
	for pipe, name := range map[*peerPipe]string{alice: "alice", bob: "bob"} {
		var want []int
		for i, s := range arrival {
			if s.Pipe == pipe {
				want = append(want, i)
			}
		}
		if !slices.Equal(got[pipe], want) {
			t.Errorf("%s's packets in sequence order %v, want arrival order %v", name, got[pipe], want)
		}
	}
	// aNew | aOld aOld aOld | bOnly bOnly | aNew aNew | aOld | aNew
	if want := []int{1, 3, 2, 2, 1, 1}; !slices.Equal(shape, want) {
		t.Errorf("group sizes %v, want %v", shape, want)
	}
	for i := range gs.n {
		gs.g[i].b.Release()
	}
	gs.reset()
	if gs.n != 0 || gs.g[0].b != nil {
		t.Fatal("reset left groups behind")
	}
}

// recordDevice is a tun.Device that keeps what each Write was handed.
type recordDevice struct {
	tun.Device
	offsets []int
	pkts    [][]byte // bufs[i][offset:] of every write, copied
}

func (d *recordDevice) Write(bufs [][]byte, offset int) (int, error) {
	d.offsets = append(d.offsets, offset)
	for _, b := range bufs {
		d.pkts = append(d.pkts, slices.Clone(b[offset:]))
	}
	return len(bufs), nil
}

// TestTunWriterLeavesHeadroom: the TUN writer hands the device its packets
// where they are, with tun.WriteHeadroom bytes before each (the offload
// device writes a non-head packet's virtio header there instead of copying
// the packet), and the same packets with no headroom when one of the write
// has too little room before it.
func TestTunWriterLeavesHeadroom(t *testing.T) {
	pool := newBatchPool(64)
	mk := func(off int, tags ...byte) *batch {
		b := pool.Get()
		bufs, sizes, _ := b.ReadSlices(off)
		for i, tag := range tags {
			bufs[i][0], bufs[i][1] = 0x45, tag
			sizes[i] = 20
		}
		b.Filled(len(tags), off)
		b.born, b.stats = time.Now(), &peerStats{}
		return b
	}
	for _, tc := range []struct {
		name       string
		offs       []int // each batch's packet offset
		wantOffset int
	}{
		{"after the seal header", []int{16, 16}, tun.WriteHeadroom},
		{"one batch without room", []int{16, tun.WriteHeadroom - 1}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := &recordDevice{}
			q := newFairQueue(1)
			f := newFlow(4)
			var want [][]byte
			for i, off := range tc.offs {
				b := mk(off, byte(3*i), byte(3*i+1), byte(3*i+2))
				b.Pkts[1].Drop = Replay // not written
				for j := range b.N {
					if j != 1 {
						want = append(want, slices.Clone(b.Pkts[j].Bytes()))
					}
				}
				if !q.Push(f, b) {
					t.Fatal("push refused")
				}
			}
			w := tunWriter{dev: dev, global: &dropCounters{}, maxDelay: time.Minute, offset: tun.WriteHeadroom}
			if !w.fill(q) {
				t.Fatal("nothing to write")
			}
			w.flush()
			if !slices.Equal(dev.offsets, []int{tc.wantOffset}) {
				t.Errorf("writes' offsets %v, want [%d]", dev.offsets, tc.wantOffset)
			}
			if !slices.EqualFunc(dev.pkts, want, slices.Equal) {
				t.Errorf("written %x, want %x", dev.pkts, want)
			}
			if w.offset != tun.WriteHeadroom {
				t.Errorf("offset after the write %d, want %d again", w.offset, tun.WriteHeadroom)
			}
		})
	}
}
