// Package perf is the side-by-side performance harness: CYPHONIC against
// wireguard-go and Nebula on the same machine, in network namespaces built by
// test/testbed. One responder and N initiators (N = 1, 3, 10) sit on the
// testbed's internet segment; the initiators push iperf3 TCP at the
// responder through the overlay while an idle peer and a pushing peer ping
// it, and the harness samples the responder daemon's memory and the CPU time
// of all the system's daemons (reported per GB moved).
//
// The long measurement runs only when asked:
//
//	CYPHONIC_PERF=1 go test ./test/perf -run TestPerf -v -timeout 30m
//
// CYPHONIC_PERF=smoke runs the same steps with 2-second loads. Setting
// CYPHONIC_PERF_WRITE to a Markdown file (BENCHMARKS.md) replaces the
// harness's section in it with the tables.
// CYPHONIC_PERF_PROFILE=dir saves CPU profiles of cyphonic's responder
// (cpu-<n>-responder.pprof, the receive path) and pusher (cpu-<n>-pusher.pprof,
// the send path) taken during the 1-pusher and the largest load (`go tool
// pprof -top` reads them), the responder's heap at rest and after each load
// (heap-<n>-responder.txt, with the runtime's MemStats; n = 0: at rest) with
// the kernel's split of its RSS (smaps-<n>-responder.txt), the per-stage
// sojourn histograms of the responder and the idle peer over each load
// (sojourn-<n>-responder.txt, -idle.txt: the nodes' /debug/sojourn) and the
// responder namespace's /proc/net/snmp after it (snmp-<n>-responder.txt).
// CYPHONIC_PERF_PEERS=10 (a comma-separated list) runs only those loads, for
// quick interleaved A/B runs of two builds (CYPHONIC_PERF_BIN: a node binary,
// cmd/cyphonic, with its cyphonic-cloud beside it, or an older single
// binary; built as README builds them otherwise). CYPHONIC_PERF_RATE=150M
// caps each pusher's flow (iperf3 -b), to measure the cost per GB of a
// slow flow (ten pushers' per-flow rate) with the machine not saturated.
// CYPHONIC_PERF_TUN_QUEUES=N starts every cyphonic node with --tun-queues=N
// (unset: the binary's default; a build older than the flag runs unset).
// Speed is
// reported, never asserted: a slow machine still passes.
//
// The pure parts (parsing ping, iperf3 and /proc output, statistics, the
// report) are plain functions tested without namespaces.
package perf
