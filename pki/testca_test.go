package pki

import (
	"crypto/x509"
	"fmt"
	"math/big"
	"path/filepath"
	"testing"
	"time"
)

// testCA is a Signer with a directory holding its ca.crt and revoked.crl
// and a counter for VIPs: enough of a CA for this package's tests, which
// cannot import the real one (cloud/rootca imports pki).
type testCA struct {
	*Signer
	dir   string
	vips  uint64
	crl   uint64
	revok []x509.RevocationListEntry
}

// newCA makes a test CA in a fresh temporary directory.
func newCA(t testing.TB, name string) *testCA {
	t.Helper()
	s, err := NewSigner(name, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{Signer: s, dir: filepath.Join(t.TempDir(), "ca")}
	if err := WriteRoot(ca.dir, s.Cert); err != nil {
		t.Fatal(err)
	}
	return ca
}

func (ca *testCA) Dir() string { return ca.dir }

func (ca *testCA) Issue(role Role, fqdn string, validity time.Duration) (*Identity, error) {
	now := time.Now()
	return ca.IssueAt(role, fqdn, now.Add(-ClockSkew), now.Add(validity))
}

func (ca *testCA) IssueAt(role Role, fqdn string, nb, na time.Time) (*Identity, error) {
	return NewIdentity(CertRequest{Role: role, FQDN: fqdn, NotBefore: nb, NotAfter: na}, func(req CertRequest) ([]byte, error) {
		if role == RoleNode {
			ca.vips++
			var err error
			if req.VIP6, req.VIP4, err = VIPPair(DefaultVIP6, DefaultVIP4, ca.vips); err != nil {
				return nil, err
			}
		}
		return ca.Sign(req)
	})
}

// Revoke signs the next deny list with serial added into the directory.
func (ca *testCA) Revoke(serial *big.Int) error {
	ca.crl++
	ca.revok = append(ca.revok, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: time.Now()})
	der, err := ca.SignCRL(ca.crl, ca.revok, time.Now())
	if err != nil {
		return fmt.Errorf("test CA: %w", err)
	}
	return ReplaceFile(filepath.Join(ca.dir, CRLFile), der, 0o644)
}
