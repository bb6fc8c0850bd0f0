package cloudcmd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cyphonic/cyphonic-go/cmd/internal/cli"

	"github.com/BurntSushi/toml"

	"github.com/cyphonic/cyphonic-go/cloud/admin"
	"github.com/cyphonic/cyphonic-go/cloud/server"
)

// cloudAdminCommands are `cyphonic cloud`'s operator subcommands: they talk
// to a running cloud over its admin socket (cloud/admin) instead of
// running one.
var cloudAdminCommands = map[string]string{
	"nodes":       "list the nodes the cloud knows",
	"node":        "show one node: cyphonic cloud node FQDN",
	"end-session": "end a node's session (it logs in again): cyphonic cloud end-session FQDN",
}

func runCloudAdmin(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cloud "+sub, stderr)
	data := fs.String("data", server.DefaultDataDir(), "the running cloud's data directory (its admin socket is "+admin.SocketName+" there)")
	socket := fs.String("socket", "", "the admin socket, if not in --data")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the cloud")
	asJSON := fs.Bool("json", false, "print the answer as JSON")
	config := fs.String("config", "", "the cloud's config file: its data and admin-socket keys, unless given here")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cyphonic cloud %s [flags]%s\n  %s\n", sub, map[bool]string{true: " FQDN", false: ""}[sub != "nodes"], cloudAdminCommands[sub])
		fs.PrintDefaults()
	}
	// The FQDN may come before or after the flags.
	var fqdn string
	if sub != "nodes" && len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		fqdn, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	rest := fs.Args()
	if sub != "nodes" && fqdn == "" && len(rest) > 0 {
		fqdn, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", cli.ErrUsage, rest[0])
	}
	if sub != "nodes" && fqdn == "" {
		return fmt.Errorf("%w: which node? cyphonic cloud %s FQDN", cli.ErrUsage, sub)
	}
	if *config != "" {
		var doc map[string]any
		if _, err := toml.DecodeFile(*config, &doc); err != nil {
			return fmt.Errorf("%w: --config: %v", cli.ErrUsage, err)
		}
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		for _, k := range []struct {
			key, flag string
			dst       *string
		}{{"data", "data", data}, {"admin-socket", "socket", socket}} {
			if v, ok := doc[k.key].(string); ok && !given[k.flag] {
				*k.dst = v
			}
		}
		if *socket == cli.Off {
			return fmt.Errorf("%w: %s sets admin-socket = %q: that cloud serves no admin socket", cli.ErrUsage, *config, cli.Off)
		}
	}
	path := *socket
	if path == "" {
		path = filepath.Join(*data, admin.SocketName)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c := admin.NewClient(path)
	var v any
	var err error
	switch sub {
	case "nodes":
		v, err = c.Nodes(ctx)
	case "node":
		v, err = c.Node(ctx, fqdn)
	case "end-session":
		v, err = c.EndSession(ctx, fqdn)
	}
	if err != nil {
		return cloudAdminErr(err, *data, *socket)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	now := time.Now()
	switch v := v.(type) {
	case []admin.Node:
		if len(v) == 0 {
			fmt.Fprintln(stdout, "no nodes yet: none has logged in to this cloud")
			return nil
		}
		return admin.RenderNodes(stdout, v, now)
	case admin.Node:
		return admin.RenderNode(stdout, v, now)
	case admin.Ended:
		fmt.Fprintf(stdout, "ended session %d of %s: it logs in again at its next request to the cloud\n", v.Session, v.FQDN)
	}
	return nil
}

// cloudAdminErr names the cause of a failed admin request and what to do.
func cloudAdminErr(err error, data, socket string) error {
	where := "--data " + data
	if socket != "" {
		where = "--socket " + socket
	}
	switch {
	case errors.Is(err, admin.ErrNoCloud):
		return fmt.Errorf("%w (%s): start it with 'cyphonic cloud --data DIR', or point %s at the running cloud's data directory", err, where, map[bool]string{true: "--socket", false: "--data"}[socket != ""])
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%w: only the cloud's user and root may use its admin socket (%s)", err, where)
	}
	return err
}
