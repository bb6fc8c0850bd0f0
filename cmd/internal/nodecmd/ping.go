package nodecmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/cyphonic/cyphonic-go/cmd/internal/cli"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/actors/node"
)

// runPing is `cyphonic ping PEER`: overlay probes through the running
// node's tunnel to PEER (set up first if there is none), each answered by
// the peer's data plane, with the RTT and the path each took.
func runPing(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("ping", stderr)
	addr := fs.String("debug-addr", defaultNodeDebugAddr, "the node's debug endpoint (host:port)")
	count := fs.Int("c", 4, "number of pings (1..1000)")
	interval := fs.Duration("i", time.Second, "wait between pings (at least 10ms)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long each ping waits for its reply (the first also sets the tunnel up), at most 30s")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: cyphonic ping [flags] PEER\n  PEER is an FQDN, a short name in this node's domain, or a peer's VIP.")
		fs.PrintDefaults()
	}
	var peer string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		peer, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	rest := fs.Args()
	if peer == "" && len(rest) > 0 {
		peer, rest = rest[0], rest[1:]
	}
	switch {
	case len(rest) > 0:
		return fmt.Errorf("%w: unexpected argument %q", cli.ErrUsage, rest[0])
	case peer == "":
		return fmt.Errorf("%w: ping whom? cyphonic ping PEER", cli.ErrUsage)
	case *count < 1 || *count > 1000:
		return fmt.Errorf("%w: -c %d outside 1..1000", cli.ErrUsage, *count)
	case *interval < 10*time.Millisecond:
		return fmt.Errorf("%w: -i %s below 10ms", cli.ErrUsage, *interval)
	case *timeout <= 0 || *timeout > 30*time.Second:
		return fmt.Errorf("%w: --timeout %s outside (0, 30s]", cli.ErrUsage, *timeout)
	}
	var rtts []time.Duration
	sent := 0
	for i := range *count {
		if i > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(*interval):
			}
		}
		if ctx.Err() != nil {
			break
		}
		sent++
		// The request's own deadline leaves the node time to answer that
		// the probe timed out.
		rctx, cancel := context.WithTimeout(ctx, *timeout+5*time.Second)
		r, err := node.FetchPing(rctx, *addr, peer, *timeout)
		cancel()
		switch {
		case errors.Is(err, node.ErrUnknownPeer):
			return err
		case err != nil && i == 0 && isUnreachable(err):
			return fmt.Errorf("%w (is the node running with --debug-addr %s?)", err, *addr)
		case err != nil:
			fmt.Fprintf(stdout, "no reply from %s: %v\n", peer, err)
			continue
		}
		rtts = append(rtts, r.RTT)
		fmt.Fprintf(stdout, "pong from %s %s in %s\n", r.FQDN, describePath(r), r.RTT.Round(time.Microsecond))
	}
	lost := sent - len(rtts)
	fmt.Fprintf(stdout, "--- %s: %d sent, %d received, %d lost", peer, sent, len(rtts), lost)
	if len(rtts) > 0 {
		lo, hi, sum := rtts[0], rtts[0], time.Duration(0)
		for _, d := range rtts {
			lo, hi, sum = min(lo, d), max(hi, d), sum+d
		}
		fmt.Fprintf(stdout, "; rtt min/avg/max %s/%s/%s", lo.Round(time.Microsecond), (sum / time.Duration(len(rtts))).Round(time.Microsecond), hi.Round(time.Microsecond))
	}
	fmt.Fprintln(stdout)
	if len(rtts) == 0 {
		return fmt.Errorf("no reply from %s in %d pings", peer, sent)
	}
	return nil
}

// describePath says which way a ping went and came back.
func describePath(r dataplane.PingResult) string {
	out := fmt.Sprintf("via %s (direct)", r.To)
	if r.Relay {
		out = fmt.Sprintf("via TRS %s (relay)", r.To)
	}
	if r.From.IsValid() && r.From != r.To {
		back := "direct"
		if r.RelayedReply {
			back = "relay"
		}
		out += fmt.Sprintf(", reply from %s (%s)", r.From, back)
	}
	return out
}

// isUnreachable reports whether err means nothing answered at the debug
// address.
func isUnreachable(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
