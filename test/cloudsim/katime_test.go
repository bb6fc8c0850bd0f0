package cloudsim

import (
	"bytes"
	"math"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestKeepaliveServiceTimeCountsQueueWait: the cloud's keepalive histogram
// (nms.KeepaliveTimeName) runs from the kernel's receipt of the datagram,
// not from when NMS got round to it. The cloud, in a process of its own,
// is stopped (SIGSTOP) while a keepalive arrives and continued 300 ms
// later: the keepalive's recorded service time must exceed 200 ms. Timed
// from the socket read (no kernel stamp) it would be well under a
// millisecond; not recorded (no stamp, or the reply not counted), the
// histogram would not grow by one.
func TestKeepaliveServiceTimeCountsQueueWait(t *testing.T) {
	c := startLoadCloud(t)
	n, err := loadNode(c.ca, "ka.load.cyphonic", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if _, err := n.Login(c.as, false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Register(false); err != nil {
		t.Fatal(err)
	}

	// One keepalive while the cloud runs: counted, and quick.
	h0 := kaHistogram(c.metrics(t, false))
	if _, err := n.Keepalive(); err != nil {
		t.Fatal(err)
	}
	h1 := kaHistogram(c.metrics(t, false))
	if d := h1.since(h0); d.n() != 1 || d.over(0.2) != 0 {
		t.Fatalf("keepalive with the cloud running: recorded %v, want one under 200 ms", d)
	}

	// One while it is stopped: the datagram waits in the socket's queue.
	// Continued before the node's first retransmission (500 ms), so one
	// copy waits.
	const stopped = 300 * time.Millisecond
	if err := syscall.Kill(c.pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	cont := func() { syscall.Kill(c.pid, syscall.SIGCONT) }
	defer cont()
	// kill returns before the signal stops the process: wait until it has.
	waitStopped(t, c.pid)
	done := make(chan error, 1)
	sent0 := n.Sends()
	start := time.Now()
	go func() { _, err := n.Keepalive(); done <- err }()
	// On a loaded machine the goroutine may run late: the 300 ms count
	// from the datagram's send, not from the go statement.
	for n.Sends() == sent0 {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the node sent no keepalive in 5 s")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(stopped)
	cont()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	d := kaHistogram(c.metrics(t, false)).since(h1)
	// n may be 2 on a slow machine: the node's retransmission at 500 ms,
	// answered at once, is the second; the first must be over 200 ms.
	if d.n() < 1 || d.n() > 2 || d.over(0.2) != 1 {
		t.Fatalf("keepalive that waited %v in the stopped cloud's socket queue (answered after %v): recorded %v, want one over 200 ms", stopped, took, d)
	}
	t.Logf("waited %v in the queue, answered after %v: recorded %v", stopped, took, d)
}

// waitStopped waits until process pid is stopped (state T in
// /proc/PID/stat), for at most 5 s.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("cloud process %d: %v", pid, err)
		}
		// The state follows the command's closing parenthesis.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'T' {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cloud process %d not stopped 5 s after SIGSTOP: %s", pid, b)
		}
	}
}

// TestHistogramQuantile: the load tool's reading of a scraped histogram
// (cumulative buckets, the delta of two scrapes) interpolates within a
// bucket as Prometheus's histogram_quantile does.
func TestHistogramQuantile(t *testing.T) {
	le := []float64{0.001, 0.002, 0.010, math.Inf(1)}
	scrape := func(counts ...float64) map[string]float64 {
		m := map[string]float64{}
		for i, c := range counts {
			k := strconv.FormatFloat(le[i], 'g', -1, 64)
			if math.IsInf(le[i], 1) {
				k = "+Inf"
			}
			m[`cyphonic_nms_keepalive_service_seconds_bucket{le="`+k+`"}`] = c
		}
		return m
	}
	base := kaHistogram(scrape(10, 10, 10, 10))
	h := kaHistogram(scrape(60, 100, 110, 110)).since(base) // 50 ≤ 1 ms, 40 in (1, 2], 10 in (2, 10]
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{
		{0.5, time.Millisecond},
		{0.7, 1500 * time.Microsecond},
		{0.95, 6 * time.Millisecond},
		{1, 10 * time.Millisecond},
	} {
		if got := h.quantile(tt.q); got != tt.want {
			t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if h.n() != 100 || h.over(0.002) != 10 || h.over(0.010) != 0 {
		t.Errorf("n %v, over 2 ms %v, over 10 ms %v; want 100, 10, 0", h.n(), h.over(0.002), h.over(0.010))
	}
	if over := kaHistogram(scrape(0, 0, 0, 5)).quantile(0.5); over != 10*time.Millisecond {
		t.Errorf("all past the last bound: %v, want that bound", over)
	}
}
