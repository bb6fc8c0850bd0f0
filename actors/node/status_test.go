package node

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/actors/resolver"
	"github.com/cyphonic/cyphonic-go/actors/session"
	"github.com/cyphonic/cyphonic-go/messages"
)

var now = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func sampleStatus() Status {
	return Status{
		Session: session.Status{
			FQDN: "alice.example.cyphonic", State: session.StateOnline, SessionID: 7,
			VIP6: netip.MustParseAddr("fd00::1"), VIP4: netip.MustParseAddr("100.64.0.1"),
			AS: netip.MustParseAddrPort("192.0.2.1:4500"), NMS: netip.MustParseAddrPort("192.0.2.1:4501"),
			Locals:   []netip.AddrPort{netip.MustParseAddrPort("10.0.0.5:40000")},
			Observed: netip.MustParseAddrPort("198.51.100.7:61000"), NAT: "endpoint-independent",
			Logins: 2, Failovers: 1, LastAck: now.Add(-3 * time.Second),
		},
		Peers: []dataplane.PeerStatus{
			{
				FQDN: "bob.example.cyphonic", VIP6: netip.MustParseAddr("fd00::2"), VIP4: netip.MustParseAddr("100.64.0.2"),
				Path: messages.PathHolePunch, Endpoint: netip.MustParseAddrPort("203.0.113.9:4000"),
				LastHandshake: now.Add(-90 * time.Second), TxBytes: 1536, TxPackets: 3, RxBytes: 10, RxPackets: 1,
				Drops: map[string]uint64{"replay": 2, "auth": 1, "zero": 0, "queue-full": 5}, State: dataplane.StateUp,
				Lost: 12, Unopened: 5,
			},
			{FQDN: "carol.example.cyphonic\x1b[31m", State: dataplane.StateBackoff, Restarts: 3},
		},
		Drops:      map[string]uint64{"no-route": 4},
		Resolver:   &resolver.Stats{Overlay: 5, NXDomain: 1, Forwarded: 9},
		DNS:        "127.0.0.1:5353",
		GoMaxProcs: 2,
	}
}

func TestRenderStatus(t *testing.T) {
	tests := []struct {
		name string
		st   Status
		want string
	}{
		{"logging in, no peers", Status{Session: session.Status{FQDN: "alice.example.cyphonic", State: session.StateLoggingIn,
			AS: netip.MustParseAddrPort("192.0.2.1:4500"), LastError: "login: timeout\nagain"}},
			`node      alice.example.cyphonic (logging-in)
cloud     as 192.0.2.1:4500  nms -  session 0  logins 0
error     login: timeout?again

no peers
`},
		{"online with peers", sampleStatus(),
			`node      alice.example.cyphonic (online)
vips      100.64.0.1 fd00::1
cloud     as 192.0.2.1:4500  nms 192.0.2.1:4501  session 7  logins 2  failovers 1
mapping   198.51.100.7:61000  nat endpoint-independent  keepalive ack 3s ago
locals    10.0.0.5:40000
dns       127.0.0.1:5353  overlay 5  nxdomain 1  servfail 0  forwarded 9
drops     no-route=4
runtime   gomaxprocs 2

PEER VIP4 VIP6 PATH ENDPOINT HANDSHAKE TX RX STATE RESTARTS LOST DROPS
bob.example.cyphonic 100.64.0.2 fd00::2 hole-punch 203.0.113.9:4000 1m30s ago 1.5 KiB/3p 10 B/1p up 0 7 auth=1,queue-full=5,replay=2
carol.example.cyphonic?[31m - - - - never 0 B/0p 0 B/0p backoff 3 0 -
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := RenderStatus(&b, tt.st, now); err != nil {
				t.Fatal(err)
			}
			if got := normalize(b.String()); got != normalize(tt.want) {
				t.Fatalf("got\n%s\nwant\n%s", b.String(), tt.want)
			}
		})
	}
}

// normalize collapses runs of spaces so the test does not depend on
// tabwriter's exact padding.
func normalize(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return strings.Join(lines, "\n")
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestRenderStatusWriteError(t *testing.T) {
	if err := RenderStatus(failWriter{}, sampleStatus(), now); err == nil {
		t.Fatal("write error lost")
	}
}

func TestFetchStatus(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	want := sampleStatus()
	mux.Handle(PathStatus, statusHandler(func() Status { return want }))
	srv := &http.Server{Handler: mux}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	defer func() { srv.Close(); <-done }()

	got, err := FetchStatus(context.Background(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	RenderStatus(&a, want, now)
	RenderStatus(&b, got, now)
	if a.String() != b.String() {
		t.Fatalf("round trip changed the status:\n%s\n%s", a.String(), b.String())
	}
	if _, err := FetchStatus(context.Background(), "127.0.0.1:1"); err == nil {
		t.Fatal("fetch from a closed port succeeded")
	}
}
