package nodecmd

import (
	"strings"
	"sync"
)

// defaultMemProfileRate is the heap sampler's rate when --debug-memprofile
// asks for it: the runtime's own default (one sample per 512 KiB
// allocated), which is what /debug/pprof/heap and allocs show otherwise.
const defaultMemProfileRate = 512 << 10

// setMemProfileRate sets runtime.MemProfileRate at the first node start.
var setMemProfileRate sync.Once

// memProfileRate returns the runtime.MemProfileRate the node runs with, and
// whether to set it. The node samples no allocations unless asked
// (--debug-memprofile): the sampler's first sample reserves its 1.4 MB
// bucket table and every sampled stack stays recorded, ~0.3 MiB of RSS at
// rest (issue 12), for profiles nobody reads on a running node. A
// memprofilerate in GODEBUG, which the runtime has applied already, wins
// over the default, as GOMEMLIMIT does over --memory-limit's.
func memProfileRate(asked bool, godebug string) (rate int, set bool) {
	if asked {
		return defaultMemProfileRate, true
	}
	for _, kv := range strings.Split(godebug, ",") {
		if k, _, _ := strings.Cut(kv, "="); strings.TrimSpace(k) == "memprofilerate" {
			return 0, false
		}
	}
	return 0, true
}
