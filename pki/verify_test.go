package pki

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func mustIssue(t testing.TB, ca *testCA, role Role, fqdn string, nb, na time.Time) *Identity {
	t.Helper()
	id, err := ca.IssueAt(role, fqdn, nb, na)
	if err != nil {
		t.Fatalf("IssueAt %s %s: %v", role, fqdn, err)
	}
	return id
}

func TestVerify(t *testing.T) {
	now := time.Now()
	ca := newCA(t, "CYPHONIC root")
	// Same subject name as the real root: only the signature tells them apart.
	other := newCA(t, "CYPHONIC root")

	alice := mustIssue(t, ca, RoleNode, "alice.example", now.Add(-time.Hour), now.Add(time.Hour))
	nms := mustIssue(t, ca, RoleNMS, "", now.Add(-time.Hour), now.Add(time.Hour))
	expired := mustIssue(t, ca, RoleNode, "old.example", now.Add(-2*time.Hour), now.Add(-time.Hour))
	future := mustIssue(t, ca, RoleNode, "soon.example", now.Add(time.Hour), now.Add(2*time.Hour))
	foreign := mustIssue(t, other, RoleNode, "alice.example", now.Add(-time.Hour), now.Add(time.Hour))
	revoked := mustIssue(t, ca, RoleNode, "mallory.example", now.Add(-time.Hour), now.Add(time.Hour))

	nodes, err := NewVerifier(ca.Cert, RoleNode)
	if err != nil {
		t.Fatal(err)
	}
	nodes.SetDenyList(NewDenyList(revoked.Cert.SerialNumber))
	services, err := NewVerifier(ca.Cert, RoleAS, RoleNMS, RoleTRS)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		v       *Verifier
		der     []byte
		want    string
		wantErr error
		ident   *Identity // the identity a success must describe
	}{
		{"node any name", nodes, alice.CertDER, "", nil, alice},
		{"node by name", nodes, alice.CertDER, "alice.example", nil, alice},
		{"node by name, not canonical", nodes, alice.CertDER, "ALICE.example.", nil, alice},
		{"service", services, nms.CertDER, "nms.cyphonic.internal", nil, nms},
		{"expired", nodes, expired.CertDER, "", ErrExpired, nil},
		{"not yet valid", nodes, future.CertDER, "", ErrNotYetValid, nil},
		{"other CA", nodes, foreign.CertDER, "alice.example", ErrUnknownCA, nil},
		{"revoked", nodes, revoked.CertDER, "", ErrRevoked, nil},
		{"fqdn mismatch", nodes, alice.CertDER, "bob.example", ErrFQDNMismatch, nil},
		{"invalid wanted fqdn", nodes, alice.CertDER, "alice", ErrFQDNMismatch, nil},
		{"garbage", nodes, []byte("not a certificate"), "", ErrBadCert, nil},
		{"empty", nodes, nil, "", ErrBadCert, nil},
		{"truncated", nodes, alice.CertDER[:len(alice.CertDER)/2], "", ErrBadCert, nil},
		{"node where service wanted", services, alice.CertDER, "", ErrWrongRole, nil},
		{"service where node wanted", nodes, nms.CertDER, "", ErrWrongRole, nil},
		{"CA certificate as leaf", nodes, ca.CertDER, "", ErrBadCert, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.v.Verify(tt.der, tt.want, now)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				var ve *VerifyError
				if !errors.As(err, &ve) {
					t.Fatalf("err %T is not a *VerifyError", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			id := tt.ident
			if p.FQDN != id.FQDN || p.Role != id.Role || p.NoiseStatic != id.NoiseStatic.Public ||
				p.Serial.Cmp(id.Cert.SerialNumber) != 0 || !p.NotAfter.Equal(id.Cert.NotAfter) {
				t.Fatalf("peer %+v does not describe %s", p, id.FQDN)
			}
		})
	}
}

func TestVerifyErrorNamesCert(t *testing.T) {
	now := time.Now()
	ca := newCA(t, "root")
	id := mustIssue(t, ca, RoleNode, "old.example", now.Add(-2*time.Hour), now.Add(-time.Hour))
	v, _ := NewVerifier(ca.Cert, RoleNode)
	_, err := v.Verify(id.CertDER, "", now)
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
	if ve.FQDN != "old.example" || ve.Serial != FormatSerial(id.Cert.SerialNumber) {
		t.Fatalf("VerifyError names %q serial %s", ve.FQDN, ve.Serial)
	}
}

func TestVerifyExpiredRoot(t *testing.T) {
	ca := newCA(t, "root") // valid 24h
	later := time.Now().Add(48 * time.Hour)
	id := mustIssue(t, ca, RoleNode, "alice.example", time.Now(), later.Add(time.Hour))
	v, _ := NewVerifier(ca.Cert, RoleNode)
	if _, err := v.Verify(id.CertDER, "", later); !errors.Is(err, ErrExpired) {
		t.Fatalf("leaf valid but root expired: err = %v, want ErrExpired", err)
	}
}

// signRaw signs an arbitrary template with the CA key, to build
// certificates Sign would refuse to make.
func signRaw(t *testing.T, ca *testCA, tmpl *x509.Certificate) []byte {
	t.Helper()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestVerifyRejectsMisshapenCerts(t *testing.T) {
	now := time.Now()
	ca := newCA(t, "root")
	v, _ := NewVerifier(ca.Cert, RoleNode)
	noise, _ := GenerateNoiseKeypair()
	ext := func(key []byte) pkix.Extension {
		b, _ := asn1.Marshal(key)
		return pkix.Extension{Id: OIDNoiseStatic, Value: b}
	}
	base := func() *x509.Certificate {
		return &x509.Certificate{
			SerialNumber:          big.NewInt(42),
			Subject:               pkix.Name{CommonName: "alice.example"},
			DNSNames:              []string{"alice.example"},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(time.Hour),
			KeyUsage:              x509.KeyUsageDigitalSignature,
			UnknownExtKeyUsage:    []asn1.ObjectIdentifier{RoleNode.OID()},
			BasicConstraintsValid: true,
			ExtraExtensions:       []pkix.Extension{ext(noise.Public[:])},
			IPAddresses:           []net.IP{net.ParseIP("fd63:7970:686f::1"), net.ParseIP("100.64.0.1").To4()},
		}
	}
	if _, err := v.Verify(signRaw(t, ca, base()), "", now); err != nil {
		t.Fatalf("well-formed control certificate: %v", err)
	}
	tests := []struct {
		name string
		mod  func(*x509.Certificate)
	}{
		{"no noise key", func(c *x509.Certificate) { c.ExtraExtensions = nil }},
		{"short noise key", func(c *x509.Certificate) { c.ExtraExtensions = []pkix.Extension{ext(noise.Public[:31])} }},
		{"zero noise key", func(c *x509.Certificate) { c.ExtraExtensions = []pkix.Extension{ext(make([]byte, 32))} }},
		{"noise key not DER", func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{{Id: OIDNoiseStatic, Value: noise.Public[:]}}
		}},
		{"no role", func(c *x509.Certificate) { c.UnknownExtKeyUsage = nil }},
		{"two roles", func(c *x509.Certificate) {
			c.UnknownExtKeyUsage = append(c.UnknownExtKeyUsage, RoleAS.OID())
		}},
		{"role out of range", func(c *x509.Certificate) {
			c.UnknownExtKeyUsage = []asn1.ObjectIdentifier{append(oidRoleArc, 257)}
		}},
		{"cert-sign usage", func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign }},
		{"no digital signature", func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyEncipherment }},
		{"is CA", func(c *x509.Certificate) { c.IsCA = true }},
		{"SAN differs from CN", func(c *x509.Certificate) { c.DNSNames = []string{"bob.example"} }},
		{"two SANs", func(c *x509.Certificate) { c.DNSNames = append(c.DNSNames, "bob.example") }},
		{"invalid name", func(c *x509.Certificate) {
			c.Subject.CommonName, c.DNSNames = "Alice.example", []string{"Alice.example"}
		}},
		{"node named like a service", func(c *x509.Certificate) {
			c.Subject.CommonName, c.DNSNames = "as.cyphonic.internal", []string{"as.cyphonic.internal"}
		}},
		{"no VIPs (a certificate from before VIPs were bound)", func(c *x509.Certificate) { c.IPAddresses = nil }},
		{"only an IPv4 VIP", func(c *x509.Certificate) { c.IPAddresses = c.IPAddresses[1:] }},
		{"two IPv4 VIPs", func(c *x509.Certificate) {
			c.IPAddresses = []net.IP{net.ParseIP("100.64.0.2").To4(), net.ParseIP("100.64.0.1").To4()}
		}},
		{"three VIPs", func(c *x509.Certificate) {
			c.IPAddresses = append(c.IPAddresses, net.ParseIP("fd63:7970:686f::2"))
		}},
		{"unknown critical extension", func(c *x509.Certificate) {
			c.ExtraExtensions = append(c.ExtraExtensions,
				pkix.Extension{Id: append(OIDArc, 99), Critical: true, Value: []byte{5, 0}})
		}},
	}
	for _, tt := range tests {
		c := base()
		tt.mod(c)
		if _, err := v.Verify(signRaw(t, ca, c), "", now); !errors.Is(err, ErrBadCert) {
			t.Errorf("%s: err = %v, want ErrBadCert", tt.name, err)
		}
	}
}

func TestVerifierLiveDenyList(t *testing.T) {
	now := time.Now()
	ca := newCA(t, "root")
	alice := mustIssue(t, ca, RoleNode, "alice.example", now.Add(-time.Hour), now.Add(time.Hour))
	bob := mustIssue(t, ca, RoleNode, "bob.example", now.Add(-time.Hour), now.Add(time.Hour))

	live, err := NewDenyListFile(ca.Dir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := NewVerifier(ca.Cert, RoleNode)
	v.SetDenySource(live.Current)
	if _, err := v.Verify(alice.CertDER, "", now); err != nil {
		t.Fatalf("before revocation: %v", err)
	}

	// Revocation through another handle on the CA directory, as the
	// `ca revoke` command would do while the service runs.
	admin := ca
	if err := admin.Revoke(alice.Cert.SerialNumber); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(alice.CertDER, "", now); !errors.Is(err, ErrRevoked) {
		t.Fatalf("after revoking alice: err = %v, want ErrRevoked", err)
	}
	if _, err := v.Verify(bob.CertDER, "", now); err != nil {
		t.Fatalf("bob after revoking alice: %v", err)
	}
	if err := admin.Revoke(bob.Cert.SerialNumber); err != nil {
		t.Fatal(err)
	}
	if err := admin.Revoke(bob.Cert.SerialNumber); err != nil { // idempotent
		t.Fatal(err)
	}
	if _, err := v.Verify(bob.CertDER, "", now); !errors.Is(err, ErrRevoked) {
		t.Fatalf("after revoking bob: err = %v, want ErrRevoked", err)
	}

	d, err := LoadDenyList(ca.Dir())
	if err != nil || d.Len() != 2 || !d.Contains(alice.Cert.SerialNumber) || !d.Contains(bob.Cert.SerialNumber) {
		t.Fatalf("LoadDenyList: %v, %v", d.Serials(), err)
	}

	// A corrupted file keeps the last good list rather than un-revoking.
	if err := os.WriteFile(filepath.Join(ca.Dir(), CRLFile), []byte("zz not a CRL\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(alice.CertDER, "", now); !errors.Is(err, ErrRevoked) {
		t.Fatalf("after corrupting revoked.crl: err = %v, want ErrRevoked", err)
	}
	if _, err := LoadDenyList(ca.Dir()); err == nil {
		t.Fatal("LoadDenyList accepted a corrupt file")
	}
}

func TestParseSerialRoundTrip(t *testing.T) {
	s, _ := randomSerial()
	got, err := ParseSerial(FormatSerial(s))
	if err != nil || got.Cmp(s) != 0 {
		t.Fatalf("ParseSerial(FormatSerial(%v)) = %v, %v", s, got, err)
	}
}

func FuzzVerify(f *testing.F) {
	ca := newCA(f, "root")
	id, err := ca.Issue(RoleNode, "alice.example", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	v, _ := NewVerifier(ca.Cert, RoleNode)
	f.Add(id.CertDER)
	f.Add([]byte{})
	f.Add(ca.CertDER)
	now := time.Now()
	f.Fuzz(func(t *testing.T, der []byte) {
		p, err := v.Verify(der, "", now)
		if err == nil && (p.FQDN == "" || p.NoiseStatic == [32]byte{}) {
			t.Fatalf("accepted certificate without name or key: %+v", p)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	ca := newCA(b, "root")
	id, err := ca.Issue(RoleNode, "alice.example", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	v, _ := NewVerifier(ca.Cert, RoleNode)
	v.SetDenyList(NewDenyList(big.NewInt(1), big.NewInt(2)))
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(id.CertDER, "alice.example", now); err != nil {
			b.Fatal(err)
		}
	}
}
