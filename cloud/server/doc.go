// Package server assembles the cloud services of one process: it reads
// the data directory (root certificate, service certificates, bbolt store;
// never a CA key, see TrustDir), starts AS,
// NMS and TRS each in an actor system of its own (named "as", "nms",
// "trs"), links them, and serves the debug endpoint (/debug/actors with the
// systems as the top-level nodes of one tree, /metrics, /debug/pprof).
//
// Any subset of the services may run in one process (Config.Services); the
// missing ones are reached at the gateway addresses given in the Config, so
// the same code serves one process or many sharing a Redis store.
//
// # Systems, router, gateway
//
// Services name each other with svc.Refs (process, service, actor ID) and
// send framed messages through svc.Links, never PIDs: PIDs of different
// actor systems in one process cannot be told apart. The process's
// svc.Router delivers a frame for a service that runs here straight into
// that service's system (its root context sends to the target actor): no
// gRPC, no remote at all when the three services run together and no
// other process is configured. A frame for a service elsewhere leaves
// through the gateway, an actor system of its own holding the process's
// only protoactor remote, and the other process's gateway hands it to its
// service's system. A request carries the asking actor's Ref, so the
// answer comes back to that actor in the process that asked, where its
// transaction state is (DESIGN.md §9).
//
// Gateways speak mutual TLS 1.3 with the process's service certificate
// (svc.Credentials): a process without a service certificate of the
// overlay cannot open a stream to one, and the peer's certificate is
// checked again on every batch, so a revocation cuts an open connection.
//
// # The CA key
//
// No cloud process opens ca.key. `cyphonic ca issue-service` (Provision)
// fills a data directory from a CA kept elsewhere. Only a first start on
// an empty data directory creates a CA, beside it (BootstrapCADir), issues
// the three service certificates and links the data directory's deny list
// to that CA's; Server.CA is that CA, for tests and the demo.
//
// # Deviation: one remote per process, not one per system
//
// The design asks for the services to be actor systems and for processes
// to reach each other through protoactor remote. They are, but only the
// gateway's system runs a remote: the pinned protoactor-go's remote.Start
// calls grpclog.SetLoggerV2, a plain global write that races with the gRPC
// goroutines of a remote already running in the process, so two remotes in
// one process fail under -race. The gateway runs only when needed (see
// Config.RemoteHost); then the process shows a fourth system, "gateway".
package server
