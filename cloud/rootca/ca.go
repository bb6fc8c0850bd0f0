// Package rootca is the overlay's root certificate authority: the custody of
// the root key in a directory, the registry of the VIPs it has allocated,
// issuing certificates with them and signing the deny list. The
// certificate profile itself, and everything a holder of certificates
// needs (verification, identities, the deny list's state), is package pki,
// which nodes import without linking the CA.
package rootca

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cyphonic/cyphonic-go/pki"
)

// KeyFile is the root key's file in a CA directory (beside pki.CACertFile).
const KeyFile = "ca.key"

// DefaultCAName is the common name of a CA made without one given: by
// `cyphonic ca init` and by a first `cyphonic cloud` alike, so that the
// name tells nothing apart; the key identifier does (errors print it).
const DefaultCAName = "CYPHONIC root CA"

// ErrExists is returned by Init when dir already holds a CA.
var ErrExists = errors.New("CA already exists")

// CA is the overlay's root certificate authority, backed by a directory.
type CA struct {
	*pki.Signer // the root certificate and key; Sign takes VIPs as given

	dir string
	mu  sync.Mutex // serialises issues and Revoke's read-modify-write of revoked.crl

	// onCRL: called after each deny list this CA writes (OnCRL), under mu.
	onCRL  map[int]func()
	nextCB int
}

// OnCRL calls f after every deny list this CA object signs and writes,
// before Revoke returns: a cloud process that bootstrapped its CA
// (cloud/server) learns of its own revocations at once instead of at its
// next poll of the file. f must not call back into the CA. cancel stops
// the calls.
func (ca *CA) OnCRL(f func()) (cancel func()) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.onCRL == nil {
		ca.onCRL = map[int]func(){}
	}
	id := ca.nextCB
	ca.nextCB++
	ca.onCRL[id] = f
	return func() {
		ca.mu.Lock()
		defer ca.mu.Unlock()
		delete(ca.onCRL, id)
	}
}

// Init creates a root CA named name, valid for validity from now, and
// writes it into dir as ca.crt and ca.key (0600). It refuses to overwrite an
// existing CA: replacing the root would orphan every issued certificate.
func Init(dir, name string, validity time.Duration) (*CA, error) {
	if fileExists(filepath.Join(dir, pki.CACertFile)) || fileExists(filepath.Join(dir, KeyFile)) {
		return nil, fmt.Errorf("rootca: init in %s: %w", dir, ErrExists)
	}
	s, err := pki.NewSigner(name, validity)
	if err != nil {
		return nil, fmt.Errorf("rootca: init: %w", err)
	}
	keyPEM, err := s.KeyPEM()
	if err != nil {
		return nil, fmt.Errorf("rootca: init: %w", err)
	}
	err = pki.WriteNewFiles(dir, []pki.File{
		{Name: pki.CACertFile, Data: pki.CertPEM(s.CertDER), Mode: 0o644},
		{Name: KeyFile, Data: keyPEM, Mode: 0o600},
	})
	if errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("rootca: init in %s: %w", dir, ErrExists)
	}
	if err != nil {
		return nil, fmt.Errorf("rootca: init in %s: %w", dir, err)
	}
	return &CA{Signer: s, dir: dir}, nil
}

// Load reads a CA written by Init.
func Load(dir string) (*CA, error) {
	cert, der, err := pki.ReadCertFile(filepath.Join(dir, pki.CACertFile))
	if err != nil {
		return nil, fmt.Errorf("rootca: load: %w", err)
	}
	key, err := pki.ReadKeyFile(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("rootca: load: %w", err)
	}
	s, err := pki.SignerFrom(cert, der, key)
	if err != nil {
		return nil, fmt.Errorf("rootca: load %s: %s is not the CA certificate of %s", dir, pki.CACertFile, KeyFile)
	}
	return &CA{Signer: s, dir: dir}, nil
}

// Dir is the directory the CA lives in.
func (ca *CA) Dir() string { return ca.dir }

// Issue generates keys for a new identity and signs its certificate, valid
// from now for validity. fqdn is ignored for the services, whose names are
// fixed (Role.ServiceFQDN).
func (ca *CA) Issue(role pki.Role, fqdn string, validity time.Duration) (*pki.Identity, error) {
	if validity <= 0 {
		return nil, fmt.Errorf("rootca: issue %q: validity %v is not positive", fqdn, validity)
	}
	now := time.Now()
	return ca.IssueAt(role, fqdn, now.Add(-pki.ClockSkew), now.Add(validity))
}

// IssueAt is Issue with an explicit validity window.
func (ca *CA) IssueAt(role pki.Role, fqdn string, notBefore, notAfter time.Time) (*pki.Identity, error) {
	return pki.NewIdentity(pki.CertRequest{Role: role, FQDN: fqdn, NotBefore: notBefore, NotAfter: notAfter}, ca.signRecorded)
}

// signRecorded signs req and records the certificate in the CA's registry
// (IssuedFile); for a node it first allocates (or looks up) the node's
// VIPs there. The registry is written only after signing succeeded, so a
// failed issue allocates nothing; ca.mu serialises issues in this process,
// the directory lock across processes.
func (ca *CA) signRecorded(req pki.CertRequest) ([]byte, error) {
	fqdn, err := pki.RequestFQDN(req)
	if err != nil {
		return nil, fmt.Errorf("rootca: sign %s %q: %w", req.Role, req.FQDN, err)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	unlock, err := lockDir(ca.dir)
	if err != nil {
		return nil, fmt.Errorf("rootca: issue %s: %w", fqdn, err)
	}
	defer unlock()
	reg, err := loadIssued(ca.dir)
	if err != nil {
		return nil, fmt.Errorf("rootca: issue %s: %w", fqdn, err)
	}
	if req.Role == pki.RoleNode {
		if req.VIP6, req.VIP4, err = reg.vipsFor(fqdn); err != nil {
			return nil, fmt.Errorf("rootca: issue %s: %w", fqdn, err)
		}
	}
	der, err := ca.Sign(req)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("rootca: issue %s: %w", fqdn, err)
	}
	reg.Certs = append(reg.Certs, IssuedCert{
		Serial: pki.FormatSerial(cert.SerialNumber), FQDN: fqdn, Role: req.Role.String(),
		NotBefore: cert.NotBefore.UTC(), NotAfter: cert.NotAfter.UTC(),
	})
	if err := reg.save(ca.dir); err != nil {
		return nil, fmt.Errorf("rootca: issue %s: record VIPs: %w", fqdn, err)
	}
	return der, nil
}

// fileExists is used to refuse overwrites with a precise error.
func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
