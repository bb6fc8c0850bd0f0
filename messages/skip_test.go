package messages

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func skipSamples(t testing.TB) [][]byte {
	values := []any{
		nil, true, false, 0, 127, -1, -32, -33, 200, 70000, 1 << 40, -1 << 40,
		float32(1.5), 2.5, "", "short", strings.Repeat("x", 40), strings.Repeat("y", 300), strings.Repeat("z", 70000),
		[]byte{}, []byte{1, 2}, make([]byte, 300), make([]byte, 70000),
		[]any{1, "a", []any{nil}}, make([]int, 20), make([]int, 70000),
		map[string]any{"a": 1, "b": []any{2}}, time.Unix(1, 2),
	}
	var out [][]byte
	for _, v := range values {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	many := make(map[int]int, 20)
	for i := range 20 {
		many[i] = i
	}
	b, _ := msgpack.Marshal(many)
	out = append(out, b)
	// fixext 1..16 and ext8 by hand: code, (len), type, data
	out = append(out, []byte{0xd4, 1, 0}, []byte{0xd8, 1, 15: 0, 17: 0}, []byte{0xc7, 2, 5, 0, 0})
	return out
}

func TestSkipValue(t *testing.T) {
	for _, b := range skipSamples(t) {
		n, err := skipValue(append(bytes.Clone(b), 0xc0), 0)
		if err != nil || n != len(b) {
			t.Errorf("skipValue(%.20x...) = %d, %v; want %d", b, n, err, len(b))
		}
		for cut := range min(len(b), 300) { // every cut of the headers; the tails are just bytes
			if _, err := skipValue(b[:cut], 0); !errors.Is(err, ErrTruncated) {
				t.Errorf("skipValue(%.20x... cut %d) err = %v, want ErrTruncated", b, cut, err)
				break
			}
		}
	}
	deep := append(bytes.Repeat([]byte{0x91}, maxDepth+1), 0xc0)
	if _, err := skipValue(deep, 0); !errors.Is(err, ErrTooLarge) {
		t.Errorf("deep nesting err = %v, want ErrTooLarge", err)
	}
	if _, err := skipValue([]byte{0xc1}, 0); !errors.Is(err, ErrMalformed) {
		t.Errorf("0xc1 err = %v, want ErrMalformed", err)
	}
}

// TestUnmarshalHugeClaims: length fields claiming far more than the input
// must fail without allocating for the claim.
func TestUnmarshalHugeClaims(t *testing.T) {
	hdr := rawEnvelope(t, 1, 13, testID[:], "a", 0, nil)
	hdr = hdr[:len(hdr)-1] // drop the nil body
	for _, body := range [][]byte{
		{0xc6, 0xff, 0xff, 0xff, 0xff},       // bin32 of 4 GiB
		{0xdd, 0xff, 0xff, 0xff, 0xff},       // array32 of 4G elements
		{0xc9, 0xff, 0xff, 0xff, 0xff, 0x01}, // ext32
	} {
		wire := append(bytes.Clone(hdr), body...)
		allocs := testing.AllocsPerRun(10, func() {
			if _, err := Unmarshal(wire); !errors.Is(err, ErrTruncated) {
				t.Fatalf("Unmarshal(%x) err = %v, want ErrTruncated", body, err)
			}
		})
		if !raceEnabled && allocs > 8 {
			t.Errorf("Unmarshal(%x) made %v allocations", body, allocs)
		}
	}
}

// FuzzSkipValue checks skipValue against msgpack's own Skip.
func FuzzSkipValue(f *testing.F) {
	for _, b := range skipSamples(f) {
		if len(b) < 1000 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := skipValue(b, 0)
		checkErr(t, err)
		if err != nil {
			return
		}
		r := bytes.NewReader(b[:n])
		if err := msgpack.NewDecoder(r).Skip(); err != nil || r.Len() != 0 {
			t.Fatalf("skipValue(%x) = %d but msgpack Skip: %v, %d left", b, n, err, r.Len())
		}
	})
}
