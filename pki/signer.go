package pki

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"time"
)

// ClockSkew backdates NotBefore so a certificate is valid at once on hosts
// whose clock runs slightly behind the CA's.
const ClockSkew = 5 * time.Minute

// Signer is a root key with its self-signed certificate, and the one place
// that writes the certificate profile leafFacts reads (the Noise key
// extension, the role EKU, the VIP SANs): encoder and decoder of the
// profile live side by side. It holds nothing on disk and allocates
// nothing; the CA (cloud/rootca) adds the key's custody, the VIP registry and
// the deny list's numbering on top of it.
type Signer struct {
	Cert    *x509.Certificate
	CertDER []byte
	key     ed25519.PrivateKey
}

// NewSigner makes a fresh root named name, valid for validity from now.
func NewSigner(name string, validity time.Duration) (*Signer, error) {
	if name == "" || validity <= 0 {
		return nil, fmt.Errorf("pki: new root: need a name and a positive validity")
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: new root: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("pki: new root: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // leaves only: there are no intermediates
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("pki: new root: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: new root: %w", err)
	}
	return &Signer{Cert: cert, CertDER: der, key: key}, nil
}

// SignerFrom joins a root certificate and its key (read back from a CA
// directory), refusing a key that is not the certificate's.
func SignerFrom(cert *x509.Certificate, der []byte, key ed25519.PrivateKey) (*Signer, error) {
	if pub, ok := cert.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(key.Public()) || !cert.IsCA {
		return nil, fmt.Errorf("pki: the key is not the CA certificate's")
	}
	return &Signer{Cert: cert, CertDER: der, key: key}, nil
}

// KeyPEM is the root key as PKCS #8 PEM, for the CA to keep.
func (s *Signer) KeyPEM() ([]byte, error) { return marshalEd25519(s.key) }

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
	// Sign takes them as given, so its caller owns their uniqueness (the
	// CA allocates them from its registry).
	VIP6, VIP4 netip.Addr
}

// RequestFQDN is the name a certificate for req carries: the service's
// fixed name, or the node's canonical FQDN outside the service domain.
func RequestFQDN(req CertRequest) (string, error) {
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

// Sign issues a leaf certificate for req and returns its DER.
func (s *Signer) Sign(req CertRequest) ([]byte, error) {
	fqdn, err := RequestFQDN(req)
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
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.Cert, req.PublicKey, s.key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign %s: %w", fqdn, err)
	}
	return der, nil
}

// SignCRL signs a deny list numbered number, revoking entries.
func (s *Signer) SignCRL(number uint64, entries []x509.RevocationListEntry, now time.Time) ([]byte, error) {
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    new(big.Int).SetUint64(number),
		ThisUpdate:                now,
		NextUpdate:                s.Cert.NotAfter,
		RevokedCertificateEntries: entries,
	}, s.Cert, s.key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign deny list %d: %w", number, err)
	}
	if len(der) > MaxCRLLen {
		return nil, fmt.Errorf("pki: deny list of %d bytes exceeds %d", len(der), MaxCRLLen)
	}
	return der, nil
}

// NewIdentity generates the keys of a new identity and has sign certify
// them: req gives the role, name, validity (and, for Sign itself, the
// VIPs); its keys are filled in here.
func NewIdentity(req CertRequest, sign func(CertRequest) ([]byte, error)) (*Identity, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: issue %q: %w", req.FQDN, err)
	}
	noise, err := GenerateNoiseKeypair()
	if err != nil {
		return nil, err
	}
	req.PublicKey, req.NoiseStatic = pub, noise.Public
	der, err := sign(req)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: issue %q: %w", req.FQDN, err)
	}
	facts, err := leafFacts(cert)
	if err != nil {
		return nil, fmt.Errorf("pki: issue %q: %w", req.FQDN, err)
	}
	return &Identity{
		Cert: cert, CertDER: der, Key: key, NoiseStatic: noise,
		FQDN: facts.fqdn, Role: facts.role, VIP6: facts.vip6, VIP4: facts.vip4,
	}, nil
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
