package perf

import (
	"testing"

	"go.uber.org/goleak"
)

// The harness starts goroutines per flow and per sampler; none may outlive
// a test.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
