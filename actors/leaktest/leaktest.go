// Package leaktest runs goleak for packages whose tests start protoactor
// actor systems, so every such package ignores exactly the same, named,
// protoactor-internal goroutines and nothing else.
package leaktest

import (
	"testing"

	"go.uber.org/goleak"
)

// Options are the goleak options for tests that run actor systems.
//
// protoactor's dead-letter logging throttle (actor.NewThrottle) parks a
// goroutine for its throttle period (about a second) after a burst of dead
// letters and then exits by itself. It belongs to no actor and cannot be
// stopped, so a system shut down just before the leak check may still show
// it. That goroutine, by its two names in this protoactor version, is the
// only thing ignored.
func Options(extra ...goleak.Option) []goleak.Option {
	return append([]goleak.Option{
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewThrottle.func1.1"),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
	}, extra...)
}

// VerifyTestMain is goleak.VerifyTestMain with Options.
func VerifyTestMain(m *testing.M, extra ...goleak.Option) {
	goleak.VerifyTestMain(m, Options(extra...)...)
}
