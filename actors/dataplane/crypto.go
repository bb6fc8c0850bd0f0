package dataplane

// The crypto worker actors ("crypto/worker-<i>"). A worker seals or opens a
// whole batch with the batch's session keys (sealBatch in send.go,
// openBatch in receive.go), then hands the batch to its peer's sequencer
// for its direction. Workers keep no state, so any number of them can work
// on one peer's batches at once; the sequencer puts the batches back in
// order.

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
)

// sealOrOpen seals or opens b in place, as b.op says, marking each packet that
// fails with its drop reason and counting it in b.stats. It is the worker's
// whole job, apart so it can be tested and benchmarked without actors.
func sealOrOpen(b *batch) {
	switch b.op {
	case opSeal:
		sealBatch(b)
	case opOpen:
		openBatch(b)
	}
}

// pull tells a worker to take the next batch from the pool's queue. One is
// sent per queued batch; it is a shared pointer, so sending it does not
// allocate.
type pull struct{}

// worker is one crypto actor.
type worker struct {
	hook  func()
	queue *fairQueue
}

func (w *worker) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*pull); !ok {
		return
	}
	it, ok := w.queue.Next()
	if !ok || it.Batch == nil {
		return // closed
	}
	b := it.Batch
	if w.hook != nil {
		w.hook()
	}
	sealOrOpenTimed(b)
	ctx.Send(b.next(), b.seqMessage())
}

// sealOrOpenTimed is sealOrOpen, with the crypto's start and end stamped
// on b only while the sojourn histograms record (the stage before stamped
// the batch): a crypto worker has no data plane to ask.
func sealOrOpenTimed(b *batch) {
	timed := !b.ts.handed.IsZero()
	if timed {
		b.ts.start = time.Now()
	}
	sealOrOpen(b)
	if timed {
		b.ts.done = time.Now()
	}
}

// workerPool is the set of workers and the queue in front of them.
//
// Work waits in one bounded queue per peer and direction (batch.work), and
// the workers take it round-robin across peers, not in arrival order: in
// a shared FIFO (the workers' mailboxes) an idle peer's ping would wait
// behind every batch the bulk peers have in flight. A worker is told to
// pull by a token in its mailbox, one per batch queued, dealt round-robin
// with one atomic add, so which batch it gets is the queue's choice.
type workerPool struct {
	workers []*actor.PID
	next    atomic.Uint64
	queue   *fairQueue
	token   pull
	// tokenEnv is token wrapped as a protoactor envelope, so sending it
	// allocates nothing (see batch.toPeer); shared and never changed.
	tokenEnv actor.MessageEnvelope
}

// submit queues b on its peer's work queue for its direction (b.work())
// and tells the next worker to pull. A worker sends b to its sequencer
// (b.next()) when done. If the work queue is full, b's packets are dropped
// as QueueFull and b goes straight to the sequencer, which still expects
// its slot.
//
// A batch of at most inlineMax packets of a peer with nothing else in
// flight in that direction is sealed or opened right here, in the caller
// (the socket reader, a peer actor), and goes straight to its sequencer:
// a lone ping, keepalive or TCP ACK is a few microseconds of crypto, less
// than the hop to a worker, and under load that hop (a worker's turn, and
// waking its thread on a busy machine) was most of what such a batch
// waited. A bulk peer's small batches (a fast single flow's reads are
// often one or two datagrams when the reader keeps up) still go to the
// workers: opened by the reader, they made one goroutine do the crypto of
// the whole flow (1-pusher throughput fell by a third).
func (p *workerPool) submit(sender actor.SenderContext, b *batch) {
	if b.N <= inlineMax && (b.limit == nil || b.limit.Len() <= 1) {
		sealOrOpenTimed(b)
		sender.Send(b.next(), b.seqMessage())
		return
	}
	i := p.next.Add(1) % uint64(len(p.workers))
	if !p.queue.Push(b.work(), b) {
		if b.op == opOpen {
			b.shedUnopened()
		} else {
			b.DropAll(QueueFull, nil)
		}
		sender.Send(b.next(), b.seqMessage())
		return
	}
	sender.Send(p.workers[i], &p.tokenEnv)
}

// inlineMax is the most packets a batch may hold and be sealed or opened
// by the stage that submits it (submit).
const inlineMax = sparseLen

// Close refuses further work and returns the batches still queued, for
// the caller to release.
func (p *workerPool) Close() []*batch { return p.queue.Close() }

// spawnCrypto starts the "crypto" actor under spawner with n workers
// ("crypto/worker-<i>"). hook, if not nil, runs before each batch (a test
// hook for jitter).
func spawnCrypto(spawner actor.SpawnerContext, n int, hook func()) (*workerPool, *actor.PID, error) {
	if n < 1 {
		return nil, nil, fmt.Errorf("crypto: spawn: %d workers", n)
	}
	sys := supervise.FromContext(spawner)
	if sys == nil {
		return nil, nil, errors.New("crypto: spawn: context is not from a supervise.System")
	}
	// The workers must be spawned from the crypto actor's own context; it
	// hands their PIDs back from its Started handler.
	queue := newFairQueue(1) // no control packets
	done := make(chan result, 1)
	var once sync.Once // a restarted crypto actor does not spawn workers again
	props := actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*actor.Started); ok {
			once.Do(func() { done <- spawnWorkers(ctx, n, hook, queue) })
		}
	})
	pid, err := supervise.Spawn(spawner, "crypto", "crypto", props)
	if err != nil {
		return nil, nil, fmt.Errorf("crypto: spawn: %w", err)
	}
	r := <-done
	if r.err != nil {
		sys.Root().Stop(pid)
		return nil, nil, fmt.Errorf("crypto: spawn workers: %w", r.err)
	}
	wp := &workerPool{workers: r.pids, queue: queue}
	wp.tokenEnv.Message = &wp.token
	return wp, pid, nil
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

func spawnWorkers(ctx actor.Context, n int, hook func(), queue *fairQueue) result {
	var r result
	dispatcher := actor.NewDefaultDispatcher(yieldEvery)
	for i := range n {
		pid, err := supervise.Spawn(ctx, "crypto-worker", "worker-"+strconv.Itoa(i),
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
