// Package pkitest is an in-memory CA for tests of code that holds
// certificates (the node's actors) and must not link the real CA
// (cloud/rootca), which keeps its key and VIP registry in a directory.
package pkitest

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/pki"
)

// CA issues certificates of the overlay's profile (pki.Signer) and gives
// each node certificate the next VIP pair, fd63:7970:686f::n and
// 100.64.x.y, so no two share one.
type CA struct {
	*pki.Signer

	mu   sync.Mutex
	next uint16
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
	if ca.next == 1<<16-1 {
		return vip6, vip4, fmt.Errorf("pkitest: out of VIPs")
	}
	ca.next++
	n := ca.next
	vip6 = netip.AddrFrom16([16]byte{0xfd, 0x63, 0x79, 0x70, 0x68, 0x6f, 14: byte(n >> 8), 15: byte(n)})
	vip4 = netip.AddrFrom4([4]byte{100, 64, byte(n >> 8), byte(n)})
	return vip6, vip4, nil
}
