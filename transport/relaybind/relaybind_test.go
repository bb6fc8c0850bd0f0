package relaybind

import (
	"bytes"
	"encoding/hex"
	"testing"
	"time"

	"golang.org/x/crypto/blake2s"

	"github.com/cyphonic/cyphonic-go/messages"
)

var (
	key   = messages.RelayBindKey{1, 2, 3, 31: 0xff}
	other = messages.RelayBindKey{1, 2, 4, 31: 0xff}
	token = messages.RelayToken{0xa1, 15: 0xa1}
)

func mustMAC(t testing.TB, k messages.RelayBindKey) *MAC {
	t.Helper()
	m, err := NewMAC(k)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMACIsKeyedBLAKE2s pins the construction: BLAKE2s-128 keyed with the
// bind key over type | token | counter, independently computed.
func TestMACIsKeyedBLAKE2s(t *testing.T) {
	b, err := Seal(key, token, 0x0102030405060708)
	if err != nil {
		t.Fatal(err)
	}
	h, err := blake2s.New128(key[:])
	if err != nil {
		t.Fatal(err)
	}
	h.Write(append(append([]byte{byte(messages.TypeRelayBind)}, token[:]...), 1, 2, 3, 4, 5, 6, 7, 8))
	if want := h.Sum(nil); !bytes.Equal(b[messages.RelayBindMACOffset:], want) {
		t.Fatalf("MAC %s, want %s", hex.EncodeToString(b[messages.RelayBindMACOffset:]), hex.EncodeToString(want))
	}
}

func TestVerify(t *testing.T) {
	good, err := Seal(key, token, 1000)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 1
		return b
	}
	wrongKey, _ := Seal(other, token, 1000)
	zeroMAC := bytes.Clone(good)
	clear(zeroMAC[messages.RelayBindMACOffset:])
	emptyRelay := make([]byte, messages.RelayHeaderLen) // the old, unauthenticated bind
	messages.PutRelayHeader(emptyRelay, token)
	tests := []struct {
		name string
		b    []byte
		want bool
	}{
		{"valid", good, true},
		{"wrong key", wrongKey, false},
		{"type changed", flip(0), false},
		{"token changed", flip(1), false},
		{"token last byte changed", flip(16), false},
		{"counter changed", flip(messages.RelayBindMACOffset - 1), false},
		{"mac changed", flip(messages.RelayBindMACOffset), false},
		{"mac last byte changed", flip(messages.RelayBindLen - 1), false},
		{"zero mac", zeroMAC, false},
		{"truncated", good[:messages.RelayBindLen-1], false},
		{"trailing byte", append(bytes.Clone(good), 0), false},
		{"empty relay frame", emptyRelay, false},
		{"nil", nil, false},
	}
	m := mustMAC(t, key)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := m.Verify(tt.b); got != tt.want {
				t.Errorf("Verify = %v, want %v", got, tt.want)
			}
		})
	}
	// A MAC is reusable: the same one verifies again after failures.
	if !m.Verify(good) {
		t.Error("Verify after failures rejected a valid bind")
	}
}

func TestPutMatchesSeal(t *testing.T) {
	m := mustMAC(t, key)
	b := make([]byte, messages.RelayBindLen)
	if n := m.Put(b, token, 77); n != messages.RelayBindLen {
		t.Fatalf("Put = %d", n)
	}
	s, _ := Seal(key, token, 77)
	if !bytes.Equal(b, s) {
		t.Fatalf("Put %x, Seal %x", b, s)
	}
	p, err := messages.ParseRelayBind(b)
	if err != nil || p.Token != token || p.Counter != 77 {
		t.Fatalf("ParseRelayBind = %+v %v", p, err)
	}
}

func TestVerifyAllocatesNothing(t *testing.T) {
	m := mustMAC(t, key)
	good, _ := Seal(key, token, 5)
	bad, _ := Seal(other, token, 5)
	if n := testing.AllocsPerRun(100, func() {
		if !m.Verify(good) || m.Verify(bad) {
			t.Fatal("wrong answer")
		}
	}); n != 0 {
		t.Fatalf("Verify allocates %v times", n)
	}
}

func TestCounter(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	steps := []struct {
		name string
		now  time.Time
		want uint64
	}{
		{"seeded from the clock", t0, uint64(t0.UnixNano())},
		{"same instant: still increases", t0, uint64(t0.UnixNano()) + 1},
		{"clock steps back: still increases", t0.Add(-time.Hour), uint64(t0.UnixNano()) + 2},
		{"clock moves on: follows it", t0.Add(time.Second), uint64(t0.Add(time.Second).UnixNano())},
		{"before 1970: still increases", time.Unix(-5, 0), uint64(t0.Add(time.Second).UnixNano()) + 1},
	}
	var c Counter
	for _, st := range steps {
		if got := c.Next(st.now); got != st.want {
			t.Fatalf("%s: Next = %d, want %d", st.name, got, st.want)
		}
	}
	// A fresh Counter (a restarted peer) starts above the old one's
	// counters as long as the clock has moved on.
	var restarted Counter
	if got := restarted.Next(t0.Add(2 * time.Second)); !Fresh(got, uint64(t0.Add(time.Second).UnixNano())+1) {
		t.Fatalf("restarted counter %d is not fresh", got)
	}
}

func TestFresh(t *testing.T) {
	tests := []struct {
		counter, last uint64
		want          bool
	}{
		{1, 0, true},
		{0, 0, false},
		{5, 5, false},
		{4, 5, false},
		{6, 5, true},
		{^uint64(0), ^uint64(0) - 1, true},
	}
	for _, tt := range tests {
		if got := Fresh(tt.counter, tt.last); got != tt.want {
			t.Errorf("Fresh(%d, %d) = %v, want %v", tt.counter, tt.last, got, tt.want)
		}
	}
}
