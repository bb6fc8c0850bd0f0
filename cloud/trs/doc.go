// Package trs is the Tunnel Relay Service: it forwards relay frames
// (TypeRelay | token | inner) between the two sides of relay sessions that
// NMS allocated (RelayAlloc), across IPv4 and IPv6, without any data key:
// the inner packets are sealed end to end by the nodes. A side's endpoint
// is where its last authenticated bind (TypeRelayBind, MACed under the
// side's bind key from the allocation) came from; frames are forwarded
// only between bound endpoints (cloud/relay). A session lives while its
// nodes keep binding, plus the idle timeout.
//
// Actors, in the TRS's own actor system:
//
//	trs   root: allocations from NMS, idle-expiry ticker
//
// The data path does not go through actors: each socket's reader goroutine
// reads a batch (recvmmsg), asks the relay.Table where each frame goes,
// rewrites the token in place and writes the batch out (sendmmsg) on the
// socket of the destination's address family. A mailbox hop per packet
// would cost more than the forwarding.
package trs
