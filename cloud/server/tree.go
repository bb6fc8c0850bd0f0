package server

import (
	"strings"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
)

// KindActorSystem is the kind of the top-level nodes of the process's actor
// tree: one per actor system, its actors below it.
const KindActorSystem = "actor-system"

// systemsTree shows several actor systems as one tree for the debug
// endpoint: a node per system (ID and PID: the system's name), its live
// actors as the node's children. Given-up actors keep their IDs, prefixed
// with the system's name, since their parents may be gone.
type systemsTree []*supervise.System

func (ss systemsTree) Snapshot() supervise.Tree {
	t := supervise.Tree{Taken: time.Now()}
	for _, s := range ss {
		st := s.Registry().Snapshot()
		t.Actors = append(t.Actors, supervise.Node{
			ID: s.Name(), PID: s.Name(), Kind: KindActorSystem, State: supervise.StateRunning,
			Children: st.Actors,
		})
		for _, n := range st.GaveUp {
			n.ID = s.Name() + "/" + n.ID
			t.GaveUp = append(t.GaveUp, n)
		}
	}
	return t
}

// daemon names the process for the debug page: "cloud services trs, nms, as".
func (ss systemsTree) daemon() string {
	names := make([]string, 0, len(ss))
	for _, s := range ss {
		names = append(names, s.Name())
	}
	return "cloud services " + strings.Join(names, ", ")
}
