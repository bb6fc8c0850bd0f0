package signaling

import "time"

// Retry is a retransmission schedule: the first resend after Initial, each
// later one after twice the previous wait, capped at Max, and Attempts
// sends in all (the first included) before the request fails.
type Retry struct {
	Initial  time.Duration
	Max      time.Duration
	Attempts int
}

// DefaultRetry suits signaling over the Internet: 0.5 s, 1 s, 2 s, 4 s, 4 s
// (about 11.5 s before giving up).
func DefaultRetry() Retry {
	return Retry{Initial: 500 * time.Millisecond, Max: 4 * time.Second, Attempts: 6}
}

// Delay is how long to wait after send number sent (1 for the first) before
// the next one, and false once all Attempts have been sent.
func (r Retry) Delay(sent int) (time.Duration, bool) {
	if sent >= r.Attempts || r.Initial <= 0 {
		return 0, false
	}
	d := r.Initial
	for i := 1; i < sent && d < r.Max; i++ {
		d *= 2
	}
	if r.Max > 0 && d > r.Max {
		d = r.Max
	}
	return d, true
}

// Total is the sum of the waits between the sends: how long after the
// first send the last one goes out.
func (r Retry) Total() time.Duration {
	var sum time.Duration
	for sent := 1; ; sent++ {
		d, ok := r.Delay(sent)
		if !ok {
			return sum
		}
		sum += d
	}
}
