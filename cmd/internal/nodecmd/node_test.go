package nodecmd

import (
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/actors/node"
	"github.com/cyphonic/cyphonic-go/actors/session"
	"github.com/cyphonic/cyphonic-go/messages"
)

func TestNodeFlagErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no cloud", []string{"node", "--cert", dir}, 2, "--cloud is required"},
		{"no cert", []string{"node", "--cloud", "127.0.0.1:7401"}, 2, "--cert is required"},
		{"stray argument", []string{"node", "extra"}, 2, "unexpected argument"},
		{"no families", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--listen4", "off", "--listen6", "off"}, 2, "both off"},
		{"empty listen4", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--listen4", ""}, 2, `--listen4 is empty: give an address, or "off"`},
		{"empty dns", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--dns", ""}, 2, `--dns is empty`},
		{"empty debug-addr", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--debug-addr", ""}, 2, `--debug-addr is empty`},
		{"missing cert dir", []string{"node", "--cloud", "127.0.0.1:7401", "--cert", filepath.Join(dir, "nope"), "--debug-addr", "off", "--dns", "off"}, 1, "nope"},
		{"bad cloud address", []string{"node", "--cloud", "no-port", "--cert", dir}, 2, `--cloud: "no-port"`},
		{"bad one of several cloud addresses", []string{"node", "--cloud", "127.0.0.1:7401, no-port", "--cert", dir}, 2, `--cloud: "no-port"`},
		{"cloud port out of range", []string{"node", "--cloud", "127.0.0.1:99999", "--cert", dir}, 2, `--cloud: "127.0.0.1:99999": port "99999" is not a number in 0..65535`},
		// A malformed IPv4 socket address was accepted once IPv6 bound.
		{"malformed listen4", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--listen4", "1.2.3"}, 2, `--listen4: "1.2.3": want an IP address and port`},
		{"IPv6 as listen4", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--listen4", "[::]:0"}, 2, `--listen4: "[::]:0" is not an IPv4 address`},
		{"IPv4 as listen6", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--listen6", "0.0.0.0:1"}, 2, `--listen6: "0.0.0.0:1" is not an IPv6 address`},
		{"listen4 port out of range", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--listen4", "0.0.0.0:70000"}, 2, `--listen4: "0.0.0.0:70000"`},
		{"malformed dns", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--dns", "localhost"}, 2, `--dns: "localhost"`},
		{"malformed upstream", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--upstream", "8.8.8.8"}, 2, `--upstream: "8.8.8.8"`},
		{"negative keepalive", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--keepalive", "-1s"}, 2, `--keepalive: negative`},
		{"negative fallback-after", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--fallback-after", "-1s"}, 2, `--fallback-after: negative`},
		{"fallback-after too short", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--fallback-after", "10ms"}, 2, `--fallback-after: 10ms is out of range: want 100ms..1m0s`},
		{"fallback-after too long", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--fallback-after", "2h"}, 2, `--fallback-after: 2h0m0s is out of range`},
		{"passive keepalive too short", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--peer-passive-keepalive", "1ms"}, 2, `--peer-passive-keepalive: 1ms is out of range`},
		{"negative silence", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--peer-silence-after", "-2s"}, 2, `--peer-silence-after: negative`},
		{"silence within passive keepalives", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--peer-silence-after", "900ms"}, 2, `--peer-silence-after: 900ms must be more than twice --peer-passive-keepalive (500ms)`},
		{"passive keepalive over silence", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--peer-passive-keepalive", "5s"}, 2, `--peer-silence-after: 2s must be more than twice --peer-passive-keepalive (5s)`},
		{"silence past dead", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--peer-silence-after", "10s", "--peer-dead-after", "8s"}, 2, `--peer-silence-after: 10s must be less than --peer-dead-after (8s)`},
		{"bad log format", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--log-format", "xml"}, 2, `--log-format: "xml"`},
		{"bad tun backend", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--tun-backend", "x"}, 2, `--tun-backend`},
		{"bad mtu", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--mtu", "10"}, 2, "MTU"},
		{"tun queues too many", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--tun-queues", "9"}, 2, `--tun-queues: 9 is out of range: want 1..8`},
		{"negative tun queues", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--tun-queues", "-1"}, 2, `--tun-queues: -1 is out of range`},
		{"tun queues on water", []string{"node", "--cloud", "127.0.0.1:1", "--cert", dir, "--tun-backend", "water", "--tun-queues", "2"}, 2, `--tun-queues: 2 queues need --tun-backend offload-raw or offload (the water backend opens one queue)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCmd(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d mentioning %q", code, stderr, tt.code, tt.want)
			}
		})
	}
}

func TestStatusUnreachable(t *testing.T) {
	code, _, stderr := runCmd(t, "status", "--debug-addr", "127.0.0.1:1")
	if code != 1 || !strings.Contains(stderr, "fetch status") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

func TestStatusRendersPeers(t *testing.T) {
	st := node.Status{
		Session: session.Status{FQDN: "alice.example.cyphonic", State: session.StateOnline, SessionID: 9},
		Peers: []dataplane.PeerStatus{{
			FQDN: "bob.example.cyphonic", VIP4: netip.MustParseAddr("100.64.0.2"), Path: messages.PathRelay,
			Endpoint: netip.MustParseAddrPort("192.0.2.1:7403"), TxBytes: 2048, TxPackets: 2, State: dataplane.StateUp,
		}},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(node.PathStatus, func(w http.ResponseWriter, _ *http.Request) { json.NewEncoder(w).Encode(st) })
	srv := &http.Server{Handler: mux}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	defer func() { srv.Close(); <-done }()

	code, stdout, stderr := runCmd(t, "status", "--debug-addr", ln.Addr().String())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"alice.example.cyphonic (online)", "bob.example.cyphonic", "relay", "192.0.2.1:7403", "2.0 KiB/2p", "up"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	code, stdout, _ = runCmd(t, "status", "--json", "--debug-addr", ln.Addr().String())
	var back node.Status
	if code != 0 || json.Unmarshal([]byte(stdout), &back) != nil || back.Peers[0].FQDN != "bob.example.cyphonic" {
		t.Fatalf("--json: exit %d, %q", code, stdout)
	}
	// The JSON names the path as the table does, and reads back to it.
	if !strings.Contains(stdout, `"path": "relay"`) || back.Peers[0].Path != messages.PathRelay {
		t.Errorf("--json path: %+v in\n%s", back.Peers[0].Path, stdout)
	}
}
