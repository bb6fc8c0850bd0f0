package supervise

import cmap "github.com/orcaman/concurrent-map"

// SmallRegistry makes every actor system's process registry created after
// it take ~100 KB instead of 2.8 MB. Call it once, first thing in main,
// before any actor system exists; a daemon calls it, a library never does.
//
// protoactor's process registry, one per actor system, is 1,024 buckets,
// each a concurrent-map of cmap.SHARD_COUNT (32) shards: 32,768 mutex+map
// pairs, whether the system holds ten actors or ten thousand — at rest the
// largest single item of a node's heap. The 1,024 buckets already spread
// lock contention far wider than the data path's few actors need, so one
// shard per bucket loses nothing. SHARD_COUNT is concurrent-map's only knob
// (a package variable read on every lookup; protoactor has no option for
// it), so it is set for the whole process, before the first map: every map
// must be made and read under the same count. Nothing else in the binary
// uses concurrent-map (protoactor's cluster package, which would, is not
// linked).
//
// Why not in New: tests start and stop many systems in one process, and
// changing how fast they start moved the detection of a known race between
// two protoactor remotes in one process (cloud/server/svc's Gateway doc)
// from never to always.
func SmallRegistry() { cmap.SHARD_COUNT = 1 }
