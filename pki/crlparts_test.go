package pki

import (
	"bytes"
	"errors"
	"testing"
)

func TestCRLAssembly(t *testing.T) {
	der := make([]byte, 25)
	for i := range der {
		der[i] = byte(i)
	}
	chunks := func(b []byte) [][3]any { // offset, total, data
		var out [][3]any
		for off := 0; off < len(b); off += 10 {
			out = append(out, [3]any{off, len(b), b[off:min(off+10, len(b))]})
		}
		return out
	}
	a := NewCRLAssembly(10)
	cs := chunks(der)
	// Out of order, with a duplicate: the list is whole at the last new chunk.
	for _, i := range []int{2, 0, 2} {
		got, err := a.Add(7, cs[i][0].(int), cs[i][1].(int), cs[i][2].([]byte))
		if err != nil || got != nil {
			t.Fatalf("chunk %d: %x, %v; want nothing yet", i, got, err)
		}
	}
	// A chunk of an older list is ignored; the newer one is kept.
	if got, err := a.Add(6, 10, 25, der[10:20]); err != nil || got != nil {
		t.Fatalf("older list's chunk: %x, %v", got, err)
	}
	got, err := a.Add(7, 10, 25, der[10:20])
	if err != nil || !bytes.Equal(got, der) {
		t.Fatalf("whole list = %x, %v; want %x", got, err, der)
	}
	// A newer list starts over; a single-chunk list is whole at once.
	if got, err := a.Add(8, 0, 5, der[:5]); err != nil || !bytes.Equal(got, der[:5]) {
		t.Fatalf("single chunk: %x, %v", got, err)
	}
	// A newer list in progress is dropped for an even newer one.
	a.Add(9, 0, 25, der[:10])
	a.Add(10, 0, 15, der[:10])
	if got, _ := a.Add(10, 10, 15, der[10:15]); !bytes.Equal(got, der[:15]) {
		t.Fatalf("list 10 = %x", got)
	}
	for _, tt := range []struct {
		name          string
		offset, total int
		data          []byte
	}{
		{"zero total", 0, 0, nil},
		{"too large", 0, MaxCRLLen + 1, der[:10]},
		{"unaligned", 5, 25, der[:10]},
		{"past the end", 30, 25, der[:10]},
		{"short middle chunk", 10, 25, der[:9]},
		{"long last chunk", 20, 25, der[:10]},
		{"negative", -10, 25, der[:10]},
	} {
		if _, err := a.Add(11, tt.offset, tt.total, tt.data); !errors.Is(err, ErrCRLChunk) {
			t.Errorf("%s: err %v, want ErrCRLChunk", tt.name, err)
		}
	}
}
