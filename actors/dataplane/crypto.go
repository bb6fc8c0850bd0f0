// Package crypto is the data plane's pool of crypto worker actors. A worker
// seals or opens a whole batch with the batch's session keys, then hands the
// batch to the sequencer named in it. Workers keep no state, so any number of
// them can work on one peer's batches at once; the sequencer puts the
// batches back in order.
package dataplane

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/runtime"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/seal"
)

// sealOrOpen seals or opens b in place, as b.Op says, marking each packet that
// fails with its drop reason and counting it in b.Stats. It is the worker's
// whole job, exported so it can be tested and benchmarked without actors.
func sealOrOpen(b *Batch) {
	switch b.Op {
	case opSeal:
		sealBatch(b)
	case opOpen:
		openBatch(b)
	}
}

func sealBatch(b *Batch) {
	for i := range b.N {
		p := &b.Pkts[i]
		if p.Drop != OK {
			continue
		}
		if p.Off < seal.HeaderLen+messages.RelayHeaderLen || cap(p.Buf)-p.Off-p.Len < seal.Overhead {
			p.Drop = Truncated // no headroom or tailroom: a caller bug, never input
			b.Stats.Drops.Add(Truncated, 1)
			continue
		}
		dst := p.Buf[p.Off-seal.HeaderLen:]
		out, err := b.Key.Seal(dst, 0, p.Counter, p.Buf[p.Off:p.Off+p.Len])
		if err != nil {
			p.Drop = CounterLimit
			b.Stats.Drops.Add(CounterLimit, 1)
			continue
		}
		p.Off -= seal.HeaderLen
		p.Len = len(out)
		if b.Relay {
			p.Off -= messages.RelayHeaderLen
			p.Len += messages.PutRelayHeader(p.Buf[p.Off:], b.Token)
		}
	}
}

func openBatch(b *Batch) {
	for i := range b.N {
		p := &b.Pkts[i]
		if p.Drop != OK {
			continue
		}
		pt, counter, err := b.Key.Open(p.Bytes())
		if err != nil {
			r := Auth
			switch {
			case errors.Is(err, seal.ErrTruncated):
				r = Truncated
			case errors.Is(err, seal.ErrWrongIndex), errors.Is(err, seal.ErrBadType):
				r = Malformed
			case errors.Is(err, seal.ErrCounterLimit):
				r = CounterLimit
			}
			p.Drop = r
			b.Stats.Drops.Add(r, 1)
			continue
		}
		p.Off += seal.HeaderLen
		p.Len = len(pt)
		p.Counter = counter
	}
}

// pull tells a worker to take the next batch from the pool's queue. One is
// sent per queued batch; it is a shared pointer, so sending it does not
// allocate.
type pull struct{}

// worker is one crypto actor.
type worker struct {
	hook  func()
	queue *FairQueue
}

func (w *worker) Receive(ctx actor.Context) {
	var b *Batch
	switch m := ctx.Message().(type) {
	case *Batch:
		b = m
	case *pull:
		it, ok := w.queue.Next()
		if !ok || it.Batch == nil {
			return // closed
		}
		b = it.Batch
	default:
		return
	}
	if w.hook != nil {
		w.hook()
	}
	sealOrOpen(b)
	ctx.Send(b.Reply, b.SeqMessage())
}

// workerPool is the set of workers and the queue in front of them.
//
// Work waits in one bounded queue per peer and direction (Batch.Work), and
// the workers take it round-robin across peers, not in arrival order: in
// a shared FIFO (the workers' mailboxes) an idle peer's ping would wait
// behind every batch the bulk peers have in flight. A worker is told to
// pull by a token in its mailbox, one per batch queued, dealt round-robin
// with one atomic add, so which batch it gets is the queue's choice.
type workerPool struct {
	workers []*actor.PID
	next    atomic.Uint64
	queue   *FairQueue
	token   pull
}

// Submit queues b on b.Work (or, if b.Work is nil, sends it to the next
// worker's mailbox directly). A worker sends b to b.Reply when done. If
// b.Work is full, b's packets are dropped as QueueFull and b goes straight
// to b.Reply, whose sequencer still expects its slot.
func (p *workerPool) Submit(sender actor.SenderContext, b *Batch) {
	i := p.next.Add(1) % uint64(len(p.workers))
	if b.Work == nil {
		sender.Send(p.workers[i], b)
		return
	}
	if !p.queue.Push(b.Work, b) {
		b.DropAll(QueueFull, nil)
		sender.Send(b.Reply, b.SeqMessage())
		return
	}
	sender.Send(p.workers[i], &p.token)
}

// Close refuses further work and returns the batches still queued, for
// the caller to release.
func (p *workerPool) Close() []*Batch { return p.queue.Close() }

// Workers returns the workers' PIDs.
func (p *workerPool) Workers() []*actor.PID { return p.workers }

// parent is the "crypto" actor: it only supervises its workers (a panicking
// worker is restarted at once; it has no state to lose).
type parent struct{}

func (parent) Receive(actor.Context) {}

// spawnCrypto starts the "crypto" actor under spawner with n workers
// ("crypto/worker-<i>"). hook, if not nil, runs before each batch (a test
// hook for jitter).
func spawnCrypto(spawner actor.SpawnerContext, n int, hook func()) (*workerPool, *actor.PID, error) {
	if n < 1 {
		return nil, nil, fmt.Errorf("crypto: spawn: %d workers", n)
	}
	sys := runtime.FromContext(spawner)
	if sys == nil {
		return nil, nil, errors.New("crypto: spawn: context is not from a runtime.System")
	}
	// The workers must be spawned from the parent's own context; the
	// parent hands their PIDs back from its Started handler.
	queue := NewFairQueue(1) // no control packets
	done := make(chan result, 1)
	var once sync.Once // a restarted parent does not spawn workers again
	props := actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*actor.Started); ok {
			once.Do(func() { done <- spawnWorkers(ctx, n, hook, queue) })
		}
	})
	pid, err := runtime.Spawn(spawner, "crypto", "crypto", props)
	if err != nil {
		return nil, nil, fmt.Errorf("crypto: spawn: %w", err)
	}
	r := <-done
	if r.err != nil {
		sys.Root().Stop(pid)
		return nil, nil, fmt.Errorf("crypto: spawn workers: %w", r.err)
	}
	return &workerPool{workers: r.pids, queue: queue}, pid, nil
}

type result struct {
	pids []*actor.PID
	err  error
}

// yieldEvery is how many messages a worker handles before it lets the Go
// scheduler run something else. protoactor's default (300) lets two
// workers hold both Ps of a small machine for 300 batches each, and the
// socket reader, the sequencers and the writers (each a few microseconds
// of work that a ping is waiting for) then wait for sysmon's 10 ms
// preemption; a batch is ~100 µs of crypto, so yielding after each costs
// little.
const yieldEvery = 1

func spawnWorkers(ctx actor.Context, n int, hook func(), queue *FairQueue) result {
	var r result
	dispatcher := actor.NewDefaultDispatcher(yieldEvery)
	for i := range n {
		pid, err := runtime.Spawn(ctx, "crypto-worker", "worker-"+strconv.Itoa(i),
			actor.PropsFromProducer(func() actor.Actor { return &worker{hook: hook, queue: queue} },
				actor.WithDispatcher(dispatcher)))
		if err != nil {
			r.err = err
			return r
		}
		r.pids = append(r.pids, pid)
	}
	return r
}
