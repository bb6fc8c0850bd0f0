// Command cyphonic is the node's binary of CYPHONIC-Go: the node daemon
// and the tools that inspect it (status, ping, actors). The cloud's
// commands (cloud, ca, demo) are cyphonic-cloud's (cmd/cyphonic-cloud);
// run here, they replace this process with that binary, found beside this
// one, so every documented `cyphonic …` command line works where both are
// installed, while a node links none of the cloud's packages and runs none
// of their inits.
package main

import (
	"os"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/cmd/internal/cli"
	"github.com/cyphonic/cyphonic-go/cmd/internal/nodecmd"
)

func commands() []cli.Command {
	return append(nodecmd.Commands(),
		cli.Delegate("ca", cli.SummaryCA),
		cli.Delegate("cloud", cli.SummaryCloud),
		cli.Delegate("demo", cli.SummaryDemo))
}

func main() {
	supervise.SmallRegistry() // before any actor system: 2.8 MB less heap per system
	os.Exit(cli.Run(commands(), os.Args[1:], os.Stdout, os.Stderr))
}
