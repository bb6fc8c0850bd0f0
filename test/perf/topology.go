package perf

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cyphonic/cyphonic-go/test/testbed"
)

// Topology is the measurement's hosts, all global dual-stack hosts on the
// testbed's internet segment, so both systems get a direct path. (The node
// daemon gives its TUN a VIPv6 too, which an IPv4-only namespace refuses.)
type Topology struct {
	Bed       *testbed.Bed
	Responder *testbed.Host
	Idle      *testbed.Host   // a peer that only pings: the others' load must not starve it
	Pushers   []*testbed.Host // the initiators that push TCP
}

// NewTopology adds the responder, the idle peer and pushers initiators to
// bed. Like every testbed builder it fails the test on error.
func NewTopology(bed *testbed.Bed, pushers int) *Topology {
	var opts testbed.HostOpts // both IP versions
	t := &Topology{
		Bed:       bed,
		Responder: bed.AddHost("resp", opts),
		Idle:      bed.AddHost("idle", opts),
	}
	for i := range pushers {
		t.Pushers = append(t.Pushers, bed.AddHost("p"+strconv.Itoa(i+1), opts))
	}
	return t
}

// Initiators is every host that talks to the responder: the idle peer
// first, then the pushers.
func (t *Topology) Initiators() []*testbed.Host {
	return append([]*testbed.Host{t.Idle}, t.Pushers...)
}

// Target is a system set up on a topology: where the initiators reach the
// responder through the overlay, and the daemon whose memory is measured.
type Target struct {
	Addr netip.Addr
	PID  int
	// Pprof is the responder daemon's pprof base URL inside its namespace
	// ("" if it has none), for CYPHONIC_PERF_PROFILE.
	Pprof string
	// Sojourn is the daemons' per-stage sojourn endpoint inside their
	// namespaces ("" if none), for CYPHONIC_PERF_PROFILE.
	Sojourn string
	// Status is the daemons' status endpoint inside their namespaces
	// ("" if none), for the pushers' packet counters.
	Status string
}

// readMemory reads a process's resident set.
func readMemory(pid int) (Memory, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return Memory{}, fmt.Errorf("perf: memory of pid %d: %w", pid, err)
	}
	return ParseProcStatus(b)
}

// processName is /proc/PID/comm, to check the pid is the daemon's and not
// a wrapper's.
func processName(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}

// daemonsCPU sums the CPU time (user + system) of every process named
// comm in one of the network namespaces netns (ns inodes, from
// namespaceInodes; nil: any): all of a system's daemons, responder,
// pushers and idle peer (and, for cyphonic, the idle cloud beside them).
// The namespaces keep out other runs' daemons of the same name on a shared
// machine: one that exits during the load would subtract its whole CPU
// time, one that starts would add its own (2.5 s over a 10-pusher load
// whose daemons used ~15 s, in one such run).
func daemonsCPU(comm string, netns map[uint64]bool) (time.Duration, error) {
	pids, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("perf: daemons' cpu: %w", err)
	}
	var sum time.Duration
	for _, e := range pids {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || processName(pid) != comm {
			continue
		}
		if netns != nil {
			ino, ok := inode("/proc/" + e.Name() + "/ns/net")
			if !ok || !netns[ino] {
				continue
			}
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // it exited meanwhile
		}
		cpu, err := ParseProcStatCPU(b)
		if err != nil {
			return 0, fmt.Errorf("perf: cpu of pid %d: %w", pid, err)
		}
		sum += cpu
	}
	return sum, nil
}

// namespaceInodes returns the inodes of the named network namespaces
// (ip-netns names, under /run/netns), for daemonsCPU.
func namespaceInodes(names []string) (map[uint64]bool, error) {
	set := make(map[uint64]bool, len(names))
	for _, n := range names {
		ino, ok := inode(filepath.Join("/run/netns", n))
		if !ok {
			return nil, fmt.Errorf("perf: namespace %s: no /run/netns entry", n)
		}
		set[ino] = true
	}
	return set, nil
}

// inode is path's inode (a namespace's, for /proc/PID/ns/net or a
// /run/netns bind mount).
func inode(path string) (uint64, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Ino, true
}

// pollInterval is the pause between tries of every bounded wait.
const pollInterval = 200 * time.Millisecond

// poll calls try up to tries times, pollInterval apart, until it succeeds;
// it returns the last error. Every wait of the harness is bounded by it.
func poll(ctx context.Context, tries int, try func() error) error {
	var err error
	for i := range tries {
		if i > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
			case <-time.After(pollInterval):
			}
		}
		if err = try(); err == nil {
			return nil
		}
	}
	return err
}

// reach waits until h gets an echo from addr through the overlay; the
// first packets may wait on a handshake.
func reach(ctx context.Context, bed *testbed.Bed, h *testbed.Host, addr netip.Addr) error {
	err := poll(ctx, 20, func() error {
		_, err := bed.ExecContext(ctx, h.NS(), "ping", "-n", "-c", "1", "-W", "1", addr.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("perf: %s cannot reach %s through the overlay: %w", h.Name(), addr, err)
	}
	return nil
}
