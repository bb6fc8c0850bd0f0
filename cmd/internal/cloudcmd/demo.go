package cloudcmd

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cyphonic/cyphonic-go/cmd/internal/cli"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/actors/node"
	"github.com/cyphonic/cyphonic-go/actors/session"
	"github.com/cyphonic/cyphonic-go/cloud/rootca"
	"github.com/cyphonic/cyphonic-go/cloud/server"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/netlab"
	"github.com/cyphonic/cyphonic-go/pki"
)

// The demo's overlay: names under the nodes' default domain "cyphonic".
const (
	demoDomain = "demo.cyphonic"
	// Each node's resolver listens where the namespace's resolv.conf
	// points, so ping resolves overlay names through it.
	demoResolver = "127.0.0.1:53"
	// Names outside the overlay go to a closed port: a stray lookup fails
	// at once instead of looping back into the resolver.
	demoUpstream = "127.0.0.1:9"
	// pairBudget bounds one pair's resolve-and-ping, so one broken pair
	// cannot eat the time of the others.
	pairBudget = 30 * time.Second
)

// errNotRoot is what a non-root user sees, before anything is touched.
var errNotRoot = errors.New("needs root (it creates network namespaces): run it with sudo")

// errPrereq marks a missing system tool.
var errPrereq = errors.New("missing a system tool")

// demoTools are the programs the demo runs and the Debian packages that
// hold them.
var demoTools = []struct{ name, pkg string }{
	{"ip", "iproute2"},
	{"nft", "nftables"},
	{"ping", "iputils-ping"},
}

// checkPrereqs says plainly what stops the demo on this machine: not root,
// or a missing tool and the package to install. It is pure so the
// non-root behaviour is testable without being non-root.
func checkPrereqs(euid int, lookPath func(string) (string, error)) error {
	if euid != 0 {
		return errNotRoot
	}
	var missing, pkgs []string
	for _, t := range demoTools {
		if _, err := lookPath(t.name); err != nil {
			missing = append(missing, t.name)
			pkgs = append(pkgs, t.pkg)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s not found: install %s (apt-get install %s)", errPrereq,
			strings.Join(missing, ", "), strings.Join(pkgs, ", "), strings.Join(pkgs, " "))
	}
	return nil
}

// demoNode is one node of the topology.
type demoNode struct {
	name  string // the testbed host name and the FQDN's first label
	what  string // how it is connected, for people
	host  *netlab.Host
	proc  *netlab.Proc
	v4    bool // has IPv4 underlay (else IPv6 only)
	v6    bool
	certs string
}

func (n *demoNode) fqdn() string { return n.name + "." + demoDomain }

// pairResult is what one pair's ping showed.
type pairResult struct {
	from, to *demoNode
	path     string // "direct", "hole-punched", "relay" or "-"
	ping     pingStats
	err      error
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := cli.NewFlagSet("demo", stderr)
	keep := fs.Bool("keep", false, "leave the topology running until Ctrl-C, and print how to poke at it")
	timeout := fs.Duration("timeout", 3*time.Minute, "give up on building and pinging after this long")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := checkPrereqs(os.Geteuid(), exec.LookPath); err != nil {
		return err
	}
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("demo: find my own binary: %w", err)
	}
	d := &demo{bin: bin, out: stdout}
	defer func() {
		fmt.Fprintln(stdout, "cyphonic demo: tearing down")
		d.teardown(stderr, err != nil)
	}()
	setupCtx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	results, err := d.run(setupCtx)
	if ctx.Err() != nil {
		return errors.New("demo: interrupted")
	}
	if err != nil {
		return err
	}
	failed := printResults(stdout, results)
	if *keep {
		d.printPokeHelp(stdout)
		<-ctx.Done()
	}
	if len(failed) > 0 {
		return fmt.Errorf("demo: %d of %d pairs could not talk: %s", len(failed), len(results), strings.Join(failed, ", "))
	}
	fmt.Fprintf(stdout, "all %d pairs talked\n", len(results))
	return nil
}

// demo holds one run's topology.
type demo struct {
	bin   string
	out   io.Writer
	dir   string // certificates and data, removed at teardown
	bed   *netlab.Bed
	cloud *netlab.Host
	procs []*netlab.Proc // every daemon, to notice one dying
	nodes []*demoNode
}

// teardown stops the daemons and removes the topology and the files; after
// a failure it first shows the tail of every daemon's output, which says
// why.
func (d *demo) teardown(log io.Writer, failed bool) {
	if d.bed != nil {
		err := d.bed.Close()
		if failed {
			for _, p := range d.bed.Procs() {
				fmt.Fprintf(log, "output of %v:\n%s\n", p, lastLines(p.Output(), 30))
			}
		}
		if err != nil {
			fmt.Fprintf(log, "cleanup: %v\n", err)
		}
	}
	if d.dir != "" {
		_ = os.RemoveAll(d.dir)
	}
}

// run builds the topology, starts the cloud and the nodes, and pings every
// pair.
func (d *demo) run(ctx context.Context) ([]pairResult, error) {
	dir, err := os.MkdirTemp("", "cyphonic-demo-")
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	d.dir = dir

	fmt.Fprintln(d.out, "cyphonic demo: building the topology")
	if err := d.build(); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	d.printTopology()

	if err := d.startCloud(ctx, filepath.Join(dir, "cloud"), filepath.Join(dir, "ca")); err != nil {
		return nil, err
	}
	if err := d.startNodes(ctx, filepath.Join(dir, "ca"), dir); err != nil {
		return nil, err
	}
	fmt.Fprintln(d.out, "\npinging every pair by name (the first query sets the tunnel up):")
	var results []pairResult
	for i, a := range d.nodes {
		for _, b := range d.nodes[i+1:] {
			if err := ctx.Err(); err != nil {
				// Out of time: the table still shows every pair.
				results = append(results, pairResult{from: a, to: b, path: "-",
					err: fmt.Errorf("demo: not tried: %w (see --timeout)", err)})
				continue
			}
			results = append(results, d.pingPair(ctx, a, b))
		}
	}
	return results, nil
}

// build makes the internet with a dual-stack cloud, a global IPv4 node, one
// node behind an endpoint-independent (cone) NAPT, one behind a symmetric
// NAPT and an IPv6-only node.
func (d *demo) build() (err error) {
	if d.bed, err = netlab.New(nil); err != nil {
		return err
	}
	// host collects the first error of a chain of additions, so the
	// topology reads as one list.
	host := func(h *netlab.Host, e error) *netlab.Host {
		err = cmp.Or(err, e)
		return h
	}
	site := func(s *netlab.Site, e error) *netlab.Site {
		err = cmp.Or(err, e)
		return s
	}
	d.cloud = host(d.bed.AddHost("cloud", netlab.HostOpts{}))
	cone := site(d.bed.AddSite("home", netlab.SiteOpts{NAT: netlab.NATCone, IPv4: true}))
	sym := site(d.bed.AddSite("mobile", netlab.SiteOpts{NAT: netlab.NATSymmetric, IPv4: true}))
	if err != nil {
		return err
	}
	d.nodes = []*demoNode{
		{name: "alice", what: "IPv4, global address", host: host(d.bed.AddHost("alice", netlab.HostOpts{IPv4: true})), v4: true},
		{name: "bob", what: "IPv4, behind a cone NAPT", host: host(cone.AddHost("bob")), v4: true},
		{name: "carol", what: "IPv4, behind a symmetric NAPT", host: host(sym.AddHost("carol")), v4: true},
		{name: "dave", what: "IPv6 only, global address", host: host(d.bed.AddHost("dave", netlab.HostOpts{IPv6: true})), v6: true},
	}
	if err != nil {
		return err
	}
	for _, n := range d.nodes {
		// The namespace's resolver is its node's: netlab's default, said
		// here so the demo does not depend on it.
		if err := n.host.SetResolvers(netip.MustParseAddr("127.0.0.1")); err != nil {
			return err
		}
	}
	return nil
}

func (d *demo) printTopology() {
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  cloud\tdual-stack, AS + NMS + TRS\t%s\n", addrs(d.cloud.IPv4(), d.cloud.IPv6()))
	for _, n := range d.nodes {
		a := addrs(n.host.IPv4(), n.host.IPv6())
		if s := n.host.Site(); s.NAT() != netlab.NATNone {
			a += " (public " + s.PublicIPv4().String() + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", n.fqdn(), n.what, a)
	}
	_ = tw.Flush()
	fmt.Fprintf(d.out, "  namespaces %s-*\n", d.bed.Prefix())
}

func addrs(as ...netip.Addr) string {
	var parts []string
	for _, a := range as {
		if a.IsValid() {
			parts = append(parts, a.String())
		}
	}
	return strings.Join(parts, " ")
}

// startCloud runs `cyphonic cloud` on the cloud host with a CA made here
// in caDir, outside the cloud's data directory (which gets the service
// certificates, as `cyphonic ca issue-service` does), and waits until it
// says it is up.
func (d *demo) startCloud(ctx context.Context, data, caDir string) error {
	if err := os.MkdirAll(caDir, 0o700); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	ca, err := rootca.Init(caDir, "CYPHONIC demo CA", 24*time.Hour)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if _, err := server.Provision(ca, data, []pki.Role{pki.RoleAS, pki.RoleNMS, pki.RoleTRS}, 24*time.Hour, false); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	p, err := d.cloud.Start(d.bin, "cloud", "--data", data,
		"--listen", d.cloud.IPv4().String()+","+d.cloud.IPv6().String())
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	d.procs = append(d.procs, p)
	fmt.Fprintln(d.out, "\nstarting the cloud and the nodes")
	return d.waitFor(ctx, "the cloud to start", func() error {
		if !strings.Contains(p.Output(), "cyphonic cloud: data in") {
			return errors.New("not up yet")
		}
		return nil
	})
}

// startNodes issues each node's certificate and runs `cyphonic node` in
// its namespace, then waits until every one is registered with NMS.
func (d *demo) startNodes(ctx context.Context, caDir, dir string) error {
	ca, err := rootca.Load(caDir)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	for _, n := range d.nodes {
		id, err := ca.Issue(pki.RoleNode, n.fqdn(), 24*time.Hour)
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		n.certs = filepath.Join(dir, n.fqdn())
		if err := pki.WriteIdentity(n.certs, id); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if err := pki.WriteRoot(n.certs, ca.Cert); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		cloud := netip.AddrPortFrom(d.cloud.IPv4(), server.DefaultASPort)
		if !n.v4 {
			cloud = netip.AddrPortFrom(d.cloud.IPv6(), server.DefaultASPort)
		}
		args := []string{"node", "--cloud", cloud.String(), "--cert", n.certs,
			"--dns", demoResolver, "--upstream", demoUpstream}
		if !n.v4 {
			args = append(args, "--listen4=off")
		}
		if !n.v6 {
			args = append(args, "--listen6=off")
		}
		p, err := n.host.Start(append([]string{d.bin}, args...)...)
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		n.proc = p
		d.procs = append(d.procs, n.proc)
	}
	for _, n := range d.nodes {
		var st node.Status
		if err := d.waitFor(ctx, n.fqdn()+" to log in and register", func() error {
			var err error
			if st, err = d.status(ctx, n); err != nil {
				return err
			}
			if st.Session.State != session.StateOnline {
				return fmt.Errorf("session %s %s", st.Session.State, st.Session.LastError)
			}
			return nil
		}); err != nil {
			return err
		}
		s := st.Session
		fmt.Fprintf(d.out, "  %-20s online  vip4 %-15s vip6 %-22s nat %-10s seen by NMS as %s\n",
			n.fqdn(), s.VIP4, s.VIP6, orDashS(s.NAT), s.Observed)
	}
	return nil
}

func orDashS(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// status runs `cyphonic status --json` in n's namespace.
func (d *demo) status(ctx context.Context, n *demoNode) (node.Status, error) {
	var st node.Status
	out, err := d.bed.ExecContext(ctx, n.host.NS(), d.bin, "status", "--json", "--timeout", "2s")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return st, fmt.Errorf("demo: status of %s: %w", n.fqdn(), err)
	}
	return st, nil
}

// pingPair pings b by name from a's namespace until a reply comes back,
// then reads the path a's node uses to b.
func (d *demo) pingPair(ctx context.Context, a, b *demoNode) pairResult {
	ctx, cancel := context.WithTimeout(ctx, pairBudget)
	defer cancel()
	r := pairResult{from: a, to: b, path: "-"}
	r.err = d.waitFor(ctx, a.name+" to ping "+b.fqdn(), func() error {
		ps, err := d.ping(ctx, a, b)
		if err != nil {
			return err
		}
		r.ping = ps
		if ps.Received == 0 {
			return fmt.Errorf("no reply from %s", b.fqdn())
		}
		return nil
	})
	// The path NMS chose, even for a pair that failed: a fresh deadline,
	// since the pair's budget may be spent.
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer scancel()
	if st, err := d.status(sctx, a); err == nil {
		for _, p := range st.Peers {
			if p.FQDN == b.fqdn() {
				r.path = pathLabel(p)
				if p.State != dataplane.StateUp && r.path != "-" {
					r.path += " (" + p.State + ")"
				}
			}
		}
	}
	if r.err == nil {
		fmt.Fprintf(d.out, "  %s → %s: %d/%d replies\n", a.name, b.name, r.ping.Received, r.ping.Sent)
	} else {
		fmt.Fprintf(d.out, "  %s → %s: %v\n", a.name, b.name, r.err)
	}
	return r
}

// ping runs one `ping` of b's FQDN in a's namespace. The name lookup is
// what asks NMS for the tunnel; until it is up the lookup fails after the
// resolv.conf timeouts, and the caller tries again.
func (d *demo) ping(ctx context.Context, a, b *demoNode) (pingStats, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// -4: every node has a VIP4, whatever its underlay.
	out, err := d.bed.ExecContext(ctx, a.host.NS(), "ping", "-4", "-n", "-c", "3", "-i", "0.2", "-W", "2", b.fqdn())
	ps, perr := parsePing(out)
	if perr != nil {
		if err != nil {
			// The command's own words ("Temporary failure in name
			// resolution"), not the whole command line.
			return ps, fmt.Errorf("ping: %s", lastLines(strings.TrimSpace(string(out)), 1))
		}
		return ps, perr
	}
	return ps, nil
}

// pathLabel names a peer's path for people.
func pathLabel(p dataplane.PeerStatus) string {
	switch p.Path {
	case messages.PathDirect:
		return "direct"
	case messages.PathHolePunch:
		return "hole-punched"
	case messages.PathRelay:
		return "relay (TRS)"
	}
	return "-"
}

// waitFor polls cond until it returns nil, ctx ends, or a daemon exits.
// The error says what cond said last before ctx ended.
func (d *demo) waitFor(ctx context.Context, what string, cond func() error) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		for _, p := range d.procs {
			select {
			case <-p.Done():
				return fmt.Errorf("demo: waiting for %s: %v exited:\n%s", what, p, lastLines(p.Output(), 20))
			default:
			}
		}
		err := cond()
		if err == nil {
			return nil
		}
		if ctx.Err() == nil || last == nil {
			last = err // not an attempt cut short by the deadline
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("demo: gave up waiting for %s: %w (last: %v)", what, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// printResults prints the table of pairs and returns the failed ones.
func printResults(w io.Writer, results []pairResult) []string {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PAIR\tPATH\tRTT\tREPLIES")
	var failed []string
	for _, r := range results {
		rtt := "-"
		if r.err == nil {
			rtt = fmt.Sprintf("%.2f ms", float64(r.ping.AvgRTT.Microseconds())/1000)
		} else {
			failed = append(failed, r.from.name+"→"+r.to.name)
		}
		fmt.Fprintf(tw, "%s → %s\t%s\t%s\t%d/%d\n", r.from.fqdn(), r.to.fqdn(), r.path, rtt, r.ping.Received, r.ping.Sent)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	return failed
}

func (d *demo) printPokeHelp(w io.Writer) {
	a, b := d.nodes[0], d.nodes[len(d.nodes)-1]
	ns := a.host.NS()
	fmt.Fprintf(w, "The topology stays up until Ctrl-C. Poke at it from another terminal:\n")
	fmt.Fprintf(w, "  sudo ip netns exec %s %s status                # %s's peers and paths\n", ns, d.bin, a.name)
	fmt.Fprintf(w, "  sudo ip netns exec %s %s actors --debug-addr 127.0.0.1:7481\n", ns, d.bin)
	fmt.Fprintf(w, "  sudo ip netns exec %s ping %s\n", ns, b.fqdn())
	fmt.Fprintf(w, "  sudo ip netns exec %s %s actors               # the cloud's actor tree\n", d.cloud.NS(), d.bin)
	fmt.Fprintf(w, "Namespaces: %s\n", strings.Join(d.bed.Namespaces(), " "))
}

// pingStats is what ping's summary says.
type pingStats struct {
	Sent, Received int
	AvgRTT         time.Duration
}

var (
	pingCounts = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)
	pingRTT    = regexp.MustCompile(`= [0-9.]+/([0-9.]+)/[0-9.]+`)
)

// errPingOutput means ping printed no summary (it could not resolve the
// name, or was killed).
var errPingOutput = errors.New("ping printed no summary")

// parsePing reads iputils ping's summary lines.
func parsePing(out []byte) (pingStats, error) {
	var ps pingStats
	m := pingCounts.FindSubmatch(out)
	if m == nil {
		return ps, fmt.Errorf("%w: %s", errPingOutput, lastLines(string(out), 1))
	}
	ps.Sent, _ = strconv.Atoi(string(m[1]))
	ps.Received, _ = strconv.Atoi(string(m[2]))
	if m := pingRTT.FindSubmatch(out); m != nil {
		ms, err := strconv.ParseFloat(string(m[1]), 64)
		if err == nil {
			ps.AvgRTT = time.Duration(ms * float64(time.Millisecond))
		}
	}
	return ps, nil
}

// lastLines is the last n non-empty lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
