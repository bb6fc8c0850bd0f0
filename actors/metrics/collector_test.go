package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
)

type kinds []supervise.KindStats

func (k kinds) Kinds() []supervise.KindStats { return k }

// gather returns name{kind} -> value for the cyphonic_actor_* series.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			switch {
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			default:
				out[key] = -1 // present, other type
			}
		}
	}
	return out
}

func TestActorCollector(t *testing.T) {
	src := kinds{
		{Kind: "peer", Live: 3, Restarts: 7, GaveUp: 1, Mailbox: 12, MailboxMax: 9},
		{Kind: "session", Live: 1},
	}
	reg := prometheus.NewPedanticRegistry() // also checks Describe matches Collect
	reg.MustRegister(NewActorCollector(src, prometheus.Labels{"system": "node"}))
	got := gather(t, reg)
	want := map[string]float64{
		"cyphonic_actor_live{kind=peer}{system=node}":              3,
		"cyphonic_actor_restarts_total{kind=peer}{system=node}":    7,
		"cyphonic_actor_gave_up_total{kind=peer}{system=node}":     1,
		"cyphonic_actor_mailbox_depth{kind=peer}{system=node}":     12,
		"cyphonic_actor_mailbox_depth_max{kind=peer}{system=node}": 9,
		"cyphonic_actor_live{kind=session}{system=node}":           1,
		"cyphonic_actor_restarts_total{kind=session}{system=node}": 0,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if len(got) != 10 {
		t.Errorf("%d series, want 10: %v", len(got), got)
	}
}

func TestNewRegistryGathers(t *testing.T) {
	got := gather(t, NewRegistry(kinds{{Kind: "peer", Live: 1}}, nil))
	if got["cyphonic_actor_live{kind=peer}"] != 1 {
		t.Fatalf("actor series missing: %v", got)
	}
	if _, ok := got["go_goroutines"]; !ok {
		t.Fatal("go_goroutines missing")
	}
}
