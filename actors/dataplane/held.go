package dataplane

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/dataplane/hold"
)

// A tunnel on the first packet (DESIGN.md §7.3): packets from the TUN with
// no usable tunnel wait in a hold.Queue, not on the fast path. Packets to
// a peer that is up never come here; the checks that send them here are a
// nil route (a map miss) and one atomic load per batch (peerHandle.Up).

// HoldStats counts what the hold queue did.
type HoldStats struct {
	Held      uint64 `json:"held"`      // packets held for a tunnel
	Delivered uint64 `json:"delivered"` // held packets sent once their tunnel was up
	Lookups   uint64 `json:"lookups"`   // lookups started (OnNoRoute calls, and PTR lookups AskVIP let through)
}

type holdCounters struct {
	held, delivered, lookups atomic.Uint64
}

// holding reports whether first-packet tunnels are configured.
func (d *Dataplane) holding() bool {
	return d.held != nil
}

// countHoldDrops adds what the queue reports dropped to the global drops.
func (d *Dataplane) countHoldDrops(dr hold.Drops) {
	d.global.Add(HoldExpired, uint64(dr.Expired))
	d.global.Add(UnknownVIP, uint64(dr.Unknown))
	d.global.Add(NoRoute, uint64(dr.Failed))
}

// holdNoRoute takes a TUN packet to dst, which no peer is routed for.
func (d *Dataplane) holdNoRoute(dst netip.Addr, pkt []byte, now time.Time) {
	if !d.holding() || !dst.IsGlobalUnicast() || !d.cfg.Overlay(dst) {
		d.global.Add(NoRoute, 1)
		return
	}
	v, dr := d.held.Hold(dst, pkt, true, now)
	d.countHoldDrops(dr)
	switch v {
	case hold.HeldAsk:
		d.holdStats.held.Add(1)
		d.holdStats.lookups.Add(1)
		d.cfg.OnNoRoute(dst)
	case hold.Held:
		d.holdStats.held.Add(1)
	case hold.DropFull:
		d.global.Add(HoldFull, 1)
	case hold.DropUnknown:
		d.global.Add(UnknownVIP, 1)
	case hold.DropRate:
		d.global.Add(LookupRate, 1)
	}
}

// holdBatch keeps gb's packets (to h, which is not up) for when it is, and
// releases gb. If h came up meanwhile, what is held goes out at once: the
// peer took what was held when it came up, and these may have missed it.
func (d *Dataplane) holdBatch(h *peerHandle, gb *batch, now time.Time) {
	if !d.holding() {
		gb.DropAll(NoSession, nil)
		gb.Release()
		return
	}
	for i := range gb.N {
		p := &gb.Pkts[i]
		if p.Drop != OK {
			continue
		}
		dst, _ := dstAddr(p.Bytes())
		v, dr := d.held.Hold(dst, p.Bytes(), false, now)
		d.countHoldDrops(dr)
		if v == hold.Held || v == hold.HeldAsk {
			d.holdStats.held.Add(1)
		} else {
			h.Stats.Drops.Add(HoldFull, 1)
		}
	}
	gb.Release()
	if h.Up() {
		if b := d.takeHeld(h); b != nil {
			d.sendToPeer(h, b, now)
		}
	}
}

// takeHeld returns the packets held for h's VIPs, copied
// into a batch at headroom, or nil.
func (d *Dataplane) takeHeld(h *peerHandle) *batch {
	if !d.holding() {
		return nil
	}
	v6, v4 := h.VIPs()
	pkts, dr := d.held.Take(time.Now(), maxBatch, v6, v4)
	d.countHoldDrops(dr)
	if len(pkts) == 0 {
		return nil
	}
	b := d.pool.Get()
	for _, pkt := range pkts {
		p := &b.Pkts[b.N]
		if len(pkt) > len(p.Buf)-headroom {
			h.Stats.Drops.Add(Truncated, 1)
			continue
		}
		p.Off, p.Len, p.Drop, p.Relayed, p.Counter = headroom, copy(p.Buf[headroom:], pkt), OK, false, 0
		b.N++
	}
	if b.N == 0 {
		b.Release()
		return nil
	}
	d.holdStats.delivered.Add(uint64(b.N))
	return b
}

// LookupFailed implements the contract in api.go.
func (d *Dataplane) LookupFailed(vip netip.Addr, unknown bool) {
	if !d.holding() {
		return
	}
	now := time.Now()
	if unknown {
		d.countHoldDrops(d.held.Unknown(vip, now))
	} else {
		d.countHoldDrops(d.held.Failed(vip, now))
	}
}

// AskVIP implements the contract in api.go.
func (d *Dataplane) AskVIP(vip netip.Addr) error {
	if !d.holding() {
		return nil // no first-packet lookups configured: no budget to share
	}
	switch d.held.Ask(vip, time.Now()) {
	case hold.DropUnknown:
		return fmt.Errorf("dataplane: %s: %w", vip, ErrUnknownVIP)
	case hold.DropRate:
		return fmt.Errorf("dataplane: %s: %w", vip, ErrLookupRate)
	}
	d.holdStats.lookups.Add(1)
	return nil
}

// HoldStats implements the contract in api.go.
func (d *Dataplane) HoldStats() HoldStats {
	return HoldStats{Held: d.holdStats.held.Load(), Delivered: d.holdStats.delivered.Load(), Lookups: d.holdStats.lookups.Load()}
}
