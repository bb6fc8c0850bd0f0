package dataplane

import (
	"bytes"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/seal"
)

func keys(t testing.TB) (*seal.Keypair, *seal.Keypair) {
	t.Helper()
	k1, k2 := [32]byte{1}, [32]byte{2}
	a, err := seal.NewKeypair(seal.ChaCha20Poly1305, k1, k2, 10, 20, true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := seal.NewKeypair(seal.ChaCha20Poly1305, k2, k1, 20, 10, false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

// fill puts n inner packets in a batch from pool, as the TUN reader does.
func fill(pool *batchPool, n int, key *seal.Keypair) *batch {
	b := pool.Get()
	bufs, sizes, _ := b.ReadSlices(headroom)
	for i := range n {
		sizes[i] = copy(bufs[i], bytes.Repeat([]byte{byte(i)}, 100+i))
	}
	b.Filled(n, headroom)
	for i := range n {
		b.Pkts[i].Counter, _ = key.NextCounter()
	}
	b.stats = &peerStats{}
	b.op, b.key = opSeal, key
	return b
}

// TestSealOpenRoundTrip: a sealed batch (direct and relayed) opens on the
// other side to the same packets; a forged one is dropped as Auth.
func TestSealOpenRoundTrip(t *testing.T) {
	for _, relay := range []bool{false, true} {
		a, b := keys(t)
		pool := newBatchPool(headroom + 1500 + seal.Overhead)
		out := fill(pool, 5, a)
		out.route.Relay, out.route.Token = relay, messages.RelayToken{9}
		sealOrOpen(out)
		in := pool.Get()
		for i := range out.N {
			pkt := out.Pkts[i].Bytes()
			if relay {
				tok, inner, err := messages.ParseRelay(pkt)
				if err != nil || tok != out.route.Token {
					t.Fatalf("relay frame: %v %v", tok, err)
				}
				pkt = inner
			}
			copy(in.Pkts[i].Buf, pkt)
			in.Pkts[i].Off, in.Pkts[i].Len = 0, len(pkt)
		}
		in.N = out.N
		in.Pkts[3].Buf[in.Pkts[3].Len-1] ^= 1 // forge one tag
		in.op, in.key, in.stats = opOpen, b, &peerStats{}
		sealOrOpen(in)
		for i := range in.N {
			p := &in.Pkts[i]
			if i == 3 {
				if p.Drop != Auth {
					t.Fatalf("forged packet: drop %v", p.Drop)
				}
				continue
			}
			if p.Drop != OK || !bytes.Equal(p.Bytes(), bytes.Repeat([]byte{byte(i)}, 100+i)) || p.Counter != uint64(i) {
				t.Fatalf("packet %d: drop %v counter %d len %d", i, p.Drop, p.Counter, p.Len)
			}
		}
		if in.stats.Drops.Get(Auth) != 1 {
			t.Fatalf("auth drops %v", in.stats.Drops.Snapshot())
		}
	}
}

// BenchmarkSealBatch: one op is one 1400-byte packet sealed in a batch of 64.
func BenchmarkSealBatch(b *testing.B) {
	a, _ := keys(b)
	pool := newBatchPool(headroom + 1500 + seal.Overhead)
	bt := fill(pool, maxBatch, a)
	b.SetBytes(1400)
	b.ReportAllocs()
	for i := 0; i < b.N; i += maxBatch {
		for j := range bt.N {
			bt.Pkts[j].Off, bt.Pkts[j].Len, bt.Pkts[j].Drop = headroom, 1400, OK
		}
		sealOrOpen(bt)
	}
}
