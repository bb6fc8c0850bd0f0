package node

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/transport/udp"
)

// OptionError is a start failure that one option of Config causes and
// that changing it fixes. Option is the option's flag name (and config file
// key) without dashes, so the command can name it as the operator gave it.
type OptionError struct {
	Option string
	Err    error
}

func (e *OptionError) Error() string { return "--" + e.Option + ": " + e.Err.Error() }

func (e *OptionError) Unwrap() error { return e.Err }

func optionErr(option, format string, args ...any) error {
	return &OptionError{Option: option, Err: fmt.Errorf(format, args...)}
}

// ErrNeedPrivilege: the node lacks CAP_NET_ADMIN (TUN device, addresses,
// routes).
var ErrNeedPrivilege = errors.New("the node needs root or the CAP_NET_ADMIN capability (run it as root, " +
	"or give the binary the capability: setcap cap_net_admin+ep, or AmbientCapabilities=CAP_NET_ADMIN in its systemd unit)")

// tunError explains a failure to open the TUN device.
func tunError(name string, err error) error {
	switch {
	case errors.Is(err, syscall.EPERM):
		return fmt.Errorf("node: TUN %s: %w: %w", name, err, ErrNeedPrivilege)
	case errors.Is(err, syscall.EACCES) && os.Geteuid() != 0:
		// open(2) of the device, before any capability is asked for.
		return fmt.Errorf("node: TUN %s: %w: this user may not open /dev/net/tun (most systems make it mode 0666; "+
			"here only its owner may: chmod 0666 /dev/net/tun, or run the node as root)", name, err)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("node: TUN %s: %w: %w", name, err, ErrNeedPrivilege)
	case errors.Is(err, syscall.EBUSY):
		return optionErr("tun", "TUN device %s is in use (another node on this host?): give this node another name with --tun: %w", name, err)
	}
	return optionErr("tun", "TUN device %s: %w", name, err)
}

// listenError names the option of a socket that would not open, and why.
func listenError(option, what, addr string, err error) error {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return optionErr(option, "%s %s is in use (another node on this host?): give this node another with --%s: %w", what, addr, option, err)
	case errors.Is(err, syscall.EACCES):
		return optionErr(option, "%s %s: a port below 1024 needs root or CAP_NET_BIND_SERVICE: choose a higher port with --%s: %w", what, addr, option, err)
	}
	return optionErr(option, "%s %s: %w", what, addr, err)
}

// bindError maps udp.ListenBind's error onto --listen4 or --listen6.
func bindError(err error) error {
	var le *udp.ListenError
	if !errors.As(err, &le) {
		return fmt.Errorf("node: sockets: %w", err)
	}
	option := "listen4"
	if le.Network == "udp6" {
		option = "listen6"
	}
	return listenError(option, "UDP socket", le.Addr, le.Err)
}

// expiryWarning is how long before its certificate expires the node warns:
// 30 days, or a third of the lifetime of a shorter-lived certificate.
func expiryWarning(c *x509.Certificate) time.Duration {
	d := 30 * 24 * time.Hour
	if life := c.NotAfter.Sub(c.NotBefore); life/3 < d {
		d = life / 3
	}
	return d
}

// checkIdentity is the node's own certificate checked as its peers and the
// AS will check it: chained to the CA in caFile, in its validity window,
// not on the deny list the node holds. A mismatch here would otherwise
// show only as a login that never gets an answer.
func checkIdentity(id *pki.Identity, root *x509.Certificate, deny *pki.DenyList, certDir, caFile string, now time.Time) error {
	v, err := pki.NewVerifier(root, pki.RoleNode)
	if err != nil {
		return optionErr("ca", "%s: %v", caFile, err)
	}
	v.SetDenyList(deny)
	_, err = v.Verify(id.CertDER, id.FQDN, now)
	c := id.Cert
	serial := pki.FormatSerial(c.SerialNumber)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pki.ErrUnknownCA):
		return optionErr("ca", "the certificate in %s (%s, serial %s) was not issued by the CA in %s: "+
			"it names issuer %q (key %s), %s holds %q (key %s); give the CA that issued it with --ca, or issue %s a certificate from this CA",
			certDir, id.FQDN, serial, caFile, c.Issuer.CommonName, keyID(c.AuthorityKeyId),
			caFile, root.Subject.CommonName, keyID(root.SubjectKeyId), id.FQDN)
	case errors.Is(err, pki.ErrExpired):
		return optionErr("cert", "the certificate in %s (%s, serial %s) expired on %s: the cloud and every peer refuse it; "+
			"issue a new one (cyphonic ca issue --fqdn %s --out %s)", certDir, id.FQDN, serial,
			c.NotAfter.UTC().Format(time.RFC3339), id.FQDN, certDir)
	case errors.Is(err, pki.ErrNotYetValid):
		return optionErr("cert", "the certificate in %s (%s, serial %s) is not valid before %s: check this host's clock",
			certDir, id.FQDN, serial, c.NotBefore.UTC().Format(time.RFC3339))
	case errors.Is(err, pki.ErrRevoked):
		return optionErr("cert", "the certificate in %s (%s, serial %s) is revoked (the deny list in %s names it): "+
			"issue a new one (cyphonic ca issue --fqdn %s --out %s)", certDir, id.FQDN, serial, certDir, id.FQDN, certDir)
	}
	return optionErr("cert", "the certificate in %s: %w", certDir, err)
}

// keyID prints a key identifier short enough to compare by eye.
func keyID(b []byte) string {
	if len(b) == 0 {
		return "unknown"
	}
	if len(b) > 8 {
		b = b[:8]
	}
	return fmt.Sprintf("%x", b)
}
