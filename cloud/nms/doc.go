// Package nms is the Node Management Service: it holds the nodes' signaling
// sessions (keys handed over by the AS), records their locators
// (registration), answers keepalives, and sets up tunnels: it picks the path
// (cloud/path), asks the TRS for a relay session when the path needs one,
// directs the peer (through the peer's home NMS, which may be another cloud
// process reached over protoactor remote) and answers the requester.
//
// Actors, in the NMS's own actor system:
//
//	nms                        root: spawns the workers, routes the frames
//	                           other services send to "nms" (KeyHandover,
//	                           deliveries) to the worker holding the
//	                           session, reads the store for the sweep
//	nms/worker-<i>             Config.Workers of them (GOMAXPROCS): the
//	                           sessions whose IDs shard to it, their
//	                           packets (the UDP readers route each sealed
//	                           packet by the session ID in its clear header,
//	                           through a bounded queue per worker), message-ID
//	                           deduplication, expiry ticker (shard.go);
//	                           registrations, keepalives, logouts, tunnel
//	                           requests and VIPLookups run here, with no
//	                           actor of their own (ka.go, tunnel.go), and so
//	                           do the deliveries to its nodes (Direction,
//	                           PeerUpdate, DenyList chunks a few at a time),
//	                           retransmitted on a timer until the node's ack
//	                           finds them by message ID in the delivers cache
//	nms/worker-<i>/tx-<msgid>  a tunnel request whose peer is homed at another
//	                           NMS process, or whose home is gone (home.go)
//
// A node's packets stay in order on its worker; what crosses nodes (a
// tunnel touches the peer's session) goes through state every worker
// reaches: the reply cache by message ID, the store, the fqdn index and the
// tunnels map (shard.go, peers.go).
//
// NMS remembers which tunnel pairs it put on the relay; when either node
// registers again or keepalives from a new mapping, it asks path.Upgrade
// whether the pair can now go direct and, if so, sends both nodes a
// PeerUpdate naming where to probe the other (upgrade.go).
//
// A node can also ask for a tunnel by overlay address (TunnelByVIP: a
// packet to a VIP found no tunnel): NMS finds the holder through the
// store's VIP index (store.LookupVIP) and goes on as for a tunnel request
// naming it; no holder is CodeUnknownFQDN. A VIPLookup (a PTR query on
// the node's resolver) reads the same records and answers only the
// holder's name (VIPHolder), setting nothing up.
//
// Replies to nodes are cached under the request's message ID (txstore), so
// a retransmitted request gets the same reply and never a second
// transaction; only for as long as a retransmission can arrive (the retry
// schedule plus slack, seconds), and not at all for keepalives, which are
// idempotent. A per-session guard refuses requests older than any
// retransmission could be (replays) and bounds how much of the cache one
// node can take (guard.go).
//
// Nothing stale (cleanup.go): an ended session's store deletion is queued
// and retried until done, in batches; a periodic sweep removes sessions the
// store still holds that nobody can be using (past expiry, or homed here
// and unseen since this process started); a node's tunnels leave the
// tunnels map when its session ends (peers.go).
//
// A packet of a session no worker here holds is looked up in the store
// before it is authenticated; each worker bounds those lookups (a rate,
// a share of the store queue, one per ID) and briefly remembers IDs the
// store did not know, so a flood of made-up session IDs costs the store a
// bounded number of reads and leaves its queue to authenticated work
// (lookup.go).
//
// No actor calls the store itself: every store call (bbolt fsync, Redis
// round trip) runs on the service's store workers (svc.Workers, bounded),
// and its result comes back to the actor as a message. A session that
// expires or logs out keeps its key for a while, so a node still using it
// gets a sealed CodeSessionExpired and logs in again.
package nms
