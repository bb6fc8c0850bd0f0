package supervise

import (
	"sync"

	cmap "github.com/orcaman/concurrent-map"
)

// protoactor's process registry, one per actor system, is 1,024 buckets,
// each a concurrent-map of cmap.SHARD_COUNT (32) shards: 32,768 mutex+map
// pairs, 4.6 MB of heap per system whether it holds ten actors or ten
// thousand — at rest the largest single item of a node's heap. The 1,024
// buckets already spread lock contention far wider than the data path's
// few actors need, so one shard per bucket loses nothing and costs ~100 KB.
// SHARD_COUNT is concurrent-map's only knob (a package variable read on
// every lookup, not an option of protoactor's), so it is set once, before
// New makes the first registry: every map must be made and read under the
// same count. Nothing else in the process uses concurrent-map (protoactor's
// cluster package, which would, is not linked), and New is the only maker
// of actor systems here.
var oneShardOnce sync.Once

func oneShardRegistry() {
	oneShardOnce.Do(func() { cmap.SHARD_COUNT = 1 })
}
