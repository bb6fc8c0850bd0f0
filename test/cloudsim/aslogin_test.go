package cloudsim

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
)

// TestLoginWithoutActors: a login's commit (store read and write, key
// handover, answer) runs on the AS's existing actors, its state in the
// transaction caches. Before, each login spawned an actor "login" tx-<id>:
// one name per login ever made in protoactor's process registry, which
// never shrinks.
func TestLoginWithoutActors(t *testing.T) {
	s := startCloud(t, t.TempDir())
	defer s.Close(context.Background())
	var as *supervise.System
	for _, sys := range s.Systems() {
		if sys.Name() == "as" {
			as = sys
		}
	}
	if as == nil {
		t.Fatal("no as actor system")
	}
	base := as.Registry().Len() // the root and its workers
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		node := newNode(t, s, fmt.Sprintf("login%d.example.cyphonic", i))
		wg.Go(func() {
			if _, err := node.Login(s.AS.Addrs()[0], i%2 == 0); err != nil { // half send every packet twice
				errs <- fmt.Errorf("login %s: %w", node.FQDN, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Counted just after the answer is sent.
	eventually(t, "every login counted", func() bool { return s.AS.Counters.Accepted.Load() == n })
	for _, k := range as.Registry().Kinds() {
		if k.Kind != "as" && k.Kind != "as-worker" {
			t.Errorf("the AS spawned actors of kind %q for logins (%d live)", k.Kind, k.Live)
		}
	}
	if got := as.Registry().Len(); got != base {
		t.Errorf("%d AS actors after the logins, want %d", got, base)
	}
}
