package pki

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// signCRL signs a list with key as issuer (the CA's own key, or another).
func signCRL(t *testing.T, issuer *x509.Certificate, key ed25519.PrivateKey, number int64, serials ...int64) []byte {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: time.Now()})
	}
	tmpl := &x509.RevocationList{ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour), RevokedCertificateEntries: entries}
	if number > 0 {
		tmpl.Number = big.NewInt(number)
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestParseCRL(t *testing.T) {
	ca := newCA(t, "root")
	// An impostor CA with the same name: only the signature differs.
	other := newCA(t, "root")
	good := signCRL(t, ca.Cert, ca.key, 3, 7, 9)
	tests := []struct {
		name string
		der  []byte
		want error
	}{
		{"good", good, nil},
		{"signed by another key", signCRL(t, other.Cert, other.key, 3, 7), ErrCRLSignature},
		{"garbage", []byte("not a CRL"), ErrCRLMalformed},
		{"empty", nil, ErrCRLMalformed},
		{"too large", make([]byte, MaxCRLLen+1), ErrCRLMalformed},
		{"truncated", good[:len(good)-10], ErrCRLMalformed},
		{"flipped signature", func() []byte { b := append([]byte(nil), good...); b[len(b)-1] ^= 1; return b }(), ErrCRLSignature},
	}
	for _, tt := range tests {
		c, err := ParseCRL(tt.der, ca.Cert)
		if tt.want == nil {
			if err != nil || c.Number != 3 || c.DenyList().Len() != 2 || !c.DenyList().Contains(big.NewInt(9)) {
				t.Errorf("%s: %+v, %v", tt.name, c, err)
			}
			continue
		}
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: err %v, want %v", tt.name, err, tt.want)
		}
	}
}

// TestCRLStateNeverGoesBack: a holder keeps the newest valid list; an
// older list (a replay to un-revoke), a forged one, or a second list under
// the same number changes nothing.
func TestCRLStateNeverGoesBack(t *testing.T) {
	ca, other := newCA(t, "root"), newCA(t, "root")
	v1 := signCRL(t, ca.Cert, ca.key, 1, 10)
	v2 := signCRL(t, ca.Cert, ca.key, 2, 10, 11)
	v2b := signCRL(t, ca.Cert, ca.key, 2) // same number, withdraws both
	st := NewCRLState(ca.Cert)
	steps := []struct {
		name    string
		der     []byte
		changed bool
		err     error
		number  uint64
	}{
		{"first list", v1, true, nil, 1},
		{"repeat", v1, false, nil, 1},
		{"newer", v2, true, nil, 2},
		{"older", v1, false, ErrCRLStale, 2},
		{"same number, other content", v2b, false, ErrCRLConflict, 2},
		{"forged newer", signCRL(t, other.Cert, other.key, 9), false, ErrCRLSignature, 2},
		{"garbage", []byte{0x30, 0x00}, false, ErrCRLMalformed, 2},
	}
	for _, s := range steps {
		changed, err := st.Offer(s.der)
		if changed != s.changed || !errors.Is(err, s.err) || st.Number() != s.number {
			t.Errorf("%s: changed %v err %v number %d; want %v %v %d", s.name, changed, err, st.Number(), s.changed, s.err, s.number)
		}
	}
	if d := st.DenyList(); !d.Contains(big.NewInt(10)) || !d.Contains(big.NewInt(11)) {
		t.Fatalf("held list %v", d.Serials())
	}
	if NewCRLState(ca.Cert).DenyList().Contains(big.NewInt(10)) {
		t.Fatal("an empty state revokes")
	}
}

// TestRevokeSignsIncreasingCRLs: each revocation is a new CA-signed list
// with the next number; legacy revoked.txt serials are carried over.
func FuzzParseCRL(f *testing.F) {
	ca := newCA(f, "root")
	if err := ca.Revoke(big.NewInt(5)); err != nil {
		f.Fatal(err)
	}
	c, err := LoadCRL(ca.Dir(), ca.Cert)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(c.DER)
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		l, err := ParseCRL(der, ca.Cert)
		if err == nil && (l.Number == 0 || l.DenyList() == nil) {
			t.Fatalf("accepted a list without number: %+v", l)
		}
	})
}

// TestDenyListFileNeverGoesBack: the cloud's live view of revoked.crl
// follows newer lists, and ignores a file replaced by an older list, a
// forged one, or deleted: none of them un-revokes anyone.
func TestDenyListFileNeverGoesBack(t *testing.T) {
	ca, other := newCA(t, "root"), newCA(t, "root")
	path := filepath.Join(ca.Dir(), CRLFile)
	live, err := NewDenyListFile(ca.Dir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Revoke(big.NewInt(1)); err != nil {
		t.Fatal(err)
	}
	v1, _ := os.ReadFile(path)
	if err := ca.Revoke(big.NewInt(2)); err != nil {
		t.Fatal(err)
	}
	if c := live.CRL(); c == nil || c.Number != 2 || !live.Current().Contains(big.NewInt(2)) {
		t.Fatalf("after two revocations: %+v", c)
	}
	for _, step := range []struct {
		name  string
		write func() error
	}{
		{"older list", func() error { return ReplaceFile(path, v1, 0o644) }},
		{"forged newer list", func() error { return ReplaceFile(path, signCRL(t, other.Cert, other.key, 9), 0o644) }},
		{"deleted", func() error { return os.Remove(path) }},
	} {
		if err := step.write(); err != nil {
			t.Fatal(err)
		}
		if c := live.CRL(); c == nil || c.Number != 2 || !live.Current().Contains(big.NewInt(2)) {
			t.Fatalf("%s: holding %+v", step.name, c)
		}
	}
}
