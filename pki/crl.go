package pki

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// The deny list is an X.509 CRL signed by the root CA (RFC 5280, made with
// crypto/x509.CreateRevocationList). The signature is what makes it safe to
// carry through the cloud: no cloud service holds the CA key, so none can
// add or withdraw an entry, and the CRL number (monotonic, signed) lets
// every holder keep the newest list and refuse an older one a compromised
// service replays to un-revoke someone.
//
// nextUpdate is set to the root's expiry and not enforced: a list that is
// "stale" still revokes everything it names, and failing closed on a date
// would cut every node off the overlay the day the operator forgets to
// re-sign. A newer list supersedes it; nothing else does.

// CRLFile is the signed deny list's file in a CA (or cloud data) directory.
const CRLFile = "revoked.crl"

// MaxCRLLen bounds a CRL's DER (messages.MaxDenyListLen): at ~40 bytes an
// entry, room for some 25,000 revocations. NMS sends a list in chunks that
// each fit a sealed signaling message; CRLAssembly puts them together.
const MaxCRLLen = 1 << 20

// CRL errors, wrapped with detail.
var (
	ErrCRLMalformed = errors.New("malformed deny list")
	ErrCRLSignature = errors.New("deny list not signed by the overlay CA")
	ErrCRLStale     = errors.New("deny list older than the one held")
	ErrCRLConflict  = errors.New("two different deny lists with the same number")
)

// CRL is a verified deny list.
type CRL struct {
	Number     uint64 // strictly increasing with every list the CA signs
	ThisUpdate time.Time
	DER        []byte
	deny       *DenyList
}

// DenyList is the set of serials the CRL revokes (nil-safe: a nil CRL
// revokes nothing).
func (c *CRL) DenyList() *DenyList {
	if c == nil {
		return nil
	}
	return c.deny
}

// ParseCRL checks der against root: size, shape, issuer, signature and a
// CRL number. It returns the verified list.
func ParseCRL(der []byte, root *x509.Certificate) (*CRL, error) {
	if len(der) == 0 || len(der) > MaxCRLLen {
		return nil, fmt.Errorf("pki: %w: %d bytes (max %d)", ErrCRLMalformed, len(der), MaxCRLLen)
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("pki: %w: %v", ErrCRLMalformed, err)
	}
	if !bytes.Equal(rl.RawIssuer, root.RawSubject) {
		return nil, fmt.Errorf("pki: %w: issuer %q", ErrCRLSignature, rl.Issuer.String())
	}
	if err := rl.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("pki: %w: %v", ErrCRLSignature, err)
	}
	if rl.Number == nil || rl.Number.Sign() <= 0 || !rl.Number.IsUint64() {
		return nil, fmt.Errorf("pki: %w: CRL number %v", ErrCRLMalformed, rl.Number)
	}
	serials := make([]*big.Int, 0, len(rl.RevokedCertificateEntries))
	for _, e := range rl.RevokedCertificateEntries {
		if e.SerialNumber == nil || e.SerialNumber.Sign() <= 0 {
			return nil, fmt.Errorf("pki: %w: non-positive serial", ErrCRLMalformed)
		}
		serials = append(serials, e.SerialNumber)
	}
	return &CRL{Number: rl.Number.Uint64(), ThisUpdate: rl.ThisUpdate, DER: bytes.Clone(der), deny: NewDenyList(serials...)}, nil
}

// newer decides whether next may replace cur: only a higher number does.
// The same number is accepted only for the same bytes (a repeat); a CA
// never signs two lists with one number, so a different list under it is
// refused and the first one kept.
func newer(cur, next *CRL) (bool, error) {
	switch {
	case cur == nil || next.Number > cur.Number:
		return true, nil
	case next.Number < cur.Number:
		return false, fmt.Errorf("pki: %w: number %d, holding %d", ErrCRLStale, next.Number, cur.Number)
	case !bytes.Equal(next.DER, cur.DER):
		return false, fmt.Errorf("pki: %w: number %d", ErrCRLConflict, next.Number)
	}
	return false, nil
}

// CRLState holds the newest valid deny list a node or service has seen and
// never goes back. It is safe for concurrent use; DenyList is what a
// Verifier's deny source reads on every verification.
type CRLState struct {
	root *x509.Certificate
	mu   sync.RWMutex
	cur  *CRL
}

// NewCRLState starts with no list (nothing revoked).
func NewCRLState(root *x509.Certificate) *CRLState { return &CRLState{root: root} }

// Offer verifies der and keeps it if it is newer than the list held. It
// reports whether the list changed; an error says why der was refused
// (the list held is unchanged).
func (s *CRLState) Offer(der []byte) (bool, error) {
	c, err := ParseCRL(der, s.root)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ok, err := newer(s.cur, c)
	if ok {
		s.cur = c
	}
	return ok, err
}

// Current is the list held (nil before any).
func (s *CRLState) Current() *CRL {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cur
}

// DenyList is Current's serials.
func (s *CRLState) DenyList() *DenyList { return s.Current().DenyList() }

// Number is Current's number, 0 before any list.
func (s *CRLState) Number() uint64 {
	if c := s.Current(); c != nil {
		return c.Number
	}
	return 0
}

// LoadCRL reads and verifies dir's revoked.crl against root. A missing file
// is no list (nil, nil): nothing has been revoked yet.
func LoadCRL(dir string, root *x509.Certificate) (*CRL, error) {
	b, err := os.ReadFile(filepath.Join(dir, CRLFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pki: load deny list: %w", err)
	}
	c, err := ParseCRL(b, root)
	if err != nil {
		return nil, fmt.Errorf("pki: load deny list %s: %w", filepath.Join(dir, CRLFile), err)
	}
	return c, nil
}

// SaveCRL writes c into dir as revoked.crl (atomically), so a node that
// restarts still refuses what it had learnt was revoked and still refuses
// an older list.
func SaveCRL(dir string, c *CRL) error {
	if err := ReplaceFile(filepath.Join(dir, CRLFile), c.DER, 0o644); err != nil {
		return fmt.Errorf("pki: save deny list: %w", err)
	}
	return nil
}
