// Package sequencer restores sequence order after parallel work.
//
// Packets are stamped with consecutive sequence numbers before they are
// handed to parallel crypto workers, which finish them in any order. The
// sequencer puts them back in stamp order before they leave the node, the
// way wireguard-go's per-peer sequential stage does, but without waiting on
// a worker: workers report each slot as done (with its packet) or dropped,
// and the sequencer releases the longest in-order run it has.
//
// Buffer is the pure reorder buffer: a fixed ring, no goroutines, no locks,
// no allocation in steady state. The actor in this package (see Props) owns
// one Buffer, takes and emits batches, and arms a timer for the gap deadline.
package sequencer
