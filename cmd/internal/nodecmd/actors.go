package nodecmd

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/cyphonic/cyphonic-go/cmd/internal/cli"

	"github.com/cyphonic/cyphonic-go/actors/debug"
)

func runActors(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("actors", stderr)
	addr := fs.String("debug-addr", "127.0.0.1:7480", "the daemon's debug endpoint (host:port)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the daemon")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	tree, err := debug.FetchTree(ctx, *addr)
	if err != nil {
		return fmt.Errorf("fetch actor tree from %s: %w", *addr, err)
	}
	return debug.RenderTree(stdout, tree)
}
