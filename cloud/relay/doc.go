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
