package session

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/messages"
)

// A tunnel on the first packet: the data plane met a packet to an overlay
// address with no tunnel, and asks (NeedVIP) for the tunnel to whoever
// holds it. The request is a TunnelByVIP; NMS's Path for it is handled as
// a TunnelRequest's is, so the tunnel is the one a DNS query would set up.
// The data plane already bounds how many addresses it asks about and how
// often; MaxPending bounds them here too.

type requestVIP struct{ vip netip.Addr }

func (a *sessionActor) requestVIP(ctx actor.Context, vip netip.Addr) {
	if a.wantedVIP[vip] {
		return // queued or in flight: its answer serves this packet too
	}
	if len(a.wantedVIP) >= a.cfg.MaxPending {
		a.vipFailed(vip, false)
		return
	}
	a.wantedVIP[vip] = true
	if a.state == StateOnline {
		a.sendVIPRequest(ctx, vip)
	}
}

// sendVIPRequests sends every queued request (after a registration).
func (a *sessionActor) sendVIPRequests(ctx actor.Context) {
	for vip := range a.wantedVIP {
		a.sendVIPRequest(ctx, vip)
	}
	a.sendLookups(ctx)
}

func (a *sessionActor) sendVIPRequest(ctx actor.Context, vip netip.Addr) {
	if _, busy := a.inFlight(messages.MsgTunnelByVIP, vip.String()); busy {
		return
	}
	if !a.request(ctx, messages.TunnelByVIP{VIP: vip}, vip.String()) {
		delete(a.wantedVIP, vip)
		a.vipFailed(vip, false)
	}
}

// vipDone acts on NMS's answer to a TunnelByVIP (peer is the VIP's text).
func (a *sessionActor) vipDone(ctx actor.Context, peer string, d *txDone) {
	vip, err := netip.ParseAddr(peer)
	if err != nil {
		return // we wrote it: cannot happen
	}
	var e *messages.Error
	switch {
	case errors.As(d.err, &e) && (e.Code == messages.CodeUnknownFQDN || e.Code == messages.CodeCertRevoked):
		// Nobody holds it, or its holder is revoked: neither changes
		// soon, so the data plane refuses its packets for a while.
		delete(a.wantedVIP, vip)
		a.log.Debug("no node may be reached at the address", "vip", vip, "code", e.Code.String())
		a.vipFailed(vip, true)
		return
	case lostCloud(d.err):
		// Keep it queued: it goes out again once logged in.
		a.relogin(ctx, fmt.Errorf("tunnel request for %s: %w", vip, d.err))
		return
	case d.err != nil:
		delete(a.wantedVIP, vip)
		a.log.Info("tunnel for an address refused", "vip", vip, "err", d.err)
		a.vipFailed(vip, false)
		return
	}
	delete(a.wantedVIP, vip)
	p, err := messages.DecodeBody[messages.Path](d.env)
	if err != nil {
		a.log.Warn("bad path for an address", "vip", vip, "err", err)
		a.vipFailed(vip, false)
		return
	}
	info := messages.PathInfo(p)
	// The path must route the address we asked about, or it would not
	// carry the packets that wait. (Whether the peer is who NMS says is
	// the handshake's check: its certificate must bind the path's VIPs.)
	if info.PeerVIP6 != vip && info.PeerVIP4.Unmap() != vip {
		a.log.Warn("path for an address routes other VIPs: refused", "vip", vip, "peer", info.PeerFQDN,
			"vip6", info.PeerVIP6, "vip4", info.PeerVIP4)
		a.vipFailed(vip, false)
		return
	}
	if err := a.cfg.Dataplane.Open(info); err != nil {
		a.log.Warn("open tunnel for an address", "vip", vip, "peer", info.PeerFQDN, "err", err)
		a.vipFailed(vip, false)
		return
	}
	a.log.Info("tunnel opened on a first packet", "vip", vip, "peer", info.PeerFQDN, "path", info.Kind.String(), "initiator", info.Initiator)
}

func (a *sessionActor) vipFailed(vip netip.Addr, unknown bool) {
	if a.cfg.OnVIPFailed != nil {
		a.cfg.OnVIPFailed(vip, unknown)
	}
}

// failVIPs gives up every queued request (the actor stops or restarts).
func (a *sessionActor) failVIPs() {
	for vip := range a.wantedVIP {
		a.vipFailed(vip, false)
	}
	clear(a.wantedVIP)
	a.failLookups(ErrStopped)
}
