package perf

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"time"
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
