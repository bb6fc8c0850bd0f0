package svc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cyphonic/cyphonic-go/pki"
)

// Credentials are what a gateway proves and what it accepts: the process's
// service identity, presented to every other gateway, and the verifier a
// peer gateway's certificate must pass (the overlay root, a cloud-service
// role, the deny list). Both directions are checked: a gateway delivers
// frames only from, and sends frames (key hand-overs among them) only to,
// a process holding a service certificate of the overlay.
type Credentials struct {
	Identity *pki.Identity
	Peers    *pki.Verifier
	// Also are the certificates of the process's other services: proven on
	// every connection this gateway opens (see roleproof.go), so that their
	// frames pass the other gateways' role checks too.
	Also []*pki.Identity
}

// handshakeTimeout bounds a connection that has not finished its TLS
// handshake: a stranger holding sockets open costs a few seconds, not
// gRPC's default two minutes.
const handshakeTimeout = 5 * time.Second

var errNoPeerCert = errors.New("svc: gateway: peer sent no certificate")

// tlsConfig is the TLS 1.3 configuration of a gateway's server (server
// true) or client side.
//
// crypto/tls's own chain verification is off on both sides and replaced by
// VerifyConnection with the overlay's verifier: x509.Verify would demand a
// serverAuth/clientAuth extended key usage, which the overlay's certificates
// do not carry (their EKU is the CYPHONIC role), and it knows nothing of
// roles or the deny list. The handshake signature is checked by crypto/tls
// either way, so the peer proves it holds the certificate's key; what the
// certificate is worth is pki.Verifier's decision, as everywhere else.
func (c Credentials) tlsConfig(server bool, refused *atomic.Uint64) (*tls.Config, error) {
	if c.Identity == nil || c.Peers == nil {
		return nil, errors.New("svc: gateway: credentials need an identity and a verifier")
	}
	if !c.Identity.Role.IsService() {
		return nil, fmt.Errorf("svc: gateway: identity %s is a %s, not a cloud service", c.Identity.FQDN, c.Identity.Role)
	}
	cert := tls.Certificate{
		Certificate: [][]byte{c.Identity.CertDER},
		PrivateKey:  c.Identity.Key,
		Leaf:        c.Identity.Cert,
	}
	peers := c.Peers
	verify := func(cs tls.ConnectionState) error {
		_, err := verifyPeer(peers, cs)
		if err != nil && refused != nil {
			refused.Add(1)
		}
		return err
	}
	cfg := &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{cert},
		VerifyConnection: verify,
	}
	if server {
		// Requested, not required, so that a client without a certificate
		// reaches VerifyConnection too: refused there, and counted.
		cfg.ClientAuth = tls.RequestClientCert
	} else {
		cfg.InsecureSkipVerify = true // verified by VerifyConnection, see above
	}
	return cfg, nil
}

// verifyPeer accepts a connection whose peer's leaf certificate verifies
// under the overlay root with a cloud-service role, and returns that role.
func verifyPeer(v *pki.Verifier, cs tls.ConnectionState) (pki.Role, error) {
	if len(cs.PeerCertificates) == 0 {
		return 0, errNoPeerCert
	}
	p, err := verifyService(v, cs.PeerCertificates[0].Raw)
	if err != nil {
		return 0, err
	}
	return p.Role, nil
}

// grpcOptions returns the remote's server and dial options for c.
// refused counts certificate refusals, frames the frames refused by
// reason.
func (c Credentials) grpcOptions(refused *atomic.Uint64, frames *frameRefusals) ([]grpc.ServerOption, []grpc.DialOption, error) {
	srv, err := c.tlsConfig(true, refused)
	if err != nil {
		return nil, nil, err
	}
	if len(c.Also) > maxRoleProofs {
		return nil, nil, fmt.Errorf("svc: gateway: %d further identities, at most %d", len(c.Also), maxRoleProofs)
	}
	for _, id := range c.Also {
		if id == nil || !id.Role.IsService() {
			return nil, nil, errors.New("svc: gateway: a further identity is not a cloud service's")
		}
	}
	cli, err := c.tlsConfig(false, refused)
	if err != nil {
		return nil, nil, err
	}
	return []grpc.ServerOption{
			grpc.Creds(credentials.NewTLS(srv)),
			grpc.ConnectionTimeout(handshakeTimeout),
			grpc.UnaryInterceptor(refuseUnary),
			grpc.StreamInterceptor(c.recheck(refused, frames)),
		}, []grpc.DialOption{
			grpc.WithTransportCredentials(credentials.NewTLS(cli)),
			grpc.WithStreamInterceptor(c.recheckServer(refused)),
		}, nil
}

// recheck keeps checking a gateway stream's peer after the handshake: its
// certificate is verified again on every message (a batch of frames) it
// sends, before protoactor sees the message, so a peer revoked (or expired)
// while connected can deliver nothing more; a connection lives as long as
// both processes do. Each check is a stat of the deny list and one Ed25519
// verification, next to batches of logins and tunnel setups. Then every
// frame of the batch is held against the peer's role (Authorize): the
// refused ones are taken out of the batch, and counted, before protoactor
// hands any of it to an actor.
func (c Credentials) recheck(refused *atomic.Uint64, frames *frameRefusals) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		state, err := tlsState(ss.Context())
		if err != nil {
			return err
		}
		return handler(srv, &checkedStream{ServerStream: ss, peer: checkedPeer{state, c.Peers, refused}, frames: frames})
	}
}

// tlsState is the TLS state of the connection a stream's context belongs to.
func tlsState(ctx context.Context) (tls.ConnectionState, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return tls.ConnectionState{}, status.Error(codes.Unauthenticated, "svc: gateway: no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return tls.ConnectionState{}, status.Error(codes.Unauthenticated, "svc: gateway: not a TLS peer")
	}
	return info.State, nil
}

// checkedPeer is the peer of an open stream, verified again on each use.
type checkedPeer struct {
	state   tls.ConnectionState
	peers   *pki.Verifier
	refused *atomic.Uint64
}

// check verifies the peer again, with the further certificates it proved
// (also), and returns the roles it holds.
func (p checkedPeer) check(also [][]byte) ([]pki.Role, error) {
	role, err := verifyPeer(p.peers, p.state)
	roles := []pki.Role{role}
	for _, der := range also {
		if err != nil {
			break
		}
		var q *pki.Peer
		if q, err = verifyService(p.peers, der); err == nil {
			roles = append(roles, q.Role)
		}
	}
	if err != nil {
		if p.refused != nil {
			p.refused.Add(1)
		}
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	return roles, nil
}

type checkedStream struct {
	grpc.ServerStream
	peer   checkedPeer
	frames *frameRefusals
	also   [][]byte // certificates the peer proved besides its TLS one
	first  bool     // a message arrived: a role proof may only be the first
}

func (s *checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	rm, _ := m.(*remote.RemoteMessage)
	if rm != nil && isRoleProof(rm) {
		if s.first {
			return status.Error(codes.PermissionDenied, "svc: gateway: role proof after the first message")
		}
		s.first = true
		ders, err := openRoleProof(s.peer.peers, s.peer.state, rm)
		if err != nil {
			if s.peer.refused != nil {
				s.peer.refused.Add(1)
			}
			return status.Error(codes.PermissionDenied, err.Error())
		}
		s.also = ders
		// The proof is ours, not protoactor's: hand it the next message.
		proto.Reset(rm)
		if err := s.ServerStream.RecvMsg(m); err != nil {
			return err
		}
	}
	s.first = true
	roles, err := s.peer.check(s.also)
	if err != nil {
		return err
	}
	if rm != nil {
		if b := rm.GetMessageBatch(); b != nil {
			s.frames.filter(b, roles)
		}
	}
	return nil
}

// recheckServer is recheck's other half, for the streams this gateway
// opens: the other gateway's certificate is verified again before every
// message sent to it, so a process revoked while connected receives
// nothing more (key hand-overs among it). A refused send makes protoactor
// drop the connection; the next one fails its handshake.
func (c Credentials) recheckServer(refused *atomic.Uint64) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return nil, err
		}
		// The stream's context carries its transport's peer, TLS state included.
		state, err := tlsState(cs.Context())
		if err != nil {
			return nil, err
		}
		if len(c.Also) > 0 {
			// Our other roles, bound to this connection, before any batch.
			proof, err := newRoleProof(state, c.Also)
			if err != nil {
				return nil, err
			}
			if err := cs.SendMsg(proof); err != nil {
				return nil, err
			}
		}
		return &checkedClientStream{ClientStream: cs, peer: checkedPeer{state, c.Peers, refused}}, nil
	}
}

type checkedClientStream struct {
	grpc.ClientStream
	peer checkedPeer
}

func (s *checkedClientStream) SendMsg(m any) error {
	if _, err := s.peer.check(nil); err != nil {
		return err
	}
	return s.ClientStream.SendMsg(m)
}

// refuseUnary answers every unary call: the gateways speak only the
// Receive stream, and the pinned remote's unary handlers (ListProcesses,
// GetProcessDiagnostics) panic, which gRPC does not recover.
func refuseUnary(context.Context, any, *grpc.UnaryServerInfo, grpc.UnaryHandler) (any, error) {
	return nil, status.Error(codes.Unimplemented, "svc: gateway serves only the Receive stream")
}
