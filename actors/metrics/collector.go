// Package metrics exports the actor runtime's registry to Prometheus: live
// actors, restarts, give-ups and mailbox depths per actor kind. Per kind, not
// per actor, so a node with thousands of peers stays a handful of series.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
)

// KindSource is what the collector reads; *supervise.Registry implements it.
type KindSource interface {
	Kinds() []supervise.KindStats
}

// ActorCollector is a prometheus.Collector reading the registry at scrape
// time, so nothing is counted twice and nothing runs between scrapes.
type ActorCollector struct {
	src                                   KindSource
	live, restarts, gaveUp, depth, maxDep *prometheus.Desc
}

var _ prometheus.Collector = (*ActorCollector)(nil)

// NewActorCollector makes a collector; constLabels (e.g. {"system": "node"})
// are added to every series.
func NewActorCollector(src KindSource, constLabels prometheus.Labels) *ActorCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("cyphonic_actor_"+name, help, []string{"kind"}, constLabels)
	}
	return &ActorCollector{
		src:      src,
		live:     d("live", "Actors alive now."),
		restarts: d("restarts_total", "Actor restarts by their supervisor."),
		gaveUp:   d("gave_up_total", "Actors stopped after failing more often than their supervisor allows."),
		depth:    d("mailbox_depth", "Messages waiting in the mailboxes of all actors of the kind."),
		maxDep:   d("mailbox_depth_max", "Messages waiting in the deepest mailbox of the kind."),
	}
}

// Describe implements prometheus.Collector.
func (c *ActorCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.live, c.restarts, c.gaveUp, c.depth, c.maxDep} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *ActorCollector) Collect(ch chan<- prometheus.Metric) {
	for _, k := range c.src.Kinds() {
		ch <- prometheus.MustNewConstMetric(c.live, prometheus.GaugeValue, float64(k.Live), k.Kind)
		ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.CounterValue, float64(k.Restarts), k.Kind)
		ch <- prometheus.MustNewConstMetric(c.gaveUp, prometheus.CounterValue, float64(k.GaveUp), k.Kind)
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(k.Mailbox), k.Kind)
		ch <- prometheus.MustNewConstMetric(c.maxDep, prometheus.GaugeValue, float64(k.MailboxMax), k.Kind)
	}
}

// NewRegistry returns a Prometheus registry of our own (never the global
// default) holding the actor collector plus the Go runtime and process
// collectors (goroutines, OS threads: the papers' measures).
func NewRegistry(src KindSource, constLabels prometheus.Labels) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		NewActorCollector(src, constLabels),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}
