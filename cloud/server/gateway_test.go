package server_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/cyphonic/cyphonic-go/cloud/rootca"
	"github.com/cyphonic/cyphonic-go/cloud/server"
	"github.com/cyphonic/cyphonic-go/cloud/server/svc"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
)

// gatewayRoute lays out what one gateway sends another (svc's route
// header, as an attacker who read the source would write it): version 1,
// five length-prefixed names (target service and actor, reply process,
// service and actor), the frame.
func gatewayRoute(to, replyTo svc.Ref, frame []byte) []byte {
	b := []byte{1}
	for _, s := range []string{to.Service, to.ID, replyTo.Process, replyTo.Service, replyTo.ID} {
		b = append(append(b, byte(len(s))), s...)
	}
	return append(b, frame...)
}

// gatewayClient speaks protoactor remote's gRPC protocol to a gateway, as
// another cloud process would.
type gatewayClient struct {
	addr   string
	conn   *grpc.ClientConn
	stream remote.Remoting_ReceiveClient
}

// dialGateway opens the Receive stream to the gateway at addr and
// connects; connected reports whether the gateway accepted the connection
// (answered the connect request). The client lives until ctx ends.
func dialGateway(ctx context.Context, addr string, creds grpc.DialOption) (c *gatewayClient, connected bool, err error) {
	conn, err := grpc.Dial(addr, creds)
	if err != nil {
		return nil, false, err
	}
	context.AfterFunc(ctx, func() { conn.Close() })
	stream, err := remote.NewRemotingClient(conn).Receive(ctx)
	if err != nil {
		return nil, false, err
	}
	err = stream.Send(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_ConnectRequest{
		ConnectRequest: &remote.ConnectRequest{ConnectionType: &remote.ConnectRequest_ServerConnection{
			ServerConnection: &remote.ServerConnection{SystemId: "mallory", Address: "127.0.0.1:1"},
		}},
	}})
	if err != nil {
		return nil, false, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, false, err
	}
	if resp.GetConnectResponse() == nil {
		return nil, false, errors.New("no connect response")
	}
	return &gatewayClient{addr: addr, conn: conn, stream: stream}, true, nil
}

// send sends one batch carrying route to the gateway actor.
func (c *gatewayClient) send(route []byte) error {
	data, err := proto.Marshal(wrapperspb.Bytes(route))
	if err != nil {
		return err
	}
	return c.stream.Send(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_MessageBatch{MessageBatch: &remote.MessageBatch{
		TypeNames: []string{string(proto.MessageName(&wrapperspb.BytesValue{}))},
		Targets:   []*actor.PID{{Address: c.addr, Id: svc.GatewayID}},
		Envelopes: []*remote.MessageEnvelope{{MessageData: data}},
	}}})
}

// finish closes the sending side and waits for the gateway to end the
// stream: nil if it ended it cleanly, after handing every batch sent to the
// gateway actor.
func (c *gatewayClient) finish() error {
	if err := c.stream.CloseSend(); err != nil {
		return err
	}
	for {
		if _, err := c.stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// deliverFrame connects, sends route in one batch and finishes.
func deliverFrame(ctx context.Context, addr string, creds grpc.DialOption, route []byte) (connected bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, connected, err := dialGateway(ctx, addr, creds)
	if err != nil {
		return connected, err
	}
	if err := c.send(route); err != nil {
		return true, err
	}
	return true, c.finish()
}

// keyHandover is the route and frame an AS sends an NMS after a login:
// the signaling keys of fqdn's session. The ack goes back to s's own
// process, which runs no AS: dropped.
func keyHandover(t *testing.T, s *server.Server, fqdn string) []byte {
	t.Helper()
	f, err := svc.NewFrame("", messages.NewMsgID(), svc.AS, time.Now(), messages.KeyHandover{
		SessionID: 7, FQDN: fqdn, CertSerial: "1", NodeToCloud: [32]byte{1}, CloudToNode: [32]byte{2},
		Expires: time.Now().Add(time.Hour).UnixNano(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return gatewayRoute(svc.RootOf("", svc.NMS), svc.Ref{Process: s.Remote, Service: svc.AS, ID: "as/tx"}, f)
}

func tlsWith(id *pki.Identity) grpc.DialOption {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true} // the attacker trusts anything
	if id != nil {
		cfg.Certificates = []tls.Certificate{{Certificate: [][]byte{id.CertDER}, PrivateKey: id.Key}}
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg))
}

// TestGatewayRefusesWithoutServiceCert attacks a cloud process's gateway
// (an NMS + TRS process, whose AS runs elsewhere) with a real gRPC client
// speaking protoactor remote: it hands the NMS the signaling keys of a node
// it names (a KeyHandover, what an AS sends after a login), which would let
// it speak to NMS as that node. Without a certificate (plaintext or TLS),
// with a node's certificate, with a service certificate of another CA and
// with a revoked service certificate the connection is refused and the NMS
// holds no session; with the AS's certificate the same frame goes through
// (so the client is right and the refusals are the gateway's).
func TestGatewayRefusesWithoutServiceCert(t *testing.T) {
	s, err := server.Start(context.Background(), server.Config{
		DataDir: t.TempDir(), Ephemeral: true, Listen: loopback, Services: []string{svc.NMS, svc.TRS}, // the AS is elsewhere: the gateway runs
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	if s.Remote == "" {
		t.Fatal("no gateway")
	}
	issue := func(ca *rootca.CA, role pki.Role) *pki.Identity {
		id, err := ca.Issue(role, "mallory.example.cyphonic", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	other, err := rootca.Init(t.TempDir(), "CYPHONIC overlay CA", time.Hour) // same name, another key
	if err != nil {
		t.Fatal(err)
	}
	revoked := issue(s.CA, pki.RoleAS)
	if err := s.CA.Revoke(revoked.Cert.SerialNumber); err != nil {
		t.Fatal(err)
	}
	handover := func(fqdn string) []byte { return keyHandover(t, s, fqdn) }

	for _, a := range []struct {
		name  string
		creds grpc.DialOption
	}{
		{"plaintext", grpc.WithTransportCredentials(insecure.NewCredentials())},
		{"TLS without a certificate", tlsWith(nil)},
		{"node certificate", tlsWith(issue(s.CA, pki.RoleNode))},
		{"service certificate of another CA", tlsWith(issue(other, pki.RoleAS))},
		{"revoked service certificate", tlsWith(revoked)},
	} {
		connected, err := deliverFrame(t.Context(), s.Remote, a.creds, handover("alice.example.cyphonic"))
		if connected || err == nil {
			t.Errorf("%s: the gateway took the connection (err %v)", a.name, err)
		}
	}
	// The frames above, had any got in, were in the gateway actor's mailbox
	// before this one: when its session shows, theirs would have.
	connected, err := deliverFrame(t.Context(), s.Remote, tlsWith(issue(s.CA, pki.RoleAS)), handover("carol.example.cyphonic"))
	if !connected || err != nil {
		t.Fatalf("AS certificate: connected %v, %v", connected, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.NMS.Sessions() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n, st := s.NMS.Sessions(), s.Router().Stats(); n != 1 || st.Inbound != 1 {
		t.Fatalf("NMS holds %d sessions, router %+v: want only the AS's hand-over", n, st)
	}
}

// TestGatewayEndsRevokedPeer: a cloud process connected with a valid
// service certificate delivers a frame; its certificate is revoked; the
// next frame on the same connection is refused and the NMS never sees it.
func TestGatewayEndsRevokedPeer(t *testing.T) {
	s, err := server.Start(context.Background(), server.Config{
		DataDir: t.TempDir(), Ephemeral: true, Listen: loopback, Services: []string{svc.NMS, svc.TRS},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	id, err := s.CA.Issue(pki.RoleAS, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c, connected, err := dialGateway(ctx, s.Remote, tlsWith(id))
	if !connected || err != nil {
		t.Fatalf("connect with a valid AS certificate: %v", err)
	}
	if err := c.send(keyHandover(t, s, "carol.example.cyphonic")); err != nil {
		t.Fatal(err)
	}
	for s.NMS.Sessions() != 1 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	if s.NMS.Sessions() != 1 {
		t.Fatal("the valid hand-over did not arrive")
	}

	if err := s.CA.Revoke(id.Cert.SerialNumber); err != nil {
		t.Fatal(err)
	}
	if err := c.send(keyHandover(t, s, "dave.example.cyphonic")); err != nil {
		t.Fatal(err)
	}
	if err := c.finish(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("stream after revocation ended with %v, want PermissionDenied", err)
	}
	if n, st := s.NMS.Sessions(), s.Router().Stats(); n != 1 || st.Inbound != 1 {
		t.Fatalf("NMS holds %d sessions, router %+v: the revoked peer's frame got in", n, st)
	}
}

// TestGatewayRefusesFrameOutsideRole: a process holding a valid TRS
// service certificate (a compromised relay) connects to an NMS's gateway
// and hands the NMS alice's signaling keys, which would let it speak to NMS
// as alice. The connection is a cloud service's, so it is taken; the frame
// is not a TRS's to send: it is refused and counted before any actor sees
// it, and the NMS holds no session. The same bytes from the AS's
// certificate are delivered.
func TestGatewayRefusesFrameOutsideRole(t *testing.T) {
	s, err := server.Start(context.Background(), server.Config{
		DataDir: t.TempDir(), Ephemeral: true, Listen: loopback, Services: []string{svc.NMS, svc.TRS},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	frame := keyHandover(t, s, "alice.example.cyphonic")
	for _, role := range []pki.Role{pki.RoleTRS, pki.RoleNMS} {
		id, err := s.CA.Issue(role, "", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if connected, err := deliverFrame(t.Context(), s.Remote, tlsWith(id), frame); !connected || err != nil {
			t.Fatalf("%s certificate: connected %v, %v: a cloud service's connection is taken", role, connected, err)
		}
	}
	// deliverFrame returned after the gateway ended the stream, so it has
	// judged both frames.
	if got := s.Gateway().FramesRefused(svc.RefusedRole); got != 2 {
		t.Errorf("refused for their role: %d frames, want 2", got)
	}
	as, err := s.CA.Issue(pki.RoleAS, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if connected, err := deliverFrame(t.Context(), s.Remote, tlsWith(as), frame); !connected || err != nil {
		t.Fatalf("AS certificate: connected %v, %v", connected, err)
	}
	// Had the refused frames got through, they were in the gateway actor's
	// mailbox before the AS's.
	deadline := time.Now().Add(10 * time.Second)
	for s.NMS.Sessions() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n, st := s.NMS.Sessions(), s.Router().Stats(); n != 1 || st.Inbound != 1 {
		t.Fatalf("NMS holds %d sessions, router %+v: want only the AS's hand-over", n, st)
	}
	if got := s.Gateway().FramesRefused(svc.RefusedRole); got != 2 {
		t.Errorf("refused for their role: %d frames, want 2 (the AS's refused?)", got)
	}
}
