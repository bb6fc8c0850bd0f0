package node

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/actors/resolver"
)

// nodeCollector exports the node's counters at scrape time (nothing is
// counted on the data path for it): per peer, the data plane's counters,
// path, state and handshake time; the drops no peer owns; the resolver's
// answers; and the build. Every label takes values from a fixed set (path
// kinds, state words, drop reasons, resolver outcomes) or names a peer, so
// series grow with the peers and nothing else.
type nodeCollector struct {
	peers    func() []dataplane.PeerStatus
	drops    func() map[string]uint64      // drops not attributable to a peer
	resolver func() (resolver.Stats, bool) // false: no resolver
	version  string
}

var (
	peerLabels      = []string{"peer"}
	descTxBytes     = prometheus.NewDesc("cyphonic_peer_tx_bytes_total", "Bytes sent to the peer (inner packets).", peerLabels, nil)
	descRxBytes     = prometheus.NewDesc("cyphonic_peer_rx_bytes_total", "Bytes received from the peer (inner packets).", peerLabels, nil)
	descTxPkts      = prometheus.NewDesc("cyphonic_peer_tx_packets_total", "Packets sent to the peer.", peerLabels, nil)
	descRxPkts      = prometheus.NewDesc("cyphonic_peer_rx_packets_total", "Packets received from the peer.", peerLabels, nil)
	descDrops       = prometheus.NewDesc("cyphonic_peer_drops_total", "Packets dropped on the peer's path, by reason (replay: replayed packets; queue-delay, queue-full: shed under load; see cyphonic status).", []string{"peer", "reason"}, nil)
	descLost        = prometheus.NewDesc("cyphonic_peer_packets_lost_total", "Packets the peer sent that never arrived (gaps in its packet counters, counted once they are too old to arrive: about 8k packets later). Replayed packets are cyphonic_peer_drops_total{reason=\"replay\"}.", peerLabels, nil)
	descRestart     = prometheus.NewDesc("cyphonic_peer_restarts", "Restarts of the peer's actor.", peerLabels, nil)
	descPath        = prometheus.NewDesc("cyphonic_peer_path", "The peer's current path kind: 1 for the kind in use (direct, punched, relay, ...).", []string{"peer", "path"}, nil)
	descState       = prometheus.NewDesc("cyphonic_peer_state", "The peer's tunnel state: 1 for the current one (up, handshaking, failed, backoff, ...; the reason of a failure is in cyphonic status).", []string{"peer", "state"}, nil)
	descUp          = prometheus.NewDesc("cyphonic_peer_up", "1 while the peer's tunnel is up, else 0.", peerLabels, nil)
	descHandshake   = prometheus.NewDesc("cyphonic_peer_last_handshake_timestamp_seconds", "When the peer's last handshake completed (Unix time; absent before the first). Alert on time() minus it: sessions rekey every two minutes while in use.", peerLabels, nil)
	descHandshakes  = prometheus.NewDesc("cyphonic_peer_handshakes_total", "The peer's handshakes by result: ok (completed, rekeys included), timeout (an attempt series that got no answer in time).", []string{"peer", "result"}, nil)
	descGlobalDrops = prometheus.NewDesc("cyphonic_dataplane_drops_total", "Packets the data plane dropped before they could be tied to a peer, by reason (handshake, handshake-mac, handshake-rate, handshake-busy: handshake inits refused; unknown-index, malformed, truncated, no-route, ...).", []string{"reason"}, nil)
	descResolver    = prometheus.NewDesc("cyphonic_resolver_queries_total", "DNS queries the node's resolver answered, by outcome.", []string{"result"}, nil)
	descBuild       = prometheus.NewDesc("cyphonic_build_info", "The running build: 1, with its version (and commit) as a label.", []string{"version"}, nil)
)

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTxBytes, descRxBytes, descTxPkts, descRxPkts, descDrops, descLost, descRestart,
		descPath, descState, descUp, descHandshake, descHandshakes, descGlobalDrops, descResolver, descBuild} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.peers() {
		ch <- prometheus.MustNewConstMetric(descTxBytes, prometheus.CounterValue, float64(p.TxBytes), p.FQDN)
		ch <- prometheus.MustNewConstMetric(descRxBytes, prometheus.CounterValue, float64(p.RxBytes), p.FQDN)
		ch <- prometheus.MustNewConstMetric(descTxPkts, prometheus.CounterValue, float64(p.TxPackets), p.FQDN)
		ch <- prometheus.MustNewConstMetric(descRxPkts, prometheus.CounterValue, float64(p.RxPackets), p.FQDN)
		ch <- prometheus.MustNewConstMetric(descRestart, prometheus.GaugeValue, float64(p.Restarts), p.FQDN)
		ch <- prometheus.MustNewConstMetric(descPath, prometheus.GaugeValue, 1, p.FQDN, pathName(p))
		state := stateWord(p.State)
		ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, 1, p.FQDN, state)
		up := 0.0
		if state == dataplane.StateUp {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, p.FQDN)
		if !p.LastHandshake.IsZero() {
			ch <- prometheus.MustNewConstMetric(descHandshake, prometheus.GaugeValue, float64(p.LastHandshake.UnixNano())/1e9, p.FQDN)
		}
		ch <- prometheus.MustNewConstMetric(descHandshakes, prometheus.CounterValue, float64(p.Handshakes), p.FQDN, "ok")
		ch <- prometheus.MustNewConstMetric(descHandshakes, prometheus.CounterValue, float64(p.HandshakeTimeouts), p.FQDN, "timeout")
		ch <- prometheus.MustNewConstMetric(descLost, prometheus.CounterValue, float64(p.Lost), p.FQDN)
		for reason, n := range p.Drops {
			ch <- prometheus.MustNewConstMetric(descDrops, prometheus.CounterValue, float64(n), p.FQDN, reason)
		}
		if _, ok := p.Drops[dataplane.Replay.String()]; !ok {
			// Always present, so that an alert on its rate has a series
			// from the tunnel's start.
			ch <- prometheus.MustNewConstMetric(descDrops, prometheus.CounterValue, 0, p.FQDN, dataplane.Replay.String())
		}
	}
	if c.drops != nil {
		for reason, n := range c.drops() {
			ch <- prometheus.MustNewConstMetric(descGlobalDrops, prometheus.CounterValue, float64(n), reason)
		}
	}
	if c.resolver != nil {
		if s, ok := c.resolver(); ok {
			for _, r := range []struct {
				name string
				n    uint64
			}{
				{"overlay", s.Overlay}, {"nxdomain", s.NXDomain}, {"servfail", s.ServFail}, {"forwarded", s.Forwarded},
				{"upstream-error", s.Upstream}, {"busy", s.Busy}, {"refused", s.Refused}, {"short-name", s.Short}, {"reverse", s.Reverse},
			} {
				ch <- prometheus.MustNewConstMetric(descResolver, prometheus.CounterValue, float64(r.n), r.name)
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(descBuild, prometheus.GaugeValue, 1, c.version)
}

// stateWord is a peer state's first word ("failed: handshake timeout" ->
// "failed"): a bounded label; the reason stays in the status.
func stateWord(s string) string {
	if i := strings.IndexAny(s, ": ("); i > 0 {
		s = s[:i]
	}
	if s == "" {
		return "unknown"
	}
	return s
}
