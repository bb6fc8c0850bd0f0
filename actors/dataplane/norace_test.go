//go:build !race

package dataplane

// raceEnabled: the race detector makes sync.Pool drop a share of what is
// put, so allocation counts mean nothing under it.
const raceEnabled = false
