package pki

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

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
