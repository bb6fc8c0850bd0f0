package perf

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/node"
)

// ErrParse means a tool's output did not have the expected shape.
var ErrParse = errors.New("perf: parse")

// RTT summarises one ping run. Percentiles come from the per-echo times,
// not ping's own summary, which has no p99.
type RTT struct {
	Sent, Received     int
	Min, Avg, Max, P99 time.Duration
}

// Loss is the share of echoes that got no reply, 0 to 1.
func (r RTT) Loss() float64 {
	if r.Sent == 0 {
		return 0
	}
	return float64(r.Sent-r.Received) / float64(r.Sent)
}

var (
	// "64 bytes from 100.96.0.1: icmp_seq=3 ttl=64 time=0.245 ms"
	pingReply = regexp.MustCompile(`icmp_seq=\d+ .*time=([0-9.]+) ms`)
	// "10 packets transmitted, 9 received, 10% packet loss, time 904ms"
	pingTotals = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)
)

// ParsePing reads iputils ping output (without -q) into an RTT. A run with
// no reply at all is an error: there is no latency to report.
func ParsePing(out []byte) (RTT, error) {
	var r RTT
	var samples []time.Duration
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Bytes()
		if m := pingReply.FindSubmatch(line); m != nil {
			ms, err := strconv.ParseFloat(string(m[1]), 64)
			// Beyond an hour is not a round trip but a corrupt line (and
			// would overflow a Duration).
			if err != nil || ms < 0 || ms > float64(time.Hour/time.Millisecond) {
				return RTT{}, fmt.Errorf("%w: ping time %q", ErrParse, m[1])
			}
			samples = append(samples, time.Duration(ms*float64(time.Millisecond)))
			continue
		}
		if m := pingTotals.FindSubmatch(line); m != nil {
			r.Sent, _ = strconv.Atoi(string(m[1]))
			r.Received, _ = strconv.Atoi(string(m[2]))
		}
	}
	if r.Sent == 0 {
		return RTT{}, fmt.Errorf("%w: no ping totals line", ErrParse)
	}
	if len(samples) == 0 {
		return RTT{}, fmt.Errorf("%w: no echo replies (%d sent)", ErrParse, r.Sent)
	}
	slices.Sort(samples)
	var sum float64 // a Duration sum could overflow on long runs
	for _, s := range samples {
		sum += float64(s)
	}
	r.Min, r.Max = samples[0], samples[len(samples)-1]
	// Clamped: float rounding must not put the mean outside the samples.
	r.Avg = min(max(time.Duration(sum/float64(len(samples))), r.Min), r.Max)
	r.P99 = Percentile(samples, 99)
	return r, nil
}

// Percentile is the nearest-rank p-th percentile (0 < p <= 100) of sorted
// samples; zero for none.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// iperf3Result is the part of iperf3's -J output the harness reads.
type iperf3Result struct {
	Error string `json:"error"`
	End   struct {
		SumReceived struct {
			Bytes         float64 `json:"bytes"`
			Seconds       float64 `json:"seconds"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
}

// ParseIperf3 returns the receiver-side throughput, in bits per second, of
// an iperf3 -J client run: what actually crossed the tunnel.
func ParseIperf3(out []byte) (float64, error) {
	var r iperf3Result
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("%w: iperf3 json: %v", ErrParse, err)
	}
	if r.Error != "" {
		return 0, fmt.Errorf("perf: iperf3: %s", r.Error)
	}
	bps := r.End.SumReceived.BitsPerSecond
	if r.End.SumReceived.Seconds <= 0 || bps < 0 || math.IsNaN(bps) || math.IsInf(bps, 0) {
		return 0, fmt.Errorf("%w: iperf3 json has no receiver sum", ErrParse)
	}
	return bps, nil
}

// Memory is a process's resident set from /proc/PID/status, in bytes.
type Memory struct {
	RSS, HWM uint64 // VmRSS now, VmHWM (peak RSS)
}

// ParseProcStatus reads VmRSS and VmHWM from /proc/PID/status.
func ParseProcStatus(data []byte) (Memory, error) {
	var m Memory
	var seen int
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, val, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok {
			continue
		}
		var dst *uint64
		switch string(key) {
		case "VmRSS":
			dst = &m.RSS
		case "VmHWM":
			dst = &m.HWM
		default:
			continue
		}
		f := bytes.Fields(val) // "  12345 kB"
		if len(f) != 2 || string(f[1]) != "kB" {
			return Memory{}, fmt.Errorf("%w: %s: %q", ErrParse, key, val)
		}
		kb, err := strconv.ParseUint(string(f[0]), 10, 54)
		if err != nil {
			return Memory{}, fmt.Errorf("%w: %s: %v", ErrParse, key, err)
		}
		*dst = kb << 10
		seen++
	}
	if seen != 2 {
		return Memory{}, fmt.Errorf("%w: status lacks VmRSS or VmHWM", ErrParse)
	}
	return m, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times: 100 on
// every Linux architecture Go runs on (the kernel fixes it for userspace).
const clockTicks = 100

// ParseProcStatCPU reads the CPU time (user + system) a process has used
// from /proc/PID/stat. The command name (field 2) may hold spaces and
// parentheses, so fields are counted from its last ')'.
func ParseProcStatCPU(data []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: stat has no command name", ErrParse)
	}
	f := bytes.Fields(data[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: stat has %d fields after the name", ErrParse, len(f))
	}
	var ticks uint64
	for _, s := range f[11:13] { // fields 14 (utime) and 15 (stime)
		n, err := strconv.ParseUint(string(s), 10, 63)
		if err != nil {
			return 0, fmt.Errorf("%w: stat cpu time %q: %v", ErrParse, s, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// ParseNumGC reads "# NumGC = N" from a Go heap profile in text form
// (pprof's heap?debug=1, which ends with the runtime's MemStats).
func ParseNumGC(profile []byte) (int, error) {
	sc := bufio.NewScanner(bytes.NewReader(profile))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("# NumGC = ")); ok {
			n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil || n < 0 {
				return 0, fmt.Errorf("%w: NumGC %q", ErrParse, v)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("%w: no NumGC in the heap profile", ErrParse)
}

// Counts are a cyphonic daemon's packet counters over one load, from the
// header line of its /debug/sojourn report, with its namespace's kernel
// UDP error counters beside them: where the packets a flow sent were lost.
type Counts struct {
	Sent     uint64 // data packets written to the socket (status only)
	Received uint64 // data packets authenticated and taken
	// Lost: counters the daemon's replay windows saw no packet for. That
	// includes the packets the daemon itself refused before opening them
	// (the budget's queue-full at the reader, Unopened), whose counters it
	// never reads, not only those lost on the wire or at the sender.
	Lost uint64
	// Unopened: of Lost, the packets the daemon shed before opening them
	// (a binary before the counter reports 0): Lost - Unopened was lost
	// on the way.
	Unopened uint64
	Drops    map[string]uint64 // by reason name ("queue-full", "queue-delay", ...)
	// Kernel: the namespace's kernel counters (kernelCounters: UDP socket
	// drops, TCP retransmits and timeouts) added over the load.
	Kernel map[string]uint64
}

// Add sums o into c (the pushers' counters into one).
func (c *Counts) Add(o Counts) {
	c.Sent += o.Sent
	c.Received += o.Received
	c.Lost += o.Lost
	c.Unopened += o.Unopened
	addCounts(&c.Drops, o.Drops)
	addCounts(&c.Kernel, o.Kernel)
}

func addCounts(dst *map[string]uint64, src map[string]uint64) {
	for k, v := range src {
		if *dst == nil {
			*dst = make(map[string]uint64)
		}
		(*dst)[k] += v
	}
}

// String is "received R, lost L; drops: a 1, b 2; kernel: X 3" with the
// reasons sorted and zero counts left out.
func (c Counts) String() string {
	s := fmt.Sprintf("received %d, lost on the way %d (%d of them shed unopened); drops:", c.Received, c.Lost, c.Unopened)
	if c.Sent > 0 {
		s = fmt.Sprintf("sent %d, ", c.Sent) + s
	}
	s += joinCounts(c.Drops)
	if k := joinCounts(c.Kernel); k != " none" {
		s += "; kernel:" + k
	}
	return s
}

func joinCounts(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if v > 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return " none"
	}
	slices.Sort(keys)
	var s string
	for _, k := range keys {
		s += fmt.Sprintf(" %s %d", k, m[k])
	}
	return s
}

// "packets received 1413835, lost on the way (replay window) 91788; drops: no-route 1 queue-full 93521"
// (binaries since s9-loss add ", of them shed here unopened N" after the lost count)
var sojournCounts = regexp.MustCompile(`^packets received (\d+), lost on the way \(replay window\) (\d+)(?:, of them shed here unopened (\d+))?; drops:(.*)$`)

// ParseSojournCounts reads the packet counters from a cyphonic daemon's
// /debug/sojourn report (its third line).
func ParseSojournCounts(report []byte) (Counts, error) {
	sc := bufio.NewScanner(bytes.NewReader(report))
	for sc.Scan() {
		m := sojournCounts.FindSubmatch(sc.Bytes())
		if m == nil {
			continue
		}
		c := Counts{Drops: make(map[string]uint64)}
		c.Received, _ = strconv.ParseUint(string(m[1]), 10, 64)
		c.Lost, _ = strconv.ParseUint(string(m[2]), 10, 64)
		if len(m[3]) > 0 {
			c.Unopened, _ = strconv.ParseUint(string(m[3]), 10, 64)
		}
		f := bytes.Fields(m[4])
		if len(f)%2 != 0 {
			return Counts{}, fmt.Errorf("%w: sojourn drops %q", ErrParse, m[4])
		}
		for i := 0; i < len(f); i += 2 {
			v, err := strconv.ParseUint(string(f[i+1]), 10, 64)
			if err != nil {
				return Counts{}, fmt.Errorf("%w: sojourn drop count %q", ErrParse, f[i+1])
			}
			c.Drops[string(f[i])] += v
		}
		return c, nil
	}
	return Counts{}, fmt.Errorf("%w: no packet counters in the sojourn report", ErrParse)
}

// kernelCounters are the /proc/net/snmp and /proc/net/netstat counters
// Counts.Kernel keeps, by line prefix: the UDP drops at the sockets, and
// the TCP senders' retransmits and timeouts (is a loss one fast
// retransmit, or a burst that ends in a retransmission timeout?).
var kernelCounters = map[string][]string{
	"Udp":    {"InErrors", "RcvbufErrors", "SndbufErrors", "MemErrors"},
	"Tcp":    {"RetransSegs"},
	"TcpExt": {"TCPTimeouts", "TCPLostRetransmit", "TCPSackRecovery", "TCPFastRetrans", "TCPSlowStartRetrans"},
}

// ParseKernelCounters reads kernelCounters from /proc/net/snmp and
// /proc/net/netstat (one after the other): each has a header line
// "Prefix: Name..." and a value line "Prefix: N...". The Udp line must be
// there; names are "Udp.InErrors", "TcpExt.TCPTimeouts" and so on.
func ParseKernelCounters(snmp []byte) (map[string]uint64, error) {
	m := make(map[string]uint64)
	names := make(map[string][][]byte)
	sc := bufio.NewScanner(bytes.NewReader(snmp))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		prefix, rest, ok := bytes.Cut(sc.Bytes(), []byte(": "))
		want := kernelCounters[string(prefix)]
		if !ok || want == nil {
			continue
		}
		f := bytes.Fields(rest)
		hdr, seen := names[string(prefix)]
		if !seen {
			names[string(prefix)] = f
			continue
		}
		if len(f) != len(hdr) {
			return nil, fmt.Errorf("%w: %s has %d names and %d values", ErrParse, prefix, len(hdr), len(f))
		}
		for i, n := range hdr {
			if slices.Contains(want, string(n)) {
				v, err := strconv.ParseUint(string(f[i]), 10, 64)
				if err != nil {
					return nil, fmt.Errorf("%w: %s %s %q", ErrParse, prefix, n, f[i])
				}
				m[string(prefix)+"."+string(n)] = v
			}
		}
	}
	if _, ok := m["Udp.InErrors"]; !ok {
		return nil, fmt.Errorf("%w: no Udp lines in snmp", ErrParse)
	}
	return m, nil
}

// diffCounts is after - before, per name (counters only grow; a smaller
// one, a reset, counts as 0).
func diffCounts(before, after map[string]uint64) map[string]uint64 {
	m := make(map[string]uint64, len(after))
	for k, v := range after {
		if v > before[k] {
			m[k] = v - before[k]
		}
	}
	return m
}

// ParseStatusCounts reads the packet counters, over all peers and the
// drops of none, from a cyphonic node's /debug/status JSON. Unlike the
// sojourn report's they are totals since the daemon started (Sub gives a
// load's share), and reading them switches no recording on.
func ParseStatusCounts(status []byte) (Counts, error) {
	var st node.Status
	if err := json.Unmarshal(status, &st); err != nil {
		return Counts{}, fmt.Errorf("%w: status json: %v", ErrParse, err)
	}
	c := Counts{Drops: maps.Clone(st.Drops)}
	for _, p := range st.Peers {
		c.Sent += p.TxPackets
		c.Received += p.RxPackets
		c.Lost += p.Lost
		c.Unopened += p.Unopened
		addCounts(&c.Drops, p.Drops)
	}
	return c, nil
}

// Sub is c - o counter by counter (o: the same daemon's counters before
// the load); a counter that fell (a peer restarted) counts as 0.
func (c Counts) Sub(o Counts) Counts {
	sub := func(a, b uint64) uint64 { return a - min(a, b) }
	return Counts{Sent: sub(c.Sent, o.Sent), Received: sub(c.Received, o.Received), Lost: sub(c.Lost, o.Lost), Unopened: sub(c.Unopened, o.Unopened),
		Drops: diffCounts(o.Drops, c.Drops), Kernel: diffCounts(o.Kernel, c.Kernel)}
}
