package debug

import (
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
)

func TestAgo(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "just now"},
		{1500 * time.Millisecond, "1 s ago"},
		{59 * time.Second, "59 s ago"},
		{18*time.Minute + 3*time.Second, "18 min ago"},
		{5 * time.Hour, "5 h ago"},
		{72 * time.Hour, "3 days ago"},
	} {
		if got := ago(c.d); got != c.want {
			t.Errorf("ago(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}

func TestNodeView(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name                string
		node                Node
		state, class        string
		age                 string
		fresh               bool
		queues              []string
		supervision, retryS string
	}{
		{
			name:  "a peer actor running while its tunnel handshakes shows the tunnel",
			node:  Node{ID: "node/peers/bob", State: supervise.StateRunning, Status: "handshaking"},
			state: "handshaking", class: classPending,
		},
		{
			name:  "up",
			node:  Node{ID: "node/peers/bob", State: supervise.StateRunning, Status: "up"},
			state: "up", class: classOK,
		},
		{
			name:  "a failed tunnel",
			node:  Node{ID: "x", State: supervise.StateRunning, Status: "failed: handshake timeout"},
			state: "failed: handshake timeout", class: classBad,
		},
		{
			name:  "an actor backing off shows that first",
			node:  Node{ID: "x", State: supervise.StateBackoff, Status: "handshaking"},
			state: "backoff (handshaking)", class: classBad,
		},
		{
			name:  "the same word once",
			node:  Node{ID: "x", State: supervise.StateBackoff, Status: "backoff"},
			state: "backoff", class: classBad,
		},
		{
			name:  "no owner status",
			node:  Node{ID: "x", State: supervise.StateStarting},
			state: "starting", class: classPending,
		},
		{
			name:  "a failure 18 minutes old is not red",
			node:  Node{ID: "x", State: supervise.StateRunning, LastFailure: "keepalive silence", LastFailureAt: now.Add(-18 * time.Minute)},
			state: "running", class: classOK, age: "18 min ago", fresh: false,
		},
		{
			name:  "a failure 10 s old is",
			node:  Node{ID: "x", State: supervise.StateRunning, LastFailure: "keepalive silence", LastFailureAt: now.Add(-10 * time.Second)},
			state: "running", class: classOK, age: "10 s ago", fresh: true,
		},
		{
			name: "queues and supervision",
			node: Node{
				ID: "x", State: supervise.StateBackoff, NextRestartAt: now.Add(400 * time.Millisecond),
				Queues:      []supervise.Queue{{Name: "out", Len: 32, Cap: 32, Dropped: 3548}, {Name: "in", Len: 0}},
				Supervision: &supervise.Supervision{Strategy: supervise.StrategyBackoff, Failures: 3, MaxRetries: 10, Window: 5 * time.Minute, Delay: 400 * time.Millisecond},
			},
			state: "backoff", class: classBad,
			queues:      []string{"out 32/32 (queue-full 3548)", "in 0"},
			supervision: "backoff 3/10 failures in 5m0s, last delay 400ms", retryS: " (in 400ms)",
		},
		{
			name: "a supervisor that never gives up, its last failure within the window",
			node: Node{ID: "x", State: supervise.StateRunning, LastFailure: "boom", LastFailureAt: now.Add(-10 * time.Second), Supervision: &supervise.Supervision{
				Strategy: supervise.StrategyBackoff, Failures: 2, MaxRetries: -1, Window: time.Minute,
				Initial: 100 * time.Millisecond, Max: 30 * time.Second, Multiplier: 2,
			}},
			state: "running", class: classOK, age: "10 s ago", fresh: true,
			supervision: "backoff 2 failures in 1m0s, never gives up, delays 100ms ×2 up to 30s",
			retryS:      "none pending; a failure now waits ~400ms",
		},
		{
			name: "a backoff policy as recorded at spawn, before any failure",
			node: Node{ID: "x", State: supervise.StateRunning, Supervision: &supervise.Supervision{
				Strategy: supervise.StrategyBackoff, MaxRetries: 10, Window: 5 * time.Minute,
				Initial: 100 * time.Millisecond, Max: 30 * time.Second, Multiplier: 2,
			}},
			state: "running", class: classOK,
			supervision: "backoff 0/10 failures in 5m0s, delays 100ms ×2 up to 30s",
			retryS:      "none pending; a failure now waits ~100ms",
		},
		{
			name: "an old failure outside the window starts the delays again",
			node: Node{ID: "x", State: supervise.StateRunning, LastFailure: "boom", LastFailureAt: now.Add(-time.Hour), Supervision: &supervise.Supervision{
				Strategy: supervise.StrategyBackoff, Failures: 5, MaxRetries: 10, Window: 5 * time.Minute,
				Initial: 100 * time.Millisecond, Max: 30 * time.Second, Multiplier: 2,
			}},
			state: "running", class: classOK, age: "1 h ago",
			supervision: "backoff 5/10 failures in 5m0s, delays 100ms ×2 up to 30s",
			retryS:      "none pending; a failure now waits ~100ms",
		},
		{
			name:  "protoactor's immediate default",
			node:  Node{ID: "x", State: supervise.StateRunning, Supervision: &supervise.Supervision{Strategy: supervise.StrategyImmediate, MaxRetries: 10, Window: 10 * time.Second}},
			state: "running", class: classOK, supervision: "immediate restart, gives up after 10 failures in 10s",
			retryS: "none pending; a failure now restarts at once",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := newNodeView(c.node, now, false)
			if v.State != c.state || v.StateClass != c.class {
				t.Errorf("state %q class %q, want %q %q", v.State, v.StateClass, c.state, c.class)
			}
			if v.FailureAge != c.age || v.FailureFresh != c.fresh {
				t.Errorf("failure age %q fresh %v, want %q %v", v.FailureAge, v.FailureFresh, c.age, c.fresh)
			}
			if !slices.Equal(v.Queues, c.queues) {
				t.Errorf("queues %q, want %q", v.Queues, c.queues)
			}
			if v.Supervision != c.supervision || !strings.HasSuffix(v.NextRetry, c.retryS) {
				t.Errorf("supervision %q next retry %q, want %q and a retry ending %q", v.Supervision, v.NextRetry, c.supervision, c.retryS)
			}
		})
	}
}

// The page is rendered with the daemon's name in its title and heading, and
// an old failure is shown with its age but not in the failure colour.
func TestPageNamesDaemonAndAgesFailures(t *testing.T) {
	now := time.Now()
	tree := Tree{Taken: now, Actors: []Node{
		{ID: "old", Kind: "peer", State: supervise.StateRunning, LastFailure: "stale reason", LastFailureAt: now.Add(-18 * time.Minute)},
		{ID: "new", Kind: "peer", State: supervise.StateRunning, LastFailure: "fresh reason", LastFailureAt: now.Add(-time.Second)},
	}}
	srv := NewServer(staticTree(tree), quiet)
	srv.Describe("node alice.example.cyphonic", "v1.2.3")
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", PathActorsHTML, nil))
	body := rec.Body.String()
	for _, want := range []string{
		"<title>node alice.example.cyphonic · actors</title>",
		"<h1>node alice.example.cyphonic <small>v1.2.3</small></h1>",
		`<span class="old">last failure 18 min ago: stale reason</span>`,
		`<span class="fail">last failure 1 s ago: fresh reason</span>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("%q not in the page:\n%s", want, body)
		}
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'sha256-") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
}
