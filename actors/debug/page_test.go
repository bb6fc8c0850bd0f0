package debug

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/test/systest"
)

// chromium dumps url's DOM after budget of virtual time (systest.Headless).
func chromium(t *testing.T, ctx context.Context, url string, budget time.Duration) string {
	t.Helper()
	dom, err := systest.Headless{URL: url, Budget: budget, ProfileDir: t.TempDir()}.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return dom
}

// liAttrs finds the page's element for the actor id and returns its
// data-state and data-restarts.
func liAttrs(dom, id string) (state, restarts string, ok bool) {
	re := regexp.MustCompile(`<li data-id="` + regexp.QuoteMeta(id) + `" data-state="([^"]*)" data-restarts="([^"]*)"`)
	m := re.FindStringSubmatch(dom)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// TestPageInChromiumFollowsARestart loads /debug/actors.html in headless
// Chromium, through the Host-checked server, with a small supervised tree
// behind it: node, a peer under it with a tunnel status from an annotator.
// The first time the page's script polls, the test crashes the peer and
// waits until the registry shows the restart; the DOM Chromium ends with
// must show it, so it is the script's re-render (the HTML Chromium loaded
// first was rendered before the crash), with the daemon's name in the
// title, the annotator's status instead of "running" and the failure.
func TestPageInChromiumFollowsARestart(t *testing.T) {
	systest.Require(t, systest.Chromium())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	sys := supervise.New("node", quiet)
	defer func() {
		if err := sys.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	strategy, err := sys.NewBackoffStrategy(supervise.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	reply := make(chan *actor.PID, 1)
	started := make(chan struct{}, 8)
	peerProps := actor.PropsFromFunc(func(c actor.Context) {
		switch c.Message().(type) {
		case *actor.Started:
			started <- struct{}{}
		case boom:
			panic("handshake timeout")
		}
	})
	nodeProps := actor.PropsFromFunc(func(c actor.Context) {
		if _, ok := c.Message().(*actor.Started); ok {
			pid, err := supervise.Spawn(c, "peer", "bob.example.cyphonic", peerProps)
			if err != nil {
				panic(err)
			}
			reply <- pid
			// carol never fails: her supervision shows from her spawn.
			if _, err := supervise.Spawn(c, "peer", "carol.example.cyphonic", actor.PropsFromFunc(func(actor.Context) {})); err != nil {
				panic(err)
			}
		}
	}, supervise.WithBackoff(strategy))
	if _, err := sys.Spawn(nil, "node", "node", nodeProps); err != nil {
		t.Fatal(err)
	}
	bob := <-reply
	<-started
	const bobID = "node/bob.example.cyphonic"

	// The first snapshot is the page Chromium loads; the second is the
	// script's first poll: crash bob before answering it.
	src := &crashOnPoll{reg: sys.Registry(), crash: func() error { return crashAndWait(ctx, sys, bob, bobID) }}
	srv := NewServer(src, quiet)
	srv.Describe("alice.example.cyphonic", "v0.0.0-test")
	srv.Annotate(func(t *Tree) {
		t.Walk(func(n *Node) {
			if n.Kind == "peer" {
				n.Status = "handshaking"
				n.Queues = []supervise.Queue{{Name: "out", Len: 3, Cap: 32, Dropped: 7}}
			}
		})
	})
	addr, err := srv.Start(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	url := "http://" + addr.String() + PathActorsHTML

	dom := chromium(t, ctx, url, 5*time.Second)
	if polls, err := src.result(); err != nil || polls < 2 {
		t.Fatalf("%d snapshots served (want the page and at least one poll), crash: %v; DOM:\n%s", polls, err, dom)
	}
	state, restarts, ok := liAttrs(dom, bobID)
	if !ok {
		t.Fatalf("no element for %s in the DOM:\n%s", bobID, dom)
	}
	if restarts != "1" || state != "handshaking" {
		t.Fatalf("bob in the DOM: state %q restarts %q, want handshaking after 1 restart; DOM:\n%s", state, restarts, dom)
	}
	for _, want := range []string{
		"<title>alice.example.cyphonic · actors</title>", "v0.0.0-test",
		"handshake timeout", "out 3/32 (queue-full 7)", `id="live" class="ok"`, "backoff 1/10 failures",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("%q not in the DOM:\n%s", want, dom)
		}
	}
	if _, _, ok := liAttrs(dom, "node"); !ok {
		t.Errorf("no element for the root actor in the DOM:\n%s", dom)
	}
	// Supervision from the spawn: carol, who never failed, shows her
	// parent's backoff policy and what a failure would get; the root actor
	// protoactor's default.
	carol := liText(dom, "node/carol.example.cyphonic")
	for _, want := range []string{"backoff 0/10 failures in 5m0s, delays 1ms ×2 up to 5ms", "next retry none pending; a failure now waits ~1ms"} {
		if !strings.Contains(carol, want) {
			t.Errorf("%q not in carol's element %q", want, carol)
		}
	}
	if root := liText(dom, "node"); !strings.Contains(root, "immediate restart, gives up after 10 failures in 10s") {
		t.Errorf("root actor's element %q lacks protoactor's default strategy", root)
	}
}

// liText returns the text of the actor's own line on the page (up to its
// children's list), tags stripped.
func liText(dom, id string) string {
	start := strings.Index(dom, `<li data-id="`+id+`"`)
	if start < 0 {
		return ""
	}
	line := dom[start:]
	line = line[strings.IndexByte(line, '>')+1:] // past the li tag itself
	for _, stop := range []string{"<ul>", "<li", "</li>"} {
		if i := strings.Index(line, stop); i >= 0 {
			line = line[:i]
		}
	}
	return regexp.MustCompile(`<[^>]*>`).ReplaceAllString(line, "")
}

// crashOnPoll serves reg's tree and runs crash before the second snapshot.
type crashOnPoll struct {
	reg   *supervise.Registry
	crash func() error

	mu    sync.Mutex
	calls int
	err   error
}

func (c *crashOnPoll) Snapshot() supervise.Tree {
	c.mu.Lock()
	c.calls++
	if c.calls == 2 {
		c.err = c.crash()
	}
	c.mu.Unlock()
	return c.reg.Snapshot()
}

func (c *crashOnPoll) result() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls, c.err
}

// crashAndWait makes bob panic and waits until the registry shows the
// restart and bob running again.
func crashAndWait(ctx context.Context, sys *supervise.System, bob *actor.PID, id string) error {
	sys.Root().Send(bob, boom{})
	for {
		if n, ok := sys.Registry().Snapshot().Find(id); ok && n.Restarts == 1 && n.State == supervise.StateRunning {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("bob's restart never showed in the registry")
		case <-time.After(5 * time.Millisecond):
		}
	}
}
