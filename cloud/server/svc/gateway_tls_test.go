package svc

import (
	"context"
	"crypto/tls"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/cloud/rootca"
	"github.com/cyphonic/cyphonic-go/pki"
)

// fakeGateway is another cloud process's gateway as far as gRPC goes: it
// proves a service certificate, accepts the connect request and counts the
// batches it gets.
type fakeGateway struct {
	remote.UnimplementedRemotingServer
	batches chan *remote.MessageBatch
}

func (f *fakeGateway) Receive(stream remote.Remoting_ReceiveServer) error {
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		switch t := m.MessageType.(type) {
		case *remote.RemoteMessage_ConnectRequest:
			if err := stream.Send(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_ConnectResponse{
				ConnectResponse: &remote.ConnectResponse{},
			}}); err != nil {
				return err
			}
		case *remote.RemoteMessage_MessageBatch:
			f.batches <- t.MessageBatch
		}
	}
}

// TestGatewayStopsSendingToRevokedPeer: this gateway sends a frame to
// another process (a key hand-over, say) and it arrives; that process's
// certificate is revoked; the next frame for it goes nowhere: the open
// stream refuses to send it. (A new connection would fail its handshake:
// TestVerifyPeer's policy, in VerifyConnection.)
func TestGatewayStopsSendingToRevokedPeer(t *testing.T) {
	ca, err := rootca.Init(t.TempDir(), "overlay", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var deny atomic.Pointer[pki.DenyList]
	deny.Store(pki.NewDenyList())
	creds := credentialsUnder(t, ca, pki.RoleAS)
	creds.Peers.SetDenySource(deny.Load)

	// Before any other gRPC server: the pinned remote's Start writes
	// grpclog's globals (see Gateway).
	r := NewRouter(nil)
	gw, err := StartGateway(supervise.New("gateway", nil), "127.0.0.1:0", r, creds)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := gw.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	// The other process: an NMS certificate, its own TLS.
	nms, err := ca.Issue(pki.RoleNMS, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{nms.CertDER}, PrivateKey: nms.Key}},
		ClientAuth:   tls.RequireAnyClientCert,
	})))
	fake := &fakeGateway{batches: make(chan *remote.MessageBatch, 16)}
	remote.RegisterRemotingServer(srv, fake)
	go srv.Serve(l)
	defer srv.Stop()

	to := RootOf(l.Addr().String(), NMS)
	if err := r.Link(AS).Send(to, []byte{0, 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fake.batches:
	case <-time.After(10 * time.Second):
		t.Fatal("the first frame never arrived")
	}

	deny.Store(pki.NewDenyList(nms.Cert.SerialNumber))
	if err := r.Link(AS).Send(to, []byte{0, 2}); err != nil {
		t.Fatal(err)
	}
	// The open stream refuses the send (counted) and protoactor drops it.
	deadline := time.Now().Add(10 * time.Second)
	for gw.Refused.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if gw.Refused.Load() == 0 {
		t.Fatal("the gateway never refused the revoked peer")
	}
	select {
	case b := <-fake.batches:
		t.Fatalf("the revoked peer got a batch: %v", b)
	default:
	}
}
