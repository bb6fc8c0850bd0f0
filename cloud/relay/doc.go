// Package relay is the TRS's relay table: which relay token belongs to
// which session and side, where each side is bound, and which binds are
// genuine.
//
// It holds no sockets. The TRS actor reads a datagram and hands a bind to
// Table.Bind, a relay frame to Table.Forward, and writes the frame where
// Forward says; everything the decision needs lives here so it can be
// tested without the network.
//
// # Security
//
// The relay never sees a data key: node-to-node traffic is sealed end to
// end (Noise session keys only the two nodes hold), so the relay can at
// worst drop, delay or misdirect ciphertext, never read or forge it.
//
// Tokens name a session side; they do not authenticate anything, since
// every relay frame carries one in clear. What moves a side's endpoint is
// a bind (messages.RelayBind) MACed under that side's bind key, a 256-bit
// secret NMS makes per side and hands only to that side's node (over its
// sealed signaling) and to the TRS (in the allocation, over the cloud's
// gateway), with a counter above the last one accepted for that side. So:
//
//   - a bind made without the key, or an empty relay frame, moves nothing
//     (DropBadBind);
//   - a recorded bind sent again, from any address, moves nothing
//     (DropReplay);
//   - a relay frame is forwarded only when it comes from its side's bound
//     endpoint, and never moves it (DropNotBound), so whoever saw a token
//     can neither redirect a side nor inject from elsewhere;
//   - only accepted binds keep a session alive: a session whose nodes have
//     stopped binding is swept after the idle timeout (minutes), so a
//     token seen on the wire soon names nothing. Per session the table
//     holds a fixed amount of state whatever arrives, and each sweep looks
//     at a bounded number of sessions.
//
// # Stateless tickets
//
// A table given Config.Tickets also knows sessions it was never told
// about (ticket.go): NMS mints both sides' tokens and bind keys under a
// key it shares with the TRS, and a side's session state is made only by
// that side's first bind whose MAC verifies under the key its token
// derives. So an unauthenticated packet creates nothing (a bind on such a
// token costs two keyed hashes and one MAC state, then garbage), a tunnel
// that never needs its relay costs the TRS nothing, and what the table
// holds is the sessions nodes actually bound. The token carries a keyed
// hash of its node's FQDN, so the table bounds the sides one node holds
// (Config.MaxPerOwner; DropOwnerFull), and the whole table
// (Config.MaxSessions; DropFull): a node, even one with a valid
// certificate, gets tickets for every tunnel it asks for, but cannot hold
// more than its share. A first bind recorded on the wire and sent again
// after its session was swept re-creates that session (there is no state
// left to say it is old), pointed at the sender: it moves ciphertext of a
// tunnel that is no longer used, and counts against the recorded node's
// share until it is swept again; the ticket's expiry ends it.
//
// A node binds once a keepalive period while it uses the relay and
// whenever it may have moved, so a NAT rebinding or a roaming node is
// followed within a keepalive period. The MAC cannot cover the source
// address (a node does not know its own NAT mapping), so an on-path
// attacker who gets a fresh bind to the relay before the node does can
// redirect that side until the next bind: no more than it could do by
// dropping packets, and it gets only ciphertext. A spoofed source never
// makes the relay an amplifier: one packet in is at most one packet of
// the same size out, a bind is never answered, and packets sourced from
// the relay's own addresses are refused so it cannot forward to itself.
//
// A node's tunnel peer gets a different bind key, so neither node can
// move the other's endpoint. A compromised TRS can misdirect or drop
// relayed ciphertext, nothing more; the bind keys it holds are good only
// at that TRS.
//
// Tokens and keys are deliberately absent from Sessions() and Stats(),
// which feed status pages and metrics.
package relay
