package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/leaktest"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/pki/pkitest"
	"github.com/cyphonic/cyphonic-go/tun"
)

func TestMain(m *testing.M) {
	leaktest.VerifyTestMain(m)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// identities makes a test CA and, in dir/<name>, identities of the given roles.
func identities(t *testing.T) (dir string) {
	t.Helper()
	dir = t.TempDir()
	ca := pkitest.New(t)
	for name, role := range map[string]pki.Role{"alice": pki.RoleNode, "as": pki.RoleAS} {
		id, err := ca.Issue(role, name+".example.cyphonic", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := pki.WriteIdentity(filepath.Join(dir, name), id); err != nil {
			t.Fatal(err)
		}
		if err := pki.WriteRoot(filepath.Join(dir, name), ca.Cert); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "noca"), 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestStartErrors(t *testing.T) {
	dir := identities(t)
	alice := filepath.Join(dir, "alice")
	garbage := filepath.Join(dir, "garbage.crt")
	os.WriteFile(garbage, []byte("not a certificate"), 0o644)
	tests := []struct {
		name    string
		cfg     Config
		want    string
		isUsage bool
	}{
		{"no cert dir", Config{Cloud: "127.0.0.1:1"}, "--cert", true},
		{"no cloud", Config{CertDir: alice}, "--cloud", true},
		{"bad cloud address", Config{CertDir: alice, Cloud: "nowhere"}, "cloud address", true},
		{"bad MTU", Config{CertDir: alice, Cloud: "127.0.0.1:1", MTU: 70000}, "MTU", true},
		{"missing cert dir", Config{CertDir: filepath.Join(dir, "missing"), Cloud: "127.0.0.1:1"}, "missing", false},
		{"service certificate", Config{CertDir: filepath.Join(dir, "as"), Cloud: "127.0.0.1:1"}, "not a node's", true},
		{"missing CA", Config{CertDir: alice, CAFile: filepath.Join(dir, "noca", "ca.crt"), Cloud: "127.0.0.1:1"}, "CA certificate", false},
		{"garbage CA", Config{CertDir: alice, CAFile: garbage, Cloud: "127.0.0.1:1"}, "no PEM", false},
		{"bad listen address", Config{CertDir: alice, Cloud: "127.0.0.1:1", Listen4: "300.1.1.1:0"}, "sockets", false},
		{"bad DNS address", Config{CertDir: alice, Cloud: "127.0.0.1:1", Listen4: "127.0.0.1:0", DNS: "300.1.1.1:53",
			Upstream: "127.0.0.1:1", DebugAddr: Off}, "resolver", false},
		{"bad debug address", Config{CertDir: alice, Cloud: "127.0.0.1:1", Listen4: "127.0.0.1:0", DNS: Off,
			DebugAddr: "300.1.1.1:1"}, "debug", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Logger = quiet()
			if cfg.Device == nil {
				dev, _ := tun.NewMemPair("mem0", 1280, 8)
				cfg.Device = dev
				defer dev.Close()
			}
			n, err := Start(context.Background(), cfg)
			if err == nil {
				n.Stop(context.Background())
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
			if errors.Is(err, ErrConfig) != tt.isUsage {
				t.Fatalf("errors.Is(%v, ErrConfig) = %v, want %v", err, !tt.isUsage, tt.isUsage)
			}
		})
	}
}

// A node whose cloud never answers still starts, serves its status and
// stops cleanly (logging in continues in the background).
func TestStartStopWithoutCloud(t *testing.T) {
	dir := identities(t)
	dev, _ := tun.NewMemPair("mem0", 1280, 8)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	var n *Node
	started := make(chan struct{})
	go func() {
		var err error
		n, err = Start(ctx, Config{
			CertDir: filepath.Join(dir, "alice"), Cloud: "127.0.0.1:9", Listen4: "127.0.0.1:0",
			DNS: "127.0.0.1:0", Upstream: "127.0.0.1:1", DebugAddr: "127.0.0.1:0", Device: dev, Logger: quiet(),
		})
		close(started)
		if err != nil {
			errc <- err
			return
		}
		<-ctx.Done()
		errc <- n.Stop(context.Background())
	}()
	<-started
	if n == nil {
		t.Fatal(<-errc)
	}
	st, err := FetchStatus(context.Background(), n.DebugAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	if st.Session.FQDN != "alice.example.cyphonic" || st.DNS == "" {
		t.Fatalf("status %+v", st)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(context.Background()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}
