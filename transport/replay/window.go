// Package replay implements the per-session anti-replay window for data
// packets: an RFC 6479 style sliding bitmap over the packet counter.
//
// A Window is deliberately not safe for concurrent use. Like wireguard-go's
// replay filter it lives in the sequential per-peer stage (sequencer-in),
// after the parallel crypto workers have authenticated a packet, so no lock is
// paid on the data path. Callers that need to share one must add their own
// lock.
package replay

import "math/bits"

const (
	blockBits  = 64 // bits per bitmap block (one uint64)
	ringBlocks = 128
	blockMask  = ringBlocks - 1
	bitMask    = blockBits - 1

	// WindowSize is how far behind the highest accepted counter a counter may
	// be and still be accepted. One block of the ring is always the one being
	// filled, so the usable window is one block short of the ring (RFC 6479).
	WindowSize = (ringBlocks - 1) * blockBits // 8128

	// RejectAfterMessages is the first counter a session never accepts (the
	// value WireGuard uses: 2^64 - 2^13 - 1). It keeps the counter well clear
	// of wrapping so a nonce is never reused under one key.
	RejectAfterMessages uint64 = (1<<64 - 1) - (1 << 13)
)

// Window remembers which counters of a session have been accepted. The zero
// value is an empty window ready for use; counters start at 0.
type Window struct {
	last uint64 // highest counter accepted so far (0 when none)
	ring [ringBlocks]uint64
	lost uint64 // see Lost
}

// Lost returns how many counters have left the window without being
// accepted: packets the peer sent (counters are sequential) that never
// arrived in time. A counter counts once the window has slid a whole block
// (64 counters) past WindowSize beyond it, so loss shows up about
// WindowSize packets later; counters still inside the window when the
// session ends are not counted. A lost packet that does arrive later is
// refused as too old (a replay drop) and stays counted here.
func (w *Window) Lost() uint64 { return w.lost }

// Reset empties the window, e.g. when the session's keys change.
func (w *Window) Reset() {
	*w = Window{}
}

// Check reports whether counter would be accepted, without recording it. Use it
// to drop obvious replays before paying for decryption.
func (w *Window) Check(counter uint64) bool {
	if counter >= RejectAfterMessages {
		return false
	}
	if counter > w.last {
		return true // never seen: everything above last is new
	}
	if w.last-counter > WindowSize {
		return false // too old to tell apart from a replay
	}
	block := (counter / blockBits) & blockMask
	return w.ring[block]&(1<<(counter&bitMask)) == 0
}

// Accept records counter and reports whether it was new and inside the window.
// Call it only for packets whose authentication tag verified; otherwise a
// forged counter could slide the window and make valid packets look old.
func (w *Window) Accept(counter uint64) bool {
	if counter >= RejectAfterMessages {
		return false
	}
	index := counter / blockBits
	if counter > w.last {
		// Slide forward, clearing the blocks we move into. A jump of more than
		// a whole ring clears everything once rather than looping.
		// The blocks it moves into held counters ringBlocks blocks older,
		// which leave the window now: their unset bits are lost counters
		// (the first ringBlocks blocks held none).
		current := w.last / blockBits
		diff := index - current
		if diff > ringBlocks {
			// The blocks between the ring's old span and its new one were
			// never in the window: every counter in them is lost.
			w.lost += (diff - ringBlocks) * blockBits
			diff = ringBlocks
		}
		for i := current + 1; i <= current+diff; i++ {
			if i >= ringBlocks {
				w.lost += blockBits - uint64(bits.OnesCount64(w.ring[i&blockMask]))
			}
			w.ring[i&blockMask] = 0
		}
		w.last = counter
	} else if w.last-counter > WindowSize {
		return false
	}
	block := index & blockMask
	bit := uint64(1) << (counter & bitMask)
	old := w.ring[block]
	w.ring[block] = old | bit
	return old&bit == 0
}
