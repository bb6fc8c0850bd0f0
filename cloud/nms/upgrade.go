package nms

import (
	"context"
	"net/netip"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/path"
	"github.com/cyphonic/cyphonic-go/cloud/server/svc"
	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/messages"
)

// A relayed tunnel keeps trying to leave the relay (DESIGN §7.3). NMS put
// the pair on the TRS because of what the locators said at the time; when
// one node's locator changes (it registered again, say from behind a
// replaced NAT, or its keepalives come from a new mapping) NMS asks
// path.Upgrade whether the pair could now go direct or punch a hole. If
// so, both nodes get a PeerUpdate naming the other's endpoints. Their
// relayed sessions stay up: each peer probes the endpoints it was given
// with authenticated packets and moves when one gets through (both must
// send, so each NAT admits the other), and the relay stays the fallback
// if none does. No new handshake, no new relay allocation, and the relay
// ticket the nodes hold is untouched.

// upgrade is a relayed pair that may now leave the relay, seen from the
// node whose locator changed ("me").
type upgrade struct {
	peer store.Node
	// toPeer is where I send to reach the peer; toMe where the peer sends
	// to reach me. Either may be empty: that side waits for the other's
	// first packet and answers its source address.
	toPeer, toMe []netip.AddrPort
	decision     path.Decision
}

// planUpgrade reports whether the relayed pair (me, peer) can now leave
// the relay, and where each side should probe.
func planUpgrade(me, peer store.Node) (upgrade, bool) {
	a, b := toPath(me), toPath(peer)
	if !path.Upgrade(path.Decision{Kind: path.Relay}, a, b) {
		return upgrade{}, false
	}
	d := path.Choose(a, b)
	return upgrade{peer: peer, toPeer: clipAddrs(d.AEndpoints), toMe: clipAddrs(d.BEndpoints), decision: d}, true
}

func clipAddrs(eps []netip.AddrPort) []netip.AddrPort {
	if len(eps) > messages.MaxAddrs {
		eps = eps[:messages.MaxAddrs]
	}
	return eps
}

// upgrades reads fqdn's record and those of its relayed peers and plans an
// upgrade for each pair that can leave the relay. It runs on the store
// workers. Peers that are offline are skipped: there is nobody to tell.
func upgrades(bg context.Context, st store.Store, fqdn string, relayed []string) []upgrade {
	if len(relayed) == 0 {
		return nil
	}
	me, err := st.GetNode(bg, fqdn)
	if err != nil {
		return nil
	}
	now := time.Now()
	var out []upgrade
	for _, p := range relayed {
		pn, err := st.GetNode(bg, p)
		if err != nil || pn.HomeNMS == "" || pn.Session.ID == 0 || now.After(pn.Session.Expires) {
			continue
		}
		if u, ok := planUpgrade(me, pn); ok {
			out = append(out, u)
		}
	}
	return out
}

// upgrade tells both nodes of a relayed pair, fqdn (homed here) and
// u.peer, where to probe each other. Each PeerUpdate goes through the
// node's home NMS, whose delivery actor retransmits it under its message
// ID until the node acknowledges.
func (s *Service) upgrade(fqdn string, u upgrade) {
	s.Counters.Upgrades.Add(1)
	s.log.Info("nms: relayed tunnel may leave the relay", "a", fqdn, "b", u.peer.FQDN,
		"path", u.decision.Kind.String(), "reason", u.decision.Reason)
	s.sendUpdate(u.peer.FQDN, u.peer.HomeNMS, fqdn, u.toMe)
	s.sendUpdate(fqdn, s.cfg.Home, u.peer.FQDN, u.toPeer)
}

// sendUpdate delivers to `to` (homed at home) a PeerUpdate saying peer
// can be reached at eps. An empty list is not sent: it would only erase
// what the node knows.
func (s *Service) sendUpdate(to, home, peer string, eps []netip.AddrPort) {
	if len(eps) == 0 {
		return
	}
	f, err := svc.NewFrame(to, messages.NewMsgID(), "nms", time.Now(), messages.PeerUpdate{PeerFQDN: peer, Endpoints: eps})
	if err != nil {
		s.log.Warn("nms: upgrade update", "to", to, "err", err)
		return
	}
	if err := s.cfg.Link.Send(svc.RootOf(home, svc.NMS), f); err != nil {
		s.log.Debug("nms: upgrade update", "to", to, "home", home, "err", err)
	}
}
