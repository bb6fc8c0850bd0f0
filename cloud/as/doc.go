// Package as is the Authentication Service: it logs nodes in (seed 003
// §3.1) and commits nothing for a login until the node has proven it holds
// the static key its certificate binds.
//
// A login is three packets and an answer (see transport/signaling):
//
//  1. TypeLogin, a Noise IX msg1. It proves nothing: anyone who has seen the
//     node's certificate can build one. The AS checks the certificate and
//     answers with msg2 carrying a LoginChallenge (or a refusal), and keeps
//     only a loginState in two expiring txstores, by its login packet and
//     by the challenged session ID: no VIP, no record, no key at NMS. The
//     session ID is one the store reported free (ids.go: checked in
//     batches ahead of the logins), so a collision with a live session is
//     replaced before any node sees it.
//  2. TypeSignaling, the node's LoginConfirm sealed on the new session
//     under the login's ID. Only the key's holder could read msg2 and
//     derive the session keys, so once it opens the login commits: VIPs,
//     the record with the new session (replacing any old one), the key
//     hand-over to NMS, and after NMS's ack the sealed LoginReply.
//
// Unauthenticated packets cost little and leave bounded state: the socket
// readers drop login packets below messages.LoginMinLen or without a valid
// mac1 and rate-limit every packet per source (IPv4 address, IPv6 /64) and
// login packets against a global budget before anything is parsed
// (limit.go). Under load, a login without a valid mac2 is answered with a
// TypeLoginCookie for its source (transport/cookie: a MAC under a rotating
// secret, no state) instead of going on: per-source limits cannot hold a
// flood whose every packet claims a source of its own, the cookie can,
// because only a node that receives at its address can send the mac2 that
// proves it. Such a flood costs two MACs and a 60-byte answer a packet and
// never reaches the budget real logins draw on; at most
// MaxPending logins are challenged per PendingTTL; a login packet costs
// no DH until it has passed those. No answer is ever larger than the
// packet it answers (a login's source address is unproven, so this is what
// keeps the AS from amplifying): nodes pad both their packets, and answers
// that would not fit are dropped and counted.
//
// Actors, in the AS's own actor system:
//
//	as                   root: opens confirmations (sealed packets) and
//	                     runs their commits (commit: store read, store
//	                     write, key handover, answer), each step a message
//	                     of its own, with no actor per login
//	as/worker-<i>        login workers, Config.Workers of them (GOMAXPROCS):
//	                     deduplicate login packets, check the certificate,
//	                     run the DH and answer the challenge, so a burst's
//	                     curve arithmetic runs on every core
//
// The socket readers route each admitted login packet (past the cookie and
// the rate limits, so a spoofed flood never reaches a worker) to the worker
// with the shortest queue, through a bounded queue per worker (MaxChallenging
// shared out); confirmations go to the root through a queue of their own,
// so a burst of logins cannot hold up the confirmations that finish them.
//
// Retransmissions (same message ID, same bytes) never start a second
// transaction: they get the answer already given, or none while it is
// being made.
package as
