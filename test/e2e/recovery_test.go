package e2e

import (
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/test/testbed"
)

// recoverWithin is issue 10's deadline for traffic to a restarted peer.
const recoverWithin = 5 * time.Second

// Fast recovery after a peer restarts (issue 10, item 4): bob's process is
// killed (SIGKILL: no logout) and started again; alice's pings to bob by
// name succeed again within recoverWithin of bob's start. Both nodes run
// with the production peer-dead-after (35 s) and peer keepalive (10 s), so
// the old session dying of silence cannot be what brings the tunnel back,
// and alice's peer actor must not restart: alice asks NMS for a new path
// (NMS tells bob about her) and handshakes beside her old session. Bob
// comes back on the same port (a fixed --listen4, or the default port 0,
// where he takes the port he saved at his last start: he answers alice's
// data with unknown-index) or on a new one (his saved port forgotten, as
// when another program took it: alice hears nothing back and notices
// within SilenceAfter).
func TestPeerRestartRecovery(t *testing.T) {
	for _, tc := range []struct {
		name    string
		listen  []string
		newPort bool
	}{
		{"same-port", []string{"--listen4", "0.0.0.0:41641"}, false},
		{"saved-port", nil, false},
		{"new-port", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			prod := []string{"--peer-dead-after", "35s", "--peer-keepalive", "10s"}
			alice := w.addNode(w.bed.AddHost("alice", testbed.HostOpts{IPv4: true}))
			alice.kill()
			alice.extra = prod
			alice.start()
			bob := w.addNode(w.bed.AddHost("bob", testbed.HostOpts{IPv4: true}))
			bob.kill()
			bob.extra = append(prod, tc.listen...)
			bob.start()
			talk(t, alice, bob, 1<<20)
			before := alice.waitPeerUp(bob.fqdn, "tunnel up")

			bob.kill()
			port := bob.savedPorts()
			if tc.newPort {
				bob.forgetPort()
			}
			restarted := time.Now()
			bob.start() // returns once bob is online again
			if again := bob.savedPorts(); (again == port) == tc.newPort {
				t.Fatalf("bob's ports %q before his restart, %q after", port, again)
			}
			online := time.Since(restarted)
			for {
				out, err := alice.host.Exec("ping", "-4", "-n", "-c", "1", "-W", "0.25", bob.fqdn)
				if err == nil {
					break
				}
				if time.Since(restarted) > recoverWithin {
					p, _ := alice.peer(bob.fqdn)
					t.Fatalf("alice's pings to bob fail %v after bob restarted (online after %v): %v\n%s\nalice's peer: %+v",
						time.Since(restarted).Round(time.Millisecond), online.Round(time.Millisecond), err, out, p)
				}
			}
			t.Logf("recovery (%s): bob online %v after its start, alice's ping through by %v", tc.name,
				online.Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
			after := alice.waitPeerUp(bob.fqdn, "tunnel up after bob's restart")
			if after.Restarts != before.Restarts {
				t.Errorf("alice's peer restarted (%d -> %d): recovery should keep it", before.Restarts, after.Restarts)
			}
			talk(t, alice, bob, 1<<20)
		})
	}
}
