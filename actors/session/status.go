package session

import (
	"net/netip"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
)

// Session states, as Status.State reports them.
const (
	StateIdle        = "idle"        // not started
	StateLoggingIn   = "logging-in"  // login sent, no reply yet
	StateRegistering = "registering" // logged in, registration in progress
	StateOnline      = "online"      // registered, keepalives running
	StateStopped     = "stopped"
)

// Status is the session as `cyphonic status` shows it.
type Status struct {
	FQDN      string           `json:"fqdn"`
	State     string           `json:"state"`
	SessionID uint32           `json:"session_id,omitempty"`
	VIP6      netip.Addr       `json:"vip6,omitzero"`
	VIP4      netip.Addr       `json:"vip4,omitzero"`
	AS        netip.AddrPort   `json:"as,omitzero"`
	NMS       netip.AddrPort   `json:"nms,omitzero"`
	Locals    []netip.AddrPort `json:"locals,omitempty"`
	Observed  netip.AddrPort   `json:"observed,omitzero"` // our public mapping as NMS sees it
	NAT       string           `json:"nat,omitempty"`
	Logins    int              `json:"logins"` // successful logins (more than 1: the cloud was lost and found again)
	LastLogin time.Time        `json:"last_login,omitzero"`
	LastAck   time.Time        `json:"last_keepalive_ack,omitzero"`
	LastError string           `json:"last_error,omitempty"`
	Failovers int              `json:"failovers,omitempty"` // clouds given up for another (Config.Clouds)
	Pending   int              `json:"pending_transactions"`
	Waiting   int              `json:"waiting_tunnel_requests"` // callers of RequestTunnel not yet answered
	Dropped   uint64           `json:"dropped_packets"`
}

func natString(t messages.NATType) string { return t.String() }
