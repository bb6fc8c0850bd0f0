package e2e

import (
	"bufio"
	"context"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/test/attack"
	"github.com/cyphonic/cyphonic-go/test/testbed"
)

// TestInitFlood: issue 9's init flood against real node processes. From a
// host of its own, mallory floods bob's UDP endpoint for 4 s, as fast as
// one core can send, with inits forged from alice's public certificate
// (half without MACs, half with a valid mac1) and never reads an answer.
// Meanwhile alice pings bob by name over their tunnel every 10 ms. Bob's
// node process stays under 64 MiB resident and the ping loses < 1%.
func TestInitFlood(t *testing.T) {
	w := newWorld(t)
	alice := w.addNode(w.bed.AddHost("alice", testbed.HostOpts{IPv4: true}))
	bob := w.addNode(w.bed.AddHost("bob", testbed.HostOpts{IPv4: true}))
	mallory := w.bed.AddHost("mallory", testbed.HostOpts{IPv4: true})
	alice.ping(bob.fqdn)
	st := alice.waitPeerUp(bob.fqdn, "tunnel to bob")
	target := st.Endpoint

	id, err := pki.LoadIdentity(alice.certs)
	if err != nil {
		t.Fatal(err)
	}
	pkts, err := attack.MixedInits(bob.fqdn, id.CertDER, id.NoiseStatic.Public, 256)
	if err != nil {
		t.Fatal(err)
	}

	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if r := procRSS(bob.proc.Pid()); r > peak.Load() {
				peak.Store(r)
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	before := procRSS(bob.proc.Pid())
	// 5 s of pings at 10 ms, -W 1: a reply later than 1 s is lost.
	ping := alice.host.Start("ping", "-4", "-n", "-q", "-i", "0.01", "-c", "500", "-W", "1", bob.fqdn)
	time.Sleep(500 * time.Millisecond)
	var sent uint64
	var took time.Duration
	if err := mallory.Do(func() error {
		c, err := net.ListenUDP("udp4", nil)
		if err != nil {
			return err
		}
		defer c.Close()
		start := time.Now()
		sent = attack.Flood(context.Background(), c, target, pkts, 2_000_000, 4*time.Second, 0)
		took = time.Since(start)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	<-ping.Done()
	close(stop)
	<-sampled
	out := ping.Output()
	loss := pingLoss(t, out)
	bst := bob.mustStatus()
	t.Logf("flood: %d inits in %v (%.0f/s) at %v; ping: %s; bob RSS %.1f MiB before, peak %.1f MiB; bob drops %v",
		sent, took.Round(time.Millisecond), float64(sent)/took.Seconds(), target, strings.TrimSpace(lastLines(out, 2)),
		float64(before)/(1<<20), float64(peak.Load())/(1<<20), bst.Drops)
	if loss >= 1 {
		t.Errorf("ping lost %.1f%% during the flood (want < 1%%)", loss)
	}
	if peak.Load() >= 64<<20 {
		t.Errorf("bob's RSS peaked at %.1f MiB (want < 64 MiB)", float64(peak.Load())/(1<<20))
	}
}

// procRSS is a process's resident set size in bytes (0 if unknown).
func procRSS(pid int) uint64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

var lossRE = regexp.MustCompile(`([0-9.]+)% packet loss`)

// pingLoss reads the loss percentage from ping's summary.
func pingLoss(t *testing.T, out string) float64 {
	t.Helper()
	m := lossRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no loss in ping's output:\n%s", out)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], " / ")
}
