package dataplane

import (
	"encoding/binary"
	"testing"
	"time"
)

// echo4 and echo6 build an ICMP(v6) echo of type typ between the last
// address bytes a and b.
func echo4(typ uint8, a, b byte, id, seq uint16) []byte {
	p := make([]byte, 28)
	p[0], p[9] = 0x45, 1
	p[15], p[19] = a, b
	p[20] = typ
	binary.BigEndian.PutUint16(p[24:], id)
	binary.BigEndian.PutUint16(p[26:], seq)
	return p
}

func echo6(typ uint8, a, b byte, id, seq uint16) []byte {
	p := make([]byte, 48)
	p[0], p[6] = 0x60, 58
	p[23], p[39] = a, b
	p[40] = typ
	binary.BigEndian.PutUint16(p[44:], id)
	binary.BigEndian.PutUint16(p[46:], seq)
	return p
}

// TestEchoKey: a request and its reply (addresses swapped) share a key;
// another identifier, sequence or address pair does not; anything but an
// echo is not one.
func TestEchoKey(t *testing.T) {
	req4, _, _ := echoKey(echo4(8, 1, 2, 7, 1))
	req6, _, _ := echoKey(echo6(128, 1, 2, 7, 1))
	tcp := echo4(8, 1, 2, 7, 1)
	tcp[9] = 6
	opts := echo4(8, 1, 2, 7, 1)
	opts[0] = 0x46 // a 24-byte header: the ICMP header starts later and is cut
	for _, tc := range []struct {
		name     string
		pkt      []byte
		ok, req  bool
		sameAs4  bool // the key equals req4's
		sameAs6  bool
		notEmpty bool
	}{
		{"v4 request", echo4(8, 1, 2, 7, 1), true, true, true, false, true},
		{"v4 reply", echo4(0, 2, 1, 7, 1), true, false, true, false, true},
		{"v4 other sequence", echo4(0, 2, 1, 7, 2), true, false, false, false, true},
		{"v4 other identifier", echo4(0, 2, 1, 8, 1), true, false, false, false, true},
		{"v4 other peer", echo4(0, 3, 1, 7, 1), true, false, false, false, true},
		{"v6 request", echo6(128, 1, 2, 7, 1), true, true, false, true, true},
		{"v6 reply", echo6(129, 2, 1, 7, 1), true, false, false, true, true},
		{"v4 unreachable", echo4(3, 2, 1, 7, 1), false, false, false, false, false},
		{"v6 neighbour solicitation", echo6(135, 2, 1, 7, 1), false, false, false, false, false},
		{"TCP", tcp, false, false, false, false, false},
		{"v4 short", echo4(8, 1, 2, 7, 1)[:27], false, false, false, false, false},
		{"v4 options cut", opts, false, false, false, false, false},
		{"empty", nil, false, false, false, false, false},
	} {
		key, req, ok := echoKey(tc.pkt)
		if ok != tc.ok || req != tc.req || (key == req4) != tc.sameAs4 || (key == req6) != tc.sameAs6 || (key != 0) != tc.notEmpty {
			t.Errorf("%s: key %#x req %v ok %v; want ok %v req %v, same as v4 request %v, as v6 %v", tc.name, key, req, ok, tc.ok, tc.req, tc.sameAs4, tc.sameAs6)
		}
	}
}

// TestEchoTurnaround: a ping taken by the TUN writer and its reply read
// back from TUN record the span here, and from its write's return the
// reply's wait; a ping read from TUN and its reply
// taken by the writer record the trip; each once, and an unmatched reply
// nothing.
func TestEchoTurnaround(t *testing.T) {
	pool := newBatchPool(128)
	batchOf := func(pkts ...[]byte) *batch {
		b := pool.Get()
		bufs, sizes, _ := b.ReadSlices(0)
		for i, p := range pkts {
			sizes[i] = copy(bufs[i], p)
		}
		b.Filled(len(pkts), 0)
		return b
	}
	var s sojourns
	s.reset()
	t0 := time.Now()
	steps := []struct {
		name       string
		write      bool // the TUN writer takes it (else the reader read it)
		pkts       [][]byte
		at         time.Duration
		here, trip uint64 // the stages' counts after it
	}{
		{"request in", true, [][]byte{echo4(8, 1, 2, 7, 1)}, 0, 0, 0},
		{"its write returned", true, nil, time.Millisecond, 0, 0},
		{"its reply out", false, [][]byte{echo4(0, 2, 1, 7, 1)}, 3 * time.Millisecond, 1, 0},
		{"the reply again", false, [][]byte{echo4(0, 2, 1, 7, 1)}, 4 * time.Millisecond, 1, 0},
		{"a reply to nothing", false, [][]byte{echo4(0, 2, 1, 9, 1)}, 4 * time.Millisecond, 1, 0},
		{"own request out", false, [][]byte{echo6(128, 5, 6, 3, 3)}, 10 * time.Millisecond, 1, 0},
		{"its reply in", true, [][]byte{echo6(129, 6, 5, 3, 3)}, 15 * time.Millisecond, 1, 1},
		{"two requests in", true, [][]byte{echo4(8, 1, 2, 7, 4), echo6(128, 1, 2, 7, 5)}, 20 * time.Millisecond, 1, 1},
		{"both replies out", false, [][]byte{echo6(129, 2, 1, 7, 5), echo4(0, 2, 1, 7, 4)}, 21 * time.Millisecond, 3, 1},
	}
	for _, st := range steps {
		b := batchOf(st.pkts...)
		if st.pkts == nil {
			s.echoTUNWritten(batchOf(echo4(8, 1, 2, 7, 1)), t0.Add(st.at))
		} else if st.write {
			s.echoTUNWrite(b, t0.Add(st.at))
		} else {
			s.echoTUNRead(b, t0.Add(st.at))
		}
		b.Release()
		if h, tr := s.h[stEchoHere][classPing].n.Load(), s.h[stEchoTrip][classPing].n.Load(); h != st.here || tr != st.trip {
			t.Fatalf("after %s: here %d trip %d, want %d %d", st.name, h, tr, st.here, st.trip)
		}
	}
	if got := time.Duration(s.h[stEchoHere][classPing].max.Load()); got != 3*time.Millisecond {
		t.Errorf("longest here %v, want 3ms", got)
	}
	if got := time.Duration(s.h[stEchoRead][classPing].sum.Load()); got != 2*time.Millisecond {
		t.Errorf("replies' wait after their writes %v, want 2ms (the first; the others had no write noted)", got)
	}
	if got := time.Duration(s.h[stEchoTrip][classPing].sum.Load()); got != 5*time.Millisecond {
		t.Errorf("trip %v, want 5ms", got)
	}
}

// TestEchoNoAllocs: noting a ping batch's echoes allocates nothing.
func TestEchoNoAllocs(t *testing.T) {
	pool := newBatchPool(128)
	b := pool.Get()
	bufs, sizes, _ := b.ReadSlices(0)
	sizes[0] = copy(bufs[0], echo4(8, 1, 2, 7, 1))
	b.Filled(1, 0)
	defer b.Release()
	var s sojourns
	s.reset()
	now := time.Now()
	if n := testing.AllocsPerRun(100, func() {
		s.echoTUNRead(b, now)
		s.echoTUNWrite(b, now)
		s.echoTUNWritten(b, now)
	}); n != 0 {
		t.Fatalf("%v allocations per batch", n)
	}
}
