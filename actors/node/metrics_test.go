package node

import (
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
)

// Lost and replayed packets are per-peer counters on /metrics, read from
// the data plane's status at scrape time; the replay series is there from
// a tunnel's start (0), so an alert on its rate has a series to work on.
func TestPeerLossAndReplayMetrics(t *testing.T) {
	for _, c := range []struct {
		name string
		peer dataplane.PeerStatus
		want []string
	}{
		{
			name: "lost and replayed",
			peer: dataplane.PeerStatus{FQDN: "bob.example.cyphonic", Lost: 7, Drops: map[string]uint64{"replay": 3, "auth": 1}},
			want: []string{
				`cyphonic_peer_drops_total{peer="bob.example.cyphonic",reason="auth"} 1`,
				`cyphonic_peer_drops_total{peer="bob.example.cyphonic",reason="replay"} 3`,
				`cyphonic_peer_packets_lost_total{peer="bob.example.cyphonic"} 7`,
			},
		},
		{
			name: "a clean tunnel still has both series",
			peer: dataplane.PeerStatus{FQDN: "carol.example.cyphonic"},
			want: []string{
				`cyphonic_peer_drops_total{peer="carol.example.cyphonic",reason="replay"} 0`,
				`cyphonic_peer_packets_lost_total{peer="carol.example.cyphonic"} 0`,
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(&nodeCollector{peers: func() []dataplane.PeerStatus { return []dataplane.PeerStatus{c.peer} }, version: "test"})
			rec := httptest.NewRecorder()
			promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.PanicOnError}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			var got []string
			for line := range strings.SplitSeq(rec.Body.String(), "\n") {
				if strings.HasPrefix(line, "cyphonic_peer_drops_total{") || strings.HasPrefix(line, "cyphonic_peer_packets_lost_total{") {
					got = append(got, line)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, c.want) {
				t.Errorf("series\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}
