package pki

import (
	"encoding/asn1"
	"fmt"
	"slices"
	"strconv"
)

// OIDArc is the arc under which CYPHONIC's OIDs live (see the package doc).
var OIDArc = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 7801}

var (
	// OIDNoiseStatic identifies the extension carrying the Noise static key.
	OIDNoiseStatic = slices.Clip(append(slices.Clone(OIDArc), 1, 1))
	oidRoleArc     = slices.Clip(append(slices.Clone(OIDArc), 2))
)

// ServiceDomain is the domain of the cloud services' certificate names.
// Node certificates are never issued under it, so a node can never be
// named like a service.
const ServiceDomain = "cyphonic.internal"

// Role is what a certificate's holder may act as. It is carried as an
// extended key usage, so one certificate has exactly one role.
type Role uint8

const (
	RoleNode Role = iota + 1 // an overlay node
	RoleAS                   // the Authentication Service
	RoleNMS                  // the Node Management Service
	RoleTRS                  // the Tunnel Relay Service
)

var roleNames = [...]string{RoleNode: "node", RoleAS: "as", RoleNMS: "nms", RoleTRS: "trs"}

func (r Role) valid() bool { return r >= RoleNode && r <= RoleTRS }

func (r Role) String() string {
	if r.valid() {
		return roleNames[r]
	}
	return "role(" + strconv.Itoa(int(r)) + ")"
}

// ParseRole returns the role named s ("node", "as", "nms", "trs").
func ParseRole(s string) (Role, error) {
	for r := RoleNode; r <= RoleTRS; r++ {
		if roleNames[r] == s {
			return r, nil
		}
	}
	return 0, fmt.Errorf("pki: unknown role %q", s)
}

// IsService reports whether r is one of the cloud services.
func (r Role) IsService() bool { return r == RoleAS || r == RoleNMS || r == RoleTRS }

// ServiceFQDN is the name in a service's certificate, e.g.
// "as.cyphonic.internal". It is empty for RoleNode.
func (r Role) ServiceFQDN() string {
	if !r.IsService() {
		return ""
	}
	return r.String() + "." + ServiceDomain
}

// OID is the extended key usage marking the role.
func (r Role) OID() asn1.ObjectIdentifier {
	return append(slices.Clone(oidRoleArc), int(r))
}

// roleFromEKUs returns the one CYPHONIC role among a certificate's unknown
// extended key usages; zero if there is none or more than one.
func roleFromEKUs(ekus []asn1.ObjectIdentifier) Role {
	var found Role
	for _, oid := range ekus {
		if len(oid) != len(oidRoleArc)+1 || !oid[:len(oidRoleArc)].Equal(oidRoleArc) {
			continue
		}
		r := Role(oid[len(oidRoleArc)])
		if oid[len(oidRoleArc)] > int(RoleTRS) || !r.valid() || found != 0 {
			return 0
		}
		found = r
	}
	return found
}
