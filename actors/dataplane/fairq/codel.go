package fairq

import (
	"math"
	"time"
)

// CoDel defaults (RFC 8289 §4.2 suggests 5 ms / 100 ms for the Internet;
// an overlay hop inside one host's CPU budget should queue far less).
const (
	DefaultCoDelTarget   = 2 * time.Millisecond
	DefaultCoDelInterval = 50 * time.Millisecond
)

// CoDel is the controlled-delay drop law of RFC 8289 for one queue with a
// single consumer: it bounds a queue by the time its packets wait rather
// than by their number. Once the sojourn time has stayed above Target for a
// whole Interval it drops one packet, then more often (Interval/sqrt(n))
// until the sojourn falls below Target again. TCP flows back off at the
// first drop, so the standing queue, and with it every other flow's
// latency, stays near Target.
//
// The zero value uses DefaultCoDelTarget and DefaultCoDelInterval. Not safe
// for concurrent use: the queue's consumer owns it.
type CoDel struct {
	Target   time.Duration
	Interval time.Duration

	firstAbove time.Time // when the sojourn may first count as persistent; zero: below target
	dropNext   time.Time
	count      uint32 // drops in the current dropping state
	lastCount  uint32
	dropping   bool
}

func (c *CoDel) params() (target, interval time.Duration) {
	target, interval = c.Target, c.Interval
	if target <= 0 {
		target = DefaultCoDelTarget
	}
	if interval <= 0 {
		interval = DefaultCoDelInterval
	}
	return target, interval
}

// controlLaw is when the next drop is due: interval/sqrt(count) after t.
func controlLaw(t time.Time, interval time.Duration, count uint32) time.Time {
	return t.Add(time.Duration(float64(interval) / math.Sqrt(float64(count))))
}

// Drop reports whether the packet dequeued at now, after waiting sojourn,
// should be dropped; backlog says whether the queue holds more than this
// packet. Call it once per packet, in dequeue order.
//
// Without a backlog nothing is dropped and the state resets, as in RFC 8289
// (a queue of at most one packet is not a standing queue): a sparse flow,
// such as pings, whose packets waited behind other peers' work upstream
// must not be punished for a backlog it did not build.
func (c *CoDel) Drop(sojourn time.Duration, now time.Time, backlog bool) bool {
	target, interval := c.params()
	okToDrop := false
	switch {
	case sojourn < target || !backlog:
		c.firstAbove = time.Time{}
	case c.firstAbove.IsZero():
		c.firstAbove = now.Add(interval)
	default:
		okToDrop = !now.Before(c.firstAbove)
	}
	if c.dropping {
		if !okToDrop {
			c.dropping = false
			return false
		}
		if now.Before(c.dropNext) {
			return false
		}
		c.count++
		c.dropNext = controlLaw(c.dropNext, interval, c.count)
		return true
	}
	if !okToDrop {
		return false
	}
	// Entering the dropping state. If we left it only recently, resume
	// near the drop rate that was controlling the queue then.
	c.dropping = true
	if delta := c.count - c.lastCount; delta > 1 && now.Sub(c.dropNext) < 16*interval {
		c.count = delta
	} else {
		c.count = 1
	}
	c.lastCount = c.count
	c.dropNext = controlLaw(now, interval, c.count)
	return true
}

// Dropping reports whether c is in its dropping state (tests, metrics).
func (c *CoDel) Dropping() bool { return c.dropping }
