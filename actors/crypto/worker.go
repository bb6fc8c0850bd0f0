// Package crypto is the data plane's pool of crypto worker actors. A worker
// seals or opens a whole batch with the batch's session keys, then hands the
// batch to the sequencer named in it. Workers keep no state, so any number of
// them can work on one peer's batches at once; the sequencer puts the
// batches back in order.
package crypto

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/dataplane/batch"
	"github.com/cyphonic/cyphonic-go/actors/runtime"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/seal"
)

// Process seals or opens b in place, as b.Op says, marking each packet that
// fails with its drop reason and counting it in b.Stats. It is the worker's
// whole job, exported so it can be tested and benchmarked without actors.
func Process(b *batch.Batch) {
	switch b.Op {
	case batch.Seal:
		sealBatch(b)
	case batch.Open:
		openBatch(b)
	}
}

func sealBatch(b *batch.Batch) {
	for i := range b.N {
		p := &b.Pkts[i]
		if p.Drop != batch.OK {
			continue
		}
		if p.Off < seal.HeaderLen+messages.RelayHeaderLen || cap(p.Buf)-p.Off-p.Len < seal.Overhead {
			p.Drop = batch.Truncated // no headroom or tailroom: a caller bug, never input
			b.Stats.Drops.Add(batch.Truncated, 1)
			continue
		}
		dst := p.Buf[p.Off-seal.HeaderLen:]
		out, err := b.Key.Seal(dst, 0, p.Counter, p.Buf[p.Off:p.Off+p.Len])
		if err != nil {
			p.Drop = batch.CounterLimit
			b.Stats.Drops.Add(batch.CounterLimit, 1)
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

func openBatch(b *batch.Batch) {
	for i := range b.N {
		p := &b.Pkts[i]
		if p.Drop != batch.OK {
			continue
		}
		pt, counter, err := b.Key.Open(p.Bytes())
		if err != nil {
			r := batch.Auth
			switch {
			case errors.Is(err, seal.ErrTruncated):
				r = batch.Truncated
			case errors.Is(err, seal.ErrWrongIndex), errors.Is(err, seal.ErrBadType):
				r = batch.Malformed
			case errors.Is(err, seal.ErrCounterLimit):
				r = batch.CounterLimit
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

// worker is one crypto actor.
type worker struct{ hook func() }

func (w *worker) Receive(ctx actor.Context) {
	b, ok := ctx.Message().(*batch.Batch)
	if !ok {
		return
	}
	if w.hook != nil {
		w.hook()
	}
	Process(b)
	ctx.Send(b.Reply, b.SeqMessage())
}

// Pool is the set of workers behind a round-robin dispatch. It routes with
// one atomic add and no allocation; protoactor's router actors would add a
// mailbox hop per batch.
type Pool struct {
	workers []*actor.PID
	next    atomic.Uint64
}

// Submit hands b to the next worker. The worker sends b to b.Reply when done.
func (p *Pool) Submit(sender actor.SenderContext, b *batch.Batch) {
	i := p.next.Add(1) % uint64(len(p.workers))
	sender.Send(p.workers[i], b)
}

// Workers returns the workers' PIDs.
func (p *Pool) Workers() []*actor.PID { return p.workers }

// parent is the "crypto" actor: it only supervises its workers (a panicking
// worker is restarted at once; it has no state to lose).
type parent struct{}

func (parent) Receive(actor.Context) {}

// Spawn starts the "crypto" actor under spawner with n workers
// ("crypto/worker-<i>"). hook, if not nil, runs before each batch (a test
// hook for jitter).
func Spawn(spawner actor.SpawnerContext, n int, hook func()) (*Pool, *actor.PID, error) {
	if n < 1 {
		return nil, nil, fmt.Errorf("crypto: spawn: %d workers", n)
	}
	sys := runtime.FromContext(spawner)
	if sys == nil {
		return nil, nil, errors.New("crypto: spawn: context is not from a runtime.System")
	}
	// The workers must be spawned from the parent's own context; the
	// parent hands their PIDs back from its Started handler.
	done := make(chan result, 1)
	var once sync.Once // a restarted parent does not spawn workers again
	props := actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*actor.Started); ok {
			once.Do(func() { done <- spawnWorkers(ctx, n, hook) })
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
	return &Pool{workers: r.pids}, pid, nil
}

type result struct {
	pids []*actor.PID
	err  error
}

func spawnWorkers(ctx actor.Context, n int, hook func()) result {
	var r result
	for i := range n {
		pid, err := runtime.Spawn(ctx, "crypto-worker", "worker-"+strconv.Itoa(i),
			actor.PropsFromProducer(func() actor.Actor { return &worker{hook: hook} }))
		if err != nil {
			r.err = err
			return r
		}
		r.pids = append(r.pids, pid)
	}
	return r
}
