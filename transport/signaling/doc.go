// Package signaling is the node <-> cloud signaling codec, shared by the
// cloud services (AS, NMS) and the node daemon. It does no I/O and starts no
// goroutines: callers own the sockets, timers and transactions.
//
// # Login (node -> AS)
//
// Login is a Noise IX handshake (transport/handshake with
// handshake.PrologueLogin) carrying signaling envelopes as its payloads:
//
//	node: l, _ := StartLogin(cfg, "as.cyphonic.internal", "alice.example.cyphonic", req, now)
//	      send l.Packet(); on timeout resend l.Packet() unchanged (same ID, same bytes)
//	AS:   a, _ := ReadLogin(asCfg, pkt)          // TypeLogin | msg1
//	      ... verify a.CertDER for a.Envelope.Sender, allocate a session ...
//	      reply, keys, _ := a.Accept(loginReply, "as", now)   // or a.Refuse(messages.Error{...}, ...)
//	node: res, err := l.Finish(pkt)              // TypeLoginReply | msg2
//	      // err is a *messages.Error (errors.As) when the AS refused
//	      res.Session seals everything that follows.
//
// The node's cfg.Verify must accept only the AS role (pki.Verifier with
// pki.RoleAS, wantFQDN pki.RoleAS.ServiceFQDN()). The AS's cfg.Verify should
// only extract the identity and Noise key from the certificate and leave
// policy (CA, validity, revocation, FQDN) to the AS after ReadLogin: a
// refusal can then be a typed messages.Error inside msg2 instead of silence.
//
// IX's msg1 is not authenticated; the node proves possession of its static
// key by being able to read msg2 and, from then on, to seal with the session
// key. So the AS must treat a login as unproven until the first sealed packet
// opens on the new session.
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
