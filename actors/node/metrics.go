package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
)

// peerCollector exports the data plane's per-peer counters at scrape time
// (nothing is counted on the data path for it).
type peerCollector struct {
	src func() []dataplane.PeerStatus
}

var (
	peerLabels  = []string{"peer"}
	descTxBytes = prometheus.NewDesc("cyphonic_peer_tx_bytes_total", "Bytes sent to the peer (inner packets).", peerLabels, nil)
	descRxBytes = prometheus.NewDesc("cyphonic_peer_rx_bytes_total", "Bytes received from the peer (inner packets).", peerLabels, nil)
	descTxPkts  = prometheus.NewDesc("cyphonic_peer_tx_packets_total", "Packets sent to the peer.", peerLabels, nil)
	descRxPkts  = prometheus.NewDesc("cyphonic_peer_rx_packets_total", "Packets received from the peer.", peerLabels, nil)
	descDrops   = prometheus.NewDesc("cyphonic_peer_drops_total", "Packets dropped on the peer's path, by reason.", []string{"peer", "reason"}, nil)
	descRestart = prometheus.NewDesc("cyphonic_peer_restarts", "Restarts of the peer's actor.", peerLabels, nil)
	descPath    = prometheus.NewDesc("cyphonic_peer_path", "The peer's current path kind (1 for the current one).", []string{"peer", "path", "state"}, nil)
)

func (c *peerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTxBytes, descRxBytes, descTxPkts, descRxPkts, descDrops, descRestart, descPath} {
		ch <- d
	}
}

func (c *peerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.src() {
		ch <- prometheus.MustNewConstMetric(descTxBytes, prometheus.CounterValue, float64(p.TxBytes), p.FQDN)
		ch <- prometheus.MustNewConstMetric(descRxBytes, prometheus.CounterValue, float64(p.RxBytes), p.FQDN)
		ch <- prometheus.MustNewConstMetric(descTxPkts, prometheus.CounterValue, float64(p.TxPackets), p.FQDN)
		ch <- prometheus.MustNewConstMetric(descRxPkts, prometheus.CounterValue, float64(p.RxPackets), p.FQDN)
		ch <- prometheus.MustNewConstMetric(descRestart, prometheus.GaugeValue, float64(p.Restarts), p.FQDN)
		ch <- prometheus.MustNewConstMetric(descPath, prometheus.GaugeValue, 1, p.FQDN, pathName(p), p.State)
		for reason, n := range p.Drops {
			ch <- prometheus.MustNewConstMetric(descDrops, prometheus.CounterValue, float64(n), p.FQDN, reason)
		}
	}
}
