// Package supervise is the actor runtime every CYPHONIC actor system shares: it
// boots a protoactor-go ActorSystem, spawns actors under path-shaped,
// role-named IDs ("node/peers/bob.example.cyphonic"), keeps a live registry of
// them (kind, parent, mailbox depth, restarts, last failure) for the debug
// endpoint and metrics, and provides a supervisor strategy with real
// exponential backoff and a retry limit.
//
// The registry is fed by lifecycle messages (a receiver middleware added at
// spawn) and by the EventStream's supervision events; nothing polls.
package supervise
