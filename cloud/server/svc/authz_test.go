package svc

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
)

func frameOf(t *testing.T, to string, replyTo Ref, body messages.Body) Frame {
	t.Helper()
	env, err := messages.NewEnvelope(messages.NewMsgID(), "x", time.Now(), body)
	if err != nil {
		t.Fatal(err)
	}
	return Frame{To: to, Envelope: env, ReplyTo: replyTo}
}

func TestAuthorize(t *testing.T) {
	as, nms, trs := []pki.Role{pki.RoleAS}, []pki.Role{pki.RoleNMS}, []pki.Role{pki.RoleTRS}
	asTx := Ref{Process: "10.0.0.1:7410", Service: AS, ID: "as/tx-1"}
	nmsTx := Ref{Process: "10.0.0.2:7410", Service: NMS, ID: "nms/tx-1"}
	kh := messages.KeyHandover{SessionID: 1, FQDN: "alice.example"}
	dir := messages.Direction{PeerFQDN: "bob.example"}
	for _, tt := range []struct {
		name  string
		from  []pki.Role
		to    string
		frame Frame
		want  Refusal
	}{
		{"AS hands NMS keys", as, NMS, frameOf(t, "", asTx, kh), Allowed},
		{"TRS hands NMS keys", trs, NMS, frameOf(t, "", Ref{Service: TRS, ID: "trs"}, kh), RefusedRole},
		{"NMS hands NMS keys", nms, NMS, frameOf(t, "", nmsTx, kh), RefusedRole},
		{"AS hands AS keys", as, AS, frameOf(t, "", asTx, kh), RefusedRole},
		{"AS hands keys, for a node", as, NMS, frameOf(t, "alice.example", asTx, kh), RefusedRole},
		{"AS hands keys, answer to NMS", as, NMS, frameOf(t, "", nmsTx, kh), RefusedReplyTo},
		{"AS hands keys, answer to TRS", as, NMS, frameOf(t, "", Ref{Service: TRS, ID: "trs"}, kh), RefusedReplyTo},
		{"NMS acks to AS", nms, AS, frameOf(t, "", Ref{}, messages.KeyHandoverAck{SessionID: 1}), Allowed},
		{"TRS acks to AS", trs, AS, frameOf(t, "", Ref{}, messages.KeyHandoverAck{SessionID: 1}), RefusedRole},
		{"NMS asks TRS for a relay", nms, TRS, frameOf(t, "", nmsTx, messages.RelayAlloc{}), Allowed},
		{"AS asks TRS for a relay", as, TRS, frameOf(t, "", asTx, messages.RelayAlloc{}), RefusedRole},
		{"TRS asks TRS for a relay", trs, TRS, frameOf(t, "", Ref{Service: TRS, ID: "trs"}, messages.RelayAlloc{}), RefusedRole},
		{"NMS asks TRS for its ticket key", nms, TRS, frameOf(t, "", nmsTx, messages.RelayKey{}), Allowed},
		{"AS asks TRS for its ticket key", as, TRS, frameOf(t, "", asTx, messages.RelayKey{}), RefusedRole},
		{"TRS hands NMS a ticket key", trs, NMS, frameOf(t, "", Ref{}, messages.RelayKeyReply{Key: [32]byte{1}}), Allowed},
		{"AS hands NMS a ticket key", as, NMS, frameOf(t, "", Ref{}, messages.RelayKeyReply{Key: [32]byte{1}}), RefusedRole},
		{"TRS answers NMS", trs, NMS, frameOf(t, "", Ref{}, messages.RelayAllocReply{OK: true}), Allowed},
		{"AS answers NMS as TRS", as, NMS, frameOf(t, "", Ref{}, messages.RelayAllocReply{OK: true}), RefusedRole},
		{"NMS delivers a Direction", nms, NMS, frameOf(t, "bob.example", nmsTx, dir), Allowed},
		{"NMS delivers a PeerUpdate", nms, NMS, frameOf(t, "bob.example", Ref{}, messages.PeerUpdate{PeerFQDN: "a.example"}), Allowed},
		{"Direction for no node", nms, NMS, frameOf(t, "", nmsTx, dir), RefusedRole},
		{"TRS delivers a Direction", trs, NMS, frameOf(t, "bob.example", Ref{Service: TRS, ID: "trs"}, dir), RefusedRole},
		{"AS delivers a PeerUpdate", as, NMS, frameOf(t, "bob.example", Ref{}, messages.PeerUpdate{}), RefusedRole},
		{"NMS hands back the node's ack", nms, NMS, frameOf(t, "", Ref{}, messages.DirectionAck{}), Allowed},
		{"NMS hands back an error", nms, NMS, frameOf(t, "", Ref{}, messages.Error{Code: messages.CodePeerUnreachable}), Allowed},
		{"TRS sends an error to NMS", trs, NMS, frameOf(t, "", Ref{}, messages.Error{}), RefusedRole},
		{"NMS sends a node message to NMS", nms, NMS, frameOf(t, "", Ref{}, messages.Keepalive{}), RefusedRole},
		{"NMS sends a deny list to a node", nms, NMS, frameOf(t, "bob.example", Ref{}, messages.DenyList{}), RefusedRole},
		{"no role", nil, NMS, frameOf(t, "", asTx, kh), RefusedRole},
		{"node role", []pki.Role{pki.RoleNode}, NMS, frameOf(t, "", asTx, kh), RefusedRole},
		{"unknown service", nms, "dns", frameOf(t, "", Ref{}, messages.Error{}), RefusedRole},
		{"AS and NMS roles, AS's frame", []pki.Role{pki.RoleNMS, pki.RoleAS}, NMS, frameOf(t, "", asTx, kh), Allowed},
	} {
		if got := Authorize(tt.from, tt.to, tt.frame); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}

// TestRulesAreServices: every rule names a service role and a service.
func TestRulesAreServices(t *testing.T) {
	for _, r := range Rules {
		if !r.From.IsService() || serviceRole(r.To) == 0 {
			t.Errorf("rule %+v", r)
		}
	}
}

func TestFilterBatch(t *testing.T) {
	kh, err := NewFrame("", messages.NewMsgID(), AS, time.Now(), messages.KeyHandover{SessionID: 1, FQDN: "alice.example"})
	if err != nil {
		t.Fatal(err)
	}
	route := func(service string, frame []byte) []byte {
		b, err := encodeRoute(Ref{Service: service, ID: service}, &Message{Frame: frame, ReplyTo: Ref{Process: "p:1", Service: AS, ID: "as/tx"}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	data := func(b []byte) []byte {
		d, err := proto.Marshal(wrapperspb.Bytes(b))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	good := data(route(NMS, kh))
	batch := func() *remote.MessageBatch {
		return &remote.MessageBatch{
			TypeNames: []string{bytesValueName, "actor.PoisonPill"},
			Targets:   []*actor.PID{{Address: "gw:1", Id: GatewayID}, {Address: "gw:1", Id: "other"}},
		}
	}
	for _, tt := range []struct {
		name string
		env  *remote.MessageEnvelope
		want Refusal
	}{
		{"a key hand-over", &remote.MessageEnvelope{MessageData: good}, Allowed},
		{"nil", nil, RefusedNotFrame},
		{"a system message", &remote.MessageEnvelope{TypeId: 1, MessageData: good}, RefusedNotFrame},
		{"type out of range", &remote.MessageEnvelope{TypeId: 9, MessageData: good}, RefusedNotFrame},
		{"negative type", &remote.MessageEnvelope{TypeId: -1, MessageData: good}, RefusedNotFrame},
		{"another target", &remote.MessageEnvelope{Target: 1, MessageData: good}, RefusedNotFrame},
		{"target out of range", &remote.MessageEnvelope{Target: 2, MessageData: good}, RefusedNotFrame},
		{"sender out of range", &remote.MessageEnvelope{Sender: 1, MessageData: good}, RefusedNotFrame},
		{"another serializer", &remote.MessageEnvelope{SerializerId: 1, MessageData: good}, RefusedNotFrame},
		{"not a BytesValue", &remote.MessageEnvelope{MessageData: []byte{0xff, 0xff}}, RefusedMalformed},
		{"bad route", &remote.MessageEnvelope{MessageData: data([]byte{9})}, RefusedMalformed},
		{"bad frame", &remote.MessageEnvelope{MessageData: data(route(NMS, []byte{0}))}, RefusedMalformed},
		{"to the wrong service", &remote.MessageEnvelope{MessageData: data(route(TRS, kh))}, RefusedRole},
	} {
		b := batch()
		b.Envelopes = []*remote.MessageEnvelope{tt.env, {MessageData: good}}
		var c frameRefusals
		c.filter(b, []pki.Role{pki.RoleAS})
		wantKept := 1
		if tt.want == Allowed {
			wantKept = 2
		}
		if len(b.Envelopes) != wantKept || b.Envelopes[len(b.Envelopes)-1].MessageData == nil {
			t.Errorf("%s: kept %d envelopes, want %d", tt.name, len(b.Envelopes), wantKept)
		}
		for r := range numRefusals {
			want := uint64(0)
			if r == tt.want && r != Allowed {
				want = 1
			}
			if got := c[r].Load(); got != want {
				t.Errorf("%s: %s counted %d, want %d", tt.name, r, got, want)
			}
		}
		// A TRS may send none of it.
		b = batch()
		b.Envelopes = []*remote.MessageEnvelope{{MessageData: good}}
		c.filter(b, []pki.Role{pki.RoleTRS})
		if len(b.Envelopes) != 0 {
			t.Errorf("a TRS's key hand-over stayed in the batch")
		}
	}
}
