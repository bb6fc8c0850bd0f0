// Package server assembles the cloud services of one process: it prepares
// the data directory (CA, service certificates, bbolt store), starts AS,
// NMS and TRS each in its own actor system connected by protoactor remote
// (gRPC, loopback by default), and serves the debug endpoint
// (/debug/actors, /metrics, /debug/pprof).
//
// Any subset of the services may run in one process (Config.Services); the
// missing ones are reached at the remote addresses given in the Config, so
// the same code serves one process or many sharing a Redis store.
//
// # One actor system per process
//
// The design asks for one actor system per service. Within one process that
// is not workable with the pinned protoactor-go: every remote.Start calls
// grpclog.SetLoggerV2, a plain global write that races with the gRPC server
// goroutines of a remote started before it (the race detector flags it on
// every run). So a process runs one actor system with one remote, and each
// service keeps its own root actor, its own sockets and its own state; the
// services talk only through framed messages to PIDs (cloud/server/svc), so
// the code path is the same whether the other service is in this process
// (the PID's address is ours: protoactor delivers locally) or in another
// one (`--services as` here, `--services nms` there: gRPC).
package server
