package debug

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

func TestAllowedHost(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	for _, tt := range []struct {
		host   string
		listen netip.Addr
		want   bool
	}{
		{"127.0.0.1:7480", lo, true},
		{"127.0.0.1", lo, true},
		{"localhost:7480", lo, true},
		{"LocalHost.", lo, true},
		{"[::1]:7480", lo, true},
		{"[::1]", lo, true},
		{"127.0.0.2:7480", lo, true}, // loopback: not a rebound name
		{"evil.example", lo, false},
		{"evil.example:7480", lo, false},
		{"localhost.evil.example:7480", lo, false},
		{"127.0.0.1.nip.io:7480", lo, false},
		{"", lo, false},
		{"[fe80::1%eth0]:7480", netip.MustParseAddr("fe80::1"), false},
		{"10.1.2.3:7480", netip.MustParseAddr("10.1.2.3"), true},
		{"10.1.2.4:7480", netip.MustParseAddr("10.1.2.3"), false},
		{"10.1.2.4:7480", netip.IPv6Unspecified(), true},
		{"evil.example:7480", netip.IPv6Unspecified(), false},
	} {
		if got := allowedHost(tt.host, tt.listen); got != tt.want {
			t.Errorf("allowedHost(%q, %v) = %v, want %v", tt.host, tt.listen, got, tt.want)
		}
	}
}

// TestDebugRefusesRebindingHost sends real requests to a started server: a
// browser page whose domain was rebound to 127.0.0.1 sends Host:
// evil.example and must get nothing; the listen address and localhost work.
func TestDebugRefusesRebindingHost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := NewServer(staticTree{}, quiet)
	addr, err := srv.Start(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(ctx)
	_, port, _ := netipSplit(addr.String())
	for _, tt := range []struct {
		host string
		path string
		want int
	}{
		{"evil.example", PathActors, http.StatusForbidden},
		{"evil.example:" + port, PathPprof + "cmdline", http.StatusForbidden},
		{"evil.example:" + port, PathActorsHTML, http.StatusForbidden},
		{addr.String(), PathActors, http.StatusOK},
		{"localhost:" + port, PathPprof + "cmdline", http.StatusOK},
	} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr.String()+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = tt.host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("GET %s Host %q: %s, want %d", tt.path, tt.host, resp.Status, tt.want)
		}
		if tt.want == http.StatusForbidden && len(body) > 100 {
			t.Errorf("refusal carries %d bytes: %q", len(body), body)
		}
	}
}

func netipSplit(s string) (netip.Addr, string, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.Addr{}, "", err
	}
	return ap.Addr(), strconv.Itoa(int(ap.Port())), nil
}
