package nodecmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/cyphonic/cyphonic-go/cmd/internal/cli"

	"github.com/cyphonic/cyphonic-go/actors/node"
)

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("status", stderr)
	addr := fs.String("debug-addr", defaultNodeDebugAddr, "the node's debug endpoint (host:port)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the node")
	asJSON := fs.Bool("json", false, "print the raw status as JSON")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	st, err := node.FetchStatus(ctx, *addr)
	if err != nil {
		return fmt.Errorf("fetch status from %s (is the node running with --debug-addr %s?): %w", *addr, *addr, err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	return node.RenderStatus(stdout, st, time.Now())
}
