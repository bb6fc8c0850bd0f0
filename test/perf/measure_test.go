package perf

import (
	"errors"
	"os"
	"reflect"
	"testing"
	"time"
)

const pingOK = `PING 100.96.0.1 (100.96.0.1) 56(84) bytes of data.
64 bytes from 100.96.0.1: icmp_seq=1 ttl=64 time=0.512 ms
64 bytes from 100.96.0.1: icmp_seq=2 ttl=64 time=38.2 ms
64 bytes from 100.96.0.1: icmp_seq=4 ttl=64 time=1.30 ms
64 bytes from 100.96.0.1: icmp_seq=5 ttl=64 time=2 ms

--- 100.96.0.1 ping statistics ---
5 packets transmitted, 4 received, 20% packet loss, time 404ms
rtt min/avg/max/mdev = 0.512/10.503/38.200/16.000 ms
`

const pingNone = `PING 100.96.0.1 (100.96.0.1) 56(84) bytes of data.

--- 100.96.0.1 ping statistics ---
3 packets transmitted, 0 received, 100% packet loss, time 2040ms
`

const pingErrors = `PING 198.51.100.77 (198.51.100.77) 56(84) bytes of data.
From 198.51.100.1 icmp_seq=1 Destination Port Unreachable

--- 198.51.100.77 ping statistics ---
1 packets transmitted, 0 received, +1 errors, 100% packet loss, time 0ms
`

func TestParsePing(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	tests := []struct {
		name    string
		in      string
		want    RTT
		wantErr error
	}{
		{"replies and a loss", pingOK, RTT{Sent: 5, Received: 4, Min: ms(0.512), Avg: ms((0.512 + 38.2 + 1.30 + 2) / 4), Max: ms(38.2), P99: ms(38.2)}, nil},
		{"no reply", pingNone, RTT{}, ErrParse},
		{"only errors", pingErrors, RTT{}, ErrParse},
		{"empty", "", RTT{}, ErrParse},
		{"garbage", "time=1 ms\nicmp_seq=x\n", RTT{}, ErrParse},
		{"bad number", "64 bytes from x: icmp_seq=1 ttl=64 time=1.2.3 ms\n1 packets transmitted, 1 received\n", RTT{}, ErrParse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePing([]byte(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			// Sums of float-derived durations can differ by a nanosecond.
			if d := got.Avg - tt.want.Avg; d > 1 || d < -1 {
				t.Errorf("avg = %v, want %v", got.Avg, tt.want.Avg)
			}
			got.Avg = tt.want.Avg
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRTTLoss(t *testing.T) {
	for _, tt := range []struct {
		r    RTT
		want float64
	}{{RTT{}, 0}, {RTT{Sent: 4, Received: 4}, 0}, {RTT{Sent: 5, Received: 4}, 0.2}, {RTT{Sent: 2}, 1}} {
		if got := tt.r.Loss(); got != tt.want {
			t.Errorf("%+v.Loss() = %v, want %v", tt.r, got, tt.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"none", nil, 99, 0},
		{"one", []time.Duration{7}, 99, 7},
		{"p99 of 100", hundred, 99, 99 * time.Millisecond},
		{"p50 of 100", hundred, 50, 50 * time.Millisecond},
		{"p100 of 100", hundred, 100, 100 * time.Millisecond},
		{"p99 of 10 is the max", hundred[:10], 99, 10 * time.Millisecond},
		{"p0 is the min", hundred, 0, time.Millisecond},
	}
	for _, tt := range tests {
		if got := Percentile(tt.in, tt.p); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestParseIperf3(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    float64
		wantErr bool
	}{
		{"ok", `{"start":{},"end":{"sum_sent":{"bits_per_second":2e9},"sum_received":{"bytes":1e9,"seconds":10.04,"bits_per_second":1.5e9}}}`, 1.5e9, false},
		{"refused", `{"start":{"connected":[]},"intervals":[],"end":{},"error":"unable to connect to server: Connection refused"}`, 0, true},
		{"no sum", `{"end":{}}`, 0, true},
		{"negative", `{"end":{"sum_received":{"seconds":1,"bits_per_second":-1}}}`, 0, true},
		{"truncated", `{"end":{"sum_rec`, 0, true},
		{"empty", ``, 0, true},
	}
	for _, tt := range tests {
		got, err := ParseIperf3([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s: got %v, %v; want %v, error %v", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseProcStatus(t *testing.T) {
	const status = "Name:\twireguard\nVmPeak:\t 1300000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t9\n"
	tests := []struct {
		name    string
		in      string
		want    Memory
		wantErr bool
	}{
		{"ok", status, Memory{RSS: 10 << 20, HWM: 20 << 20}, false},
		{"kernel thread has no Vm lines", "Name:\tkthreadd\nThreads:\t1\n", Memory{}, true},
		{"bad unit", "VmRSS:\t10 MB\nVmHWM:\t10 kB\n", Memory{}, true},
		{"bad number", "VmRSS:\tx kB\nVmHWM:\t10 kB\n", Memory{}, true},
		{"huge", "VmRSS:\t99999999999999999999 kB\nVmHWM:\t10 kB\n", Memory{}, true},
	}
	for _, tt := range tests {
		got, err := ParseProcStatus([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s: got %+v, %v; want %+v, error %v", tt.name, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !errors.Is(err, ErrParse) {
			t.Errorf("%s: error %v is not ErrParse", tt.name, err)
		}
	}
}

func TestParseProcStatCPU(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"ok", "1234 (cyphonic) S 1 1234 1234 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 9 0 100 0 0", 3250 * time.Millisecond, false},
		{"name with spaces and parens", "77 (a) b (c)) R 1 77 77 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5", 30 * time.Millisecond, false},
		{"no name", "1234 cyphonic S 1", 0, true},
		{"short", "1234 (x) S 1 2 3", 0, true},
		{"not a number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 u s 0 0", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseProcStatCPU([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s: got %v, %v; want %v, error %v", tt.name, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !errors.Is(err, ErrParse) {
			t.Errorf("%s: error %v is not ErrParse", tt.name, err)
		}
	}
}

func TestDaemonsCPUOfSelf(t *testing.T) {
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) { // burn a little CPU so there is some to count
	}
	self := processName(os.Getpid())
	cpu, err := daemonsCPU(self, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cpu <= 0 {
		t.Errorf("own CPU time %v, want > 0", cpu)
	}
	own, ok := inode("/proc/self/ns/net")
	if !ok {
		t.Fatal("no inode for /proc/self/ns/net")
	}
	if cpu, err := daemonsCPU(self, map[uint64]bool{own: true}); err != nil || cpu <= 0 {
		t.Errorf("own CPU time in own namespace %v, %v; want > 0", cpu, err)
	}
	// Another run's daemons of the same name, in namespaces not ours.
	if cpu, err := daemonsCPU(self, map[uint64]bool{own + 1: true}); err != nil || cpu != 0 {
		t.Errorf("CPU time of processes outside the namespaces: %v, %v; want 0", cpu, err)
	}
}

func TestReadMemoryOfSelf(t *testing.T) {
	m, err := readMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS == 0 || m.HWM < m.RSS {
		t.Errorf("own memory %+v: want RSS > 0 and HWM >= RSS", m)
	}
}

func FuzzParsers(f *testing.F) {
	for _, s := range []string{pingOK, pingNone, pingErrors, `{"end":{"sum_received":{"seconds":1,"bits_per_second":1}}}`, "VmRSS:\t1 kB\nVmHWM:\t2 kB\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := ParsePing(b); err == nil && (r.Min > r.Avg || r.Avg > r.Max || r.P99 > r.Max || r.P99 < r.Min) {
			t.Errorf("inconsistent %+v", r)
		}
		if bps, err := ParseIperf3(b); err == nil && bps < 0 {
			t.Errorf("negative throughput %v", bps)
		}
		_, _ = ParseProcStatus(b)
		if d, err := ParseProcStatCPU(b); err == nil && d < 0 {
			t.Errorf("negative cpu time %v", d)
		}
	})
}

func TestParseNumGC(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int
		wantErr bool
	}{
		{"memstats", "heap profile: 1: 2 [3: 4] @ heap/1048576\n# runtime.MemStats\n# Alloc = 7265480\n# NumGC = 654\n# NumForcedGC = 0\n", 654, false},
		{"no gc yet", "# NumGC = 0\n", 0, false},
		{"missing", "heap profile: 1: 2 [3: 4] @ heap/1048576\n", 0, true},
		{"garbled", "# NumGC = many\n", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseNumGC([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s: ParseNumGC = %d, %v; want %d, error %v", tt.name, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !errors.Is(err, ErrParse) {
			t.Errorf("%s: error %v is not ErrParse", tt.name, err)
		}
	}
}

func TestParseSojournCounts(t *testing.T) {
	const head = "sojourn per stage over 10.387s (p50/p90/p99: upper edges of power-of-two µs buckets)\n" +
		"stage                        class    batches       mean        p50        p90        p99        max\n"
	tests := []struct {
		name    string
		in      string
		want    Counts
		wantErr bool
	}{
		{"drops", head + "packets received 1413835, lost on the way (replay window) 91788; drops: no-route 1 queue-full 93521 queue-delay 4532\n",
			Counts{Received: 1413835, Lost: 91788, Drops: map[string]uint64{"no-route": 1, "queue-full": 93521, "queue-delay": 4532}}, false},
		{"unopened", head + "packets received 9, lost on the way (replay window) 4, of them shed here unopened 3; drops: queue-full 3\n",
			Counts{Received: 9, Lost: 4, Unopened: 3, Drops: map[string]uint64{"queue-full": 3}}, false},
		{"none", head + "packets received 5, lost on the way (replay window) 0; drops:\n",
			Counts{Received: 5, Drops: map[string]uint64{}}, false},
		{"odd fields", head + "packets received 5, lost on the way (replay window) 0; drops: queue-full\n", Counts{}, true},
		{"bad count", head + "packets received 5, lost on the way (replay window) 0; drops: queue-full x\n", Counts{}, true},
		{"off", "sojourn recording is off: GET /debug/sojourn?reset=1 switches it on\n", Counts{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSojournCounts([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseStatusCounts(t *testing.T) {
	const status = `{"session":{},"peers":[
		{"fqdn":"a","tx_packets":100,"rx_packets":7,"lost":2,"unopened":1,"drops":{"queue-full":3,"queue-delay":1}},
		{"fqdn":"b","tx_packets":50,"rx_packets":1,"lost":0,"drops":{"queue-full":4}}],
		"drops":{"no-route":5},"hold":{}}`
	got, err := ParseStatusCounts([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	want := Counts{Sent: 150, Received: 8, Lost: 2, Unopened: 1, Drops: map[string]uint64{"queue-full": 7, "queue-delay": 1, "no-route": 5}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if _, err := ParseStatusCounts([]byte("<html>")); err == nil {
		t.Fatal("no error for a non-JSON status")
	}
	// A load's share: after - before, a counter that fell counting 0.
	before := Counts{Sent: 100, Received: 10, Lost: 1, Drops: map[string]uint64{"queue-full": 3}, Kernel: map[string]uint64{"SndbufErrors": 9}}
	d := got.Sub(before)
	wantD := Counts{Sent: 50, Received: 0, Lost: 1, Unopened: 1, Drops: map[string]uint64{"queue-full": 4, "queue-delay": 1, "no-route": 5}, Kernel: map[string]uint64{}}
	if !reflect.DeepEqual(d, wantD) {
		t.Fatalf("Sub = %+v, want %+v", d, wantD)
	}
	var sum Counts
	sum.Add(d)
	sum.Add(d)
	if sum.Sent != 100 || sum.Drops["queue-full"] != 8 || sum.String() != "sent 100, received 0, lost on the way 2 (2 of them shed unopened); drops: no-route 10 queue-delay 2 queue-full 8" {
		t.Fatalf("sum of two: %+v: %q", sum, sum.String())
	}
}

func TestParseKernelCounters(t *testing.T) {
	const snmp = "Tcp: RtoAlgorithm RtoMin RetransSegs\nTcp: 1 200 17\n" +
		"Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n" +
		"Udp: 244492 0 3 56242 2 1 0 0 4\n" +
		"UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n" +
		"UdpLite: 9 9 9 9 9 9 9 9 9\n" +
		"TcpExt: SyncookiesSent TCPTimeouts TCPLostRetransmit\nTcpExt: 5 6 7\n"
	got, err := ParseKernelCounters([]byte(snmp))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"Udp.InErrors": 3, "Udp.RcvbufErrors": 2, "Udp.SndbufErrors": 1, "Udp.MemErrors": 4,
		"Tcp.RetransSegs": 17, "TcpExt.TCPTimeouts": 6, "TcpExt.TCPLostRetransmit": 7}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"Tcp: 1\n", "Udp: A B\nUdp: 1\n", "Udp: InErrors\nUdp: x\n"} {
		if _, err := ParseKernelCounters([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
