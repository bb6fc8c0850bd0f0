package svc

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// Errors from Workers.Do.
var (
	// ErrBusy: the job queue is full. The caller drops the request (the
	// node retransmits) instead of blocking its actor.
	ErrBusy = errors.New("svc: store workers busy")
	// ErrClosed: the workers were closed.
	ErrClosed = errors.New("svc: store workers closed")
)

// Job is a blocking call (store I/O) made on behalf of an actor. It runs on
// a worker goroutine and must not touch the actor's state: it returns the
// message the actor receives with the result. A nil message sends nothing.
type Job func(ctx context.Context) any

// Workers runs Jobs for actors off their run loops: an actor's Receive must
// never block (system messages such as Stop share the run loop), yet
// bbolt's fsync or a Redis round trip takes milliseconds. A fixed pool of
// goroutines takes jobs from a bounded queue and sends each result back to
// the asking actor as a plain message (not a protoactor Future: see the
// design notes on upstream #1145).
//
// Several workers also let bbolt's DB.Batch coalesce concurrent writes
// into one fsync; the pool size bounds the store calls in flight.
type Workers struct {
	root   *actor.RootContext
	jobs   chan job
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.RWMutex // guards closed against the close of jobs
	closed bool

	busy, accepted atomic.Uint64
}

type job struct {
	to *actor.PID
	fn Job
}

// NewWorkers starts n worker goroutines (at least 1) with a queue of queue
// jobs (at least 1). Results are sent through root.
func NewWorkers(root *actor.RootContext, n, queue int) *Workers {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Workers{root: root, jobs: make(chan job, max(queue, 1)), ctx: ctx, cancel: cancel}
	for range max(n, 1) {
		w.wg.Go(w.run)
	}
	return w
}

func (w *Workers) run() {
	for j := range w.jobs {
		if msg := j.fn(w.ctx); msg != nil && j.to != nil {
			w.root.Send(j.to, msg)
		}
	}
}

// Do queues fn; its result goes to `to` (nil: the result is dropped, for
// jobs whose effect is all that matters). It never blocks: a full queue
// is ErrBusy, counted in Busy.
func (w *Workers) Do(to *actor.PID, fn Job) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	select {
	case w.jobs <- job{to: to, fn: fn}:
		w.accepted.Add(1)
		return nil
	default:
		w.busy.Add(1)
		return ErrBusy
	}
}

// Queued is the number of jobs waiting for a worker; Cap the queue's
// size.
func (w *Workers) Queued() int { return len(w.jobs) }
func (w *Workers) Cap() int    { return cap(w.jobs) }

// Busy counts jobs refused because the queue was full; Accepted the jobs
// queued.
func (w *Workers) Busy() uint64     { return w.busy.Load() }
func (w *Workers) Accepted() uint64 { return w.accepted.Load() }

// Close refuses new jobs, cancels the context the queued and running jobs
// see (so they end quickly but still run, releasing what they hold), and
// waits for the workers to finish.
func (w *Workers) Close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		w.cancel()
		close(w.jobs)
	}
	w.mu.Unlock()
	w.wg.Wait()
}
