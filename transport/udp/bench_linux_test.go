package udp

import (
	"net/netip"
	"testing"
	"time"
)

// BenchmarkLoopback moves 1400-byte datagrams through 127.0.0.1 in batches;
// one op is one datagram, so ns/op compares batch sizes directly, and the
// offloads (GSO on send, GRO on receive) against plain sendmmsg/recvmmsg.
func BenchmarkLoopback(b *testing.B) {
	for _, bc := range []struct {
		name  string
		batch int
		o     offload
	}{
		{"batch1", 1, offload{gso: true, gro: true}},
		{"batch64", 64, offload{gso: true, gro: true}},
		{"batch64/no-offload", 64, offload{}},
	} {
		batch := bc.batch
		b.Run(bc.name, func(b *testing.B) {
			tx, err := listenOffload("udp4", "127.0.0.1:0", bc.o)
			if err != nil {
				b.Fatal(err)
			}
			defer tx.Close()
			rx, err := listenOffload("udp4", "127.0.0.1:0", bc.o)
			if err != nil {
				b.Fatal(err)
			}
			defer rx.Close()

			out := make([][]byte, batch)
			to := make([]netip.AddrPort, batch)
			for i := range out {
				out[i] = make([]byte, 1400)
				to[i] = rx.LocalAddr()
			}
			in, sizes, from := newBatch(batch, 2048)
			// A lost datagram would otherwise hang the loop; loopback with
			// multi-MB buffers does not lose one batch in flight.
			if err := rx.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(1400)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += batch {
				if _, err := tx.WriteBatch(out, to); err != nil {
					b.Fatal(err)
				}
				for got := 0; got < batch; {
					n, err := rx.ReadBatch(in[got:], sizes[got:], from[got:])
					if err != nil {
						b.Fatal(err)
					}
					got += n
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
		})
	}
}
