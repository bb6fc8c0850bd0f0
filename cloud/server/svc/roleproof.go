package svc

import (
	"crypto/ed25519"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/remote"

	"github.com/cyphonic/cyphonic-go/pki"
)

// A TLS peer proves one certificate, but a process may run several
// services, each with a certificate of its own role, and its gateway
// carries the frames of all of them. So a gateway whose process runs more
// than one service proves the other roles on each connection it opens:
// before its first batch it sends a role proof, each further certificate
// with an Ed25519 signature, under that certificate's key, of this TLS
// connection's exporter (RFC 8446 §7.5). The signature binds the proof to
// the connection: the receiving gateway, even a compromised one, cannot
// replay it on a connection of its own to a third.
//
// The proof travels as a MessageBatch of its own type, which the receiving
// gateway's interceptor consumes; protoactor never sees it.
const (
	roleProofType     = "cyphonic.gateway.RoleProof"
	roleProofExporter = "EXPORTER-cyphonic-gateway-roles"
	roleProofContext  = "cyphonic gateway role proof v1\x00"
	maxRoleProofs     = 3 // as, nms, trs
)

var errRoleProof = errors.New("svc: gateway: bad role proof")

// roleProofMessage is what a gateway signs for one of its certificates on
// the connection whose TLS state is cs.
func roleProofMessage(cs tls.ConnectionState) ([]byte, error) {
	ekm, err := cs.ExportKeyingMaterial(roleProofExporter, nil, 32)
	if err != nil {
		return nil, fmt.Errorf("svc: gateway: exporter: %w", err)
	}
	return append([]byte(roleProofContext), ekm...), nil
}

// newRoleProof is the batch proving ids on the connection of cs.
func newRoleProof(cs tls.ConnectionState, ids []*pki.Identity) (*remote.RemoteMessage, error) {
	msg, err := roleProofMessage(cs)
	if err != nil {
		return nil, err
	}
	b := &remote.MessageBatch{TypeNames: []string{roleProofType}}
	for _, id := range ids {
		if len(id.CertDER) > 0xffff {
			return nil, fmt.Errorf("svc: gateway: certificate of %s too large", id.Role)
		}
		d := binary.BigEndian.AppendUint16(nil, uint16(len(id.CertDER)))
		d = append(append(d, id.CertDER...), ed25519.Sign(id.Key, msg)...)
		b.Envelopes = append(b.Envelopes, &remote.MessageEnvelope{MessageData: d})
	}
	return &remote.RemoteMessage{MessageType: &remote.RemoteMessage_MessageBatch{MessageBatch: b}}, nil
}

// isRoleProof reports whether m is a role proof batch.
func isRoleProof(m *remote.RemoteMessage) bool {
	b := m.GetMessageBatch()
	return b != nil && len(b.TypeNames) == 1 && b.TypeNames[0] == roleProofType
}

// openRoleProof verifies a role proof received on the connection of cs and
// returns the certificates it proves (DER), each verified by v as a cloud
// service and signed over this connection's exporter.
func openRoleProof(v *pki.Verifier, cs tls.ConnectionState, m *remote.RemoteMessage) ([][]byte, error) {
	b := m.GetMessageBatch()
	if len(b.Envelopes) == 0 || len(b.Envelopes) > maxRoleProofs {
		return nil, errRoleProof
	}
	msg, err := roleProofMessage(cs)
	if err != nil {
		return nil, err
	}
	var ders [][]byte
	for _, e := range b.Envelopes {
		d := e.GetMessageData()
		if len(d) < 2 || len(d) != 2+int(binary.BigEndian.Uint16(d))+ed25519.SignatureSize {
			return nil, errRoleProof
		}
		der, sig := d[2:len(d)-ed25519.SignatureSize], d[len(d)-ed25519.SignatureSize:]
		p, err := verifyService(v, der)
		if err != nil {
			return nil, err
		}
		pub, ok := p.Cert.PublicKey.(ed25519.PublicKey)
		if !ok || !ed25519.Verify(pub, msg, sig) {
			return nil, fmt.Errorf("%w: %s signature", errRoleProof, p.Role)
		}
		ders = append(ders, der)
	}
	return ders, nil
}

// verifyService verifies a certificate as a cloud service's.
func verifyService(v *pki.Verifier, der []byte) (*pki.Peer, error) {
	p, err := v.Verify(der, "", time.Now())
	if err != nil {
		return nil, fmt.Errorf("svc: gateway peer: %w", err)
	}
	if !p.Role.IsService() { // the verifier's roles say so already; never trust one config
		return nil, fmt.Errorf("svc: gateway peer %s: role %s is not a cloud service", p.FQDN, p.Role)
	}
	return p, nil
}
