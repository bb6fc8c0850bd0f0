package nms

import (
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

func TestDedupWindowFromRetry(t *testing.T) {
	// 0.5+1+2+4+4 s of waits between the six sends, plus the slack.
	if got, want := dedupWindow(signaling.DefaultRetry()), 11500*time.Millisecond+dedupSlack; got != want {
		t.Fatalf("window %v, want %v", got, want)
	}
}

func TestGuardFresh(t *testing.T) {
	const w = 10 * time.Second
	sec := int64(time.Second)
	for _, tt := range []struct {
		name string
		// (cloud time, envelope time) pairs, in order, and the verdicts
		steps [][2]int64
		want  []bool
	}{
		{"first packet always", [][2]int64{{100 * sec, 0}}, []bool{true}},
		{"retransmission within the window", [][2]int64{{100 * sec, 100 * sec}, {109 * sec, 100 * sec}}, []bool{true, true}},
		{"replay after the window", [][2]int64{{100 * sec, 100 * sec}, {111 * sec, 100 * sec}}, []bool{true, false}},
		{"node clock behind: lag learned", [][2]int64{{100 * sec, 40 * sec}, {115 * sec, 55 * sec}, {131 * sec, 60 * sec}}, []bool{true, true, false}},
		{"a smaller lag tightens", [][2]int64{{100 * sec, 90 * sec}, {101 * sec, 101 * sec}, {115 * sec, 104 * sec}}, []bool{true, true, false}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			var g reqGuard
			for i, s := range tt.steps {
				if got := g.fresh(s[0], s[1], w); got != want[i] {
					t.Fatalf("step %d %v: fresh %v, want %v", i, s, got, want[i])
				}
			}
		})
	}
}

func TestGuardKeepalive(t *testing.T) {
	var g reqGuard
	for i, tt := range []struct {
		sent int64
		want kaVerdict
	}{
		{10, kaNew},
		{10, kaRepeat}, // retransmission
		{20, kaNew},
		{10, kaOld},    // the first one replayed
		{20, kaRepeat}, // still the newest
		{15, kaOld},
		{30, kaNew},
	} {
		got := g.keepalive(tt.sent)
		if got != tt.want {
			t.Fatalf("step %d: %v, want %v", i, got, tt.want)
		}
		if got == kaNew {
			g.ran(tt.sent)
		}
	}
}

// TestGuardKeepaliveNotRun: a keepalive dropped before it ran (store
// busy) leaves no trace, so its retransmission runs.
func TestGuardKeepaliveNotRun(t *testing.T) {
	var g reqGuard
	g.ran(10)
	if g.keepalive(20) != kaNew {
		t.Fatal("new keepalive not new")
	}
	if got := g.keepalive(20); got != kaNew {
		t.Fatalf("retransmission of a keepalive that never ran: %v, want it run", got)
	}
}

func TestGuardAdmit(t *testing.T) {
	const w = 10 * time.Second
	var g reqGuard
	now := int64(time.Hour)
	for i := range 3 {
		if !g.admit(now, w, 3) {
			t.Fatalf("transaction %d refused under the limit", i)
		}
	}
	if g.admit(now+int64(time.Second), w, 3) {
		t.Fatal("fourth transaction in one window admitted")
	}
	if !g.admit(now+int64(w)+1, w, 3) {
		t.Fatal("refused in the next window")
	}
}
