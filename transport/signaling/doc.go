// Package signaling is the node <-> cloud signaling codec, shared by the
// cloud services (AS, NMS) and the node daemon. It does no I/O and starts no
// goroutines: callers own the sockets, timers and transactions.
//
// # Login (node -> AS)
//
// Login is a Noise IX handshake (transport/handshake with
// handshake.PrologueLogin) carrying signaling envelopes as its payloads,
// and one more round trip on the new session. IX's msg1 proves nothing
// about its sender: its keys and certificate travel in clear, so anyone who
// has seen the node's certificate can build one. Only the holder of the
// node's static key can read msg2 and derive the session keys, so the AS
// commits nothing - no VIP, no record, no key hand-over to NMS, no
// displaced session - until a packet sealed with those keys opens:
//
//	node: l, _ := StartLogin(cfg, "as.cyphonic.internal", "alice.example.cyphonic", req, now)
//	      send l.Packet()                       // TypeLogin | msg1 (LoginRequest), padded
//	AS:   a, _ := ReadLogin(asCfg, pkt)          // no DH; verify a.CertDER for a.Envelope.Sender
//	      msg2, keys, _ := a.Challenge(id, "as", now) // or a.Refuse(messages.Error{...}, ...)
//	      // keep only bounded, expiring pending state: NewCloudSession(id, keys)
//	node: confirm, err := l.Confirm(msg2, now)   // TypeSignaling: LoginConfirm under the login's ID, padded
//	      // err is a *messages.Error (errors.As) when the AS refused
//	AS:   OpenConfirm(sess, nil, confirm, loginID, now) == nil: the node is proven;
//	      now allocate, store, hand the keys to NMS, wait for its ack, then
//	      answer with a LoginReply sealed on the session under the login's ID
//	node: res, err := l.Finish(reply, now)       // res.Session seals everything that follows
//
// Every step is retransmitted unchanged (l.Packet() is msg1, then the
// confirmation); the AS answers a retransmission with the bytes it already
// sent, recognising a login packet by its bytes before mac2.
//
// A login packet ends in transport/cookie's mac1 | mac2 trailer, keyed by
// the AS's name. A loaded AS answers a login whose mac2 is not valid for
// its source with a TypeLoginCookie instead of a challenge, keeping nothing:
//
//	node: first, err := l.TakeCookie(cookiePkt, now) // resend l.Packet() at once if first
//
// and the next copy's mac2 proves the node receives at its address, so a
// flood from spoofed sources costs the AS a MAC and a 60-byte answer per
// packet, never a Diffie-Hellman. The node pads msg1 and the confirmation to messages.LoginMinLen, and
// the AS never answers a packet with more bytes than it holds, so a replayed
// or spoofed login cannot be used to amplify traffic towards the address it
// claims.
//
// The node's cfg.Verify must accept only the AS role (pki.Verifier with
// pki.RoleAS, wantFQDN pki.RoleAS.ServiceFQDN()). The AS's cfg.Verify should
// only extract the identity and Noise key from the certificate and leave
// policy (CA, validity, revocation, FQDN) to the AS after ReadLogin: a
// refusal can then be a typed messages.Error inside msg2 instead of silence.
//
// # Sealed signaling (after login)
//
//	TypeSignaling | session ID (4) | nonce (24) | XChaCha20-Poly1305(envelope)
//
// The AAD is the first 5 bytes; the nonce is random, so several cloud
// processes can seal with one key without sharing a counter. A [Session]
// holds one direction's sealing key and the other's opening key:
// NewNodeSession on the node, NewCloudSession in the cloud, both from the
// same [Keys]. Replay protection is the receiver's job: [CheckFresh] rejects
// envelopes whose timestamp is more than [MaxClockSkew] away from now, and the
// receiver deduplicates message IDs (the cloud with actors/txstore), answering
// a duplicate with its cached reply.
//
// # Retransmission
//
// Requests are retransmitted unchanged (same message ID) on the schedule of
// [Retry] until a reply with that ID arrives; every reply carries the
// request's ID.
package signaling
