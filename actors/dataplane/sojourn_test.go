package dataplane

import (
	"strings"
	"testing"
	"time"
)

// TestClassOf: a batch of only ICMP is a ping, other batches of at most
// sparseLen packets are sparse, the rest bulk; dropped packets do not count.
func TestClassOf(t *testing.T) {
	icmp4 := func(b []byte) { b[0], b[9] = 0x45, 1 }
	tcp4 := func(b []byte) { b[0], b[9] = 0x45, 6 }
	icmp6 := func(b []byte) { b[0], b[6] = 0x60, 58 }
	for _, tc := range []struct {
		name    string
		pkts    []func([]byte)
		dropped int // how many of the first packets are dropped
		want    uint8
	}{
		{"an echo", []func([]byte){icmp4}, 0, classPing},
		{"an IPv6 echo", []func([]byte){icmp6}, 0, classPing},
		{"two echoes", []func([]byte){icmp4, icmp6}, 0, classPing},
		{"a lone ACK", []func([]byte){tcp4}, 0, classSparse},
		{"an echo beside an ACK", []func([]byte){icmp4, tcp4}, 0, classSparse},
		{"an echo left after a drop", []func([]byte){tcp4, icmp4}, 1, classPing},
		{"three echoes", []func([]byte){icmp4, icmp4, icmp4}, 0, classBulk},
	} {
		pool := newBatchPool(128)
		b := pool.Get()
		bufs, sizes, _ := b.ReadSlices(0)
		for i, set := range tc.pkts {
			clear(bufs[i][:40])
			set(bufs[i])
			sizes[i] = 40
		}
		b.Filled(len(tc.pkts), 0)
		for i := range tc.dropped {
			b.Pkts[i].Drop = QueueFull
		}
		if got := classOf(b); got != tc.want {
			t.Errorf("%s: class %s, want %s", tc.name, classNames[got], classNames[tc.want])
		}
		b.Release()
	}
}

// TestHistogram: counts, mean, the quantiles' bucket edges and the
// longest; a reset empties it.
func TestHistogram(t *testing.T) {
	var h histogram
	for _, d := range []time.Duration{500 * time.Nanosecond, 3 * time.Microsecond, 3 * time.Microsecond, 5 * time.Millisecond} {
		h.add(d)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{
		{0.25, time.Microsecond}, // bucket 0: below 1 µs
		{0.5, 4 * time.Microsecond},
		{0.75, 4 * time.Microsecond},
		{1, 8192 * time.Microsecond}, // 5 ms is in [4096, 8192) µs
	} {
		if got := h.quantile(tc.q); got != tc.want {
			t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if h.n.Load() != 4 || time.Duration(h.max.Load()) != 5*time.Millisecond {
		t.Fatalf("n %d max %v", h.n.Load(), time.Duration(h.max.Load()))
	}
	h.add(time.Hour) // past the last bucket: reported as the longest
	if got := h.quantile(1); got != time.Hour {
		t.Errorf("quantile(1) past the last bucket = %v, want the longest (1h)", got)
	}
	h.reset()
	if h.n.Load() != 0 || h.quantile(0.5) != 0 {
		t.Fatal("reset left counts")
	}
}

// TestWriteSojourn: off until reset; then each recorded stage and class
// is a row, and the drops over the span are listed.
func TestWriteSojourn(t *testing.T) {
	d := &Dataplane{set: newSet()}
	var out strings.Builder
	if err := d.WriteSojourn(&out); err != nil || !strings.Contains(out.String(), "off") {
		t.Fatalf("before reset: %q, %v", out.String(), err)
	}
	d.global.Add(QueueDelay, 3) // before the reset: not reported
	d.SojournReset()
	d.global.Add(QueueDelay, 2)
	h := &peerHandle{FQDN: "a.cyphonic"}
	h.Stats.Unopened.Add(5)
	h.Stats.Lost.Add(7)
	d.set.put(h)
	now := time.Now()
	d.sojourn.record(stTunQ, classPing, now.Add(-3*time.Millisecond), now)
	out.Reset()
	if err := d.WriteSojourn(&out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"in: TUN writer queue", "ping", "queue-delay 2",
		"lost on the way (replay window) 7, of them shed here unopened 5;"} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "bulk") || strings.Contains(s, "socket rcvbuf") {
		t.Errorf("report has rows nothing was recorded for:\n%s", s)
	}
}
