// Package e2e runs CYPHONIC end to end: real `cyphonic cloud` and
// `cyphonic node` processes in network namespaces built by test/testbed,
// one topology per scenario (global IPv4 and IPv6 nodes, hole punching
// through cone NAPT and plain masquerade, relaying around symmetric NAPT
// and across IP versions,
// nodes sharing a NAPT, mobility, tunnel supervision, cloud restart, and a
// relayed tunnel upgrading to direct).
//
// In each scenario one node resolves the other's FQDN through its own
// resolver, pings it, and moves a few MB over TCP with the SHA-256 compared
// at both ends. The tests need root, iproute2, nftables and ping; without
// them they fail, naming what is missing, unless the user opted out with
// CYPHONIC_SKIP_SYSTEM_TESTS=1 (testbed.Require).
//
// TestMain builds the cyphonic binary and the xfer helper
// (internal/xfer) once per run.
package e2e
