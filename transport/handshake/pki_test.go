package handshake

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"
	"time"
)

// A small real PKI for the tests: an Ed25519 CA issuing X.509 node
// certificates whose extension carries the node's X25519 Noise static key.
// The production PKI lives in cloud/; only the VerifyFunc shape is shared.

var oidNoiseStatic = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 59999, 1, 1}

type testCA struct {
	cert *x509.Certificate
	key  ed25519.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test overlay CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: priv, pool: pool}
}

// issue certifies fqdn with noiseStatic bound into the certificate.
func (ca *testCA) issue(t testing.TB, fqdn string, noiseStatic [32]byte) []byte {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := asn1.Marshal(noiseStatic[:])
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:    big.NewInt(time.Now().UnixNano()),
		Subject:         pkix.Name{CommonName: fqdn},
		DNSNames:        []string{fqdn},
		NotBefore:       time.Now().Add(-time.Hour),
		NotAfter:        time.Now().Add(time.Hour),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		ExtraExtensions: []pkix.Extension{{Id: oidNoiseStatic, Value: ext}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func (ca *testCA) verify(der []byte) (string, [32]byte, error) {
	var static [32]byte
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return "", static, err
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return "", static, err
	}
	if len(cert.DNSNames) != 1 {
		return "", static, errors.New("want exactly one DNS name")
	}
	for _, e := range cert.Extensions {
		if e.Id.Equal(oidNoiseStatic) {
			var raw []byte
			if rest, err := asn1.Unmarshal(e.Value, &raw); err != nil || len(rest) != 0 || len(raw) != 32 {
				return "", static, errors.New("bad noise static extension")
			}
			copy(static[:], raw)
			return cert.DNSNames[0], static, nil
		}
	}
	return "", static, errors.New("no noise static extension")
}

// node is one test party: its static key and a config for it.
func newNode(t testing.TB, ca *testCA, fqdn string) Config {
	t.Helper()
	k, err := GenerateStaticKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return Config{Static: k, CertDER: ca.issue(t, fqdn, k.Public), Verify: ca.verify, Prologue: PrologueNode}
}
