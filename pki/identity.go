package pki

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"fmt"
	"net/netip"
	"path/filepath"
)

// File names in an identity directory.
const (
	CACertFile = "ca.crt" // the root CA's certificate (also in a CA directory)
	CertFile   = "node.crt"
	KeyFile    = "node.key"
	NoiseFile  = "noise.key"
)

// Identity is a node's or a service's credentials: its certificate, the
// certificate's Ed25519 key and the Noise static key the certificate binds.
type Identity struct {
	Cert        *x509.Certificate
	CertDER     []byte
	Key         ed25519.PrivateKey
	NoiseStatic Keypair
	FQDN        string
	Role        Role
	VIP6, VIP4  netip.Addr // a node's, from its certificate
}

// WriteIdentity writes id into dir as node.crt, node.key and noise.key
// (keys 0600). It refuses to overwrite an existing identity.
func WriteIdentity(dir string, id *Identity) error {
	key, err := marshalEd25519(id.Key)
	if err != nil {
		return fmt.Errorf("pki: write identity %s: %w", id.FQDN, err)
	}
	noise, err := marshalX25519(id.NoiseStatic.Private)
	if err != nil {
		return fmt.Errorf("pki: write identity %s: %w", id.FQDN, err)
	}
	err = WriteNewFiles(dir, []File{
		{CertFile, CertPEM(id.CertDER), 0o644},
		{KeyFile, key, 0o600},
		{NoiseFile, noise, 0o600},
	})
	if err != nil {
		return fmt.Errorf("pki: write identity %s: %w", id.FQDN, err)
	}
	return nil
}

// LoadIdentity reads an identity written by WriteIdentity and checks that
// its keys are the ones its certificate names. It does not verify the
// certificate against a CA: that is the peer's job (and the holder's own
// Verifier, if it wants to check its expiry).
func LoadIdentity(dir string) (*Identity, error) {
	id, err := loadIdentity(dir)
	if err != nil {
		return nil, fmt.Errorf("pki: load identity %s: %w", dir, err)
	}
	return id, nil
}

func loadIdentity(dir string) (*Identity, error) {
	cert, der, err := ReadCertFile(filepath.Join(dir, CertFile))
	if err != nil {
		return nil, err
	}
	key, err := ReadKeyFile(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, err
	}
	noise, err := readX25519(filepath.Join(dir, NoiseFile))
	if err != nil {
		return nil, err
	}
	facts, err := leafFacts(cert)
	if err != nil {
		return nil, err
	}
	if pub, ok := cert.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("%s does not match the certificate's key", KeyFile)
	}
	if !bytes.Equal(facts.noise[:], noise.Public[:]) {
		return nil, fmt.Errorf("%s does not match the certificate's Noise key", NoiseFile)
	}
	return &Identity{
		Cert:        cert,
		CertDER:     der,
		Key:         key,
		NoiseStatic: noise,
		FQDN:        facts.fqdn,
		Role:        facts.role,
		VIP6:        facts.vip6,
		VIP4:        facts.vip4,
	}, nil
}

// LoadRoot reads the root CA certificate ca.crt from dir (a CA directory,
// or any directory the CA certificate was copied into).
func LoadRoot(dir string) (*x509.Certificate, error) {
	return LoadRootFile(filepath.Join(dir, CACertFile))
}

// LoadRootFile reads a root CA certificate (PEM) from path and checks that
// it is a CA certificate.
func LoadRootFile(path string) (*x509.Certificate, error) {
	c, _, err := ReadCertFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: load root: %w", err)
	}
	if !c.IsCA {
		return nil, fmt.Errorf("pki: load root %s: not a CA certificate", path)
	}
	return c, nil
}

// WriteRoot copies the root CA certificate into dir as ca.crt (for a node
// or service, which needs it to verify its peers).
func WriteRoot(dir string, root *x509.Certificate) error {
	if err := WriteNewFiles(dir, []File{{CACertFile, CertPEM(root.Raw), 0o644}}); err != nil {
		return fmt.Errorf("pki: write root: %w", err)
	}
	return nil
}
