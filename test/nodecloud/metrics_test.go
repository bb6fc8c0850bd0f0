package nodecloud

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape reads a node's /metrics into series -> value, the series written
// as in the exposition format (name{labels}).
func scrape(t *testing.T, n *testNode) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + n.DebugAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// TestNodeMetrics: what an operator alerts on is on a node's /metrics,
// with bounded labels: the tunnel to bob up over its path, when its last
// handshake completed, the resolver's answers, the data plane's drops and
// the build - and no free text in a label.
func TestNodeMetrics(t *testing.T) {
	c := startCloud(t, t.TempDir(), nil)
	defer c.close(t)
	alice := startNode(t, c, "alice.example.cyphonic")
	bob := startNode(t, c, "bob.example.cyphonic")
	eventually(t, "alice online", online(alice))
	eventually(t, "bob online", online(bob))
	if r := resolveA(t, alice, bob.FQDN()); len(r.Answer) != 1 {
		t.Fatalf("resolve bob: %v", r)
	}
	roundTrip(t, alice, bob, 1)

	m := scrape(t, alice)
	peer := `peer="bob.example.cyphonic"`
	want := map[string]float64{
		`cyphonic_peer_up{` + peer + `}`:                           1,
		`cyphonic_peer_state{` + peer + `,state="up"}`:             1,
		`cyphonic_resolver_queries_total{result="overlay"}`:        1,
		`cyphonic_peer_tx_packets_total{` + peer + `}`:             1,
		`cyphonic_peer_handshakes_total{` + peer + `,result="ok"}`: 1,
		// present from the start, so alerts on their rates have a series
		`cyphonic_peer_packets_lost_total{` + peer + `}`:          0,
		`cyphonic_peer_drops_total{` + peer + `,reason="replay"}`: 0,
	}
	for series, min := range want {
		if v, ok := m[series]; !ok || v < min {
			t.Errorf("%s = %v (present %v), want at least %v", series, v, ok, min)
		}
	}
	hs, ok := m[`cyphonic_peer_last_handshake_timestamp_seconds{`+peer+`}`]
	if age := time.Since(time.Unix(int64(hs), 0)); !ok || age < -time.Second || age > time.Minute {
		t.Errorf("last handshake %v ago (present %v), want within the minute", age, ok)
	}
	var paths, builds int
	for series, v := range m {
		switch {
		case strings.HasPrefix(series, `cyphonic_peer_path{`) && strings.Contains(series, peer) && v == 1:
			paths++
			if !strings.Contains(series, `path="direct"`) {
				t.Errorf("alice reaches bob on the loopback over %s, want direct", series)
			}
		case strings.HasPrefix(series, "cyphonic_build_info{"):
			builds++
		case strings.HasPrefix(series, "cyphonic_peer_state{") && strings.ContainsAny(series, ":("):
			t.Errorf("a state label with free text: %s", series)
		}
	}
	if paths != 1 || builds != 1 {
		t.Errorf("%d path series for bob and %d build_info series, want 1 and 1", paths, builds)
	}
}
