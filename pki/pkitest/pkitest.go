// Package pkitest is an in-memory CA for tests of code that holds
// certificates (the node's actors) and must not link the real CA
// (cloud/rootca), which keeps its key and VIP registry in a directory.
package pkitest

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/pki"
)

// CA issues certificates of the overlay's profile (pki.Signer) and gives
// each node certificate the next VIP pair of the default prefixes, so no
// two share one.
type CA struct {
	*pki.Signer

	mu   sync.Mutex
	next uint64
}

// New makes a CA valid for a day, failing tb if it cannot.
func New(tb testing.TB) *CA {
	tb.Helper()
	s, err := pki.NewSigner("test CA", 24*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return &CA{Signer: s}
}

// Issue makes an identity valid from now for validity.
func (ca *CA) Issue(role pki.Role, fqdn string, validity time.Duration) (*pki.Identity, error) {
	now := time.Now()
	return ca.IssueAt(role, fqdn, now.Add(-pki.ClockSkew), now.Add(validity))
}

// IssueAt makes an identity valid from notBefore to notAfter.
func (ca *CA) IssueAt(role pki.Role, fqdn string, notBefore, notAfter time.Time) (*pki.Identity, error) {
	req := pki.CertRequest{Role: role, FQDN: fqdn, NotBefore: notBefore, NotAfter: notAfter}
	return pki.NewIdentity(req, func(req pki.CertRequest) ([]byte, error) {
		if role == pki.RoleNode {
			var err error
			if req.VIP6, req.VIP4, err = ca.nextVIPs(); err != nil {
				return nil, err
			}
		}
		return ca.Sign(req)
	})
}

func (ca *CA) nextVIPs() (vip6, vip4 netip.Addr, err error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.next++
	return pki.VIPPair(pki.DefaultVIP6, pki.DefaultVIP4, ca.next)
}
