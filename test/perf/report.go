package perf

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// SectionHeading is the heading of the harness's section in BENCHMARKS.md;
// the harness rewrites that section only.
const SectionHeading = "## Tunnel throughput and latency under load (test/perf)"

// Load is one measurement with Peers initiators pushing TCP at once.
type Load struct {
	Peers     int
	PerPeer   []float64 // receiver-side bit/s of each initiator's flow
	Aggregate float64   // their sum, bit/s
	// IdlePeer pings the responder from a peer that sends nothing else;
	// PushingPeer pings from one of the pushing initiators.
	IdlePeer, PushingPeer RTT
	Memory                Memory // responder daemon: peak VmRSS sampled during the load, VmHWM after it
	// CPU is the CPU time all the system's daemons used over the load
	// (pings and profiles included); Bytes is what the flows moved
	// (Aggregate over the load's duration).
	CPU   time.Duration
	Bytes float64
	// GCs is how many GC cycles the responder daemon ran over the load
	// (the runtime's NumGC before and after it), if GCsKnown (a system
	// with Go's pprof endpoint).
	GCs      int
	GCsKnown bool
	// Responder and Pushers (their sum) are the daemons' packet counters
	// over the load, if CountsKnown (cyphonic with CYPHONIC_PERF_PROFILE):
	// where the pushers' packets were lost.
	Responder, Pushers Counts
	CountsKnown        bool
}

// CPUPerGB is the daemons' CPU seconds per GB (1e9 bytes) moved, 0 if
// nothing moved.
func (l Load) CPUPerGB() float64 {
	if l.Bytes <= 0 {
		return 0
	}
	return l.CPU.Seconds() / (l.Bytes / 1e9)
}

// Result is one system's run.
type Result struct {
	System  string // "wireguard-go", "cyphonic"
	Version string
	// Pending, when set, says why the system could not be measured; the
	// other fields are then empty.
	Pending string
	Idle    RTT    // no load at all
	IdleMem Memory // responder daemon before any load
	Loads   []Load
	// AfterMem is the responder daemon's memory AfterSettle past the
	// last load (RSS zero: not measured): how far it falls back once
	// the load is gone.
	AfterMem Memory
}

// AfterSettle is how long after the last load Result.AfterMem is read:
// past the data plane's spare buffers' keep time (a second) and its trim.
const AfterSettle = 3 * time.Second

// gcNotes is the line under a result's table with the responder's GC
// cycles per load and its RSS after the loads, "" if neither is known.
func gcNotes(r Result) string {
	var parts []string
	var gcs []string
	for _, l := range r.Loads {
		if l.GCsKnown {
			gcs = append(gcs, fmt.Sprintf("%d pushers %d", l.Peers, l.GCs))
		}
	}
	if len(gcs) > 0 {
		parts = append(parts, "responder GC cycles during the load: "+strings.Join(gcs, ", "))
	}
	if r.AfterMem.RSS > 0 {
		parts = append(parts, fmt.Sprintf("responder RSS %s after the loads: %s", AfterSettle, mib(r.AfterMem.RSS)))
	}
	if len(parts) == 0 {
		return countNotes(r)
	}
	return strings.Join(parts, "; ") + ".\n" + countNotes(r)
}

// countNotes lists, per load whose counters are known, the responder's
// and the pushers' packet counters: where the pushers' packets were lost.
func countNotes(r Result) string {
	var s string
	for _, l := range r.Loads {
		if l.CountsKnown {
			s += fmt.Sprintf("\n%d pushers, packets: responder %s; pushers (sum) %s.\n", l.Peers, l.Responder, l.Pushers)
		}
	}
	return s
}

// Machine describes where the numbers come from.
type Machine struct {
	CPUs    int
	CPU     string
	Kernel  string
	Go      string
	LoadAvg string // /proc/loadavg before the run: the machine is shared
	Date    time.Time
}

// ThisMachine reads the machine description; fields it cannot read say so.
func ThisMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), Date: time.Now().UTC(), CPU: "unknown", Kernel: "unknown", LoadAvg: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}

// Report is everything the section shows.
type Report struct {
	Command  string
	Machine  Machine
	Tools    []string      // versions of iperf3, ping, wg, ...
	Duration time.Duration // of each load
	Ping     time.Duration // interval between echoes
	Results  []Result
}

// Markdown renders the report as the BENCHMARKS.md section, heading
// included.
func (r Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", SectionHeading)
	fmt.Fprintf(&b, "Reproduce (root; needs iperf3, ping, wireguard-tools; fetches wireguard-go and Nebula from the Go module proxy):\n\n```\n%s\n```\n\n", r.Command)
	m := r.Machine
	fmt.Fprintf(&b, "- Date: %s\n", m.Date.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Machine: %d CPUs (`nproc`), %s, kernel %s, %s; load average before the run %s (the machine is shared, so numbers are noisy)\n",
		m.CPUs, m.CPU, m.Kernel, m.Go, m.LoadAvg)
	for _, t := range r.Tools {
		fmt.Fprintf(&b, "- %s\n", t)
	}
	b.WriteString("- Goal (project brief): throughput at least wireguard-go's; with 10 peers pushing, RTT under 5 ms; daemon memory in tens of MiB.\n")
	fmt.Fprintf(&b, "- Topology: one responder and N initiators on the testbed's internet segment (veth + bridge, one namespace each), plus one idle peer that only pings; every tunnel has MTU 1420. Each initiator runs `iperf3 -c` (TCP, %s) at its own iperf3 server on the responder, all at once; throughput is the receivers' sum. RTT is `ping` (an echo every %s, starting 1 s into the load) through the tunnel, from the idle peer and from a pushing initiator. Memory is the responder daemon's VmRSS (peak of samples every 250 ms during the load) and VmHWM (peak since it started). Daemon CPU is the user+system time of all the system's daemons (every node; for cyphonic also the idle cloud) over the load, per GB the flows moved.\n\n", r.Duration, r.Ping)
	for _, res := range r.Results {
		writeResult(&b, res)
	}
	return b.String()
}

func writeResult(b *strings.Builder, r Result) {
	fmt.Fprintf(b, "### %s", r.System)
	if r.Version != "" {
		fmt.Fprintf(b, " (%s)", r.Version)
	}
	b.WriteString("\n\n")
	if r.Pending != "" {
		// One line: a multi-line compiler error would break the Markdown.
		fmt.Fprintf(b, "Pending: %s\n\n", strings.Join(strings.Fields(r.Pending), " "))
		return
	}
	b.WriteString("| initiators pushing | TCP throughput, sum (per flow) | RTT idle peer min/avg/max/p99 | RTT pushing peer min/avg/max/p99 | responder RSS peak / HWM | daemon CPU per GB |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	fmt.Fprintf(b, "| 0 | – | %s | – | %s / %s | – |\n", formatRTT(r.Idle), mib(r.IdleMem.RSS), mib(r.IdleMem.HWM))
	for _, l := range r.Loads {
		flows := make([]string, len(l.PerPeer))
		for i, f := range l.PerPeer {
			flows[i] = fmt.Sprintf("%.0f", f/1e6)
		}
		fmt.Fprintf(b, "| %d | %.0f Mbit/s (%s) | %s | %s | %s / %s | %.1f s (%.1f s over %.2f GB) |\n", l.Peers, l.Aggregate/1e6,
			strings.Join(flows, ", "), formatRTT(l.IdlePeer), formatRTT(l.PushingPeer), mib(l.Memory.RSS), mib(l.Memory.HWM),
			l.CPUPerGB(), l.CPU.Seconds(), l.Bytes/1e9)
	}
	b.WriteString("\n")
	if n := gcNotes(r); n != "" {
		b.WriteString(n + "\n")
	}
}

// formatRTT is "min/avg/max/p99 ms", with the loss when there was any.
func formatRTT(r RTT) string {
	if r.Sent == 0 {
		return "n/a"
	}
	s := fmt.Sprintf("%s/%s/%s/%s ms", ms(r.Min), ms(r.Avg), ms(r.Max), ms(r.P99))
	if r.Received < r.Sent {
		s += fmt.Sprintf(" (%.0f%% lost)", 100*r.Loss())
	}
	return s
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// ReplaceSection returns doc with the section under heading (up to the
// next heading of the same or a higher level) replaced by section, which
// starts with that heading. A doc without the section gets it appended.
func ReplaceSection(doc, heading, section string) string {
	section = strings.TrimRight(section, "\n") + "\n"
	level := len(heading) - len(strings.TrimLeft(heading, "#"))
	lines := strings.SplitAfter(doc, "\n")
	start, end := -1, len(lines)
	fenced := false // a "## " inside a code block is not a heading
	for i, line := range lines {
		trimmed := strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(trimmed, "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		if start < 0 {
			if trimmed == heading {
				start = i
			}
			continue
		}
		if n := len(trimmed) - len(strings.TrimLeft(trimmed, "#")); n > 0 && n <= level && strings.HasPrefix(trimmed[n:], " ") {
			end = i
			break
		}
	}
	if start < 0 {
		if doc != "" && !strings.HasSuffix(doc, "\n") {
			doc += "\n"
		}
		if doc != "" {
			doc += "\n"
		}
		return doc + section
	}
	rest := strings.Join(lines[end:], "")
	if rest != "" {
		section += "\n"
	}
	return strings.Join(lines[:start], "") + section + rest
}
