// Package trs is the Tunnel Relay Service: it forwards relay frames
// (TypeRelay | token | inner) between the two sides of relay sessions,
// across IPv4 and IPv6, without any data key: the inner packets are sealed
// end to end by the nodes. A side's endpoint is where its last
// authenticated bind (TypeRelayBind, MACed under the side's bind key) came
// from; frames are forwarded only between bound endpoints (cloud/relay). A
// session lives while its nodes keep binding, plus the idle timeout.
//
// The NMS of the same process mints relay tickets itself under this TRS's
// ticket key (Service.Tickets, relay/ticket.go), so a tunnel setup never
// reaches the TRS and a session exists only from its first authenticated
// bind: the table holds the sessions nodes use, not one per tunnel set up.
// An NMS in another process (--trs-remote) asks for the key over the
// gateway (RelayKey, every 2 s, in case the key changed) and allocates
// sessions with a RelayAlloc until it has it. The key is kept in the data
// directory (trs-ticket.key), so a restarted TRS accepts the tickets minted
// before its restart: those a remote NMS minted in the seconds before it
// fetched again, and those of relayed tunnels, whose nodes' next binds
// bring their sessions back.
//
// Actors, in the TRS's own actor system:
//
//	trs   root: RelayKey and RelayAlloc from a remote NMS, idle-expiry ticker
//
// The root is on no per-setup or per-bind path when NMS runs here (binds
// are checked on the socket readers), so it is not sharded.
//
// The data path does not go through actors: each socket's reader goroutine
// reads a batch (recvmmsg), asks the relay.Table where each frame goes,
// rewrites the token in place and writes the batch out (sendmmsg) on the
// socket of the destination's address family. A mailbox hop per packet
// would cost more than the forwarding.
package trs
