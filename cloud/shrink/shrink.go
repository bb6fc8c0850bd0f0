// Package shrink gives a Go map's memory back once most of its entries
// are gone. A Go map never shrinks: deleting entries frees their slots for
// reuse but keeps every bucket (group) the map grew to, so a map that once
// held a burst's million sessions holds their memory for as long as it
// lives. The cloud's per-node maps (NMS's sessions, the tunnels map, the
// FQDN index) follow churn, so each rebuilds itself, amortised: Map copies
// the entries left into a map sized for them only when they are under a
// quarter of the peak since the last rebuild, so a copy of n entries
// follows at least 3n deletions, and a map near its peak is never copied.
package shrink

import "maps"

// MinPeak is the peak below which a map is never rebuilt: its buckets are
// a few tens of kilobytes at most, less than a copy is worth.
const MinPeak = 1024

// Peak is a map's high-water mark since its last rebuild. Its zero value
// is ready; it belongs to the map it tracks (guard it with the map's lock).
type Peak struct{ n int }

// Map returns m, or a copy of m sized for its present entries when m has
// fallen under a quarter of its peak (at least MinPeak). Call it after
// deleting from m and use the map it returns (m itself is unchanged, so a
// caller that keeps references elsewhere keeps them valid until it
// replaces them). Each call also records len(m) as a candidate peak, so
// calling it after deletions alone is enough: the first deletion after a
// growth sees the map at its peak, less one.
func Map[M ~map[K]V, K comparable, V any](m M, p *Peak) M {
	n := len(m)
	if n > p.n {
		p.n = n
	}
	if p.n < MinPeak || n >= p.n/4 {
		return m
	}
	c := make(M, n)
	maps.Copy(c, m)
	p.n = n
	return c
}

// Grew records a map's size after an insertion, for maps that are not
// checked after every deletion (a periodic Map call then still knows the
// peak it must compare with).
func (p *Peak) Grew(n int) {
	if n > p.n {
		p.n = n
	}
}
