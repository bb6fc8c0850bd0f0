package pki

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidFQDN reports a name that is not a valid overlay FQDN.
var ErrInvalidFQDN = errors.New("invalid FQDN")

// Limits from RFC 1035 §2.3.4 (in presentation form, without the root dot).
const (
	maxFQDNLen  = 253
	maxLabelLen = 63
)

// CanonicalFQDN returns name in the one form certificates and the registry
// use: lowercase, without a trailing dot. It fails with ErrInvalidFQDN if the
// result does not pass ValidateFQDN.
func CanonicalFQDN(name string) (string, error) {
	c := strings.ToLower(strings.TrimSuffix(name, "."))
	if err := ValidateFQDN(c); err != nil {
		return "", err
	}
	return c, nil
}

// ValidateFQDN checks that name is a canonical overlay FQDN: at least two
// labels, each 1-63 characters of lowercase letters, digits and inner
// hyphens (LDH, so IDNs appear in their xn-- form), 253 characters at most,
// no trailing dot and a top-level label that is not all digits (so no name
// can be read as an IPv4 address).
func ValidateFQDN(name string) error {
	if len(name) == 0 || len(name) > maxFQDNLen {
		return fmt.Errorf("pki: %q: %w: length %d not in 1..%d", name, ErrInvalidFQDN, len(name), maxFQDNLen)
	}
	labels := strings.Split(name, ".")
	if len(labels) < 2 {
		return fmt.Errorf("pki: %q: %w: needs at least two labels", name, ErrInvalidFQDN)
	}
	for _, l := range labels {
		if err := validateLabel(l); err != nil {
			return fmt.Errorf("pki: %q: %w: %s", name, ErrInvalidFQDN, err)
		}
	}
	if allDigits(labels[len(labels)-1]) {
		return fmt.Errorf("pki: %q: %w: numeric top-level label", name, ErrInvalidFQDN)
	}
	return nil
}

func validateLabel(l string) error {
	if len(l) == 0 || len(l) > maxLabelLen {
		return fmt.Errorf("label %q length %d not in 1..%d", l, len(l), maxLabelLen)
	}
	if l[0] == '-' || l[len(l)-1] == '-' {
		return fmt.Errorf("label %q starts or ends with a hyphen", l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("label %q has character %q", l, c)
		}
	}
	return nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
