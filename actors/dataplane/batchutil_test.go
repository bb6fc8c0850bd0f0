package dataplane

import "sync/atomic"

type atomicInt struct{ atomic.Int32 }
