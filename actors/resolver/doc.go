// Package resolver is the node's DNS server (DESIGN.md §4, §7.3). It answers
// A and AAAA queries for names under the overlay domain ("bob.example.cyphonic")
// by asking a [Backend] — in the node, the cloud session, which sends a
// TunnelRequest to NMS and waits until the tunnel is up — and forwards every
// other name to an upstream resolver.
//
// Holding the answer until the tunnel is up is the point: the application's
// first packet after the DNS answer already finds a tunnel, so nothing is
// lost to a handshake in progress. A lookup that does not finish within
// Config.Timeout answers SERVFAIL; an overlay name NMS does not know answers
// NXDOMAIN.
//
// miekg/dns serves each query on a goroutine of its own; those goroutines
// may wait (on the backend or the upstream), bounded by Config.MaxPending.
// The resolver actor only starts and stops the server, so it never blocks.
package resolver
