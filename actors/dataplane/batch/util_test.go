package batch

import "sync/atomic"

type atomicInt struct{ atomic.Int32 }
