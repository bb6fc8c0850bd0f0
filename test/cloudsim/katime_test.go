package cloudsim

import (
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
	// copy is answered.
	const stopped = 300 * time.Millisecond
	if err := syscall.Kill(c.pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	cont := func() { syscall.Kill(c.pid, syscall.SIGCONT) }
	defer cont()
	done := make(chan error, 1)
	start := time.Now()
	go func() { _, err := n.Keepalive(); done <- err }()
	time.Sleep(stopped)
	cont()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	d := kaHistogram(c.metrics(t, false)).since(h1)
	if d.n() != 1 || d.over(0.2) != 1 {
		t.Fatalf("keepalive that waited %v in the stopped cloud's socket queue (answered after %v): recorded %v, want one over 200 ms", stopped, took, d)
	}
	t.Logf("waited %v in the queue, answered after %v: recorded %v", stopped, took, d)
}
