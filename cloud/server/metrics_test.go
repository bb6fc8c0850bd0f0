package server_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/server"
	"github.com/cyphonic/cyphonic-go/cloud/server/svc"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/test/cloudsim"
)

// scrape returns the value of each series of the cloud's /metrics, by its
// name and labels as the text format writes them.
func scrape(t *testing.T, s *server.Server) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + s.DebugAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape: %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// waitMetric scrapes until series reaches at least want (an effect that
// lands after the call that caused it) or 10 s pass.
func waitMetric(t *testing.T, s *server.Server, series string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for scrape(t, s)[series] < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMetricsShowAttacks provokes, against a real cloud (AS, NMS, TRS and
// a gateway in one process), one of each refusal that is cheap to cause
// and reads the counters back from /metrics: a gateway connection without
// a certificate, frames outside the sender's role, malformed and aimed at
// another service's reply address; short and garbage login packets; a
// login with a revoked certificate; a relay frame with an unknown token;
// the NMS ending a revoked node's session and pushing the deny list to the
// node still logged in.
func TestMetricsShowAttacks(t *testing.T) {
	s, err := server.Start(context.Background(), server.Config{
		DataDir: t.TempDir(), Ephemeral: true, Listen: loopback, DebugAddr: "127.0.0.1:0",
		// A TRS named elsewhere makes the gateway run next to all three
		// services (this one's TRS is used all the same).
		TRSRemote: "127.0.0.1:1",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	before := scrape(t, s)
	for _, name := range []string{
		`cyphonic_cloud_gateway_refused_total{reason="role"}`, `cyphonic_as_dropped_total{reason="limited"}`,
		`cyphonic_as_logins_total{result="refused"}`, `cyphonic_trs_dropped_total{reason="bad-bind"}`,
		`cyphonic_trs_binds_total`, `cyphonic_trs_sessions_created_total`, `cyphonic_trs_dropped_total{reason="owner-full"}`, `cyphonic_nms_revoked_total`, `cyphonic_nms_deny_list_pushes_total`, `cyphonic_as_logins_pending`,
		`cyphonic_as_session_ids_total{result="taken"}`,
	} {
		if v, ok := before[name]; !ok || v != 0 {
			t.Errorf("before any attack: %s = %v (exported %v), want 0", name, v, ok)
		}
	}

	// Gateway: a TLS client without a certificate...
	if c, err := tls.Dial("tcp", s.Remote, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, NextProtos: []string{"h2"}}); err == nil {
		_, _ = c.Read(make([]byte, 1)) // the server's refusal arrives after our handshake
		c.Close()
	}
	// ...and frames from valid service certificates that are not theirs to send.
	trsID, err := s.CA.Issue(pki.RoleTRS, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	asID, err := s.CA.Issue(pki.RoleAS, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kh, err := svc.NewFrame("", messages.NewMsgID(), svc.AS, time.Now(), messages.KeyHandover{SessionID: 9, FQDN: "alice.example.cyphonic", CertSerial: "1", Expires: time.Now().Add(time.Hour).UnixNano()})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		id    *pki.Identity
		route []byte
	}{
		{trsID, gatewayRoute(svc.RootOf("", svc.NMS), svc.Ref{Process: s.Remote, Service: svc.TRS, ID: "trs"}, kh)}, // role
		{asID, []byte{1, 0}}, // malformed
		{asID, gatewayRoute(svc.RootOf("", svc.NMS), svc.Ref{Process: s.Remote, Service: svc.TRS, ID: "trs"}, kh)}, // reply-to
	} {
		if connected, err := deliverFrame(t.Context(), s.Remote, tlsWith(a.id), a.route); !connected || err != nil {
			t.Fatalf("deliver: connected %v, %v", connected, err)
		}
	}

	// AS: a short login packet and one of a type the AS does not serve.
	mallory, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(s.AS.Addrs()[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer mallory.Close()
	for _, p := range [][]byte{{byte(messages.TypeLogin), 1, 2, 3}, {byte(messages.TypeProbe), 1, 2, 3}} {
		if _, err := mallory.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	// TRS: a relay frame whose token no session has.
	relayed, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(s.TRS.Addrs()[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer relayed.Close()
	frame := make([]byte, messages.RelayHeaderLen+8)
	messages.PutRelayHeader(frame, messages.RelayToken{1, 2, 3})
	frame[messages.RelayHeaderLen] = byte(messages.TypeData)
	if _, err := relayed.Write(frame); err != nil {
		t.Fatal(err)
	}
	if _, err := relayed.Write([]byte{byte(messages.TypeRelay), 1}); err != nil { // too short for a relay frame
		t.Fatal(err)
	}

	// NMS: two nodes log in and register; x's certificate is revoked: NMS
	// ends its session and pushes the deny list to y; x logging in again is
	// refused by the AS.
	nodes := map[string]*cloudsim.Node{}
	for _, fqdn := range []string{"x.example.cyphonic", "y.example.cyphonic"} {
		n, err := cloudsim.NewNode(s.CA, fqdn)
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		if _, err := n.Login(s.AS.Addrs()[0], false); err != nil {
			t.Fatal(err)
		}
		if _, err := n.Register(false); err != nil {
			t.Fatal(err)
		}
		nodes[fqdn] = n
	}
	x := nodes["x.example.cyphonic"]
	if err := s.CA.Revoke(x.Cert.Cert.SerialNumber); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, s, `cyphonic_nms_revoked_total`, 1)
	waitMetric(t, s, `cyphonic_nms_deny_list_pushes_total`, 1)
	if _, err := x.Login(s.AS.Addrs()[0], false); err == nil {
		t.Fatal("a revoked node logged in")
	}
	waitMetric(t, s, `cyphonic_as_dropped_total{reason="garbage"}`, 1)
	waitMetric(t, s, `cyphonic_trs_dropped_total{reason="unknown-token"}`, 1)
	waitMetric(t, s, `cyphonic_trs_dropped_total{reason="malformed"}`, 1)
	waitMetric(t, s, `cyphonic_cloud_gateway_refused_total{reason="certificate"}`, 1)

	got := scrape(t, s)
	for name, want := range map[string]float64{
		`cyphonic_cloud_gateway_refused_total{reason="certificate"}`: 1,
		`cyphonic_cloud_gateway_refused_total{reason="role"}`:        1,
		`cyphonic_cloud_gateway_refused_total{reason="malformed"}`:   1,
		`cyphonic_cloud_gateway_refused_total{reason="reply-to"}`:    1,
		`cyphonic_cloud_gateway_refused_total{reason="not-frame"}`:   0,
		`cyphonic_as_dropped_total{reason="short"}`:                  1,
		`cyphonic_as_dropped_total{reason="garbage"}`:                1,
		`cyphonic_as_dropped_total{reason="limited"}`:                0,
		`cyphonic_as_logins_total{result="challenged"}`:              2, // the revoked login is refused at once
		`cyphonic_as_logins_total{result="accepted"}`:                2,
		`cyphonic_as_logins_total{result="refused"}`:                 1,
		`cyphonic_as_logins_pending`:                                 3, // x, y, x again: all within PendingTTL
		`cyphonic_trs_dropped_total{reason="unknown-token"}`:         1,
		`cyphonic_trs_dropped_total{reason="malformed"}`:             1,
		`cyphonic_trs_binds_total`:                                   0,
		`cyphonic_nms_revoked_total`:                                 1,
		`cyphonic_nms_sessions`:                                      1,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (exported %v), want %v", name, v, ok, want)
		}
	}
	if v := got[`cyphonic_nms_deny_list_pushes_total`]; v < 1 {
		t.Errorf("deny-list pushes %v, want at least y's", v) // retransmissions count too
	}
	// Bounded labels: no series names a node or an address.
	for name := range got {
		if strings.Contains(name, "example.cyphonic") || strings.Contains(name, "127.0.0.1") {
			t.Errorf("series %s names a node or an address", name)
		}
	}
}

// TestMetricsShowScale drives one node through registration (each copy
// sent twice: a cache hit), keepalives, a refused stale request and a
// logout, and reads NMS's scale series back from /metrics: requests by
// type, refusals by reason, the reply cache's size and hits, the session
// deletion that follows the logout, and both store queues.
func TestMetricsShowScale(t *testing.T) {
	s, err := server.Start(context.Background(), server.Config{
		DataDir: t.TempDir(), Ephemeral: true, Listen: loopback, DebugAddr: "127.0.0.1:0",
		NMSTuning: server.NMSTuning{DedupEntries: 4096, StoreQueue: 100, WorkerQueue: 512}, SignalWorkers: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	n, err := cloudsim.NewNode(s.CA, "alice.example.cyphonic")
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if _, err := n.Login(s.AS.Addrs()[0], false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Register(true); err != nil {
		t.Fatal(err)
	}
	if got := scrape(t, s)[`cyphonic_store_sessions`]; got != 1 {
		t.Errorf("store sessions after the login: %v, want 1", got)
	}
	for range 2 {
		if _, err := n.Keepalive(); err != nil {
			t.Fatal(err)
		}
	}
	if env, err := n.Request(n.Reply.NMS[0], messages.Logout{}, false); err != nil || env.Type != messages.MsgLogoutAck {
		t.Fatalf("logout: %v %v", env.Type, err)
	}
	// On the ended session: answered, sealed, with session-expired.
	if _, err := n.Keepalive(); err == nil {
		t.Fatal("keepalive after logout answered")
	}
	// A packet naming a session nobody holds is looked up and refused;
	// its second copy too, from the negative cache if it comes within the
	// cache's half second (else from a second lookup).
	forged := make([]byte, messages.SignalingHeaderLen+messages.AEADOverhead+16)
	messages.SignalingHeader{SessionID: n.Reply.SessionID ^ 0x5a5a5a5a}.Put(forged)
	for _, want := range []float64{1, 2} {
		if err := n.Send(n.Reply.NMS[0], forged); err != nil {
			t.Fatal(err)
		}
		waitMetric(t, s, `cyphonic_nms_refused_total{reason="unknown-session"}`, want)
	}
	waitMetric(t, s, `cyphonic_nms_session_deletions_total{result="done"}`, 1)
	got := scrape(t, s)
	for series, want := range map[string]float64{
		`cyphonic_nms_requests_total{type="register"}`:         1,
		`cyphonic_nms_requests_total{type="keepalive"}`:        2,
		`cyphonic_nms_requests_total{type="logout"}`:           1,
		`cyphonic_nms_refused_total{reason="session-expired"}`: 1,
		`cyphonic_nms_refused_total{reason="cache-full"}`:      0,
		`cyphonic_nms_refused_total{reason="replayed"}`:        0,
		`cyphonic_nms_refused_total{reason="unknown-session"}`: 2,
		`cyphonic_nms_refused_total{reason="lookup-rate"}`:     0,
		`cyphonic_nms_session_lookups_total{result="found"}`:   0,
		`cyphonic_nms_reply_cache_capacity`:                    4096,
		`cyphonic_nms_session_deletions_total{result="done"}`:  1,
		`cyphonic_nms_session_deletions_pending`:               0,
		`cyphonic_nms_tunnel_nodes`:                            0,
		`cyphonic_store_sessions`:                              0, // the logout's deletion is done
		`cyphonic_store_queue_capacity{service="nms"}`:         100,
		`cyphonic_store_queue_capacity{service="as"}`:          1024,
		`cyphonic_store_queue_depth{service="nms"}`:            0,
		// Three workers per service, each with its queue's bound; nothing
		// waits or was dropped once the requests are answered.
		`cyphonic_worker_queue_capacity{service="nms",worker="2"}`:      512,
		`cyphonic_worker_queue_depth{service="nms",worker="0"}`:         0,
		`cyphonic_worker_queue_dropped_total{service="nms",worker="1"}`: 0,
		`cyphonic_worker_queue_capacity{service="as",worker="2"}`:       float64(max(32*runtime.GOMAXPROCS(0)/3, 1)),
		`cyphonic_worker_queue_dropped_total{service="as",worker="0"}`:  0,
	} {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	if v := got[`cyphonic_nms_session_lookups_total{result="unknown"}`]; v < 1 || v > 2 {
		t.Errorf("session lookups answered unknown: %v, want 1 or 2", v)
	}
	// The register's second copies were answered from the cache.
	if v := got[`cyphonic_nms_reply_cache_total{event="hit"}`]; v < 1 {
		t.Errorf("reply cache hits %v, want >= 1", v)
	}
	if v := got[`cyphonic_nms_reply_cache_total{event="stored"}`]; v < 2 { // register, logout
		t.Errorf("reply cache stored %v, want >= 2", v)
	}
	if v := got[`cyphonic_nms_reply_cache_entries`]; v < 2 || v > 4 {
		t.Errorf("reply cache entries %v, want the register's and the logout's", v)
	}
}
