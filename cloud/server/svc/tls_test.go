package svc

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/rootca"
	"github.com/cyphonic/cyphonic-go/pki"
)

// testCredentials are an NMS's credentials under a fresh overlay CA.
func testCredentials(t *testing.T) Credentials {
	t.Helper()
	ca, err := rootca.Init(t.TempDir(), "test overlay", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return credentialsUnder(t, ca, pki.RoleNMS)
}

func credentialsUnder(t *testing.T, ca *rootca.CA, role pki.Role) Credentials {
	t.Helper()
	id, err := ca.Issue(role, "peer.example.cyphonic", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	v, err := pki.NewVerifier(ca.Cert, pki.RoleAS, pki.RoleNMS, pki.RoleTRS)
	if err != nil {
		t.Fatal(err)
	}
	return Credentials{Identity: id, Peers: v}
}

// TestVerifyPeer is the gateway's certificate policy on its own: a cloud
// service of this overlay passes; a node, a stranger's service, an expired
// or revoked service, and no certificate at all do not.
func TestVerifyPeer(t *testing.T) {
	ca, err := rootca.Init(t.TempDir(), "overlay", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := rootca.Init(t.TempDir(), "overlay", time.Hour) // same name, other key
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ca *rootca.CA, role pki.Role, from, to time.Duration) *x509.Certificate {
		now := time.Now()
		id, err := ca.IssueAt(role, "mallory.example.cyphonic", now.Add(from), now.Add(to))
		if err != nil {
			t.Fatal(err)
		}
		return id.Cert
	}
	revoked := issue(ca, pki.RoleAS, -time.Minute, time.Hour)
	v, err := pki.NewVerifier(ca.Cert, pki.RoleAS, pki.RoleNMS, pki.RoleTRS)
	if err != nil {
		t.Fatal(err)
	}
	v.SetDenyList(pki.NewDenyList(revoked.SerialNumber))
	for _, tt := range []struct {
		name string
		cert *x509.Certificate
		want error // nil: accepted
	}{
		{"as", issue(ca, pki.RoleAS, -time.Minute, time.Hour), nil},
		{"trs", issue(ca, pki.RoleTRS, -time.Minute, time.Hour), nil},
		{"node", issue(ca, pki.RoleNode, -time.Minute, time.Hour), pki.ErrWrongRole},
		{"other CA", issue(other, pki.RoleNMS, -time.Minute, time.Hour), pki.ErrUnknownCA},
		{"expired", issue(ca, pki.RoleNMS, -2*time.Hour, -time.Hour), pki.ErrExpired},
		{"revoked", revoked, pki.ErrRevoked},
		{"none", nil, errNoPeerCert},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var cs tls.ConnectionState
			if tt.cert != nil {
				cs.PeerCertificates = []*x509.Certificate{tt.cert}
			}
			_, err := verifyPeer(v, cs)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("verifyPeer: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCredentialsRefuseNodeIdentity(t *testing.T) {
	ca, err := rootca.Init(t.TempDir(), "overlay", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := credentialsUnder(t, ca, pki.RoleNode)
	if _, err := c.tlsConfig(true, nil); err == nil {
		t.Fatal("a gateway accepted a node certificate as its own")
	}
	if _, err := (Credentials{}).tlsConfig(false, nil); err == nil {
		t.Fatal("a gateway started without credentials")
	}
}
