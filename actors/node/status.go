package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/actors/debug"
	"github.com/cyphonic/cyphonic-go/actors/resolver"
	"github.com/cyphonic/cyphonic-go/actors/session"
)

// PathStatus is where the node serves its Status as JSON on the debug address.
const PathStatus = "/debug/status"

// Status is the node at a glance: what /debug/status serves and
// `cyphonic status` prints.
type Status struct {
	Session  session.Status         `json:"session"`
	Peers    []dataplane.PeerStatus `json:"peers"`
	Drops    map[string]uint64      `json:"drops,omitempty"` // not attributable to a peer, by reason
	Resolver *resolver.Stats        `json:"resolver,omitempty"`
	DNS      string                 `json:"dns,omitempty"` // the resolver's address
	// Hold counts packets held for a tunnel on their first packet.
	Hold dataplane.HoldStats `json:"hold"`
	// GoMaxProcs is the daemon's GOMAXPROCS when the status was taken:
	// with --gomaxprocs auto it follows the load (one P while idle).
	GoMaxProcs int `json:"gomaxprocs,omitempty"`
}

// statusHandler serves src() as JSON.
func statusHandler(src func() Status) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(src())
	})
}

// maxStatusBytes bounds what FetchStatus reads: a status is a few KB per
// peer, and the other end is only as trusted as its address.
const maxStatusBytes = 16 << 20

// FetchStatus gets a node's Status from its debug address (host:port).
func FetchStatus(ctx context.Context, addr string) (Status, error) {
	var st Status
	if err := debug.GetJSON(ctx, "http://"+addr+PathStatus, maxStatusBytes, &st); err != nil {
		return st, fmt.Errorf("node: status from %s: %w", addr, err)
	}
	return st, nil
}

// RenderStatus prints st for a terminal, like `wg show`: the session, then
// a table of peers. Times are shown relative to now.
func RenderStatus(w io.Writer, st Status, now time.Time) error {
	ew := &debug.ErrWriter{W: w}
	s := st.Session
	fmt.Fprintf(ew, "node      %s (%s)\n", orDash(s.FQDN), orDash(s.State))
	if s.SessionID != 0 {
		fmt.Fprintf(ew, "vips      %s %s\n", s.VIP4, s.VIP6)
	}
	fmt.Fprintf(ew, "cloud     as %s  nms %s  session %d  logins %d", addrOrDash(s.AS.String(), s.AS.IsValid()),
		addrOrDash(s.NMS.String(), s.NMS.IsValid()), s.SessionID, s.Logins)
	if s.Failovers > 0 { // only nodes given several cloud addresses fail over
		fmt.Fprintf(ew, "  failovers %d", s.Failovers)
	}
	fmt.Fprintln(ew)
	if s.Observed.IsValid() || s.NAT != "" {
		fmt.Fprintf(ew, "mapping   %s  nat %s  keepalive ack %s\n", addrOrDash(s.Observed.String(), s.Observed.IsValid()),
			orDash(s.NAT), ago(s.LastAck, now))
	}
	if len(s.Locals) > 0 {
		locals := make([]string, len(s.Locals))
		for i, l := range s.Locals {
			locals[i] = l.String()
		}
		fmt.Fprintf(ew, "locals    %s\n", strings.Join(locals, " "))
	}
	if s.LastError != "" {
		fmt.Fprintf(ew, "error     %s\n", debug.OneLine(s.LastError))
	}
	if st.DNS != "" {
		fmt.Fprintf(ew, "dns       %s", st.DNS)
		if r := st.Resolver; r != nil {
			fmt.Fprintf(ew, "  overlay %d  nxdomain %d  servfail %d  forwarded %d", r.Overlay, r.NXDomain, r.ServFail, r.Forwarded)
		}
		fmt.Fprintln(ew)
	}
	if d := formatDrops(st.Drops); d != "" {
		fmt.Fprintf(ew, "drops     %s\n", d)
	}
	if st.GoMaxProcs > 0 {
		fmt.Fprintf(ew, "runtime   gomaxprocs %d\n", st.GoMaxProcs)
	}
	fmt.Fprintln(ew)
	if len(st.Peers) == 0 {
		fmt.Fprintln(ew, "no peers")
		return ew.Err
	}
	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tVIP4\tVIP6\tPATH\tENDPOINT\tHANDSHAKE\tTX\tRX\tSTATE\tRESTARTS\tLOST\tDROPS")
	for _, p := range st.Peers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n",
			debug.OneLine(p.FQDN), addrOrDash(p.VIP4.String(), p.VIP4.IsValid()), addrOrDash(p.VIP6.String(), p.VIP6.IsValid()),
			pathName(p), addrOrDash(p.Endpoint.String(), p.Endpoint.IsValid()), ago(p.LastHandshake, now),
			traffic(p.TxBytes, p.TxPackets), traffic(p.RxBytes, p.RxPackets), orDash(debug.OneLine(p.State)), p.Restarts,
			lostOnTheWay(p), orDash(formatDrops(p.Drops)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return ew.Err
}

// lostOnTheWay is the peer's packets that never arrived: Lost without
// those this node shed before opening them (Unopened), which DROPS
// already shows as queue-full.
func lostOnTheWay(p dataplane.PeerStatus) uint64 { return p.Lost - min(p.Unopened, p.Lost) }

func pathName(p dataplane.PeerStatus) string {
	if !p.Path.Valid() {
		return "-"
	}
	return p.Path.String()
}

func formatDrops(d map[string]uint64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(d)) {
		if d[k] != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", debug.OneLine(k), d[k]))
		}
	}
	return strings.Join(parts, ",")
}

// traffic is "1.5 MiB/1024p".
func traffic(bytes, packets uint64) string { return fmt.Sprintf("%s/%dp", humanBytes(bytes), packets) }

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// ago is "12s ago", "3m4s ago", "never".
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second).String() + " ago"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func addrOrDash(s string, ok bool) string {
	if !ok {
		return "-"
	}
	return s
}
