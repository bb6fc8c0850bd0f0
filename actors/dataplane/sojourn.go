package dataplane

import (
	"fmt"
	"io"
	"math/bits"
	"sync/atomic"
	"time"
)

// Where a batch waits: per-stage sojourn histograms, for finding the queue
// that holds an idle peer's packet up while bulk peers load the node.
//
// Off by default and then free (one atomic load per batch per stage). Once
// switched on (Dataplane.SojournReset, the debug endpoint's
// /debug/sojourn?reset=1), each stage stamps a batch with time.Now when
// hands it on, and the last stage before a device (the TUN writer in,
// the socket writer out) adds each stage's time to its histogram: a few
// clock reads and atomic adds per batch, never per packet. Batches are
// counted by class: a lone ping (the idle peer's echo: what the latency
// goal is about), other sparse batches (lone ACKs, keepalives) and bulk.

// stage is one step of the data path whose time a batch records.
type stage uint8

const (
	// Inbound.
	stSocket   stage = iota // kernel receive stamp of the oldest packet -> the socket reader took it
	stOpenQ                 // reader handed it on -> a crypto worker took it (fair queue + worker mailbox)
	stOpen                  // the crypto worker's own time
	stSeqIn                 // worker done -> sequencer-in ran it (mailbox + reorder wait)
	stTunQ                  // queued at the TUN writer -> taken by it (fair queue)
	stInTotal               // born (kernel stamp) -> taken by the TUN writer: what CoDel sees
	stTunWrite              // one Device.Write, per write (its batches counted as one)
	// Outbound.
	stPeer     // TUN reader -> the peer actor ran it (mailbox)
	stSealQ    // peer actor -> a crypto worker took it
	stSeal     // the crypto worker's own time
	stSeqOut   // worker done -> sequencer-out ran it
	stSockQ    // queued at the socket writer -> taken by it
	stOutTotal // TUN read -> taken by the socket writer
	stUDPWrite // one WriteBatch
	// Echo turnarounds (echo.go): the spans of a ping no stage above covers.
	stEchoHere // an echo request taken by the TUN writer -> its reply read from TUN
	stEchoRead // its TUN write returned -> its reply read from TUN (the part of stEchoHere after the write)
	stEchoTrip // an echo request read from TUN -> its reply taken by the TUN writer
	nStages
)

var stageNames = [nStages]string{
	stSocket: "in: socket rcvbuf", stOpenQ: "in: open queue", stOpen: "in: open (crypto)",
	stSeqIn: "in: sequencer", stTunQ: "in: TUN writer queue", stInTotal: "in: total to TUN writer",
	stTunWrite: "in: TUN write call",
	stPeer:     "out: peer actor mailbox", stSealQ: "out: seal queue", stSeal: "out: seal (crypto)",
	stSeqOut: "out: sequencer", stSockQ: "out: socket writer queue", stOutTotal: "out: total to socket writer",
	stUDPWrite: "out: UDP write call",
	stEchoHere: "echo: request TUN->reply TUN", stEchoRead: "echo: written->reply TUN",
	stEchoTrip: "echo: round trip via tunnel",
}

// sojournBuckets: bucket k counts times in [2^(k-1), 2^k) µs (bucket 0:
// below 1 µs); the last one takes everything longer.
const sojournBuckets = 22

// histogram is one stage's times for one class of batch.
type histogram struct {
	n, sum, max atomic.Uint64 // batches, total ns, longest ns
	b           [sojournBuckets]atomic.Uint64
}

func (h *histogram) add(d time.Duration) {
	ns := uint64(max(d, 0))
	h.n.Add(1)
	h.sum.Add(ns)
	for {
		m := h.max.Load()
		if ns <= m || h.max.CompareAndSwap(m, ns) {
			break
		}
	}
	h.b[min(bits.Len64(ns/1000), sojournBuckets-1)].Add(1)
}

func (h *histogram) reset() {
	h.n.Store(0)
	h.sum.Store(0)
	h.max.Store(0)
	for i := range h.b {
		h.b[i].Store(0)
	}
}

// quantile is the upper edge of the bucket holding the q-th time.
func (h *histogram) quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	want := uint64(q*float64(n-1)) + 1
	var seen uint64
	for k := range h.b {
		seen += h.b[k].Load()
		if seen >= want {
			if k == sojournBuckets-1 {
				return time.Duration(h.max.Load())
			}
			return time.Duration(uint64(1)<<k) * time.Microsecond
		}
	}
	return time.Duration(h.max.Load())
}

// sojourns is the data plane's set of histograms.
type sojourns struct {
	on    atomic.Bool
	since atomic.Int64                 // Unix ns of the last reset
	h     [nStages][nClasses]histogram // by stage and class
	// base: drops by reason and packets received, over all peers, at the
	// last reset (the report shows what the recorded span added).
	base         [NumReasons]atomic.Uint64
	baseRx       atomic.Uint64
	baseLost     atomic.Uint64
	baseUnopened atomic.Uint64
	// Echo requests waiting for their replies (echo.go): written to the
	// TUN device (hereIn), read from it (tripOut).
	hereIn, tripOut echoTable
}

// totals sums drops by reason, packets received, lost and shed unopened
// over the global counters and every peer's.
func (d *Dataplane) totals() (drops [NumReasons]uint64, rx, lost, unopened uint64) {
	for r := range drops {
		drops[r] = d.global[r].Load()
	}
	for _, h := range d.set.All() {
		for r := range drops {
			drops[r] += h.Stats.Drops[r].Load()
		}
		rx += h.Stats.RxPackets.Load()
		lost += h.Stats.Lost.Load()
		unopened += h.Stats.Unopened.Load()
	}
	return drops, rx, lost, unopened
}

// stamps is what a batch carries for the histograms: when each stage
// handed it on. All zero while recording is off (handed is set only then),
// and the stages after the first stamp only a batch whose handed is set.
type stamps struct {
	// handed: the socket reader (in) or the peer actor (out) handed it to
	// the crypto workers; actor: when the TUN reader handed it to the
	// peer actor (out only).
	handed, actor time.Time
	start, done   time.Time // a crypto worker took it, and was done
	queued        time.Time // its sequencer queued it at the device writer
	class         uint8     // out: classOf at the TUN reader (sealed packets cannot be read later)
}

// Batch classes: a lone ICMP echo or reply (what the idle peer's ping is),
// another sparse batch (at most sparseLen packets: lone ACKs, keepalives),
// bulk.
const (
	classPing = iota
	classSparse
	classBulk
	nClasses
)

var classNames = [nClasses]string{"ping", "sparse", "bulk"}

// classOf classifies b's live packets, which must be inner IP packets.
func classOf(b *batch) uint8 {
	if b.N > sparseLen {
		return classBulk // without reading every packet: the histograms cost per batch
	}
	live, icmp := 0, 0
	for i := range b.N {
		p := &b.Pkts[i]
		if p.Drop != OK {
			continue
		}
		live++
		if isICMP(p.Bytes()) {
			icmp++
		}
	}
	switch {
	case live > sparseLen:
		return classBulk
	case icmp > 0 && icmp == live:
		return classPing
	default:
		return classSparse
	}
}

// classOfLen is the class of n packets of unknown content.
func classOfLen(n int) uint8 {
	if n <= sparseLen {
		return classSparse
	}
	return classBulk
}

// isICMP reports whether pkt is an ICMP or ICMPv6 packet (no extension
// headers: ping's are not).
func isICMP(pkt []byte) bool {
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4:
		return pkt[9] == 1
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		return pkt[6] == 58
	}
	return false
}

func (s *sojourns) enabled() bool { return s.on.Load() }

// record adds now - from to stage st for a batch of class c.
func (s *sojourns) record(st stage, c uint8, from, now time.Time) {
	if from.IsZero() || now.IsZero() {
		return
	}
	s.h[st][c].add(now.Sub(from))
}

// inbound records an opened batch's stages as the TUN writer takes it,
// and its echoes (echo.go) if it is a ping; it returns the batch's class.
func (s *sojourns) inbound(b *batch, now time.Time) uint8 {
	c, t := classOf(b), &b.ts
	if c == classPing {
		s.echoTUNWrite(b, now)
	}
	s.record(stSocket, c, b.born, t.handed)
	s.record(stOpenQ, c, t.handed, t.start)
	s.record(stOpen, c, t.start, t.done)
	s.record(stSeqIn, c, t.done, t.queued)
	s.record(stTunQ, c, t.queued, now)
	s.record(stInTotal, c, b.born, now)
	return c
}

// outbound records a sealed batch's stages as the socket writer takes it.
func (s *sojourns) outbound(b *batch, now time.Time) {
	c, t := b.ts.class, &b.ts
	s.record(stPeer, c, t.actor, t.handed)
	s.record(stSealQ, c, t.handed, t.start)
	s.record(stSeal, c, t.start, t.done)
	s.record(stSeqOut, c, t.done, t.queued)
	s.record(stSockQ, c, t.queued, now)
	s.record(stOutTotal, c, b.born, now)
}

// reset zeroes the histograms and switches recording on.
func (s *sojourns) reset() {
	for i := range s.h {
		for c := range s.h[i] {
			s.h[i][c].reset()
		}
	}
	s.hereIn.reset()
	s.tripOut.reset()
	s.since.Store(time.Now().UnixNano())
	s.on.Store(true)
}

// SojournReset zeroes the per-stage sojourn histograms and switches their
// recording on (it costs a few clock reads per batch; off until the first
// call).
func (d *Dataplane) SojournReset() {
	drops, rx, lost, unopened := d.totals()
	for r := range drops {
		d.sojourn.base[r].Store(drops[r])
	}
	d.sojourn.baseRx.Store(rx)
	d.sojourn.baseLost.Store(lost)
	d.sojourn.baseUnopened.Store(unopened)
	d.sojourn.reset()
}

// WriteSojourn writes the per-stage sojourn histograms since the last
// SojournReset as a text table: per stage and class (ping, sparse, bulk:
// see classOf), the batches, mean, p50, p90, p99 (upper bucket edges,
// powers of two µs) and the longest.
func (d *Dataplane) WriteSojourn(w io.Writer) error {
	s := &d.sojourn
	if !s.enabled() {
		_, err := fmt.Fprintln(w, "sojourn recording is off: GET /debug/sojourn?reset=1 switches it on")
		return err
	}
	if _, err := fmt.Fprintf(w, "sojourn per stage over %s (p50/p90/p99: upper edges of power-of-two µs buckets)\n",
		time.Since(time.Unix(0, s.since.Load())).Round(time.Millisecond)); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "%-28s %-6s %9s %10s %10s %10s %10s %10s\n",
		"stage", "class", "batches", "mean", "p50", "p90", "p99", "max"); err != nil {
		return err
	}
	// Lost counts the packets shed here unopened too (peerStats.Unopened):
	// the line says so, or the two read as twice the loss there was.
	drops, rx, lost, unopened := d.totals()
	if _, err := fmt.Fprintf(w, "packets received %d, lost on the way (replay window) %d, of them shed here unopened %d; drops:",
		rx-s.baseRx.Load(), lost-s.baseLost.Load(), unopened-s.baseUnopened.Load()); err != nil {
		return err
	}
	for r := Reason(1); r < NumReasons; r++ {
		if n := drops[r] - s.base[r].Load(); n > 0 {
			if _, err := fmt.Fprintf(w, " %s %d", r, n); err != nil {
				return err
			}
		}
	}
	if _, err := fmt.Fprintln(w); err != nil {
		return err
	}
	for st := range nStages {
		for c, class := range classNames {
			h := &s.h[st][c]
			n := h.n.Load()
			if n == 0 {
				continue
			}
			mean := time.Duration(h.sum.Load() / n)
			if _, err := fmt.Fprintf(w, "%-28s %-6s %9d %10s %10s %10s %10s %10s\n", stageNames[st], class, n,
				rnd(mean), rnd(h.quantile(0.5)), rnd(h.quantile(0.9)), rnd(h.quantile(0.99)),
				rnd(time.Duration(h.max.Load()))); err != nil {
				return err
			}
		}
	}
	return nil
}

func rnd(d time.Duration) time.Duration {
	switch {
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}
