package node

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
		{"bad listen address", Config{CertDir: alice, Cloud: "127.0.0.1:1", Listen4: "300.1.1.1:0"}, "--listen4", false},
		{"bad DNS address", Config{CertDir: alice, Cloud: "127.0.0.1:1", Listen4: "127.0.0.1:0", DNS: "300.1.1.1:53",
			Upstream: "127.0.0.1:1", DebugAddr: Off}, "--dns", false},
		{"bad debug address", Config{CertDir: alice, Cloud: "127.0.0.1:1", Listen4: "127.0.0.1:0", DNS: Off,
			DebugAddr: "300.1.1.1:1"}, "--debug-addr", false},
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

// TestStartChecksOwnCertificate: a certificate the cloud and peers would
// refuse stops the node at start, naming the option and the cause, where
// it used to show only as a login that was never answered.
func TestStartChecksOwnCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, other := pkitest.New(t), pkitest.New(t)
	if err := pki.WriteRoot(filepath.Join(dir, "other"), other.Cert); err != nil {
		t.Fatal(err)
	}
	write := func(name string, id *pki.Identity) string {
		t.Helper()
		d := filepath.Join(dir, name)
		if err := pki.WriteIdentity(d, id); err != nil {
			t.Fatal(err)
		}
		if err := pki.WriteRoot(d, ca.Cert); err != nil {
			t.Fatal(err)
		}
		return d
	}
	now := time.Now()
	expired, err := ca.IssueAt(pki.RoleNode, "old.example.cyphonic", now.Add(-2*time.Hour), now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	future, err := ca.IssueAt(pki.RoleNode, "future.example.cyphonic", now.Add(time.Hour), now.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.Issue(pki.RoleNode, "foreign.example.cyphonic", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	good, err := ca.Issue(pki.RoleNode, "good.example.cyphonic", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	goodDir := write("good", good)
	revoked, err := ca.Issue(pki.RoleNode, "revoked.example.cyphonic", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	revokedDir := write("revoked", revoked)
	der, err := ca.SignCRL(2, []x509.RevocationListEntry{{SerialNumber: revoked.Cert.SerialNumber, RevocationTime: now}}, now)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := pki.ParseCRL(der, ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.SaveCRL(revokedDir, crl); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		cfg    Config
		option string
		want   string
	}{
		{"expired", Config{CertDir: write("old", expired)}, "cert", "expired on"},
		{"not yet valid", Config{CertDir: write("future", future)}, "cert", "clock"},
		{"another CA", Config{CertDir: write("foreign", foreign)}, "ca", "not issued by the CA in"},
		{"wrong --ca", Config{CertDir: goodDir, CAFile: filepath.Join(dir, "other", pki.CACertFile)}, "ca", "not issued by the CA in"},
		{"a leaf as --ca", Config{CertDir: goodDir, CAFile: filepath.Join(goodDir, "node.crt")}, "ca", "not a CA"},
		{"revoked", Config{CertDir: revokedDir}, "cert", "revoked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Cloud, cfg.Listen4, cfg.DNS, cfg.DebugAddr, cfg.Logger = "127.0.0.1:1", "127.0.0.1:0", Off, Off, quiet()
			dev, _ := tun.NewMemPair("mem0", 1280, 8)
			cfg.Device = dev
			defer dev.Close()
			n, err := Start(context.Background(), cfg)
			if err == nil {
				n.Stop(context.Background())
				t.Fatal("Start succeeded")
			}
			var oe *OptionError
			if !errors.As(err, &oe) || oe.Option != tt.option || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q; want an OptionError for --%s mentioning %q", err, tt.option, tt.want)
			}
		})
	}
}

// TestStartWarnsAheadOfExpiry: a certificate within its last third (or
// 30 days) starts, with a warning saying so.
func TestStartWarnsAheadOfExpiry(t *testing.T) {
	dir := t.TempDir()
	ca := pkitest.New(t)
	now := time.Now()
	id, err := ca.IssueAt(pki.RoleNode, "late.example.cyphonic", now.Add(-50*time.Minute), now.Add(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	d := filepath.Join(dir, "late")
	if err := pki.WriteIdentity(d, id); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteRoot(d, ca.Cert); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	dev, _ := tun.NewMemPair("mem0", 1280, 8)
	n, err := Start(context.Background(), Config{CertDir: d, Cloud: "127.0.0.1:9", Listen4: "127.0.0.1:0",
		DNS: Off, DebugAddr: Off, Device: dev, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop(context.Background())
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "expires soon") {
		t.Fatalf("no expiry warning in:\n%s", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestExpiryWatchedWhileRunning: a running node warns when its
// certificate enters its last stretch and says at ERROR when it expired.
func TestExpiryWatchedWhileRunning(t *testing.T) {
	dir := t.TempDir()
	ca := pkitest.New(t)
	now := time.Now()
	// Lifetime 18 s: the warning window is its last third, 6 s. Certificate
	// times are whole seconds, so the life can be up to a second shorter
	// than asked: the start still falls two seconds before the window.
	id, err := ca.IssueAt(pki.RoleNode, "brief.example.cyphonic", now.Add(-9*time.Second), now.Add(9*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	d := filepath.Join(dir, "brief")
	if err := pki.WriteIdentity(d, id); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteRoot(d, ca.Cert); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	var mu sync.Mutex
	read := func() string { mu.Lock(); defer mu.Unlock(); return logs.String() }
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	dev, _ := tun.NewMemPair("mem0", 1280, 8)
	n, err := Start(context.Background(), Config{CertDir: d, Cloud: "127.0.0.1:9", Listen4: "127.0.0.1:0",
		DNS: Off, DebugAddr: Off, Device: dev, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop(context.Background())
	if strings.Contains(read(), "expires soon") {
		t.Fatalf("warned at start, before the window:\n%s", read())
	}
	deadline := time.Now().Add(20 * time.Second)
	for !(strings.Contains(read(), "expires soon") && strings.Contains(read(), "level=ERROR msg=\"the node's certificate has expired")) {
		if time.Now().After(deadline) {
			t.Fatalf("no warning and error while running:\n%s", read())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStateWord(t *testing.T) {
	for in, want := range map[string]string{
		"up": "up", "failed: handshake timeout": "failed", "backoff (handshaking)": "backoff", "": "unknown", "handshaking": "handshaking",
	} {
		if got := stateWord(in); got != want {
			t.Errorf("stateWord(%q) = %q, want %q", in, got, want)
		}
	}
}
