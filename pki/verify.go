package pki

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Verification failures. Verify wraps them in a *VerifyError naming the
// certificate, so callers test them with errors.Is.
var (
	ErrBadCert      = errors.New("malformed or unusable certificate")
	ErrUnknownCA    = errors.New("not issued by the overlay CA")
	ErrExpired      = errors.New("certificate expired")
	ErrNotYetValid  = errors.New("certificate not yet valid")
	ErrRevoked      = errors.New("certificate revoked")
	ErrFQDNMismatch = errors.New("certificate FQDN mismatch")
	ErrWrongRole    = errors.New("certificate has the wrong role")
)

// VerifyError is a failed verification: which certificate (as far as it
// could be read) and why. Err is one of the sentinel errors above.
type VerifyError struct {
	Serial string // hex; empty if the certificate could not be parsed
	FQDN   string // the certificate's name; empty if unknown
	Err    error
	Detail string
}

func (e *VerifyError) Error() string {
	s := fmt.Sprintf("pki: verify %q (serial %s): %v", e.FQDN, e.Serial, e.Err)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *VerifyError) Unwrap() error { return e.Err }

// Peer is what a verified certificate proves about its holder.
type Peer struct {
	FQDN        string
	Role        Role
	Serial      *big.Int
	NoiseStatic [32]byte // to compare with the handshake's remote static key
	// VIP6 and VIP4 are a node's virtual addresses as the CA bound them
	// (invalid for services): the only sources its packets may carry.
	VIP6, VIP4 netip.Addr
	NotAfter   time.Time
	Cert       *x509.Certificate
}

// Verifier checks certificates against the overlay's root CA and policy. It
// is safe for concurrent use; the deny list can be swapped while it runs.
type Verifier struct {
	root  *x509.Certificate
	roles []Role
	deny  atomic.Pointer[func() *DenyList]
}

// NewVerifier returns a Verifier accepting leaf certificates signed by root
// whose role is one of roles (at least one). It starts with an empty deny
// list: give it one with SetDenyList or SetDenySource.
func NewVerifier(root *x509.Certificate, roles ...Role) (*Verifier, error) {
	if root == nil || !root.IsCA || !root.BasicConstraintsValid {
		return nil, fmt.Errorf("pki: verifier: root is not a CA certificate")
	}
	if len(roles) == 0 {
		return nil, fmt.Errorf("pki: verifier: no accepted roles")
	}
	for _, r := range roles {
		if !r.valid() {
			return nil, fmt.Errorf("pki: verifier: invalid role %d", r)
		}
	}
	return &Verifier{root: root, roles: slices.Clone(roles)}, nil
}

// SetDenyList makes v reject the serials in d from now on.
func (v *Verifier) SetDenyList(d *DenyList) {
	v.SetDenySource(func() *DenyList { return d })
}

// SetDenySource makes v ask src for the deny list on every Verify, e.g.
// (*DenyListFile).Current for a list that follows revoked.txt.
func (v *Verifier) SetDenySource(src func() *DenyList) {
	v.deny.Store(&src)
}

func (v *Verifier) denyList() *DenyList {
	if src := v.deny.Load(); src != nil {
		return (*src)()
	}
	return nil
}

// Verify checks certDER against the root CA at time now: signature and
// issuer, validity window, key usage, role, revocation and, unless wantFQDN
// is "", that the certificate names wantFQDN (compared canonically). It
// returns what the certificate proves, including the Noise static key the
// caller must match against the handshake's remote static key.
func (v *Verifier) Verify(certDER []byte, wantFQDN string, now time.Time) (*Peer, error) {
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, &VerifyError{Err: ErrBadCert, Detail: err.Error()}
	}
	fail := func(sentinel error, format string, args ...any) (*Peer, error) {
		name := cert.Subject.CommonName
		if len(name) > maxFQDNLen { // keep hostile input out of logs
			name = name[:maxFQDNLen]
		}
		return nil, &VerifyError{
			Serial: FormatSerial(cert.SerialNumber), FQDN: name,
			Err: sentinel, Detail: fmt.Sprintf(format, args...),
		}
	}
	if cert.SerialNumber == nil || cert.SerialNumber.Sign() <= 0 {
		return nil, &VerifyError{Err: ErrBadCert, Detail: "missing or non-positive serial"}
	}

	// Trust first: nothing a stranger's certificate says matters.
	if !bytes.Equal(cert.RawIssuer, v.root.RawSubject) {
		return fail(ErrUnknownCA, "issuer %q", cert.Issuer.String())
	}
	if err := cert.CheckSignatureFrom(v.root); err != nil {
		return fail(ErrUnknownCA, "%v", err)
	}
	if now.After(v.root.NotAfter) {
		return fail(ErrExpired, "root CA expired at %s", v.root.NotAfter.Format(time.RFC3339))
	}
	if now.Before(cert.NotBefore) {
		return fail(ErrNotYetValid, "valid from %s", cert.NotBefore.Format(time.RFC3339))
	}
	if now.After(cert.NotAfter) {
		return fail(ErrExpired, "expired at %s", cert.NotAfter.Format(time.RFC3339))
	}

	facts, err := leafFacts(cert)
	if err != nil {
		return fail(ErrBadCert, "%v", err)
	}
	if d := v.denyList(); d.Contains(cert.SerialNumber) {
		return fail(ErrRevoked, "")
	}
	if !slices.Contains(v.roles, facts.role) {
		return fail(ErrWrongRole, "role %s, want one of %v", facts.role, v.roles)
	}
	if wantFQDN != "" {
		want, err := CanonicalFQDN(wantFQDN)
		if err != nil || want != facts.fqdn {
			return fail(ErrFQDNMismatch, "want %q", wantFQDN)
		}
	}
	return &Peer{
		FQDN: facts.fqdn, Role: facts.role, Serial: cert.SerialNumber,
		NoiseStatic: facts.noise, VIP6: facts.vip6, VIP4: facts.vip4, NotAfter: cert.NotAfter, Cert: cert,
	}, nil
}

// HandshakeFunc adapts v to the certificate check of a Noise handshake
// (it is a transport/handshake.VerifyFunc): it accepts only a certificate
// of role, named want unless want is empty, valid now, and returns the
// name and Noise static key the handshake then binds. It is the one
// adapter both the node (AS login, peer handshakes) and the cloud use.
func (v *Verifier) HandshakeFunc(role Role, want string) func(certDER []byte) (fqdn string, noise [32]byte, err error) {
	return func(certDER []byte) (string, [32]byte, error) {
		p, err := v.Verify(certDER, want, time.Now())
		if err != nil {
			return "", [32]byte{}, err
		}
		if p.Role != role {
			return "", [32]byte{}, &VerifyError{Serial: FormatSerial(p.Serial), FQDN: p.FQDN, Err: ErrWrongRole, Detail: "want " + role.String()}
		}
		return p.FQDN, p.NoiseStatic, nil
	}
}

type facts struct {
	fqdn       string
	role       Role
	noise      [32]byte
	vip6, vip4 netip.Addr
}

// leafFacts reads and checks the CYPHONIC content of a leaf certificate:
// the shape Sign gives it, nothing else. It trusts nothing about the
// signature; Verify checks that first.
func leafFacts(c *x509.Certificate) (facts, error) {
	var f facts
	if c.IsCA {
		return f, errors.New("leaf is a CA certificate")
	}
	if len(c.UnhandledCriticalExtensions) > 0 {
		return f, fmt.Errorf("unhandled critical extension %v", c.UnhandledCriticalExtensions[0])
	}
	if c.KeyUsage&x509.KeyUsageDigitalSignature == 0 || c.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		return f, fmt.Errorf("key usage %#x, want digital signature only", c.KeyUsage)
	}
	if _, ok := c.PublicKey.(ed25519.PublicKey); !ok {
		return f, fmt.Errorf("public key is %T, want Ed25519", c.PublicKey)
	}
	var err error
	if f.role = roleFromEKUs(c.UnknownExtKeyUsage); f.role == 0 {
		return f, errors.New("no single CYPHONIC role in extended key usage")
	}
	if len(c.DNSNames) != 1 || c.DNSNames[0] != c.Subject.CommonName {
		return f, fmt.Errorf("want one DNS SAN equal to the CN")
	}
	f.fqdn = c.DNSNames[0]
	if err := ValidateFQDN(f.fqdn); err != nil {
		return f, err
	}
	if f.role.IsService() != (f.fqdn == f.role.ServiceFQDN()) ||
		!f.role.IsService() && strings.HasSuffix(f.fqdn, "."+ServiceDomain) {
		return f, fmt.Errorf("name %q does not fit role %s", f.fqdn, f.role)
	}
	if f.vip6, f.vip4, err = certVIPs(c, f.role); err != nil {
		return f, err
	}
	if f.noise, err = noiseKey(c); err != nil {
		return f, err
	}
	return f, nil
}

// noiseKey reads the certificate's Noise static key extension: exactly
// one, a DER OCTET STRING of 32 bytes, not all zero.
func noiseKey(c *x509.Certificate) ([32]byte, error) {
	var noise [32]byte
	var found bool
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(OIDNoiseStatic) {
			continue
		}
		var key []byte
		rest, err := asn1.Unmarshal(ext.Value, &key)
		if found || err != nil || len(rest) != 0 || len(key) != len(noise) {
			return noise, errors.New("malformed or repeated Noise static key extension")
		}
		copy(noise[:], key)
		found = true
	}
	if !found || noise == ([32]byte{}) {
		return noise, errors.New("missing Noise static key extension")
	}
	return noise, nil
}

// NoiseBinding reads the name (CN) and Noise static key a certificate
// binds without judging it: no signature, validity or policy check. It is
// for a handshake whose policy failures must become typed replies after
// the handshake (AS login), which then verifies the certificate itself.
func NoiseBinding(certDER []byte) (fqdn string, noise [32]byte, err error) {
	c, err := x509.ParseCertificate(certDER)
	if err != nil {
		return "", noise, fmt.Errorf("pki: certificate: %w", err)
	}
	if noise, err = noiseKey(c); err != nil {
		return "", noise, fmt.Errorf("pki: certificate: %w", err)
	}
	return c.Subject.CommonName, noise, nil
}

// certVIPs reads a node certificate's VIPs: exactly one IPv6 and one IPv4
// IP SAN. Services have none; a certificate without them (issued before
// VIPs were bound to identities) is not a node certificate any more.
func certVIPs(c *x509.Certificate, role Role) (vip6, vip4 netip.Addr, err error) {
	if role != RoleNode {
		if len(c.IPAddresses) != 0 {
			return vip6, vip4, fmt.Errorf("a %s certificate has IP SANs", role)
		}
		return vip6, vip4, nil
	}
	if len(c.IPAddresses) != 2 {
		return vip6, vip4, fmt.Errorf("want one IPv6 and one IPv4 VIP, have %d IP SANs (reissue it with 'cyphonic ca issue')", len(c.IPAddresses))
	}
	for _, ip := range c.IPAddresses {
		a, ok := netip.AddrFromSlice(ip)
		switch {
		case !ok || !a.IsValid():
			return vip6, vip4, errors.New("malformed IP SAN")
		case len(ip) == 4 && !vip4.IsValid():
			vip4 = a
		case len(ip) == 16 && !a.Is4In6() && !vip6.IsValid():
			vip6 = a
		default:
			return vip6, vip4, fmt.Errorf("want one IPv6 and one IPv4 VIP, have %v", c.IPAddresses)
		}
	}
	return vip6, vip4, nil
}

// NodeBinding reads what a node certificate binds besides its name and
// key — its serial and VIPs — without checking its signature: it is for a
// caller whose handshake has already verified the certificate (the
// handshake's VerifyFunc) and now checks it against a path.
func NodeBinding(certDER []byte) (serial *big.Int, vip6, vip4 netip.Addr, err error) {
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, vip6, vip4, fmt.Errorf("pki: node binding: %w", err)
	}
	f, err := leafFacts(cert)
	if err == nil && f.role != RoleNode {
		err = ErrWrongRole
	}
	if err != nil {
		return nil, vip6, vip4, fmt.Errorf("pki: node binding: %w", err)
	}
	return cert.SerialNumber, f.vip6, f.vip4, nil
}
