package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/actors/debug"
	"github.com/cyphonic/cyphonic-go/actors/session"
)

// PathPing is where the node answers one overlay ping on its debug address:
// GET /debug/ping?peer=NAME&timeout=DURATION.
const PathPing = "/debug/ping"

// maxPingTimeout bounds one ping's wait, whatever the request asks.
const maxPingTimeout = 30 * time.Second

// ErrUnknownPeer: no node of the overlay has the name.
var ErrUnknownPeer = errors.New("unknown peer")

// Ping sends one overlay probe to peer (an FQDN, a short name in the
// node's own domain, or a VIP of a peer with a tunnel), setting a tunnel
// up first if there is none, as a first packet would.
func (n *Node) Ping(ctx context.Context, peer string) (dataplane.PingResult, error) {
	fqdn, err := n.peerFQDN(ctx, peer)
	if err != nil {
		return dataplane.PingResult{}, err
	}
	if fqdn == n.id.FQDN {
		return dataplane.PingResult{}, fmt.Errorf("%s is this node", peer)
	}
	if _, err := n.resolve(ctx, fqdn); err != nil {
		if errors.Is(err, session.ErrUnknownPeer) {
			return dataplane.PingResult{}, fmt.Errorf("%w %q: the cloud knows no node %s", ErrUnknownPeer, peer, fqdn)
		}
		return dataplane.PingResult{}, fmt.Errorf("tunnel to %s: %w", fqdn, err)
	}
	return n.dp.Ping(ctx, fqdn)
}

// peerFQDN is the FQDN a ping names: a VIP is looked up among the peers, a
// name without a dot is in the node's own domain (as the resolver's search
// list has it).
func (n *Node) peerFQDN(ctx context.Context, peer string) (string, error) {
	peer = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(peer)), ".")
	if a, err := netip.ParseAddr(peer); err == nil {
		fqdn, err := n.reverse(ctx, a)
		if err != nil {
			return "", fmt.Errorf("%w %s: no peer with a tunnel has that VIP (ping it by name)", ErrUnknownPeer, a)
		}
		return fqdn, nil
	}
	if peer == "" {
		return "", fmt.Errorf("%w: empty name", ErrUnknownPeer)
	}
	if !strings.Contains(peer, ".") {
		if _, domain, ok := strings.Cut(n.id.FQDN, "."); ok {
			peer += "." + domain
		}
	}
	return peer, nil
}

// pingAnswer is what PathPing serves: a result, or why there is none.
type pingAnswer struct {
	Result *dataplane.PingResult `json:"result,omitempty"`
	Error  string                `json:"error,omitempty"`
	// Unknown: the peer does not exist (not a lost probe).
	Unknown bool `json:"unknown,omitempty"`
}

func pingHandler(n *Node) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		timeout := 5 * time.Second
		if s := r.URL.Query().Get("timeout"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				http.Error(w, "bad timeout", http.StatusBadRequest)
				return
			}
			timeout = min(d, maxPingTimeout)
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		res, err := n.Ping(ctx, r.URL.Query().Get("peer"))
		var a pingAnswer
		if err != nil {
			a.Error, a.Unknown = err.Error(), errors.Is(err, ErrUnknownPeer)
		} else {
			a.Result = &res
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(a)
	})
}

// FetchPing asks the node at its debug address addr for one ping of peer.
func FetchPing(ctx context.Context, addr, peer string, timeout time.Duration) (dataplane.PingResult, error) {
	u := fmt.Sprintf("http://%s%s?peer=%s&timeout=%s", addr, PathPing, url.QueryEscape(peer), timeout)
	var a pingAnswer
	if err := debug.GetJSON(ctx, u, 1<<16, &a); err != nil {
		return dataplane.PingResult{}, fmt.Errorf("node: ping via %s: %w", addr, err)
	}
	switch {
	case a.Unknown:
		return dataplane.PingResult{}, unknownPeer(a.Error)
	case a.Error != "":
		return dataplane.PingResult{}, errors.New(a.Error)
	case a.Result == nil:
		return dataplane.PingResult{}, fmt.Errorf("node: ping via %s: empty answer", addr)
	}
	return *a.Result, nil
}

// unknownPeer is the node's message, which names the peer, as an error
// that is ErrUnknownPeer.
type unknownPeer string

func (u unknownPeer) Error() string { return string(u) }
func (u unknownPeer) Unwrap() error { return ErrUnknownPeer }
