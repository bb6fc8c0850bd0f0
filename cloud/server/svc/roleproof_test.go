package svc

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
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/cloud/rootca"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
)

// dialRaw opens protoactor's Receive stream to addr with opts and
// connects, as another gateway would; it returns the stream and the
// connection's TLS state.
func dialRaw(t *testing.T, ctx context.Context, addr string, opts ...grpc.DialOption) (remote.Remoting_ReceiveClient, tls.ConnectionState) {
	t.Helper()
	conn, err := grpc.Dial(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stream, err := remote.NewRemotingClient(conn).Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	state, err := tlsState(stream.Context())
	if err != nil {
		t.Fatal(err)
	}
	return stream, state
}

// connectAndSend sends the connect request and one batch with route to
// the gateway actor at addr, closes the sending side and returns how the
// gateway ended the stream (nil: cleanly, after handing on the batch).
func connectAndSend(stream remote.Remoting_ReceiveClient, addr string, route []byte) error {
	// A Send that finds the stream ended by the gateway (it refused what
	// came before) returns io.EOF; the gateway's status is then what
	// Recv returns, so go on to read it rather than report the EOF.
	sent := func(err error) bool { return err == nil }
	err := stream.Send(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_ConnectRequest{
		ConnectRequest: &remote.ConnectRequest{ConnectionType: &remote.ConnectRequest_ServerConnection{
			ServerConnection: &remote.ServerConnection{SystemId: "peer", Address: "127.0.0.1:1"},
		}},
	}})
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if sent(err) {
		data, merr := proto.Marshal(wrapperspb.Bytes(route))
		if merr != nil {
			return merr
		}
		err = stream.Send(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_MessageBatch{MessageBatch: &remote.MessageBatch{
			TypeNames: []string{bytesValueName},
			Targets:   []*actor.PID{{Address: addr, Id: GatewayID}},
			Envelopes: []*remote.MessageEnvelope{{MessageData: data}},
		}}})
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
	if sent(err) {
		if err := stream.CloseSend(); err != nil {
			return err
		}
	}
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// TestGatewayRoleProof: a process running a TRS and an AS presents its
// TRS certificate in TLS and proves the AS's after the handshake, so the
// AS's key hand-over passes the NMS's gateway; without the proof it is
// refused. A proof signed by the wrong key, or made for another
// connection (replayed by a gateway that received it), ends the stream.
func TestGatewayRoleProof(t *testing.T) {
	ca, err := rootca.Init(t.TempDir(), "overlay", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(r pki.Role) *pki.Identity {
		id, err := ca.Issue(r, "", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	r := NewRouter(nil)
	nmsSys := supervise.New(NMS, nil)
	t.Cleanup(func() { r.Detach(NMS); _ = nmsSys.Shutdown(context.Background()) })
	got := make(chan Frame, 8)
	if _, err := nmsSys.Spawn(nil, "nms", NMS, actor.PropsFromProducer(func() actor.Actor {
		return actorFunc(func(ctx actor.Context) {
			if f, ok, err := DecodeFrame(ctx.Message()); ok && err == nil {
				got <- f
			}
		})
	})); err != nil {
		t.Fatal(err)
	}
	r.Attach(NMS, nmsSys.Actors())
	gw, err := StartGateway(supervise.New("gateway", nil), "127.0.0.1:0", r, credentialsUnder(t, ca, pki.RoleNMS))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := gw.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	kh, err := NewFrame("", messages.NewMsgID(), AS, time.Now(), messages.KeyHandover{SessionID: 1, FQDN: "alice.example.cyphonic"})
	if err != nil {
		t.Fatal(err)
	}
	route, err := encodeRoute(RootOf("", NMS), &Message{Frame: kh, ReplyTo: Ref{Process: "127.0.0.1:1", Service: AS, ID: "as/tx"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	trs, as := issue(pki.RoleTRS), issue(pki.RoleAS)
	dialAs := func(leaf *pki.Identity, also ...*pki.Identity) []grpc.DialOption {
		c := credentialsUnder(t, ca, pki.RoleTRS)
		c.Identity, c.Also = leaf, also
		_, opts, err := c.grpcOptions(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return opts
	}

	// The TRS certificate alone: a TRS may not hand over keys.
	stream, _ := dialRaw(t, ctx, gw.Addr(), dialAs(trs)...)
	if err := connectAndSend(stream, gw.Addr(), route); err != nil {
		t.Fatalf("TRS alone: %v", err)
	}
	if n := gw.FramesRefused(RefusedRole); n != 1 {
		t.Fatalf("TRS alone: %d frames refused for their role, want 1", n)
	}
	// TRS in TLS, AS proven on the connection: delivered.
	stream, _ = dialRaw(t, ctx, gw.Addr(), dialAs(trs, as)...)
	if err := connectAndSend(stream, gw.Addr(), route); err != nil {
		t.Fatalf("TRS and AS: %v", err)
	}
	select {
	case f := <-got:
		if f.Envelope.Type != messages.MsgKeyHandover {
			t.Fatalf("NMS got %s", f.Envelope.Type)
		}
	case <-ctx.Done():
		t.Fatal("the proven AS's hand-over did not arrive")
	}

	// Proofs made by hand on a TRS connection with no interceptor of ours.
	plain := func() []grpc.DialOption {
		cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
			Certificates: []tls.Certificate{{Certificate: [][]byte{trs.CertDER}, PrivateKey: trs.Key}}}
		return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}
	}
	_, earlier := dialRaw(t, ctx, gw.Addr(), plain()...)
	for _, tt := range []struct {
		name  string
		proof func(now tls.ConnectionState) (*remote.RemoteMessage, error)
	}{
		{"AS certificate signed with the TRS key", func(now tls.ConnectionState) (*remote.RemoteMessage, error) {
			return newRoleProof(now, []*pki.Identity{{CertDER: as.CertDER, Key: trs.Key}})
		}},
		{"AS proof of another connection", func(tls.ConnectionState) (*remote.RemoteMessage, error) {
			return newRoleProof(earlier, []*pki.Identity{as})
		}},
	} {
		refused := gw.Refused.Load()
		stream, state := dialRaw(t, ctx, gw.Addr(), plain()...)
		p, err := tt.proof(state)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(p); err != nil {
			t.Fatal(err)
		}
		if err := connectAndSend(stream, gw.Addr(), route); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: stream ended with %v, want PermissionDenied", tt.name, err)
		}
		if gw.Refused.Load() != refused+1 {
			t.Errorf("%s: not counted as a refused certificate", tt.name)
		}
	}
	// Had a forged proof's frame got in, it was in the gateway actor's
	// mailbox before this one.
	kh2, err := NewFrame("", messages.NewMsgID(), AS, time.Now(), messages.KeyHandover{SessionID: 2, FQDN: "carol.example.cyphonic"})
	if err != nil {
		t.Fatal(err)
	}
	route2, err := encodeRoute(RootOf("", NMS), &Message{Frame: kh2})
	if err != nil {
		t.Fatal(err)
	}
	stream, _ = dialRaw(t, ctx, gw.Addr(), dialAs(trs, as)...)
	if err := connectAndSend(stream, gw.Addr(), route2); err != nil {
		t.Fatalf("TRS and AS again: %v", err)
	}
	select {
	case f := <-got:
		if kh, err := messages.DecodeBody[messages.KeyHandover](f.Envelope); err != nil || kh.FQDN != "carol.example.cyphonic" {
			t.Fatalf("NMS got %+v (%v), want carol's hand-over: a forged proof's frame got in", kh, err)
		}
	case <-ctx.Done():
		t.Fatal("the second proven hand-over did not arrive")
	}
}
