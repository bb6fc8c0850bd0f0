package rootca

import (
	"crypto/x509"
	"fmt"
	"math/big"
	"path/filepath"
	"time"

	"github.com/cyphonic/cyphonic-go/pki"
)

// Revoke adds serials to the CA's deny list: it signs one new CRL with the
// next number and replaces revoked.crl atomically. Serials in a legacy
// revoked.txt are carried into the first CRL. Revoking a serial twice is a
// no-op; so is a call whose serials are all revoked already.
func (ca *CA) Revoke(serials ...*big.Int) error {
	if len(serials) == 0 {
		return fmt.Errorf("rootca: revoke: no serial")
	}
	for _, s := range serials {
		if s == nil || s.Sign() <= 0 {
			return fmt.Errorf("rootca: revoke: invalid serial")
		}
	}
	what := "revoke " + pki.FormatSerial(serials[0])
	if len(serials) > 1 {
		what = fmt.Sprintf("revoke %d serials", len(serials))
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	unlock, err := lockDir(ca.dir)
	if err != nil {
		return fmt.Errorf("rootca: %s: %w", what, err)
	}
	defer unlock()
	cur, err := pki.LoadCRL(ca.dir, ca.Cert)
	if err != nil {
		return fmt.Errorf("rootca: %s: %w", what, err)
	}
	var add []*big.Int
	seen := make(map[string]bool, len(serials))
	for _, s := range serials {
		if k := s.String(); !cur.DenyList().Contains(s) && !seen[k] {
			seen[k] = true
			add = append(add, s)
		}
	}
	if len(add) == 0 {
		return nil
	}
	return ca.signCRL(cur, what, add)
}

// signCRL signs the list after cur (nil: the first, from a legacy
// revoked.txt) with add appended and replaces revoked.crl. The caller
// holds ca.mu and the directory lock.
func (ca *CA) signCRL(cur *pki.CRL, what string, add []*big.Int) error {
	var entries []x509.RevocationListEntry
	var number uint64
	now := time.Now()
	if cur != nil {
		rl, err := x509.ParseRevocationList(cur.DER)
		if err != nil {
			return fmt.Errorf("rootca: %s: %w", what, err)
		}
		entries, number = rl.RevokedCertificateEntries, cur.Number
	} else if legacy, err := loadLegacyDenyList(ca.dir); err != nil {
		return fmt.Errorf("rootca: %s: %w", what, err)
	} else {
		for _, s := range legacy.Serials() {
			n, _ := pki.ParseSerial(s)
			entries = append(entries, x509.RevocationListEntry{SerialNumber: n, RevocationTime: now})
		}
	}
	for _, s := range add {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: now})
	}
	der, err := ca.SignCRL(number+1, entries, now)
	if err != nil {
		return fmt.Errorf("rootca: %s: %w", what, err)
	}
	if err := pki.ReplaceFile(filepath.Join(ca.dir, pki.CRLFile), der, 0o644); err != nil {
		return fmt.Errorf("rootca: %s: %w", what, err)
	}
	for _, f := range ca.onCRL {
		f()
	}
	return nil
}

// EnsureCRL signs an empty deny list (number 1, carrying a legacy
// revoked.txt's serials) when the CA has none yet, so that a cloud can
// follow the CA's revoked.crl from its first start.
func (ca *CA) EnsureCRL() error {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	unlock, err := lockDir(ca.dir)
	if err != nil {
		return fmt.Errorf("rootca: deny list: %w", err)
	}
	defer unlock()
	cur, err := pki.LoadCRL(ca.dir, ca.Cert)
	if err != nil || cur != nil {
		return err
	}
	return ca.signCRL(nil, "deny list", nil)
}
