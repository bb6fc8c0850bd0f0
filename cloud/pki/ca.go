package pki

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// File names in a CA directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// DefaultCAName is the common name of a CA made without one given: by
// `cyphonic ca init` and by a first `cyphonic cloud` alike, so that the
// name tells nothing apart; the key identifier does (errors print it).
const DefaultCAName = "CYPHONIC root CA"

// ErrCAExists is returned by InitCA when dir already holds a CA.
var ErrCAExists = errors.New("CA already exists")

// clockSkew backdates NotBefore so a certificate is valid at once on hosts
// whose clock runs slightly behind the CA's.
const clockSkew = 5 * time.Minute

// CA is the overlay's root certificate authority, backed by a directory.
type CA struct {
	Cert    *x509.Certificate
	CertDER []byte

	key ed25519.PrivateKey
	dir string
	mu  sync.Mutex // serialises Revoke's read-modify-write of revoked.crl
}

// InitCA creates a root CA named name, valid for validity from now, and
// writes it into dir as ca.crt and ca.key (0600). It refuses to overwrite an
// existing CA: replacing the root would orphan every issued certificate.
func InitCA(dir, name string, validity time.Duration) (*CA, error) {
	if fileExists(filepath.Join(dir, CACertFile)) || fileExists(filepath.Join(dir, CAKeyFile)) {
		return nil, fmt.Errorf("pki: init CA in %s: %w", dir, ErrCAExists)
	}
	if name == "" || validity <= 0 {
		return nil, fmt.Errorf("pki: init CA: need a name and a positive validity")
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: init CA: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("pki: init CA: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // leaves only: there are no intermediates
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("pki: init CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: init CA: %w", err)
	}
	keyPEM, err := marshalEd25519(key)
	if err != nil {
		return nil, fmt.Errorf("pki: init CA: %w", err)
	}
	err = writeFiles(dir, []fileSpec{
		{CACertFile, certPEM(der), 0o644},
		{CAKeyFile, keyPEM, 0o600},
	})
	if errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("pki: init CA in %s: %w", dir, ErrCAExists)
	}
	if err != nil {
		return nil, fmt.Errorf("pki: init CA in %s: %w", dir, err)
	}
	return &CA{Cert: cert, CertDER: der, key: key, dir: dir}, nil
}

// LoadCA reads a CA written by InitCA.
func LoadCA(dir string) (*CA, error) {
	cert, der, err := readCert(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("pki: load CA: %w", err)
	}
	key, err := readEd25519(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("pki: load CA: %w", err)
	}
	if pub, ok := cert.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(key.Public()) || !cert.IsCA {
		return nil, fmt.Errorf("pki: load CA %s: %s is not the CA certificate of %s", dir, CACertFile, CAKeyFile)
	}
	return &CA{Cert: cert, CertDER: der, key: key, dir: dir}, nil
}

// Dir is the directory the CA lives in.
func (ca *CA) Dir() string { return ca.dir }

// CertRequest describes a leaf certificate for Sign. The holder's keys are
// public keys only: a node may generate its keys itself and send just these.
type CertRequest struct {
	Role        Role
	FQDN        string // canonicalised; ignored (taken from Role) for services
	PublicKey   ed25519.PublicKey
	NoiseStatic [32]byte
	NotBefore   time.Time
	NotAfter    time.Time
	// VIP6 and VIP4 are a node's virtual addresses, written into the
	// certificate as IP SANs (required for nodes, absent for services).
	// IssueAt allocates them from the CA's registry; Sign takes them as
	// given, so a caller of Sign owns their uniqueness.
	VIP6, VIP4 netip.Addr
}

// Sign issues a leaf certificate for req and returns its DER.
func (ca *CA) Sign(req CertRequest) ([]byte, error) {
	fqdn, err := requestFQDN(req)
	if err != nil {
		return nil, fmt.Errorf("pki: sign %s %q: %w", req.Role, req.FQDN, err)
	}
	if len(req.PublicKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("pki: sign %s: Ed25519 public key has %d bytes", fqdn, len(req.PublicKey))
	}
	if req.NoiseStatic == ([32]byte{}) {
		return nil, fmt.Errorf("pki: sign %s: missing Noise static key", fqdn)
	}
	if !req.NotAfter.After(req.NotBefore) {
		return nil, fmt.Errorf("pki: sign %s: NotAfter %s not after NotBefore %s", fqdn,
			req.NotAfter.UTC().Format(time.RFC3339), req.NotBefore.UTC().Format(time.RFC3339))
	}
	var ips []net.IP
	switch {
	case req.Role == RoleNode:
		if !req.VIP6.Is6() || req.VIP6.Is4In6() || !req.VIP4.Is4() {
			return nil, fmt.Errorf("pki: sign %s: a node certificate needs one IPv6 and one IPv4 VIP, got %v, %v", fqdn, req.VIP6, req.VIP4)
		}
		ips = []net.IP{net.IP(req.VIP6.AsSlice()), net.IP(req.VIP4.AsSlice())}
	case req.VIP6.IsValid() || req.VIP4.IsValid():
		return nil, fmt.Errorf("pki: sign %s: services have no VIPs", fqdn)
	}
	noiseExt, err := asn1.Marshal(req.NoiseStatic[:])
	if err != nil {
		return nil, fmt.Errorf("pki: sign %s: %w", fqdn, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("pki: sign %s: %w", fqdn, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fqdn},
		DNSNames:              []string{fqdn},
		IPAddresses:           ips,
		NotBefore:             req.NotBefore,
		NotAfter:              req.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{req.Role.OID()},
		BasicConstraintsValid: true,
		ExtraExtensions:       []pkix.Extension{{Id: OIDNoiseStatic, Value: noiseExt}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, req.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign %s: %w", fqdn, err)
	}
	return der, nil
}

func requestFQDN(req CertRequest) (string, error) {
	switch {
	case req.Role.IsService():
		return req.Role.ServiceFQDN(), nil
	case req.Role != RoleNode:
		return "", fmt.Errorf("unknown role")
	}
	fqdn, err := CanonicalFQDN(req.FQDN)
	if err != nil {
		return "", err
	}
	if fqdn == ServiceDomain || strings.HasSuffix(fqdn, "."+ServiceDomain) {
		return "", fmt.Errorf("%w: %s is reserved for the cloud services", ErrInvalidFQDN, ServiceDomain)
	}
	return fqdn, nil
}

// Issue generates keys for a new identity and signs its certificate, valid
// from now for validity. fqdn is ignored for the services, whose names are
// fixed (Role.ServiceFQDN).
func (ca *CA) Issue(role Role, fqdn string, validity time.Duration) (*Identity, error) {
	if validity <= 0 {
		return nil, fmt.Errorf("pki: issue %q: validity %v is not positive", fqdn, validity)
	}
	now := time.Now()
	return ca.IssueAt(role, fqdn, now.Add(-clockSkew), now.Add(validity))
}

// IssueAt is Issue with an explicit validity window.
func (ca *CA) IssueAt(role Role, fqdn string, notBefore, notAfter time.Time) (*Identity, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: issue %q: %w", fqdn, err)
	}
	noise, err := GenerateNoiseKeypair()
	if err != nil {
		return nil, err
	}
	req := CertRequest{
		Role: role, FQDN: fqdn, PublicKey: pub, NoiseStatic: noise.Public,
		NotBefore: notBefore, NotAfter: notAfter,
	}
	der, err := ca.signRecorded(req)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: issue %q: %w", fqdn, err)
	}
	facts, err := leafFacts(cert)
	if err != nil {
		return nil, fmt.Errorf("pki: issue %q: %w", fqdn, err)
	}
	return &Identity{
		Cert: cert, CertDER: der, Key: key, NoiseStatic: noise,
		FQDN: facts.fqdn, Role: role, VIP6: facts.vip6, VIP4: facts.vip4,
	}, nil
}

// signRecorded signs req and records the certificate in the CA's registry
// (IssuedFile); for a node it first allocates (or looks up) the node's VIPs
// there. The registry is written only after signing succeeded, so a failed
// issue allocates nothing; ca.mu serialises issues in this process
// (`cyphonic ca` is the only writer of a CA directory).
func (ca *CA) signRecorded(req CertRequest) ([]byte, error) {
	fqdn, err := requestFQDN(req)
	if err != nil {
		return nil, fmt.Errorf("pki: sign %s %q: %w", req.Role, req.FQDN, err)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	unlock, err := lockDir(ca.dir)
	if err != nil {
		return nil, fmt.Errorf("pki: issue %s: %w", fqdn, err)
	}
	defer unlock()
	reg, err := loadIssued(ca.dir)
	if err != nil {
		return nil, fmt.Errorf("pki: issue %s: %w", fqdn, err)
	}
	if req.Role == RoleNode {
		if req.VIP6, req.VIP4, err = reg.vipsFor(fqdn); err != nil {
			return nil, fmt.Errorf("pki: issue %s: %w", fqdn, err)
		}
	}
	der, err := ca.Sign(req)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: issue %s: %w", fqdn, err)
	}
	reg.Certs = append(reg.Certs, IssuedCert{
		Serial: FormatSerial(cert.SerialNumber), FQDN: fqdn, Role: req.Role.String(),
		NotBefore: cert.NotBefore.UTC(), NotAfter: cert.NotAfter.UTC(),
	})
	if err := reg.save(ca.dir); err != nil {
		return nil, fmt.Errorf("pki: issue %s: record VIPs: %w", fqdn, err)
	}
	return der, nil
}

// randomSerial returns a positive 128-bit serial: random, so serials never
// repeat without the CA keeping a counter, and 128 bits wide to stay within
// RFC 5280's 20-octet limit.
func randomSerial() (*big.Int, error) {
	max := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			return nil, fmt.Errorf("serial: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}
