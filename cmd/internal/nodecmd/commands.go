// Package nodecmd is the node's side of the command line: the daemon
// (cyphonic node) and the tools that talk to a running one (status, ping,
// actors). It links no cloud package, so the binary a node runs
// (cmd/cyphonic) carries none of the cloud's code or its inits.
package nodecmd

import "github.com/cyphonic/cyphonic-go/cmd/internal/cli"

// Commands are the node's subcommands.
func Commands() []cli.Command {
	return []cli.Command{
		{Name: "node", Summary: "run the node daemon: TUN device, resolver, tunnels to peers", Run: runNode},
		{Name: "status", Summary: "show a node's peers, paths, handshakes and counters", Run: runStatus},
		{Name: "ping", Summary: "ping a peer over the overlay through the running node: RTT and the path taken", Run: runPing},
		{Name: "actors", Summary: "print a daemon's live actor tree from its debug endpoint", Run: runActors},
		cli.VersionCommand,
	}
}
