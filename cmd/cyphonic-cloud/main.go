// Command cyphonic-cloud is the cloud's binary of CYPHONIC-Go: the cloud
// services (AS, NMS, TRS) and their administration, the certificate
// authority, the demo — and the node's commands too, so that it alone
// runs a whole overlay (the demo runs its nodes with it). A node's own
// machine needs only cyphonic (cmd/cyphonic), which hands cloud, ca and
// demo on to this binary when it sits beside it.
package main

import (
	"os"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/cmd/internal/cli"
	"github.com/cyphonic/cyphonic-go/cmd/internal/cloudcmd"
	"github.com/cyphonic/cyphonic-go/cmd/internal/nodecmd"
)

func main() {
	supervise.SmallRegistry() // before any actor system: 2.8 MB less heap per system
	os.Exit(cli.Run(append(cloudcmd.Commands(), nodecmd.Commands()...), os.Args[1:], os.Stdout, os.Stderr))
}
