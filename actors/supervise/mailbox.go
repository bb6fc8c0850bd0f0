package supervise

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// mailbox is an unbounded protoactor mailbox that behaves as protoactor's
// default one (actor.Unbounded: system messages first, suspension while a
// supervisor decides, yielding after the dispatcher's throughput, a panic
// escalated as the actor's failure, the mailbox middleware's events, a
// MessageBatch posted message by message and then whole) and allocates
// nothing per message or wake-up. protoactor's hands the dispatcher the
// method value m.processMessages each time an idle mailbox gets a message:
// a closure allocated per wake-up, which on the data path is one allocation
// per batch per actor it crosses. Here that function is made once. Its
// queues are rings that grow with a burst and shrink once drained (memory
// follows what is queued, not the peak).
//
// It differs from protoactor's in one way: a Restart taken after a Stop is
// dropped (see run).
type mailbox struct {
	user, system ring
	scheduled    atomic.Bool
	userN, sysN  atomic.Int32
	suspended    atomic.Bool
	stopped      atomic.Bool // a Stop has been taken: the actor is ending
	invoker      actor.MessageInvoker
	dispatcher   actor.Dispatcher
	mw           []actor.MailboxMiddleware
	process      func() // m.processMessages, bound once
}

var _ actor.Mailbox = (*mailbox)(nil)

// unbounded is Spawn's mailbox producer.
func unbounded(mw ...actor.MailboxMiddleware) actor.MailboxProducer {
	return func() actor.Mailbox {
		m := &mailbox{mw: mw}
		m.process = m.processMessages
		return m
	}
}

func (m *mailbox) PostUserMessage(msg any) {
	if b, ok := msg.(actor.MessageBatch); ok {
		for _, x := range b.GetMessages() {
			m.PostUserMessage(x)
		}
	}
	if env, ok := msg.(*actor.MessageEnvelope); ok {
		if b, ok := env.Message.(actor.MessageBatch); ok {
			for _, x := range b.GetMessages() {
				m.PostUserMessage(x)
			}
		}
	}
	for _, w := range m.mw {
		w.MessagePosted(msg)
	}
	m.user.push(msg)
	m.userN.Add(1)
	m.schedule()
}

func (m *mailbox) PostSystemMessage(msg any) {
	for _, w := range m.mw {
		w.MessagePosted(msg)
	}
	m.system.push(msg)
	m.sysN.Add(1)
	m.schedule()
}

func (m *mailbox) RegisterHandlers(invoker actor.MessageInvoker, dispatcher actor.Dispatcher) {
	m.invoker, m.dispatcher = invoker, dispatcher
}

func (m *mailbox) Start() {
	for _, w := range m.mw {
		w.MailboxStarted()
	}
}

func (m *mailbox) UserMessageCount() int { return int(m.userN.Load()) }

func (m *mailbox) schedule() {
	if m.scheduled.CompareAndSwap(false, true) {
		m.dispatcher.Schedule(m.process)
	}
}

// processMessages runs the mailbox until it is empty (or suspended with
// only user messages left), then goes idle; a message posted after the
// last check but before idling finds it still scheduled, so it runs again.
func (m *mailbox) processMessages() {
	for {
		m.run()
		m.scheduled.Store(false)
		sys, user := m.sysN.Load(), m.userN.Load()
		if sys > 0 || (!m.suspended.Load() && user > 0) {
			if m.scheduled.CompareAndSwap(false, true) {
				continue
			}
		}
		if user == 0 && !m.suspended.Load() {
			for _, w := range m.mw {
				w.MailboxEmpty()
			}
		}
		return
	}
}

func (m *mailbox) run() {
	var msg any
	defer func() {
		if r := recover(); r != nil {
			m.invoker.EscalateFailure(r, msg)
		}
	}()
	throughput := m.dispatcher.Throughput()
	for i := 0; ; i++ {
		if i > throughput {
			i = 0
			runtime.Gosched()
		}
		if msg = m.system.pop(); msg != nil {
			m.sysN.Add(-1)
			switch msg.(type) {
			case *actor.SuspendMailbox:
				m.suspended.Store(true)
			case *actor.ResumeMailbox:
				m.suspended.Store(false)
			case *actor.Stop:
				m.stopped.Store(true)
				m.invoker.InvokeSystemMessage(msg)
			case *actor.Restart:
				// protoactor restarts on a Restart whatever the actor's
				// state. One that comes while a stopping actor waits for
				// its children (a backoff restart of a failed child that
				// its parent is closing or stopping) turned the stop
				// into a restart: the Stop was lost, and the parent
				// waited for the child's Terminated forever. A Stop is
				// final, so a later restart has nothing to do.
				if !m.stopped.Load() {
					m.invoker.InvokeSystemMessage(msg)
				}
			default:
				m.invoker.InvokeSystemMessage(msg)
			}
			for _, w := range m.mw {
				w.MessageReceived(msg)
			}
			continue
		}
		if m.suspended.Load() {
			return
		}
		if msg = m.user.pop(); msg == nil {
			return
		}
		m.userN.Add(-1)
		m.invoker.InvokeUserMessage(msg)
		for _, w := range m.mw {
			w.MessageReceived(msg)
		}
	}
}

// ring is a FIFO of messages: a lock per push and pop, as protoactor's own
// unbounded queue takes. It doubles when full and, once drained, drops a
// buffer grown past ringKeep, so a burst's memory is given back.
type ring struct {
	mu         sync.Mutex
	buf        []any
	head, size int
}

// ringKeep is the most slots a drained ring keeps.
const ringKeep = 64

func (r *ring) push(v any) {
	r.mu.Lock()
	if r.size == len(r.buf) {
		grown := make([]any, max(2*len(r.buf), 8))
		n := copy(grown, r.buf[r.head:])
		copy(grown[n:], r.buf[:r.head])
		r.buf, r.head = grown, 0
	}
	r.buf[(r.head+r.size)%len(r.buf)] = v
	r.size++
	r.mu.Unlock()
}

// pop returns the oldest message, or nil if there is none.
func (r *ring) pop() any {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.size == 0 {
		return nil
	}
	v := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) % len(r.buf)
	r.size--
	if r.size == 0 {
		r.head = 0
		if len(r.buf) > ringKeep {
			r.buf = nil
		}
	}
	return v
}
