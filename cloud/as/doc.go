// Package as is the Authentication Service: it answers login packets
// (TypeLogin, a Noise IX msg1 from a node), checks the node's certificate
// against the overlay CA and policy, allocates the node's session and VIPs,
// hands the session keys to NMS and waits for NMS's KeyHandoverAck before it
// answers (seed 003 §3.1).
//
// Actors, in the AS's own actor system:
//
//	as            root: owns the UDP listener, deduplicates logins by message ID
//	as/tx/<msgid> one per login transaction; its state lives in the txstore
//
// A retransmitted login (same message ID) never starts a second
// transaction: while the first runs it is ignored, afterwards it gets the
// cached reply bytes again.
package as
