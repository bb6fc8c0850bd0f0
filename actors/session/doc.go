// Package session is the node's cloud session (DESIGN.md §4, §7): the actor
// "node/session" that logs in to AS, registers the node's locator with NMS,
// keeps the session and the NAT mapping alive, re-registers when the node's
// addresses change, answers NMS's Direction and PeerUpdate messages by
// driving the data plane, and asks NMS for tunnels on behalf of the resolver
// and of peers that lost their path, and by overlay address for the data
// plane when a packet to a VIP finds no tunnel (NeedVIP, vip.go: the path
// NMS answers is opened as a tunnel request's is).
//
// Every request the node sends (login, register, keepalive, tunnel request)
// is a transaction actor "node/session/tx-<msgid>" that retransmits with
// exponential backoff (signaling.Retry) until a reply carrying its message
// ID arrives: a retransmit.Tx, the actor NMS's deliveries use too, running
// this package's tx (tx.go). The login transaction has two steps (transport/signaling):
// it resends the login packet until the AS's challenge arrives, then its
// sealed confirmation, on a schedule of its own, until the sealed
// LoginReply; the AS commits nothing before the confirmation, so a login
// forged from our certificate cannot displace our session.
//
// A transaction's state lives in an actors/txstore cache under its ID; the
// session routes a reply to the transaction it finds there, so a reply to
// a finished (or unknown) transaction is dropped. Requests from NMS are
// deduplicated the same way: the answer is cached under the request's ID and
// a retransmitted request gets the same answer again.
//
// Losing the cloud (keepalives unanswered, SessionExpired or
// NotAuthenticated errors) makes the actor log in again by itself; the data
// plane and its tunnels are not touched. Nothing here blocks an actor: the
// resolver waits on a channel in its own goroutine.
package session
