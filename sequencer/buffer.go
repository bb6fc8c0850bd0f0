package sequencer

import (
	"errors"
	"fmt"
	"math/bits"
	"time"
)

// MaxWindow bounds Config.Window so a misconfiguration cannot ask for a
// ring of gigabytes.
const MaxWindow = 1 << 20

// Put and Drop return these sentinels unwrapped: they are hot-path outcomes
// the caller counts or ignores, and wrapping them would allocate per packet.
var (
	// ErrDuplicate: the slot is already complete (its item or drop was seen).
	ErrDuplicate = errors.New("sequencer: duplicate sequence number")
	// ErrTooOld: the sequence number was already released, dropped or skipped.
	ErrTooOld = errors.New("sequencer: sequence number already passed")
	// ErrBeyondWindow: the sequence number is Window or more ahead of the
	// head; accepting it would overwrite a slot still in use.
	ErrBeyondWindow = errors.New("sequencer: sequence number beyond window")
	// ErrInvalidConfig is wrapped by New and Props when Config is unusable.
	ErrInvalidConfig = errors.New("sequencer: invalid config")
)

// Config sizes a Buffer.
type Config struct {
	// Window is the number of slots in the ring: how far ahead of the
	// oldest unreleased sequence number an item may arrive. A power of two
	// in [1, MaxWindow]; it should exceed what the upstream can have in
	// flight (wireguard-go's queues hold 1024).
	Window int
	// GapTimeout is how long a completed slot may wait behind a missing
	// one before the missing sequence numbers are given up as lost.
	// Zero disables skipping: a gap then waits until it is filled or
	// dropped. Negative is invalid.
	GapTimeout time.Duration
	// Start is the first sequence number expected.
	Start uint64
}

func (c Config) validate() error {
	if c.Window < 1 || c.Window > MaxWindow || c.Window&(c.Window-1) != 0 {
		return fmt.Errorf("%w: window %d is not a power of two in [1, %d]", ErrInvalidConfig, c.Window, MaxWindow)
	}
	if c.GapTimeout < 0 {
		return fmt.Errorf("%w: negative gap timeout %v", ErrInvalidConfig, c.GapTimeout)
	}
	return nil
}

// Stats counts what a Buffer has done since it was made. Every sequence
// number the head has passed is exactly one of Released, Dropped or
// Skipped, so Released+Dropped+Skipped == Next()-Config.Start.
type Stats struct {
	Released     uint64 // items emitted in order
	Dropped      uint64 // slots completed by Drop and passed by the head
	Skipped      uint64 // missing sequence numbers given up after GapTimeout
	Duplicates   uint64 // Put/Drop rejected with ErrDuplicate
	TooOld       uint64 // Put/Drop rejected with ErrTooOld
	BeyondWindow uint64 // Put/Drop rejected with ErrBeyondWindow
	// Held counts items Put while the slot just before theirs was still
	// open: they arrived out of order and wait for an earlier item (or its
	// gap timeout). An in-order stream never counts one, so zero over a long
	// run with parallel upstream workers means the buffer never had to
	// restore order.
	Held uint64
}

type slotState uint8

const (
	slotEmpty slotState = iota
	slotReady
	slotDropped
)

type slot[T any] struct {
	item T
	// done is when the slot completed. It starts the gap clock for a
	// missing slot in front of it: a later packet has finished, so the
	// missing one has had its chance.
	done  time.Time
	state slotState
}

// Buffer is a reorder buffer over a fixed ring of Window slots. It holds
// sequence numbers in [Next(), Next()+Window) and releases them strictly
// in order. It is not safe for concurrent use; its owner (one actor)
// serialises access.
type Buffer[T any] struct {
	slots []slot[T]
	// full has one bit per slot, set while the slot is complete, so the
	// first complete slot behind a gap is found a word at a time.
	full    []uint64
	mask    uint64
	next    uint64
	pending int
	gap     time.Duration
	stats   Stats
}

// New returns an empty Buffer expecting cfg.Start next.
func New[T any](cfg Config) (*Buffer[T], error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	words := (cfg.Window + 63) / 64
	return &Buffer[T]{
		slots: make([]slot[T], cfg.Window),
		full:  make([]uint64, words),
		mask:  uint64(cfg.Window - 1),
		next:  cfg.Start,
		gap:   cfg.GapTimeout,
	}, nil
}

// Put completes slot seq with item at time now.
func (b *Buffer[T]) Put(seq uint64, item T, now time.Time) error {
	s, err := b.claim(seq)
	if err != nil {
		return err
	}
	if seq != b.next && b.slots[(seq-1)&b.mask].state == slotEmpty {
		b.stats.Held++ // seq-1 is in the window (seq > next) and not complete
	}
	s.item = item
	s.done = now
	s.state = slotReady
	return nil
}

// Drop completes slot seq without an item (the packet failed upstream), so
// the sequence can move past it without waiting for GapTimeout.
func (b *Buffer[T]) Drop(seq uint64, now time.Time) error {
	s, err := b.claim(seq)
	if err != nil {
		return err
	}
	s.done = now
	s.state = slotDropped
	return nil
}

// claim checks seq against the window and marks its slot complete.
func (b *Buffer[T]) claim(seq uint64) (*slot[T], error) {
	if seq < b.next {
		b.stats.TooOld++
		return nil, ErrTooOld
	}
	if seq-b.next > b.mask {
		b.stats.BeyondWindow++
		return nil, ErrBeyondWindow
	}
	i := seq & b.mask
	s := &b.slots[i]
	if s.state != slotEmpty {
		b.stats.Duplicates++
		return nil, ErrDuplicate
	}
	b.full[i>>6] |= 1 << (i & 63)
	b.pending++
	return s, nil
}

// Release emits every item that is ready, in sequence order, and returns
// how many it emitted. Dropped slots are passed silently. When the head is
// missing and the first complete slot behind it has waited GapTimeout or
// longer, the missing run is skipped (counted in Stats.Skipped) and release
// continues. emit must not call back into the Buffer.
func (b *Buffer[T]) Release(now time.Time, emit func(seq uint64, item T)) int {
	var zero T
	n := 0
	for b.pending > 0 {
		i := b.next & b.mask
		s := &b.slots[i]
		switch s.state {
		case slotEmpty:
			d := b.distanceToComplete()
			if b.gap == 0 || now.Sub(b.slots[(b.next+d)&b.mask].done) < b.gap {
				return n
			}
			b.stats.Skipped += d
			b.next += d
			continue
		case slotReady:
			item, seq := s.item, b.next
			b.vacate(s, i, zero)
			b.stats.Released++
			n++
			emit(seq, item)
		case slotDropped:
			b.vacate(s, i, zero)
			b.stats.Dropped++
		}
	}
	return n
}

// vacate empties the head slot and advances past it. The item is zeroed so
// the ring does not keep pooled buffers alive.
func (b *Buffer[T]) vacate(s *slot[T], i uint64, zero T) {
	s.item = zero
	s.state = slotEmpty
	b.full[i>>6] &^= 1 << (i & 63)
	b.pending--
	b.next++
}

// distanceToComplete returns how far the first complete slot lies behind
// the head. It needs pending > 0.
func (b *Buffer[T]) distanceToComplete() uint64 {
	h := b.next & b.mask
	w := h >> 6
	nw := uint64(len(b.full))
	word := b.full[w] &^ (1<<(h&63) - 1) // slots at or after the head in this word
	// One pass over the other words, then the head's word again for the
	// slots before the head (the ring wrapped).
	for range nw + 1 {
		if word != 0 {
			i := w<<6 | uint64(bits.TrailingZeros64(word))
			return (i - h) & b.mask
		}
		w = (w + 1) % nw
		word = b.full[w]
	}
	return 0 // unreachable while pending > 0
}

// NextDeadline reports when Release will next have work without further
// input: the moment the gap at the head expires. It reports false when
// nothing is pending or gap skipping is disabled. If the head is already
// complete (Release has not run), the deadline is that slot's completion
// time, which is not after now.
func (b *Buffer[T]) NextDeadline() (time.Time, bool) {
	if b.pending == 0 {
		return time.Time{}, false
	}
	head := &b.slots[b.next&b.mask]
	if head.state != slotEmpty {
		return head.done, true
	}
	if b.gap == 0 {
		return time.Time{}, false
	}
	d := b.distanceToComplete()
	return b.slots[(b.next+d)&b.mask].done.Add(b.gap), true
}

// Next returns the sequence number at the head: the oldest not yet passed.
func (b *Buffer[T]) Next() uint64 { return b.next }

// Pending returns how many slots are complete but not yet passed.
func (b *Buffer[T]) Pending() int { return b.pending }

// Stats returns the counters.
func (b *Buffer[T]) Stats() Stats { return b.stats }
