package debug

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
)

// failureFresh is how long a failure is painted as one: past it the page
// still shows it, with its age, but no longer in red, so that an operator
// glancing at the tree sees what is failing now rather than what failed
// this morning.
const failureFresh = 5 * time.Minute

// State classes of the page's stylesheet.
const (
	classOK      = "ok"      // up, running
	classPending = "pending" // handshaking, starting, stopping
	classBad     = "bad"     // failed, backoff, restarting, gave up
)

// pageView is the tree as the page shows it: every text and class worked
// out here, in Go, so the template stays plain and the rules are tested.
type pageView struct {
	Daemon, Version string
	Taken           string
	Actors, GaveUp  []nodeView
}

type nodeView struct {
	ID, Name, Kind string
	State          string // what the page shows: the owner's Status, else the actor's state
	StateClass     string
	Mailbox        int
	Queues         []string // "out 3/32 (queue-full 3548)"
	Processed      uint64
	Restarts       int
	Failure        string // last failure text; "" for none
	FailureAge     string // "18 min ago"
	FailureFresh   bool   // younger than failureFresh: painted red
	Supervision    string // "backoff 3/10 in 5m0s, delay 400ms"
	NextRetry      string // "12:00:01.250 (in 0.4s)", or what a failure now would get
	RetryPending   bool   // NextRetry is a scheduled restart
	Info           []string
	Children       []nodeView
}

func newPageView(t Tree) pageView {
	v := pageView{Daemon: t.Daemon, Version: t.Version, Taken: t.Taken.Local().Format("2006-01-02 15:04:05")}
	if v.Daemon == "" {
		v.Daemon = "cyphonic daemon"
	}
	v.Actors = nodeViews(t.Actors, t.Taken, false)
	v.GaveUp = nodeViews(t.GaveUp, t.Taken, true)
	return v
}

func nodeViews(ns []Node, now time.Time, fullName bool) []nodeView {
	out := make([]nodeView, 0, len(ns))
	for _, n := range ns {
		out = append(out, newNodeView(n, now, fullName))
	}
	return out
}

func newNodeView(n Node, now time.Time, fullName bool) nodeView {
	v := nodeView{
		ID: n.ID, Name: n.ID, Kind: n.Kind, Mailbox: n.Mailbox, Processed: n.Processed, Restarts: n.Restarts,
		Failure: n.LastFailure,
	}
	if i := strings.LastIndexByte(n.ID, '/'); i >= 0 && !fullName {
		v.Name = n.ID[i+1:]
	}
	v.State, v.StateClass = stateOf(n)
	for _, q := range n.Queues {
		v.Queues = append(v.Queues, q.Name+" "+queueText(q))
	}
	if n.LastFailure != "" && !n.LastFailureAt.IsZero() {
		age := now.Sub(n.LastFailureAt)
		v.FailureAge = ago(age)
		v.FailureFresh = age < failureFresh
	}
	v.Supervision = supervisionText(n.Supervision)
	switch {
	case !n.NextRestartAt.IsZero():
		v.RetryPending = true
		v.NextRetry = n.NextRestartAt.Local().Format(time.TimeOnly + ".000")
		if d := n.NextRestartAt.Sub(now); d > 0 {
			v.NextRetry += " (in " + d.Round(100*time.Millisecond).String() + ")"
		} else {
			v.NextRetry += " (due)"
		}
	case n.Supervision == nil:
	case n.Supervision.Strategy == supervise.StrategyBackoff:
		v.NextRetry = "none pending; a failure now waits ~" + n.Supervision.NextDelay(n.LastFailureAt, now).Round(time.Millisecond).String()
	default:
		v.NextRetry = "none pending; a failure now restarts at once"
	}
	for _, k := range slices.Sorted(maps.Keys(n.Info)) {
		v.Info = append(v.Info, k+"="+n.Info[k])
	}
	v.Children = nodeViews(n.Children, now, false)
	return v
}

// queueText is a queue's depth, bound and drops: "32/32 (queue-full 3548)".
func queueText(q supervise.Queue) string {
	s := fmt.Sprint(q.Len)
	if q.Cap > 0 {
		s += fmt.Sprintf("/%d", q.Cap)
	}
	if q.Dropped > 0 {
		s += fmt.Sprintf(" (queue-full %d)", q.Dropped)
	}
	return s
}

// stateOf picks what to show as the actor's state. The owner's Status says
// more than "running" (a peer actor runs while its tunnel handshakes), but
// while the actor itself is not running (backing off, restarting) that is
// what matters, with the status beside it.
func stateOf(n Node) (string, string) {
	switch {
	case n.Status == "":
		return n.State, actorClass(n.State)
	case n.State == supervise.StateRunning || n.State == n.Status:
		return n.Status, statusClass(n.Status)
	default:
		return n.State + " (" + n.Status + ")", actorClass(n.State)
	}
}

func actorClass(state string) string {
	switch state {
	case supervise.StateRunning:
		return classOK
	case supervise.StateStarting, supervise.StateStopping:
		return classPending
	default:
		return classBad
	}
}

// statusClass classifies an owner's status by its first word: the data
// plane's peer states are "up", "handshaking", "backoff" and "failed: why".
func statusClass(status string) string {
	word, _, _ := strings.Cut(status, ":")
	switch strings.TrimSpace(word) {
	case "up", "running", "ok":
		return classOK
	case "handshaking", "starting", "connecting", "stopping":
		return classPending
	default:
		return classBad
	}
}

func supervisionText(s *supervise.Supervision) string {
	if s == nil {
		return ""
	}
	var b strings.Builder
	if s.Strategy != supervise.StrategyBackoff {
		b.WriteString(s.Strategy + " restart")
		if s.Window > 0 {
			fmt.Fprintf(&b, ", gives up after %d failures in %v", s.MaxRetries, s.Window)
		}
		return b.String()
	}
	b.WriteString("backoff")
	switch {
	case s.MaxRetries < 0:
		fmt.Fprintf(&b, " %d failures in %v, never gives up", s.Failures, s.Window)
	default:
		fmt.Fprintf(&b, " %d/%d failures in %v", s.Failures, s.MaxRetries, s.Window)
	}
	if s.Initial > 0 {
		fmt.Fprintf(&b, ", delays %v", s.Initial.Round(time.Millisecond))
		if s.Multiplier > 1 {
			fmt.Fprintf(&b, " ×%g", s.Multiplier)
		}
		fmt.Fprintf(&b, " up to %v", s.Max.Round(time.Millisecond))
	}
	if s.Delay > 0 {
		fmt.Fprintf(&b, ", last delay %v", s.Delay.Round(time.Millisecond))
	}
	return b.String()
}

// ago says how long ago something happened, coarsely: a page refreshed
// every second has no use for "18m3.25s".
func ago(d time.Duration) string {
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%d s ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d/time.Hour))
	default:
		return fmt.Sprintf("%d days ago", int(d/(24*time.Hour)))
	}
}
