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
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/cyphonic/cyphonic-go/cloud/pki"
	"github.com/cyphonic/cyphonic-go/cloud/server"
	"github.com/cyphonic/cyphonic-go/cloud/server/svc"
	"github.com/cyphonic/cyphonic-go/messages"
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

// deliverFrame speaks protoactor remote's gRPC protocol to the gateway at
// addr, as a cloud process would: open the Receive stream, connect, send
// one batch carrying route to the gateway actor, and wait for the gateway
// to close the stream (it has then handed the batch to the gateway actor).
// connected reports whether the gateway accepted the connection.
func deliverFrame(ctx context.Context, addr string, creds grpc.DialOption, route []byte) (connected bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := grpc.Dial(addr, creds)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	stream, err := remote.NewRemotingClient(conn).Receive(ctx)
	if err != nil {
		return false, err
	}
	err = stream.Send(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_ConnectRequest{
		ConnectRequest: &remote.ConnectRequest{ConnectionType: &remote.ConnectRequest_ServerConnection{
			ServerConnection: &remote.ServerConnection{SystemId: "mallory", Address: "127.0.0.1:1"},
		}},
	}})
	if err != nil {
		return false, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return false, err
	}
	if resp.GetConnectResponse() == nil {
		return false, errors.New("no connect response")
	}
	data, err := proto.Marshal(wrapperspb.Bytes(route))
	if err != nil {
		return true, err
	}
	err = stream.Send(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_MessageBatch{MessageBatch: &remote.MessageBatch{
		TypeNames: []string{string(proto.MessageName(&wrapperspb.BytesValue{}))},
		Targets:   []*actor.PID{{Address: addr, Id: svc.GatewayID}},
		Envelopes: []*remote.MessageEnvelope{{MessageData: data}},
	}}})
	if err != nil {
		return true, err
	}
	if err := stream.CloseSend(); err != nil {
		return true, err
	}
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return true, nil
			}
			return true, err
		}
	}
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
	issue := func(ca *pki.CA, role pki.Role) *pki.Identity {
		id, err := ca.Issue(role, "mallory.example.cyphonic", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	other, err := pki.InitCA(t.TempDir(), "CYPHONIC overlay CA", time.Hour) // same name, another key
	if err != nil {
		t.Fatal(err)
	}
	revoked := issue(s.CA, pki.RoleAS)
	if err := s.CA.Revoke(revoked.Cert.SerialNumber); err != nil {
		t.Fatal(err)
	}
	handover := func(fqdn string) []byte {
		f, err := svc.NewFrame("", messages.NewMsgID(), svc.AS, time.Now(), messages.KeyHandover{
			SessionID: 7, FQDN: fqdn, CertSerial: "1", NodeToCloud: [32]byte{1}, CloudToNode: [32]byte{2},
			Expires: time.Now().Add(time.Hour).UnixNano(),
		})
		if err != nil {
			t.Fatal(err)
		}
		// The ack goes back to this process, which runs no AS: dropped.
		return gatewayRoute(svc.RootOf("", svc.NMS), svc.Ref{Process: s.Remote, Service: svc.AS, ID: "as/tx"}, f)
	}

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
