package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cyphonic/cyphonic-go/cloud/relay"
	"github.com/cyphonic/cyphonic-go/cloud/server/svc"
)

// series is one exported value, read at scrape time.
type series struct {
	desc   *prometheus.Desc
	typ    prometheus.ValueType
	labels []string // values of desc's variable labels
	value  func() float64
}

// seriesCollector exports a fixed list of series. Every label value comes
// from a fixed table in the code (a reason, an outcome), never from the
// network (no FQDN, no address), so the series are as many as the code
// says whatever an attacker sends.
type seriesCollector []series

func (c seriesCollector) Describe(ch chan<- *prometheus.Desc) {
	seen := map[*prometheus.Desc]bool{}
	for _, s := range c {
		if !seen[s.desc] {
			seen[s.desc] = true
			ch <- s.desc
		}
	}
}

func (c seriesCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c {
		ch <- prometheus.MustNewConstMetric(s.desc, s.typ, s.value(), s.labels...)
	}
}

func u(f func() uint64) func() float64 { return func() float64 { return float64(f()) } }

// attackSeries are the counters that show an attack on this process: AS
// logins refused, limited and dropped, gateway refusals, relay binds and
// drops, NMS revocations and deny-list pushes. Services not run here
// export nothing.
func (s *Server) attackSeries() seriesCollector {
	var out seriesCollector
	add := func(d *prometheus.Desc, typ prometheus.ValueType, v func() float64, labels ...string) {
		out = append(out, series{desc: d, typ: typ, labels: labels, value: v})
	}
	if g := s.gateway; g != nil {
		d := prometheus.NewDesc("cyphonic_cloud_gateway_refused_total",
			"What the gateway refused from other processes, by reason: certificate (a TLS handshake or an open stream whose peer is not a cloud service of this overlay, expired or revoked), or a frame taken out before any actor saw it: not-frame, malformed, role (not one its sender's role may send to that service), reply-to.",
			[]string{"reason"}, nil)
		add(d, prometheus.CounterValue, u(g.Refused.Load), "certificate")
		for _, r := range svc.FrameRefusals() {
			add(d, prometheus.CounterValue, u(func() uint64 { return g.FramesRefused(r) }), r.String())
		}
	}
	if a := s.AS; a != nil {
		c := &a.Counters
		logins := prometheus.NewDesc("cyphonic_as_logins_total",
			"Logins by outcome: cookie (under load without a valid mac2: answered with a cookie, no work done), challenged (answered, nothing committed), accepted (proven and committed), refused (certificate or key refused), failed (store or NMS failed), duplicate (a retransmission answered from the cache).",
			[]string{"result"}, nil)
		for _, l := range []struct {
			name string
			v    func() uint64
		}{
			{"cookie", c.Cookies.Load}, {"challenged", c.Challenged.Load}, {"accepted", c.Accepted.Load}, {"refused", c.Refused.Load},
			{"failed", c.Failed.Load}, {"duplicate", c.Duplicates.Load},
		} {
			add(logins, prometheus.CounterValue, u(l.v), l.name)
		}
		drops := prometheus.NewDesc("cyphonic_as_dropped_total",
			"Login packets dropped unanswered, by reason: limited (per-source or global rate limit, before parsing), short (below the minimum login size), unanswered (the answer would be larger than the packet), full (too many logins pending), busy (store workers or challenge actors saturated), garbage (does not parse, or no valid mac1), queue (too many packets in flight from the socket).",
			[]string{"reason"}, nil)
		for _, l := range []struct {
			name string
			v    func() uint64
		}{
			{"limited", c.Limited.Load}, {"short", c.Short.Load}, {"unanswered", c.Unanswered.Load},
			{"full", c.Full.Load}, {"busy", c.Busy.Load}, {"garbage", c.Garbage.Load}, {"queue", a.Dropped},
		} {
			add(drops, prometheus.CounterValue, u(l.v), l.name)
		}
		add(prometheus.NewDesc("cyphonic_as_logins_pending", "Logins admitted within the AS's pending TTL: what counts against its bound on unproven logins (MaxPending).", nil, nil),
			prometheus.GaugeValue, func() float64 { return float64(a.Pending()) })
		add(prometheus.NewDesc("cyphonic_as_under_load", "1 while the AS is under load (cookies and tighter limits), else 0.", nil, nil),
			prometheus.GaugeValue, func() float64 {
				if a.UnderLoad() {
					return 1
				}
				return 0
			})
	}
	if t := s.TRS; t != nil {
		tab := t.Table()
		add(prometheus.NewDesc("cyphonic_trs_binds_total", "Relay binds accepted (MAC under the side's key, fresh counter).", nil, nil),
			prometheus.CounterValue, func() float64 { return float64(tab.Stats().Binds) })
		add(prometheus.NewDesc("cyphonic_trs_roams_total", "Accepted binds that moved a side's endpoint.", nil, nil),
			prometheus.CounterValue, func() float64 { return float64(tab.Stats().Roams) })
		d := prometheus.NewDesc("cyphonic_trs_dropped_total",
			"Relay packets and binds dropped, by reason (cloud/relay DropReason).", []string{"reason"}, nil)
		for r := relay.DropReason(1); int(r) < relay.NumDropReasons; r++ {
			add(d, prometheus.CounterValue, func() float64 { return float64(tab.Stats().Dropped(r)) }, r.String())
		}
	}
	if n := s.NMS; n != nil {
		c := &n.Counters
		add(prometheus.NewDesc("cyphonic_nms_revoked_total", "Node sessions ended because the deny list names the node's certificate.", nil, nil),
			prometheus.CounterValue, u(c.Revoked.Load))
		add(prometheus.NewDesc("cyphonic_nms_deny_list_pushes_total", "Deny lists sent to nodes.", nil, nil),
			prometheus.CounterValue, u(c.DenyListPushes.Load))
	}
	return out
}
