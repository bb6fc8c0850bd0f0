package rootca

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/pki"
)

// newCA makes a CA in a fresh temporary directory.
func newCA(t testing.TB, name string) *CA {
	t.Helper()
	ca, err := Init(filepath.Join(t.TempDir(), "ca"), name, 24*time.Hour)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return ca
}

func TestInitCARefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	ca, err := Init(dir, "CYPHONIC root", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Init(dir, "CYPHONIC root", time.Hour); !errors.Is(err, ErrExists) {
		t.Fatalf("second Init: err = %v, want ErrExists", err)
	}
	// The original CA is intact.
	loaded, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(ca.Cert) {
		t.Fatal("CA certificate changed after refused overwrite")
	}
	// A stray key alone also blocks Init.
	dir2 := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir2, KeyFile), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(dir2, "x", time.Hour); !errors.Is(err, ErrExists) {
		t.Fatalf("Init over a stray key: err = %v, want ErrExists", err)
	}
}

func TestCAFiles(t *testing.T) {
	ca := newCA(t, "CYPHONIC root")
	if !ca.Cert.IsCA || ca.Cert.Subject.CommonName != "CYPHONIC root" {
		t.Fatalf("CA cert: IsCA=%v CN=%q", ca.Cert.IsCA, ca.Cert.Subject.CommonName)
	}
	if _, ok := ca.Cert.PublicKey.(ed25519.PublicKey); !ok {
		t.Fatalf("CA key is %T", ca.Cert.PublicKey)
	}
	st, err := os.Stat(filepath.Join(ca.Dir(), KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key mode %v, want 0600", st.Mode().Perm())
	}
	loaded, err := Load(ca.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mustKeyPEM(t, loaded), mustKeyPEM(t, ca)) {
		t.Fatal("loaded CA key differs")
	}
	root, err := pki.LoadRoot(ca.Dir())
	if err != nil || !root.Equal(ca.Cert) {
		t.Fatalf("LoadRoot: %v", err)
	}
}

func TestLoadCAMismatchedKey(t *testing.T) {
	a, b := newCA(t, "a"), newCA(t, "b")
	key, err := os.ReadFile(filepath.Join(b.Dir(), KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a.Dir(), KeyFile), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(a.Dir()); err == nil {
		t.Fatal("Load accepted a key that is not the certificate's")
	}
}

func TestIssueRefusesBadRequests(t *testing.T) {
	ca := newCA(t, "root")
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	noise, _ := pki.GenerateNoiseKeypair()
	now := time.Now()
	good := pki.CertRequest{Role: pki.RoleNode, FQDN: "alice.example", PublicKey: pub, NoiseStatic: noise.Public,
		NotBefore: now, NotAfter: now.Add(time.Hour),
		VIP6: netip.MustParseAddr("fd63:7970:686f::9"), VIP4: netip.MustParseAddr("100.64.0.9")}
	tests := []struct {
		name string
		mod  func(*pki.CertRequest)
	}{
		{"invalid fqdn", func(r *pki.CertRequest) { r.FQDN = "bad_name.example" }},
		{"single label", func(r *pki.CertRequest) { r.FQDN = "alice" }},
		{"service domain", func(r *pki.CertRequest) { r.FQDN = "as.cyphonic.internal" }},
		{"unknown role", func(r *pki.CertRequest) { r.Role = 9 }},
		{"zero role", func(r *pki.CertRequest) { r.Role = 0 }},
		{"short key", func(r *pki.CertRequest) { r.PublicKey = pub[:5] }},
		{"no noise key", func(r *pki.CertRequest) { r.NoiseStatic = [32]byte{} }},
		{"empty window", func(r *pki.CertRequest) { r.NotAfter = r.NotBefore }},
		{"node without VIPs", func(r *pki.CertRequest) { r.VIP6, r.VIP4 = netip.Addr{}, netip.Addr{} }},
		{"node without IPv4 VIP", func(r *pki.CertRequest) { r.VIP4 = netip.Addr{} }},
		{"VIPs swapped", func(r *pki.CertRequest) { r.VIP6, r.VIP4 = r.VIP4, r.VIP6 }},
		{"v4-mapped IPv6 VIP", func(r *pki.CertRequest) { r.VIP6 = netip.MustParseAddr("::ffff:100.64.0.9") }},
		{"service with VIPs", func(r *pki.CertRequest) { r.Role = pki.RoleAS }},
	}
	if _, err := ca.Sign(good); err != nil {
		t.Fatalf("good request: %v", err)
	}
	for _, tt := range tests {
		r := good
		tt.mod(&r)
		if _, err := ca.Sign(r); err == nil {
			t.Errorf("%s: Sign succeeded", tt.name)
		}
	}
	if _, err := ca.Sign(pki.CertRequest{Role: pki.RoleNode, FQDN: "x"}); !errors.Is(err, pki.ErrInvalidFQDN) {
		t.Errorf("Sign with invalid FQDN: err = %v, want pki.ErrInvalidFQDN", err)
	}
}

func mustKeyPEM(t *testing.T, ca *CA) []byte {
	t.Helper()
	b, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustIssue(t testing.TB, ca *CA, role pki.Role, fqdn string, nb, na time.Time) *pki.Identity {
	t.Helper()
	id, err := ca.IssueAt(role, fqdn, nb, na)
	if err != nil {
		t.Fatalf("IssueAt %s %s: %v", role, fqdn, err)
	}
	return id
}
