package perf

import (
	"strings"
	"testing"
	"time"
)

func TestReplaceSection(t *testing.T) {
	const sec = SectionHeading + "\n\nnew body\n"
	tests := []struct {
		name, doc, want string
	}{
		{"empty doc", "", sec},
		{"appended after others", "# Benchmarks\n\n## Other\n\nx\n", "# Benchmarks\n\n## Other\n\nx\n\n" + sec},
		{"no trailing newline", "# B", "# B\n\n" + sec},
		{
			"replaced, neighbours kept",
			"# B\n\n## A\n\na\n\n" + SectionHeading + "\n\nold\n### wg\nold table\n\n## C\n\nc\n",
			"# B\n\n## A\n\na\n\n" + sec + "\n## C\n\nc\n",
		},
		{
			"replaced at the end",
			"# B\n\n" + SectionHeading + "\n\nold\n",
			"# B\n\n" + sec,
		},
		{
			"a heading inside a code block is not the end",
			SectionHeading + "\n\n```\n## not a heading\n```\nold\n## Next\n",
			sec + "\n## Next\n",
		},
		{
			"a heading-like line without a space is not a heading",
			SectionHeading + "\n\n##nope\nold\n",
			sec,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ReplaceSection(tt.doc, SectionHeading, sec); got != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestReplaceSectionIsIdempotent(t *testing.T) {
	doc := "# B\n\n## A\n\na\n"
	once := ReplaceSection(doc, SectionHeading, SectionHeading+"\n\nbody\n")
	if twice := ReplaceSection(once, SectionHeading, SectionHeading+"\n\nbody\n"); twice != once {
		t.Errorf("second replace changed the doc:\n%q\nvs\n%q", twice, once)
	}
}

func TestMarkdown(t *testing.T) {
	ms := time.Millisecond
	r := Report{
		Command:  "CYPHONIC_PERF=1 go test ./test/perf -run TestPerf",
		Machine:  Machine{CPUs: 2, CPU: "Test CPU", Kernel: "6.1", Go: "go1.26", LoadAvg: "1.0 1.0 1.0", Date: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)},
		Tools:    []string{"iperf 3.12"},
		Duration: 10 * time.Second,
		Results: []Result{
			{
				System: "wireguard-go", Version: "wireguard-go v0.0.20250522",
				Idle:    RTT{Sent: 10, Received: 10, Min: ms / 2, Avg: ms, Max: 2 * ms, P99: 2 * ms},
				IdleMem: Memory{RSS: 8 << 20, HWM: 9 << 20},
				Loads: []Load{{
					Peers: 3, PerPeer: []float64{300e6, 200e6, 100e6}, Aggregate: 600e6,
					IdlePeer:    RTT{Sent: 80, Received: 76, Min: ms, Avg: 20 * ms, Max: 40 * ms, P99: 38 * ms},
					PushingPeer: RTT{Sent: 80, Received: 80, Min: ms, Avg: 30 * ms, Max: 50 * ms, P99: 45 * ms},
					Memory:      Memory{RSS: 30 << 20, HWM: 32 << 20},
					CPU:         15 * time.Second, Bytes: 750e6,
				}},
			},
			{System: "cyphonic", Pending: "binary not ready:\n  undefined: runDemo"},
			{
				System: "nebula", Idle: RTT{Sent: 1, Received: 1}, AfterMem: Memory{RSS: 20 << 20},
				Loads: []Load{{Peers: 1, PerPeer: []float64{1e6}, Aggregate: 1e6, GCs: 0, GCsKnown: true},
					{Peers: 10, PerPeer: []float64{1e6}, Aggregate: 1e6, GCs: 654, GCsKnown: true}},
			},
		},
	}
	md := r.Markdown()
	for _, want := range []string{
		SectionHeading + "\n",
		"```\nCYPHONIC_PERF=1 go test ./test/perf -run TestPerf\n```",
		"2 CPUs (`nproc`), Test CPU, kernel 6.1, go1.26",
		"- iperf 3.12\n",
		"### wireguard-go (wireguard-go v0.0.20250522)",
		"| 0 | – | 0.50/1.00/2.00/2.00 ms | – | 8.0 MiB / 9.0 MiB | – |\n",
		"| 3 | 600 Mbit/s (300, 200, 100) | 1.00/20.00/40.00/38.00 ms (5% lost) | 1.00/30.00/50.00/45.00 ms | 30.0 MiB / 32.0 MiB | 20.0 s (15.0 s over 0.75 GB) |\n",
		"### cyphonic\n\nPending: binary not ready: undefined: runDemo\n",
		"\nresponder GC cycles during the load: 1 pushers 0, 10 pushers 654; responder RSS 3s after the loads: 20.0 MiB.\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Count(md, "GC cycles") != 1 {
		t.Errorf("GC notes under a table without GC counts:\n%s", md)
	}
	if !strings.HasPrefix(ReplaceSection("", SectionHeading, md), SectionHeading) {
		t.Error("the rendered section does not round-trip through ReplaceSection")
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	tests := []struct {
		name    string
		mod     func(*Config)
		pushers int
		wantErr bool
	}{
		{"default", func(*Config) {}, 10, false},
		{"too few pushers", func(*Config) {}, 3, true},
		{"fractional seconds", func(c *Config) { c.Duration = 2500 * time.Millisecond }, 10, true},
		{"too short", func(c *Config) { c.Duration = time.Second }, 10, true},
		{"too long for ExecTimeout", func(c *Config) { c.Duration = MaxDuration + time.Second }, 10, true},
		{"zero peers", func(c *Config) { c.Peers = []int{0} }, 10, true},
		{"no peers", func(c *Config) { c.Peers = nil }, 10, true},
		{"ping too fast", func(c *Config) { c.PingInterval = time.Millisecond }, 10, true},
		{"rate", func(c *Config) { c.Rate = "150M" }, 10, false},
		{"rate without unit", func(c *Config) { c.Rate = "1000000" }, 10, false},
		{"rate as a flag", func(c *Config) { c.Rate = "-R" }, 10, true},
		{"rate with two units", func(c *Config) { c.Rate = "1MM" }, 10, true},
		{"rate unit alone", func(c *Config) { c.Rate = "M" }, 10, true},
	}
	for _, tt := range tests {
		c := ok
		c.Peers = append([]int(nil), ok.Peers...)
		tt.mod(&c)
		if err := c.Validate(tt.pushers); (err != nil) != tt.wantErr {
			t.Errorf("%s: err = %v, want error %v", tt.name, err, tt.wantErr)
		}
	}
}

func TestPingArgs(t *testing.T) {
	got := strings.Join(pingArgs("100.96.0.1", 80, 100*time.Millisecond), " ")
	if want := "ping -n -c 80 -i 0.100 -w 11 100.96.0.1"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if c := (Config{Duration: 10 * time.Second, PingInterval: 100 * time.Millisecond}).pingCount(); c != 80 {
		t.Errorf("pingCount = %d, want 80", c)
	}
	if c := (Config{Duration: 2 * time.Second, PingInterval: 100 * time.Millisecond}).pingCount(); c != 5 {
		t.Errorf("pingCount of a smoke run = %d, want the floor 5", c)
	}
}
