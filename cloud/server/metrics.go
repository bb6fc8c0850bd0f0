package server

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cyphonic/cyphonic-go/actors/txstore"
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
		ids := prometheus.NewDesc("cyphonic_as_session_ids_total",
			"Session IDs of challenges that were not checked against the store first (unchecked: the pool of checked IDs was empty), and logins refused at commit because their ID was taken since (taken).",
			[]string{"result"}, nil)
		add(ids, prometheus.CounterValue, u(c.UncheckedIDs.Load), "unchecked")
		add(ids, prometheus.CounterValue, u(c.IDTaken.Load), "taken")
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
		add(prometheus.NewDesc("cyphonic_trs_sessions_created_total", "Relay sessions created by a stateless ticket's first authenticated bind (the NMS here mints tickets; no session exists before a node binds).", nil, nil),
			prometheus.CounterValue, func() float64 { return float64(tab.Stats().Created) })
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
		add(prometheus.NewDesc("cyphonic_nms_adopted_total", "Tunnel requests whose peer's home NMS had lost its lease in the shared store (its process died), so this NMS became the peer's home.", nil, nil),
			prometheus.CounterValue, u(c.Adopted.Load))
	}
	return out
}

// scaleSeries are the counters and gauges that show whether the cloud keeps
// up with its nodes: what NMS refused and why, its reply cache's fill and
// churn, the session deletions it still owes the store, the size of its
// tunnels map, and the store job queues of NMS and AS.
func (s *Server) scaleSeries() seriesCollector {
	var out seriesCollector
	add := func(d *prometheus.Desc, typ prometheus.ValueType, v func() float64, labels ...string) {
		out = append(out, series{desc: d, typ: typ, labels: labels, value: v})
	}
	type named struct {
		name string
		v    func() uint64
	}
	queueDepth := prometheus.NewDesc("cyphonic_store_queue_depth", "Store jobs waiting for a worker, by service.", []string{"service"}, nil)
	queueCap := prometheus.NewDesc("cyphonic_store_queue_capacity", "Size of the store job queue, by service: beyond it requests are dropped (busy) and retransmitted.", []string{"service"}, nil)
	// The signaling workers' packet queues: NMS's by session, AS's login
	// workers (the packets a socket reader handed a worker and it has not
	// finished with).
	workerDepth := prometheus.NewDesc("cyphonic_worker_queue_depth", "Packets waiting for a signaling worker (NMS: sealed packets by session; AS: admitted login packets), by service and worker.", []string{"service", "worker"}, nil)
	workerCap := prometheus.NewDesc("cyphonic_worker_queue_capacity", "Bound of a signaling worker's packet queue, by service and worker: beyond it packets are dropped and retransmitted.", []string{"service", "worker"}, nil)
	workerDrops := prometheus.NewDesc("cyphonic_worker_queue_dropped_total", "Packets dropped because their signaling worker's queue was full, by service and worker.", []string{"service", "worker"}, nil)
	if n := s.NMS; n != nil {
		c := &n.Counters
		refused := prometheus.NewDesc("cyphonic_nms_refused_total",
			"NMS requests not served, by reason: busy (store queue full), stale (on a session replaced by a new login), session-expired (answered: log in again), cache-full (the reply cache did not take the entry), node-limit (the node started its share of cached transactions this window), replayed (older than any retransmission of it could be), garbage (does not open or parse), and for packets of sessions this NMS does not hold, before anything is authenticated: unknown-session (the store did not know the ID, now or a moment ago), lookup-rate (the store lookups a second spent: by the worker, or, beyond twice that rate, by the socket readers before the packet took a worker slot), lookup-in-flight (its lookups waiting for the store at their bound, or this ID's already running).",
			[]string{"reason"}, nil)
		for _, l := range []named{
			{"busy", c.Busy.Load}, {"stale", c.Stale.Load}, {"session-expired", c.SessionExpired.Load},
			{"cache-full", c.CacheFull.Load}, {"node-limit", c.NodeLimit.Load}, {"replayed", c.Replayed.Load},
			{"garbage", c.Garbage.Load},
			{"unknown-session", c.UnknownSession.Load}, {"lookup-rate", c.LookupRate.Load}, {"lookup-in-flight", c.LookupInFlight.Load},
		} {
			add(refused, prometheus.CounterValue, u(l.v), l.name)
		}
		lookups := prometheus.NewDesc("cyphonic_nms_session_lookups_total",
			"Store lookups of sessions this NMS did not hold (another process's login, or from before a restart), by answer: found, unknown (no such session), failed (the read failed).", []string{"result"}, nil)
		for _, l := range []named{{"found", c.LookupsFound.Load}, {"unknown", c.LookupsUnknown.Load}, {"failed", c.LookupsFailed.Load}} {
			add(lookups, prometheus.CounterValue, u(l.v), l.name)
		}
		reqs := prometheus.NewDesc("cyphonic_nms_requests_total", "NMS requests served, by type (tunnel-error: tunnel requests answered with an error).", []string{"type"}, nil)
		for _, l := range []named{
			{"register", c.Registered.Load}, {"keepalive", c.Keepalives.Load}, {"tunnel", c.Tunnels.Load},
			{"tunnel-error", c.TunnelErrors.Load}, {"logout", c.Logouts.Load}, {"vip-lookup", c.VIPLookups.Load},
			{"reverse-lookup", c.ReverseLookups.Load},
		} {
			add(reqs, prometheus.CounterValue, u(l.v), l.name)
		}
		add(prometheus.NewDesc("cyphonic_nms_sessions_expired_total", "Sessions ended because they were idle for SessionIdle or past their expiry.", nil, nil),
			prometheus.CounterValue, u(c.Expired.Load))
		dels := prometheus.NewDesc("cyphonic_nms_session_deletions_total",
			"Ended sessions removed from the store (done), found by the sweep (swept), and deletions refused or failed and queued again (retried).", []string{"result"}, nil)
		for _, l := range []named{{"done", c.SessionsDeleted.Load}, {"swept", c.Swept.Load}, {"retried", c.DeleteRetries.Load}} {
			add(dels, prometheus.CounterValue, u(l.v), l.name)
		}
		add(prometheus.NewDesc("cyphonic_nms_session_deletions_pending", "Ended sessions still to be removed from the store.", nil, nil),
			prometheus.GaugeValue, func() float64 { return float64(n.PendingDeletes()) })
		add(prometheus.NewDesc("cyphonic_nms_tunnel_nodes", "Nodes in NMS's tunnels map (nodes with a tunnel NMS set up, and their peers).", nil, nil),
			prometheus.GaugeValue, func() float64 { return float64(n.TunnelNodes()) })
		add(prometheus.NewDesc("cyphonic_nms_reply_cache_entries", "Entries in NMS's reply cache (expired ones included until its sweep).", nil, nil),
			prometheus.GaugeValue, func() float64 { _, e, _ := n.Dedup(); return float64(e) })
		add(prometheus.NewDesc("cyphonic_nms_reply_cache_capacity", "Capacity of NMS's reply cache, in entries.", nil, nil),
			prometheus.GaugeValue, func() float64 { _, _, c := n.Dedup(); return float64(c) })
		cache := prometheus.NewDesc("cyphonic_nms_reply_cache_total",
			"Reply cache events: hit (a retransmission answered without a new transaction), stored, rejected (admission policy) and dropped (set buffer full), both retried; failed (gave up: the request was dropped), evicted (live entries pushed out), expired.",
			[]string{"event"}, nil)
		add(cache, prometheus.CounterValue, u(c.Duplicates.Load), "hit")
		for _, l := range []struct {
			name string
			v    func(st txstore.Stats) uint64
		}{
			{"stored", func(st txstore.Stats) uint64 { return st.Stored }}, {"rejected", func(st txstore.Stats) uint64 { return st.Rejected }},
			{"dropped", func(st txstore.Stats) uint64 { return st.Dropped }}, {"failed", func(st txstore.Stats) uint64 { return st.Failed }},
			{"evicted", func(st txstore.Stats) uint64 { return st.Evicted }}, {"expired", func(st txstore.Stats) uint64 { return st.Expired }},
		} {
			add(cache, prometheus.CounterValue, func() float64 { st, _, _ := n.Dedup(); return float64(l.v(st)) }, l.name)
		}
		add(queueDepth, prometheus.GaugeValue, func() float64 { q, _ := n.StoreQueue(); return float64(q) }, "nms")
		add(queueCap, prometheus.GaugeValue, func() float64 { _, c := n.StoreQueue(); return float64(c) }, "nms")
		for _, q := range n.WorkerQueues() {
			i, w := q.Worker, strconv.Itoa(q.Worker)
			add(workerDepth, prometheus.GaugeValue, func() float64 { return float64(n.WorkerQueues()[i].Depth) }, "nms", w)
			add(workerCap, prometheus.GaugeValue, func() float64 { return float64(n.WorkerQueues()[i].Bound) }, "nms", w)
			add(workerDrops, prometheus.CounterValue, func() float64 { return float64(n.WorkerQueues()[i].Dropped) }, "nms", w)
		}
	}
	if st := s.store; st != nil {
		// Read at scrape time from the store itself, not from NMS's
		// memory: what a restart would reload, so a deletion NMS lost
		// shows here. One count per scrape (a SCAN pass with Redis).
		add(prometheus.NewDesc("cyphonic_store_sessions", "Sessions in the store (bbolt or Redis): what a restarted NMS would reload; -1 if the store could not be read.", nil, nil),
			prometheus.GaugeValue, func() float64 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				n, err := st.CountSessions(ctx)
				if err != nil {
					return -1
				}
				return float64(n)
			})
	}
	if a := s.AS; a != nil {
		add(queueDepth, prometheus.GaugeValue, func() float64 { q, _ := a.StoreQueue(); return float64(q) }, "as")
		add(queueCap, prometheus.GaugeValue, func() float64 { _, c := a.StoreQueue(); return float64(c) }, "as")
		for i := range a.LoginQueues() {
			w := strconv.Itoa(i)
			add(workerDepth, prometheus.GaugeValue, func() float64 { return float64(a.LoginQueues()[i].Len) }, "as", w)
			add(workerCap, prometheus.GaugeValue, func() float64 { return float64(a.LoginQueues()[i].Cap) }, "as", w)
			add(workerDrops, prometheus.CounterValue, func() float64 { return float64(a.LoginQueues()[i].Dropped) }, "as", w)
		}
	}
	return out
}
