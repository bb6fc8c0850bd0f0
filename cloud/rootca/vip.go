package rootca

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/cyphonic/cyphonic-go/pki"
)

// A node's virtual addresses are written into its certificate as IP
// address SANs (one IPv6, one IPv4), so the binding FQDN -> VIPs is signed
// by the offline CA and no cloud service can forge it: a node checks the
// VIPs of every peer against the peer's certificate at the handshake.
//
// The CA allocates them from a registry in its directory (IssuedFile), so two
// certificates never share a VIP, and a certificate reissued for the same
// FQDN (renewal, a new key) keeps the node's VIPs: applications' sessions
// and peers' configuration survive a renewal. Allocation number n is the
// n-th address of each prefix (pki.VIPPair).

// IssuedFile is the CA's record of the VIPs it has allocated.
const IssuedFile = "issued.json"

// issued is IssuedFile's content.
type issued struct {
	Prefix6 netip.Prefix      `json:"prefix6"`
	Prefix4 netip.Prefix      `json:"prefix4"`
	Next    uint64            `json:"next"`  // the next allocation number
	Nodes   map[string]uint64 `json:"nodes"` // FQDN -> allocation number
	// Certs is every certificate issued since the CA began recording
	// them, oldest first: what `ca list` shows and `ca revoke` checks a
	// serial against.
	Certs []IssuedCert `json:"certs,omitempty"`
}

// IssuedCert is the CA's record of one certificate it signed.
type IssuedCert struct {
	Serial    string    `json:"serial"` // hex, as FormatSerial writes it
	FQDN      string    `json:"fqdn"`
	Role      string    `json:"role"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
}

// Issued lists the certificates the CA has recorded, oldest first.
// Certificates signed before the CA recorded them (or by Sign alone) are
// not in it.
func (ca *CA) Issued() ([]IssuedCert, error) {
	return ListIssued(ca.dir)
}

// ListIssued reads the record of a CA directory without its key.
func ListIssued(dir string) ([]IssuedCert, error) {
	reg, err := loadIssued(dir)
	if err != nil {
		return nil, fmt.Errorf("rootca: issued certificates: %w", err)
	}
	return reg.Certs, nil
}

func loadIssued(dir string) (*issued, error) {
	b, err := os.ReadFile(filepath.Join(dir, IssuedFile))
	if errors.Is(err, fs.ErrNotExist) {
		return &issued{Prefix6: pki.DefaultVIP6, Prefix4: pki.DefaultVIP4, Next: 1, Nodes: map[string]uint64{}}, nil
	}
	if err != nil {
		return nil, err
	}
	var r issued
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", IssuedFile, err)
	}
	if !r.Prefix6.IsValid() || !r.Prefix4.IsValid() || r.Next == 0 || r.Nodes == nil {
		return nil, fmt.Errorf("%s: incomplete", IssuedFile)
	}
	return &r, nil
}

func (r *issued) save(dir string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return pki.ReplaceFile(filepath.Join(dir, IssuedFile), append(b, '\n'), 0o644)
}

// vipsFor returns fqdn's VIPs, allocating the next pair if it has none.
// The caller saves r once the certificate is signed.
func (r *issued) vipsFor(fqdn string) (vip6, vip4 netip.Addr, err error) {
	n, ok := r.Nodes[fqdn]
	if !ok {
		n = r.Next
	}
	vip6, vip4, err = pki.VIPPair(r.Prefix6, r.Prefix4, n)
	if err != nil {
		return netip.Addr{}, netip.Addr{}, err
	}
	if !ok {
		r.Nodes[fqdn] = n
		r.Next++
	}
	return vip6, vip4, nil
}
