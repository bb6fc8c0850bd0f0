// Package cloudcmd is the cloud's side of the command line: the cloud
// services and their administration (cyphonic cloud), the offline CA
// (cyphonic ca) and the demo, which runs a cloud. Only cmd/cyphonic-cloud
// links it.
package cloudcmd

import "github.com/cyphonic/cyphonic-go/cmd/internal/cli"

// Commands are the cloud binary's own subcommands.
func Commands() []cli.Command {
	return []cli.Command{
		{Name: "ca", Summary: cli.SummaryCA, Run: runCA},
		{Name: "cloud", Summary: cli.SummaryCloud, Run: runCloud},
		{Name: "demo", Summary: cli.SummaryDemo, Run: runDemo},
	}
}
