package node

import (
	"bytes"
	"log/slog"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cyphonic/cyphonic-go/test/systest"
	"github.com/cyphonic/cyphonic-go/tun"
)

// TestOpenTUNQueues: by default a node that may steer the host's packets
// (CAP_BPF) opens DefaultTUNQueues queues, and one without it opens one
// queue and says why; queues asked for are opened either way. Each case in
// a network namespace of its own, on a thread of its own whose
// capabilities the case sets.
func TestOpenTUNQueues(t *testing.T) {
	systest.Require(t, systest.Root(), systest.File("/dev/net/tun"))
	for _, tt := range []struct {
		name    string
		queues  int
		dropBPF bool
		want    int
		log     string
	}{
		{"default with CAP_BPF", 0, false, DefaultTUNQueues, "TUN queues"},
		{"default without CAP_BPF", 0, true, 1, "needs CAP_BPF"},
		{"asked for, without CAP_BPF", 3, true, 3, "kernel steering"},
		{"one asked for", 1, false, 1, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			runtime.LockOSThread() // never unlocked: the thread ends with the test
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				t.Fatalf("unshare network namespace: %v", err)
			}
			if tt.dropBPF {
				dropCaps(t, unix.CAP_BPF, unix.CAP_SYS_ADMIN)
			}
			var logs bytes.Buffer
			cfg, err := Config{CertDir: "certs", Cloud: "127.0.0.1:7480", TUN: "cyphq0", TUNQueues: tt.queues}.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			dev, more, err := openTUN(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				dev.Close()
				for _, q := range more {
					q.Close()
				}
			}()
			if got := 1 + len(more); got != tt.want {
				t.Errorf("%d queues, want %d; log:\n%s", got, tt.want, logs.String())
			}
			if !strings.Contains(logs.String(), tt.log) {
				t.Errorf("log lacks %q:\n%s", tt.log, logs.String())
			}
			if tt.dropBPF {
				if err := tun.CanSteer(); err == nil {
					t.Error("CanSteer without CAP_BPF: nil")
				}
			}
		})
	}
}

// dropCaps removes caps from the calling thread's effective set (a
// thread's capabilities are its own: the test locked it).
func dropCaps(t *testing.T, caps ...int) {
	t.Helper()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Fatalf("capget: %v", err)
	}
	for _, c := range caps {
		data[c/32].Effective &^= 1 << (c % 32)
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		t.Fatalf("capset: %v", err)
	}
}
