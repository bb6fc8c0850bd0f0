package cloudsim

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cyphonic/cyphonic-go/cloud/nms"
)

// The cloud's own view of keepalive latency (nms.KeepaliveTimeName, from
// the kernel's receive stamp to the reply's send) read from two scrapes of
// its /metrics, and the load tool's CPU pinning.

// histogram is one scrape's cumulative bucket counts of a Prometheus
// histogram: le (upper bound, seconds; +Inf last) and count.
type histogram struct {
	le    []float64
	count []float64
}

// scrapeHistogram reads histogram name out of a metrics() scrape.
func scrapeHistogram(m map[string]float64, name string) histogram {
	prefix := name + `_bucket{le="`
	var h histogram
	type b struct{ le, n float64 }
	var bs []b
	for k, v := range m {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		le, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(k, prefix), `"}`), 64)
		if err != nil {
			continue
		}
		bs = append(bs, b{le, v})
	}
	slices.SortFunc(bs, func(x, y b) int {
		switch {
		case x.le < y.le:
			return -1
		case x.le > y.le:
			return 1
		}
		return 0
	})
	for _, x := range bs {
		h.le, h.count = append(h.le, x.le), append(h.count, x.n)
	}
	return h
}

// since is h minus an earlier scrape of the same histogram (zero value: none).
func (h histogram) since(base histogram) histogram {
	out := histogram{le: h.le, count: slices.Clone(h.count)}
	if len(base.count) == len(h.count) {
		for i := range out.count {
			out.count[i] -= base.count[i]
		}
	}
	return out
}

// n is the observations counted.
func (h histogram) n() float64 {
	if len(h.count) == 0 {
		return 0
	}
	return h.count[len(h.count)-1]
}

// quantile interpolates the q-quantile linearly within its bucket
// (Prometheus's histogram_quantile); past the last finite bound it is that
// bound.
func (h histogram) quantile(q float64) time.Duration {
	total := h.n()
	if total == 0 {
		return 0
	}
	rank := q * total
	lo, below := 0.0, 0.0
	for i, le := range h.le {
		if h.count[i] >= rank {
			if math.IsInf(le, 1) {
				return time.Duration(lo * 1e9)
			}
			in := h.count[i] - below
			f := 1.0
			if in > 0 {
				f = (rank - below) / in
			}
			return time.Duration((lo + (le-lo)*f) * 1e9)
		}
		lo, below = le, h.count[i]
	}
	return time.Duration(lo * 1e9)
}

// over is how many observations exceeded bound (a bucket's le).
func (h histogram) over(bound float64) float64 {
	for i, le := range h.le {
		if le >= bound {
			return h.n() - h.count[i]
		}
	}
	return 0
}

func (h histogram) String() string {
	return fmt.Sprintf("n=%.0f p50=%v p90=%v p99=%v p99.9=%v >10ms=%.0f", h.n(),
		h.quantile(0.5).Round(10*time.Microsecond), h.quantile(0.9).Round(10*time.Microsecond),
		h.quantile(0.99).Round(10*time.Microsecond), h.quantile(0.999).Round(10*time.Microsecond), h.over(0.010))
}

// kaHistogram is the cloud's keepalive service-time histogram now.
func kaHistogram(m map[string]float64) histogram { return scrapeHistogram(m, nms.KeepaliveTimeName) }

// parseCPUs reads a CPU list as taskset's -c takes it ("1", "0,2", "0-3").
func parseCPUs(s string) (unix.CPUSet, error) {
	var set unix.CPUSet
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return set, fmt.Errorf("cpu list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return set, fmt.Errorf("cpu list %q: %w", s, err)
			}
		}
		if a < 0 || b < a || b >= 1024 {
			return set, fmt.Errorf("cpu list %q: bad range %d-%d", s, a, b)
		}
		for c := a; c <= b; c++ {
			set.Set(c)
		}
	}
	if set.Count() == 0 {
		return set, fmt.Errorf("cpu list %q: empty", s)
	}
	return set, nil
}

// pinProcess restricts every thread of process pid (0: this one) to set:
// sched_setaffinity is per thread, and a thread created later inherits
// its creator's mask, so pinning all the threads there are pins the
// process.
func pinProcess(pid int, set unix.CPUSet) error {
	dir := "/proc/self/task"
	if pid != 0 {
		dir = fmt.Sprintf("/proc/%d/task", pid)
	}
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("pin: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(filepath.Base(t.Name()))
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH { // ESRCH: the thread ended meanwhile
			return fmt.Errorf("pin thread %d: %w", tid, err)
		}
	}
	return nil
}

// pinLoad applies -load.cloudcpus and -load.nodecpus: the cloud's process
// and this one (the simulated nodes) each on their CPUs, GOMAXPROCS set to
// match, so the nodes' work cannot delay the cloud's (what the cloud-side
// histogram is there to separate; pinning shows it a second way).
func pinLoad(cloudPID int, cloudCPUs, nodeCPUs string) (string, error) {
	var said []string
	if cloudCPUs != "" {
		set, err := parseCPUs(cloudCPUs)
		if err != nil {
			return "", err
		}
		if err := pinProcess(cloudPID, set); err != nil {
			return "", err
		}
		said = append(said, fmt.Sprintf("cloud on CPUs %s", cloudCPUs))
	}
	if nodeCPUs != "" {
		set, err := parseCPUs(nodeCPUs)
		if err != nil {
			return "", err
		}
		if err := pinProcess(0, set); err != nil {
			return "", err
		}
		runtime.GOMAXPROCS(set.Count())
		said = append(said, fmt.Sprintf("nodes on CPUs %s (GOMAXPROCS %d)", nodeCPUs, set.Count()))
	}
	return strings.Join(said, ", "), nil
}
