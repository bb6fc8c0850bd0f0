package sequencer

import (
	"fmt"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// MaxBatch is the most entries the actor puts in one output Batch: one
// mailbox hop per packet costs more than the crypto, one per 64 does not.
const MaxBatch = 64

// Entry is one completed sequence slot: an item, or a drop when the packet
// failed upstream (bad tag, replay, no route) and must not hold the line.
type Entry[T any] struct {
	Seq     uint64
	Item    T
	Dropped bool
}

// Batch is the message the sequencer actor takes and emits. Whoever sends a
// Batch hands it over: the sender must not touch it afterwards. Output
// batches hold at most MaxBatch released entries in sequence order, never
// dropped ones.
type Batch[T any] struct {
	Entries []Entry[T]
}

// StatsRequest asks the actor for a StatsReply (sent with ctx.Respond, so
// send it with Request or RequestWithCustomSender).
type StatsRequest struct{}

// StatsReply is the buffer's state when the request was handled.
type StatsReply struct {
	Stats   Stats
	Pending int
	Next    uint64
}

// Output receives released batches. It runs inside the actor's Receive,
// so it must not block. b is valid only during the call: the sequencer
// reuses it (and its Entries) for the next release, so the data path's
// steady state allocates nothing here. An Output that keeps a batch must
// copy it.
type Output[T any] func(ctx actor.Context, b *Batch[T])

// ToPID delivers released batches to pid with a plain Send. The message
// outlives the call, so it is a copy (one allocation per released batch).
func ToPID[T any](pid *actor.PID) Output[T] {
	return func(ctx actor.Context, b *Batch[T]) {
		ctx.Send(pid, &Batch[T]{Entries: slices.Clone(b.Entries)})
	}
}

// ToFunc delivers released batches to fn, called from the actor's
// goroutine (handy in tests and for a sink that is itself non-blocking).
// fn must not keep b after it returns.
func ToFunc[T any](fn func(*Batch[T])) Output[T] {
	return func(_ actor.Context, b *Batch[T]) { fn(b) }
}

// gapTick is the actor's timer firing: a gap deadline may have passed.
type gapTick struct{}

// Props returns the props of a sequencer actor that restores the order of
// the *Batch[T] messages it receives and sends the released items to out.
// opts are passed to actor.PropsFromProducer (e.g. a mailbox or middleware).
// A restarted actor starts over from cfg.Start with an empty buffer.
func Props[T any](cfg Config, out Output[T], opts ...actor.PropsOption) (*actor.Props, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("sequencer: props: %w", err)
	}
	if out == nil {
		return nil, fmt.Errorf("sequencer: props: %w: nil output", ErrInvalidConfig)
	}
	return actor.PropsFromProducer(func() actor.Actor { return newSequencer(cfg, out, nil) }, opts...), nil
}

// PropsReturning is Props for items that hold something to give back (a
// pooled buffer, a slot of an in-flight bound): an item the buffer refuses
// (too old, because its gap was given up before it came; a duplicate; beyond
// the window) goes to reject, from the actor's goroutine, instead of being
// forgotten. reject must not block.
func PropsReturning[T any](cfg Config, out Output[T], reject func(T), opts ...actor.PropsOption) (*actor.Props, error) {
	if reject == nil {
		return nil, fmt.Errorf("sequencer: props: %w: nil reject", ErrInvalidConfig)
	}
	if _, err := Props(cfg, out); err != nil {
		return nil, err
	}
	return actor.PropsFromProducer(func() actor.Actor { return newSequencer(cfg, out, reject) }, opts...), nil
}

// sequencer is the actor: a Buffer, a batch being filled and a gap timer.
type sequencer[T any] struct {
	buf    *Buffer[T]
	out    Output[T]
	reject func(T)                  // refused items (nil: forgotten)
	emit   func(seq uint64, item T) // bound once so Release does not allocate a closure

	ctx   actor.Context // set only while Receive runs, for emit
	batch []Entry[T]    // the batch being filled, capacity MaxBatch, reused
	sent  Batch[T]      // the message handed to out, reused

	timer   *time.Timer
	armed   bool
	armedAt time.Time
	// stopping is set once the actor is going away: no timer may be armed
	// after that, or it would outlive the actor.
	stopping bool
}

func newSequencer[T any](cfg Config, out Output[T], reject func(T)) *sequencer[T] {
	buf, err := New[T](cfg)
	if err != nil {
		panic(err) // unreachable: Props validated cfg
	}
	s := &sequencer[T]{buf: buf, out: out, reject: reject, batch: make([]Entry[T], 0, MaxBatch)}
	s.emit = s.collect
	return s
}

func (s *sequencer[T]) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *Batch[T]:
		now := time.Now()
		for i := range m.Entries {
			e := &m.Entries[i]
			// Rejections are counted in Stats; a late or duplicate packet
			// is not forwarded, and handed back if it holds something.
			if e.Dropped {
				_ = s.buf.Drop(e.Seq, now)
			} else if err := s.buf.Put(e.Seq, e.Item, now); err != nil && s.reject != nil {
				s.reject(e.Item)
			}
		}
		s.release(ctx, now)
	case gapTick:
		s.armed = false
		s.release(ctx, time.Now())
	case *StatsRequest:
		ctx.Respond(&StatsReply{Stats: s.buf.Stats(), Pending: s.buf.Pending(), Next: s.buf.Next()})
	case *actor.Stopping, *actor.Restarting:
		s.stopping = true
		if s.timer != nil {
			s.timer.Stop()
		}
		s.armed = false
	}
}

// release emits what is ready in batches of MaxBatch, then rearms the timer
// for the next gap deadline.
func (s *sequencer[T]) release(ctx actor.Context, now time.Time) {
	s.ctx = ctx
	s.buf.Release(now, s.emit)
	s.flush()
	s.ctx = nil
	s.arm(ctx, now)
}

func (s *sequencer[T]) collect(seq uint64, item T) {
	s.batch = append(s.batch, Entry[T]{Seq: seq, Item: item})
	if len(s.batch) == MaxBatch {
		s.flush()
	}
}

func (s *sequencer[T]) flush() {
	if len(s.batch) == 0 {
		return
	}
	s.sent.Entries = s.batch
	s.out(s.ctx, &s.sent)
	// Out is done with it (see Output): zero the entries so released items
	// (pooled packet buffers) are not kept alive, and refill the same slice.
	clear(s.batch)
	s.batch = s.batch[:0]
	s.sent.Entries = nil
}

// arm points the timer at the buffer's next gap deadline. The timer only
// sends the actor a message: the actor alone touches the buffer. A stale
// tick is harmless (Release with nothing due does nothing).
func (s *sequencer[T]) arm(ctx actor.Context, now time.Time) {
	deadline, ok := s.buf.NextDeadline()
	if !ok || s.stopping {
		if s.armed {
			s.timer.Stop()
			s.armed = false
		}
		return
	}
	if s.armed && s.armedAt.Equal(deadline) {
		return
	}
	delay := max(deadline.Sub(now), 0)
	if s.timer == nil {
		root, self := ctx.ActorSystem().Root, ctx.Self()
		s.timer = time.AfterFunc(delay, func() { root.Send(self, gapTick{}) })
	} else {
		s.timer.Reset(delay)
	}
	s.armed, s.armedAt = true, deadline
}
