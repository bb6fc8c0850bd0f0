package svc

import (
	"sync/atomic"

	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
)

// Rule is one kind of frame a cloud process may deliver through a gateway:
// a frame of Type, sent by a service holding a certificate of role From,
// to the service To. ForNode says whether the frame names a node
// (Frame.To): only an NMS asking a node's home NMS to deliver to it does.
type Rule struct {
	From    pki.Role
	To      string // AS, NMS or TRS
	Type    messages.MsgType
	ForNode bool
}

// Rules is every frame the services send each other (cloud/as, cloud/nms,
// cloud/trs); nothing else crosses a gateway. A valid service certificate
// is therefore no licence to speak as another service: only an AS hands
// NMS a node's signaling keys, only an NMS asks a TRS for a relay.
var Rules = []Rule{
	{From: pki.RoleAS, To: NMS, Type: messages.MsgKeyHandover},      // after a login
	{From: pki.RoleNMS, To: AS, Type: messages.MsgKeyHandoverAck},   // its answer
	{From: pki.RoleNMS, To: TRS, Type: messages.MsgRelayAlloc},      // a relayed tunnel
	{From: pki.RoleTRS, To: NMS, Type: messages.MsgRelayAllocReply}, // its answer
	{From: pki.RoleNMS, To: TRS, Type: messages.MsgRelayKey},        // the TRS's ticket key (stateless tickets)
	{From: pki.RoleTRS, To: NMS, Type: messages.MsgRelayKeyReply},   // its answer
	// An NMS asks a node's home NMS to deliver to the node...
	{From: pki.RoleNMS, To: NMS, Type: messages.MsgDirection, ForNode: true},
	{From: pki.RoleNMS, To: NMS, Type: messages.MsgPeerUpdate, ForNode: true},
	// ...and the home NMS hands back what the node answered, or why not.
	{From: pki.RoleNMS, To: NMS, Type: messages.MsgDirectionAck},
	{From: pki.RoleNMS, To: NMS, Type: messages.MsgPeerUpdateAck},
	{From: pki.RoleNMS, To: NMS, Type: messages.MsgError},
}

// Refusal is why a gateway refused a frame; the names are the metric's
// label values, a fixed set.
type Refusal uint8

const (
	Allowed          Refusal = iota
	RefusedNotFrame          // not a frame for the gateway actor (another type, target or serializer)
	RefusedMalformed         // a route or frame that does not decode
	RefusedRole              // no Rule lets the sender's roles send this type to this service
	RefusedReplyTo           // the reply address names a service the sender is not
	numRefusals
)

var refusalNames = [numRefusals]string{
	Allowed:          "allowed",
	RefusedNotFrame:  "not-frame",
	RefusedMalformed: "malformed",
	RefusedRole:      "role",
	RefusedReplyTo:   "reply-to",
}

func (r Refusal) String() string {
	if r < numRefusals {
		return refusalNames[r]
	}
	return "unknown"
}

// FrameRefusals are the reasons a frame can be refused, for metrics.
func FrameRefusals() []Refusal {
	return []Refusal{RefusedNotFrame, RefusedMalformed, RefusedRole, RefusedReplyTo}
}

// serviceRole is the certificate role a service's actors send with.
func serviceRole(service string) pki.Role {
	switch service {
	case AS:
		return pki.RoleAS
	case NMS:
		return pki.RoleNMS
	case TRS:
		return pki.RoleTRS
	}
	return 0
}

// Authorize decides whether a peer proving the certificate roles from may
// deliver f (its reply address included) to the service to. It is the
// whole policy: the gateway applies it to every frame before any actor
// sees it.
func Authorize(from []pki.Role, to string, f Frame) Refusal {
	var matched pki.Role
	for _, r := range Rules {
		if r.To == to && r.Type == f.Envelope.Type && r.ForNode == (f.To != "") && hasRole(from, r.From) {
			matched = r.From
			break
		}
	}
	if matched == 0 {
		return RefusedRole
	}
	// An answer goes to the asking actor, which lives in the sender's
	// service: a request may not aim its answer at another service (an
	// NMS's ack into a TRS, say).
	if !f.ReplyTo.IsZero() && serviceRole(f.ReplyTo.Service) != matched {
		return RefusedReplyTo
	}
	return Allowed
}

func hasRole(roles []pki.Role, r pki.Role) bool {
	for _, x := range roles {
		if x == r {
			return true
		}
	}
	return false
}

// frameRefusals count the frames a gateway refused, by reason.
type frameRefusals [numRefusals]atomic.Uint64

var bytesValueName = string(proto.MessageName(&wrapperspb.BytesValue{}))

// filter takes out of b every envelope that is not a frame roles may
// deliver (checkEnvelope), counting each. What stays is only frames, in a
// BytesValue for the gateway actor: no system message (a Stop), no other
// type, no index protoactor's reader would take out of range.
func (c *frameRefusals) filter(b *remote.MessageBatch, roles []pki.Role) {
	kept := b.Envelopes[:0]
	for _, e := range b.Envelopes {
		if r := checkEnvelope(b, e, roles); r != Allowed {
			c[r].Add(1)
			continue
		}
		kept = append(kept, e)
	}
	clear(b.Envelopes[len(kept):])
	b.Envelopes = kept
}

// checkEnvelope decides one envelope of a batch from a peer holding roles.
func checkEnvelope(b *remote.MessageBatch, e *remote.MessageEnvelope, roles []pki.Role) Refusal {
	if e == nil || e.TypeId < 0 || int(e.TypeId) >= len(b.TypeNames) || b.TypeNames[e.TypeId] != bytesValueName ||
		e.SerializerId != 0 || e.Target < 0 || int(e.Target) >= len(b.Targets) || b.Targets[e.Target].GetId() != GatewayID ||
		e.Sender < 0 || int(e.Sender) > len(b.Senders) { // protoactor reads Senders[Sender-1]
		return RefusedNotFrame
	}
	var bv wrapperspb.BytesValue
	if err := proto.Unmarshal(e.MessageData, &bv); err != nil {
		return RefusedMalformed
	}
	to, m, err := decodeRoute(bv.GetValue())
	if err != nil {
		return RefusedMalformed
	}
	f, err := ParseFrame(m.Frame)
	if err != nil {
		return RefusedMalformed
	}
	f.ReplyTo = m.ReplyTo
	return Authorize(roles, to.Service, f)
}
