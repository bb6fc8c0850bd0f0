package dataplane

import (
	"time"
)

// sendHeld sends the packets the data plane held for this peer while it
// had no tunnel (a first packet to its VIP, or packets during a
// re-handshake), right after a session is installed. It runs inside the
// actor after setUp, so the held packets take sequence numbers before any
// batch the TUN reader sends once it sees the peer up.
func (p *peerActor) sendHeld(now time.Time) {
	if p.pipe == nil {
		return
	}
	b := p.d.takeHeld(p.h)
	if b == nil {
		return
	}
	b.Stats = &p.h.Stats
	if p.pipe.OutInflight.Add(1) > p.d.timing.OutInflight {
		p.pipe.OutInflight.Add(-1)
		b.DropAll(QueueFull, nil)
		b.Release()
		return
	}
	b.Track(&p.pipe.OutInflight)
	b.Born = now
	p.outbound(p.d.sys.Root(), b)
}
