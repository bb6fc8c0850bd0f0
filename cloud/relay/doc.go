// Package relay is the TRS's relay table: which relay token belongs to
// which session and side, and where each side was last heard from.
//
// It holds no sockets and no keys. The TRS actor reads a relay frame, asks
// Table.Forward where its payload goes, and writes it there; everything the
// decision needs lives here so it can be tested without the network.
//
// # Security
//
// The relay never sees a key: node-to-node traffic is sealed end to end
// (Noise session keys only the two nodes hold), so the relay can at worst
// drop, delay or misdirect ciphertext, never read or forge it.
//
// Tokens are the only credential. Each is a secret 128-bit random value that
// NMS generates per session side and hands only to that session's two nodes
// over their AEAD-sealed signaling. An off-path attacker would have to guess
// 128 bits to inject into a session or to move a side's endpoint, so the
// relay can follow a node behind NAPT or a roaming node by simply learning
// the source address of every packet carrying its token. An on-path
// attacker sees tokens in clear relay frames and could redirect one side's
// endpoint by spoofing its source; that yields only ciphertext and a denial
// of service it could already cause by dropping packets. Such a redirect is
// never an amplifier: one packet in is at most one packet of the same size
// out. Packets sourced from the relay's own addresses are refused so that a
// spoofed endpoint cannot make the relay forward to itself in a loop.
//
// Tokens are deliberately absent from Sessions() and Stats(), which feed
// status pages and metrics.
package relay
