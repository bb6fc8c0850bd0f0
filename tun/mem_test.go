package tun

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

func memBufs(n, size int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs, make([]int, n)
}

func TestMemReadBatchesInOrder(t *testing.T) {
	ctx := context.Background()
	const offset, mtu = 16, 1400
	dev, app := NewMemPair("mem0", mtu, 64)
	defer dev.Close()
	for i := range 10 {
		if err := app.Send(ctx, bytes.Repeat([]byte{byte(i)}, i+1)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		batch int
		want  []int // first byte (= sequence) of each packet read
	}{
		{4, []int{0, 1, 2, 3}},
		{1, []int{4}},
		{8, []int{5, 6, 7, 8, 9}}, // only what is queued: Read never waits to fill
	}
	for _, tt := range tests {
		bufs, sizes := memBufs(tt.batch, offset+mtu)
		n, err := dev.Read(bufs, sizes, offset)
		if err != nil {
			t.Fatal(err)
		}
		if n != len(tt.want) {
			t.Fatalf("Read(batch %d) = %d packets, want %d", tt.batch, n, len(tt.want))
		}
		for i, seq := range tt.want {
			want := bytes.Repeat([]byte{byte(seq)}, seq+1)
			if got := bufs[i][offset : offset+sizes[i]]; !bytes.Equal(got, want) {
				t.Fatalf("packet %d = %v, want %v", i, got, want)
			}
		}
	}
}

func TestMemWriteDeliversInOrderAndDropsWhenFull(t *testing.T) {
	ctx := context.Background()
	const offset = 4
	dev, app := NewMemPair("mem0", 100, 3)
	defer dev.Close()
	var bufs [][]byte
	for i := range 5 {
		bufs = append(bufs, append(make([]byte, offset), byte(i)))
	}
	n, err := dev.Write(bufs, offset)
	if err != nil || n != 5 {
		t.Fatalf("Write = %d, %v; want 5, nil", n, err)
	}
	bufs[0][offset] = 99 // the device copied: reuse must not show through
	for i := range 3 {
		p, err := app.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p, []byte{byte(i)}) {
			t.Fatalf("Recv %d = %v, want [%d]", i, p, i)
		}
	}
	if got := app.Dropped(); got != 2 {
		t.Fatalf("Dropped = %d, want 2 (queue depth 3, 5 written)", got)
	}
}

func TestMemSizeLimits(t *testing.T) {
	ctx := context.Background()
	dev, app := NewMemPair("mem0", 8, 4)
	defer dev.Close()
	if err := app.Send(ctx, make([]byte, 9)); !errors.Is(err, ErrPacketTooBig) {
		t.Fatalf("Send over MTU: %v, want ErrPacketTooBig", err)
	}
	n, err := dev.Write([][]byte{make([]byte, 9), make([]byte, 8)}, 0)
	if n != 1 || !errors.Is(err, ErrPacketTooBig) {
		t.Fatalf("Write with one oversized = %d, %v; want 1, ErrPacketTooBig", n, err)
	}
	bufs, sizes := memBufs(2, 10)
	if _, err := dev.Read(bufs, sizes, 4); !errors.Is(err, ErrShortBuffer) {
		t.Fatalf("Read into 6-byte room with MTU 8: %v, want ErrShortBuffer", err)
	}
}

func TestMemCloseUnblocks(t *testing.T) {
	ctx := context.Background()
	dev, app := NewMemPair("mem0", 100, 1)
	readErr := make(chan error, 1)
	go func() {
		bufs, sizes := memBufs(4, 100)
		_, err := dev.Read(bufs, sizes, 0)
		readErr <- err
	}()
	recvErr := make(chan error, 1)
	go func() {
		_, err := app.Recv(ctx)
		recvErr <- err
	}()
	if err := app.Send(ctx, []byte{1}); err != nil { // may be read or not
		t.Fatal(err)
	}
	sendErr := make(chan error, 1)
	go func() {
		// Fills the queue (or blocks on it) until Close.
		for {
			if err := app.Send(ctx, []byte{2}); err != nil {
				sendErr <- err
				return
			}
		}
	}()
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	if err := dev.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := <-sendErr; !errors.Is(err, ErrClosed) {
		t.Fatalf("Send: %v, want ErrClosed", err)
	}
	if err := <-recvErr; !errors.Is(err, ErrClosed) {
		t.Fatalf("Recv: %v, want ErrClosed", err)
	}
	// The reader either got packet 1 before Close or ErrClosed; after Close
	// every Read fails.
	if err := <-readErr; err != nil && !errors.Is(err, ErrClosed) {
		t.Fatalf("Read: %v", err)
	}
	bufs, sizes := memBufs(1, 100)
	if _, err := dev.Read(bufs, sizes, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close: %v, want ErrClosed", err)
	}
	if _, err := dev.Write(bufs, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v, want ErrClosed", err)
	}
}

func TestMemSendHonoursContext(t *testing.T) {
	dev, app := NewMemPair("mem0", 100, 1)
	defer dev.Close()
	ctx, cancel := context.WithCancel(context.Background())
	if err := app.Send(ctx, []byte{1}); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := app.Send(ctx, []byte{2}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send on full queue with cancelled ctx: %v, want context.Canceled", err)
	}
	if _, err := app.Recv(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv with nothing queued and cancelled ctx: %v, want context.Canceled", err)
	}
}

func BenchmarkMemReadBatch(b *testing.B) {
	ctx := context.Background()
	dev, app := NewMemPair("mem0", 1400, 64)
	defer dev.Close()
	pkt := make([]byte, 1400)
	bufs, sizes := memBufs(64, 1500)
	b.ReportAllocs()
	for b.Loop() {
		for range 64 {
			app.Send(ctx, pkt)
		}
		for got := 0; got < 64; {
			n, err := dev.Read(bufs, sizes, 16)
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
}
