package pki

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// newCA makes a CA in a fresh temporary directory.
func newCA(t testing.TB, name string) *CA {
	t.Helper()
	ca, err := InitCA(filepath.Join(t.TempDir(), "ca"), name, 24*time.Hour)
	if err != nil {
		t.Fatalf("InitCA: %v", err)
	}
	return ca
}

func TestInitCARefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	ca, err := InitCA(dir, "CYPHONIC root", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := InitCA(dir, "CYPHONIC root", time.Hour); !errors.Is(err, ErrCAExists) {
		t.Fatalf("second InitCA: err = %v, want ErrCAExists", err)
	}
	// The original CA is intact.
	loaded, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(ca.Cert) {
		t.Fatal("CA certificate changed after refused overwrite")
	}
	// A stray key alone also blocks InitCA.
	dir2 := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir2, CAKeyFile), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := InitCA(dir2, "x", time.Hour); !errors.Is(err, ErrCAExists) {
		t.Fatalf("InitCA over a stray key: err = %v, want ErrCAExists", err)
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
	st, err := os.Stat(filepath.Join(ca.Dir(), CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key mode %v, want 0600", st.Mode().Perm())
	}
	loaded, err := LoadCA(ca.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.key.Equal(ca.key) {
		t.Fatal("loaded CA key differs")
	}
	root, err := LoadRoot(ca.Dir())
	if err != nil || !root.Equal(ca.Cert) {
		t.Fatalf("LoadRoot: %v", err)
	}
}

func TestLoadCAMismatchedKey(t *testing.T) {
	a, b := newCA(t, "a"), newCA(t, "b")
	key, err := os.ReadFile(filepath.Join(b.Dir(), CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a.Dir(), CAKeyFile), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(a.Dir()); err == nil {
		t.Fatal("LoadCA accepted a key that is not the certificate's")
	}
}

func TestIssueRefusesBadRequests(t *testing.T) {
	ca := newCA(t, "root")
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	noise, _ := GenerateNoiseKeypair()
	now := time.Now()
	good := CertRequest{Role: RoleNode, FQDN: "alice.example", PublicKey: pub, NoiseStatic: noise.Public,
		NotBefore: now, NotAfter: now.Add(time.Hour),
		VIP6: netip.MustParseAddr("fd63:7970:686f::9"), VIP4: netip.MustParseAddr("100.64.0.9")}
	tests := []struct {
		name string
		mod  func(*CertRequest)
	}{
		{"invalid fqdn", func(r *CertRequest) { r.FQDN = "bad_name.example" }},
		{"single label", func(r *CertRequest) { r.FQDN = "alice" }},
		{"service domain", func(r *CertRequest) { r.FQDN = "as.cyphonic.internal" }},
		{"unknown role", func(r *CertRequest) { r.Role = 9 }},
		{"zero role", func(r *CertRequest) { r.Role = 0 }},
		{"short key", func(r *CertRequest) { r.PublicKey = pub[:5] }},
		{"no noise key", func(r *CertRequest) { r.NoiseStatic = [32]byte{} }},
		{"empty window", func(r *CertRequest) { r.NotAfter = r.NotBefore }},
		{"node without VIPs", func(r *CertRequest) { r.VIP6, r.VIP4 = netip.Addr{}, netip.Addr{} }},
		{"node without IPv4 VIP", func(r *CertRequest) { r.VIP4 = netip.Addr{} }},
		{"VIPs swapped", func(r *CertRequest) { r.VIP6, r.VIP4 = r.VIP4, r.VIP6 }},
		{"v4-mapped IPv6 VIP", func(r *CertRequest) { r.VIP6 = netip.MustParseAddr("::ffff:100.64.0.9") }},
		{"service with VIPs", func(r *CertRequest) { r.Role = RoleAS }},
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
	if _, err := ca.Sign(CertRequest{Role: RoleNode, FQDN: "x"}); !errors.Is(err, ErrInvalidFQDN) {
		t.Errorf("Sign with invalid FQDN: err = %v, want ErrInvalidFQDN", err)
	}
}

func TestIdentityRoundTrip(t *testing.T) {
	ca := newCA(t, "root")
	for _, tc := range []struct {
		role     Role
		fqdn     string
		wantFQDN string
	}{
		{RoleNode, "Alice.Example.Cyphonic.", "alice.example.cyphonic"},
		{RoleAS, "", "as.cyphonic.internal"},
		{RoleNMS, "ignored.example", "nms.cyphonic.internal"},
		{RoleTRS, "", "trs.cyphonic.internal"},
	} {
		id, err := ca.Issue(tc.role, tc.fqdn, time.Hour)
		if err != nil {
			t.Fatalf("Issue %s: %v", tc.role, err)
		}
		if id.FQDN != tc.wantFQDN || id.Role != tc.role {
			t.Fatalf("Issue %s: FQDN %q role %s", tc.role, id.FQDN, id.Role)
		}
		if id.Cert.Subject.CommonName != tc.wantFQDN || len(id.Cert.DNSNames) != 1 || id.Cert.DNSNames[0] != tc.wantFQDN {
			t.Fatalf("Issue %s: CN %q SAN %v", tc.role, id.Cert.Subject.CommonName, id.Cert.DNSNames)
		}
		dir := filepath.Join(t.TempDir(), "id")
		if err := WriteIdentity(dir, id); err != nil {
			t.Fatal(err)
		}
		if err := WriteIdentity(dir, id); !errors.Is(err, os.ErrExist) {
			t.Fatalf("second WriteIdentity: err = %v, want ErrExist", err)
		}
		for _, f := range []string{KeyFile, NoiseFile} {
			st, err := os.Stat(filepath.Join(dir, f))
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("%s: %v mode %v", f, err, st.Mode().Perm())
			}
		}
		got, err := LoadIdentity(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got.FQDN != id.FQDN || got.Role != id.Role || !got.Key.Equal(id.Key) ||
			got.NoiseStatic != id.NoiseStatic || !got.Cert.Equal(id.Cert) {
			t.Fatalf("LoadIdentity %s: identity differs", tc.role)
		}
	}
}

func TestLoadIdentityMismatchedKeys(t *testing.T) {
	ca := newCA(t, "root")
	alice, _ := ca.Issue(RoleNode, "alice.example", time.Hour)
	bob, _ := ca.Issue(RoleNode, "bob.example", time.Hour)
	for _, file := range []string{KeyFile, NoiseFile} {
		da, db := t.TempDir(), t.TempDir()
		if err := WriteIdentity(da, alice); err != nil {
			t.Fatal(err)
		}
		if err := WriteIdentity(db, bob); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(db, file))
		if err := os.WriteFile(filepath.Join(da, file), b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadIdentity(da); err == nil {
			t.Errorf("LoadIdentity accepted bob's %s with alice's certificate", file)
		}
	}
}

func TestNoiseKeypair(t *testing.T) {
	a, err := GenerateNoiseKeypair()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := GenerateNoiseKeypair()
	if a.Private == b.Private || a.Public == b.Public {
		t.Fatal("two generated keypairs are equal")
	}
	// The public key is the private key's: re-deriving gives the same.
	again, err := noiseKeypairFrom(a.Private)
	if err != nil || again != a {
		t.Fatalf("re-derived keypair differs: %v", err)
	}
}
