package supervise

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrInvalidBackoff is returned for a Backoff that cannot work.
var ErrInvalidBackoff = errors.New("supervise: invalid backoff")

// Backoff configures BackoffStrategy. Zero fields take the defaults of
// DefaultBackoff.
type Backoff struct {
	Initial    time.Duration // delay before the first restart
	Max        time.Duration // cap on any delay
	Multiplier float64       // growth per consecutive failure, >= 1
	// Jitter spreads each delay uniformly over [d*(1-Jitter), d*(1+Jitter)]
	// (then capped at Max) so that actors failing together (every peer when
	// the uplink drops) do not restart in lockstep.
	Jitter float64
	// MaxRetries is how many failures within Window are restarted; the next
	// failure stops the child for good. Negative: never give up.
	MaxRetries int
	Window     time.Duration // failures older than this are forgotten
}

// DefaultBackoff suits peer and session actors: quick first retry, a slow
// steady state, and giving up only on an actor that keeps crashing.
func DefaultBackoff() Backoff {
	return Backoff{
		Initial:    100 * time.Millisecond,
		Max:        30 * time.Second,
		Multiplier: 2,
		Jitter:     0.2,
		MaxRetries: 10,
		Window:     5 * time.Minute,
	}
}

// withDefaults fills zero fields and validates the result.
func (b Backoff) withDefaults() (Backoff, error) {
	d := DefaultBackoff()
	if b.Initial == 0 {
		b.Initial = d.Initial
	}
	if b.Max == 0 {
		b.Max = max(d.Max, b.Initial)
	}
	if b.Multiplier == 0 {
		b.Multiplier = d.Multiplier
	}
	if b.MaxRetries == 0 {
		b.MaxRetries = d.MaxRetries
	}
	if b.Window == 0 {
		b.Window = d.Window
	}
	switch {
	case b.Initial < 0 || b.Max < b.Initial:
		return b, fmt.Errorf("%w: need 0 < Initial (%v) <= Max (%v)", ErrInvalidBackoff, b.Initial, b.Max)
	case b.Multiplier < 1 || math.IsInf(b.Multiplier, 0) || math.IsNaN(b.Multiplier):
		return b, fmt.Errorf("%w: Multiplier %v < 1", ErrInvalidBackoff, b.Multiplier)
	case b.Jitter < 0 || b.Jitter >= 1 || math.IsNaN(b.Jitter):
		return b, fmt.Errorf("%w: Jitter %v outside [0,1)", ErrInvalidBackoff, b.Jitter)
	case b.Window < 0:
		return b, fmt.Errorf("%w: negative Window", ErrInvalidBackoff)
	}
	return b, nil
}

// Delay returns the wait before restarting after the given number of
// consecutive failures (1 for the first), with r in [0,1) choosing the jitter.
// It is Initial*Multiplier^(failures-1), jittered, and never more than Max.
func (b Backoff) Delay(failures int, r float64) time.Duration {
	if failures < 1 {
		failures = 1
	}
	base := float64(b.Initial) * math.Pow(b.Multiplier, float64(failures-1))
	base = min(base, float64(b.Max)) // also tames +Inf from a large exponent
	d := base * (1 - b.Jitter + 2*b.Jitter*r)
	return time.Duration(min(d, float64(b.Max)))
}
