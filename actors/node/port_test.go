package node

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cyphonic/cyphonic-go/tun"
)

// TestRestartKeepsPort: a node told to listen on any port (port 0) comes
// back on the port of its last start, so its peers' sessions still lead to
// it; if another socket holds that port meanwhile, it takes a new one and
// says so, and the next start keeps the new one.
func TestRestartKeepsPort(t *testing.T) {
	d := filepath.Join(identities(t), "alice")
	var logs strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	start := func() netip.AddrPort {
		t.Helper()
		dev, _ := tun.NewMemPair("mem0", 1280, 8)
		n, err := Start(context.Background(), Config{CertDir: d, Cloud: "127.0.0.1:9", Listen4: "127.0.0.1:0",
			DNS: Off, DebugAddr: Off, Device: dev, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		addrs := n.Dataplane().LocalAddrs()
		if err := n.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(addrs) != 1 {
			t.Fatalf("local addresses %v, want one", addrs)
		}
		return addrs[0]
	}
	first := start()
	if again := start(); again != first {
		t.Fatalf("restarted on %v, want the port of the last start, %v", again, first)
	}
	mu.Lock()
	if strings.Contains(logs.String(), "taken") {
		t.Fatalf("a free saved port logged as taken:\n%s", logs.String())
	}
	mu.Unlock()

	// Someone else takes the port while the node is down.
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(first))
	if err != nil {
		t.Fatal(err)
	}
	moved := start()
	c.Close()
	if moved == first || moved.Port() == 0 {
		t.Fatalf("started on %v with %v taken", moved, first)
	}
	mu.Lock()
	if !strings.Contains(logs.String(), "the saved UDP port is taken: listening on a new one") {
		t.Fatalf("no log line for the taken port:\n%s", logs.String())
	}
	mu.Unlock()
	if again := start(); again != moved {
		t.Fatalf("restarted on %v, want the new port %v", again, moved)
	}
}

func TestSavedPorts(t *testing.T) {
	tests := []struct {
		name, file string
		want       map[string]uint16
		bad        bool
	}{
		{"none", "", nil, false},
		{"both", "udp4 7400\nudp6 7401\n", map[string]uint16{"udp4": 7400, "udp6": 7401}, false},
		{"one", "udp6 9\n", map[string]uint16{"udp6": 9}, false},
		{"port zero", "udp4 0\n", nil, true},
		{"out of range", "udp4 70000\n", nil, true},
		{"unknown family", "tcp 7400\n", nil, true},
		{"garbage", "hello", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.file != "" {
				if err := os.WriteFile(filepath.Join(dir, PortFile), []byte(tt.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := savedPorts(dir)
			if (err != nil) != tt.bad {
				t.Fatalf("err = %v, want error %v", err, tt.bad)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestWithPort(t *testing.T) {
	tests := []struct {
		addr string
		p    uint16
		want string
		ok   bool
	}{
		{"0.0.0.0:0", 7400, "0.0.0.0:7400", true},
		{"[::]:0", 7400, "[::]:7400", true},
		{"0.0.0.0:7000", 7400, "0.0.0.0:7000", false}, // the operator chose a port
		{"0.0.0.0:0", 0, "0.0.0.0:0", false},          // nothing saved
		{"", 7400, "", false},                         // family off
	}
	for _, tt := range tests {
		if got, ok := withPort(tt.addr, tt.p); got != tt.want || ok != tt.ok {
			t.Errorf("withPort(%q, %d) = %q, %v; want %q, %v", tt.addr, tt.p, got, ok, tt.want, tt.ok)
		}
	}
}
