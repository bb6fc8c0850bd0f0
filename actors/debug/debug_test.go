package debug

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/leaktest"
	"github.com/cyphonic/cyphonic-go/actors/supervise"
)

func TestMain(m *testing.M) {
	leaktest.VerifyTestMain(m)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type (
	boom       struct{}
	spawnChild struct {
		kind, name string
		props      *actor.Props
		reply      chan *actor.PID
	}
)

func TestDebugEndpointShowsRestartsAndStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sys := supervise.New("node-under-test", quiet)
	defer func() {
		if err := sys.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	}()

	strategy, err := sys.NewBackoffStrategy(supervise.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	parent := actor.PropsFromFunc(func(c actor.Context) {
		if m, ok := c.Message().(spawnChild); ok {
			pid, err := supervise.Spawn(c, m.kind, m.name, m.props)
			if err != nil {
				panic(err) // the test cannot go on; the supervisor logs it
			}
			m.reply <- pid
		}
	}, supervise.WithBackoff(strategy))
	node, err := sys.Spawn(nil, "node", "node", parent)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 4)
	peerProps := actor.PropsFromFunc(func(c actor.Context) {
		switch c.Message().(type) {
		case *actor.Started:
			started <- struct{}{}
		case boom:
			panic("keepalive silence")
		}
	})
	reply := make(chan *actor.PID, 1)
	sys.Root().Send(node, spawnChild{"peer", "bob.example.cyphonic", peerProps, reply})
	bob := <-reply
	<-started
	for range 2 {
		sys.Root().Send(bob, boom{})
		<-started
	}

	srv := NewServer(sys.Registry(), quiet)
	srv.Handle("/metrics", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "up 1\n") }))
	addr, err := srv.Start(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(ctx)
	if _, err := srv.Start(ctx, "127.0.0.1:0"); err != ErrStarted {
		t.Fatalf("second Start: %v, want ErrStarted", err)
	}

	tree, err := FetchTree(ctx, addr.String())
	if err != nil {
		t.Fatal(err)
	}
	n, ok := tree.Find("node/bob.example.cyphonic")
	if !ok {
		t.Fatalf("bob missing from %+v", tree)
	}
	if n.Restarts != 2 || n.LastFailure != "keepalive silence" || n.Kind != "peer" || n.Parent != "node" || n.PID == "" || n.LastFailureAt.IsZero() {
		t.Fatalf("bob = %+v, want 2 restarts after keepalive silence", n)
	}

	var out bytes.Buffer
	if err := RenderTree(&out, tree); err != nil {
		t.Fatal(err)
	}
	want := "node [node] running mailbox=0 restarts=0 (immediate restart, gives up after 10 failures in 10s)\n  bob.example.cyphonic [peer] running mailbox=0 restarts=2 last failure "
	if !strings.HasPrefix(out.String(), want) || !strings.Contains(out.String(), ": keepalive silence (backoff 2/10 failures in 5m0s, delays 1ms ×2 up to 5ms, last delay ") {
		t.Fatalf("rendered:\n%s\nwant prefix:\n%s", out.String(), want)
	}

	for path, want := range map[string]string{
		"/debug/actors.html": "bob.example.cyphonic",
		"/debug/":            "keepalive silence",
		"/debug/pprof/":      "goroutine",
		"/metrics":           "up 1",
	} {
		body := get(t, ctx, "http://"+addr.String()+path)
		if !strings.Contains(body, want) {
			t.Errorf("GET %s: %q not in body:\n%s", path, want, body)
		}
	}

	sys.Root().Stop(bob)
	if err := sys.Registry().WaitGone(ctx, bob.Id); err != nil {
		t.Fatal(err)
	}
	tree, err = FetchTree(ctx, addr.String())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tree.Find(bob.Id); ok || tree.Count() != 1 {
		t.Fatalf("stopped actor still served: %+v", tree)
	}
}

func get(t *testing.T, ctx context.Context, url string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return string(b)
}

func TestServerStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	srv := NewServer(staticTree{}, quiet)
	addr, err := srv.Start(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FetchTree(context.Background(), addr.String()); err != nil {
		t.Fatal(err)
	}
	cancel()
	// Shutdown after the context ended still waits for the goroutines.
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := FetchTree(context.Background(), addr.String()); err == nil {
		t.Fatal("server still answering after its context ended")
	}
}

type staticTree supervise.Tree

func (s staticTree) Snapshot() supervise.Tree { return supervise.Tree(s) }

func TestRenderTree(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)
	tree := supervise.Tree{
		Actors: []supervise.Node{{
			ID: "node", Kind: "node", State: supervise.StateRunning,
			Children: []supervise.Node{{
				ID: "node/peers", Kind: "peers", State: supervise.StateRunning, Mailbox: 3,
				Children: []supervise.Node{{
					ID: "node/peers/eve", Kind: "peer", State: supervise.StateBackoff, Restarts: 1,
					LastFailure: "bad\ntag", LastFailureAt: at, NextRestartAt: at.Add(time.Second),
					Status: "failed: handshake\ntimeout", Queues: []supervise.Queue{{Name: "out", Len: 32, Cap: 32, Dropped: 9}},
					Supervision: &supervise.Supervision{Strategy: supervise.StrategyBackoff, Failures: 1, MaxRetries: 10, Window: time.Minute, Delay: time.Second},
				}, {
					ID: "node/peers/bob", Kind: "peer", State: supervise.StateRunning, Status: "up",
				}},
			}},
		}},
		GaveUp: []supervise.Node{{ID: "node/peers/mallory", Kind: "peer", State: supervise.StateGaveUp, Restarts: 10, LastFailure: "x", LastFailureAt: at}},
	}
	var b strings.Builder
	if err := RenderTree(&b, tree); err != nil {
		t.Fatal(err)
	}
	want := `node [node] running mailbox=0 restarts=0
  peers [peers] running mailbox=3 restarts=0
    eve [peer] backoff (failed: handshake?timeout) mailbox=0 out=32/32 (queue-full 9) restarts=1 last failure 03:04:05.000: bad?tag next restart 03:04:06.000 (backoff 1/10 failures in 1m0s, last delay 1s)
    bob [peer] up mailbox=0 restarts=0
gave up:
  node/peers/mallory [peer] gave-up mailbox=0 restarts=10 last failure 03:04:05.000: x
`
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}
