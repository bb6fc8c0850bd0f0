package perf

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/cyphonic/cyphonic-go/actors/node"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/test/testbed"
)

// The CYPHONIC side's constants.
const (
	asPort     = 7401             // AS (login), the cloud's default: what a node's --cloud names
	perfDomain = ".perf.cyphonic" // under the nodes' default overlay domain "cyphonic"
	// Each node's resolver listens where the testbed's resolv.conf points,
	// so getent, ping and iperf3 resolve overlay names through it.
	nodeResolver = "127.0.0.1:53"
	// nodeMTU matches wireguard-go's default MTU, so both systems carry
	// the same TCP segment size (the node's own default is 1280). The
	// overhead of both is 60 bytes over IPv4, which fits a 1500-byte link.
	nodeMTU = "1420"
	// nodeUpstream is where a node forwards names outside the overlay: a
	// closed port on its own loopback, so a stray lookup fails at once
	// instead of looping back into the resolver through resolv.conf.
	nodeUpstream = "127.0.0.1:9"
)

// fqdn is host h's overlay name.
func fqdn(h *testbed.Host) string { return h.Name() + perfDomain }

// SetupCyphonic runs `cyphonic cloud` on cloud and `cyphonic node` on every
// host of topo, with certificates issued under the cloud's CA, then
// resolves the responder's FQDN through each initiator's node resolver
// (which sets up the tunnel) and waits until each reaches the VIP. Data
// and certificates go to dir; every node also gets nodeArgs (e.g.
// --tun-queues=2, from CYPHONIC_PERF_TUN_QUEUES).
func SetupCyphonic(ctx context.Context, topo *Topology, cloud *testbed.Host, bin, dir string, nodeArgs ...string) (Target, error) {
	data := filepath.Join(dir, "cloud")
	cloudAddr := netip.AddrPortFrom(cloud.IPv4(), asPort).String()
	cp := cloud.Start(bin, "cloud", "--data", data, "--listen", cloud.IPv4().String())
	caDir := data + "-ca" // where its first start makes the CA, outside the data directory
	// Ready once it has made its CA and AS listens.
	if err := poll(ctx, 100, func() error {
		select {
		case <-cp.Done():
			return fmt.Errorf("perf: cyphonic cloud exited: %s", tail([]byte(cp.Output()), 1000))
		default:
		}
		if _, err := os.Stat(filepath.Join(caDir, pki.CACertFile)); err != nil {
			return err
		}
		out, err := topo.Bed.ExecContext(ctx, cloud.NS(), "ss", "-Huln")
		if err != nil {
			return err
		}
		if !strings.Contains(string(out), cloudAddr+" ") {
			return fmt.Errorf("perf: AS not listening on %s", cloudAddr)
		}
		return nil
	}); err != nil {
		return Target{}, fmt.Errorf("perf: cyphonic cloud not ready: %w", err)
	}

	hosts := append([]*testbed.Host{topo.Responder}, topo.Initiators()...)
	procs := make([]*testbed.Proc, len(hosts))
	for i, h := range hosts {
		certs := filepath.Join(dir, "certs", h.Name())
		if _, err := command(ctx, "", nil, bin, "ca", "issue", "--dir", caDir, "--fqdn", fqdn(h), "--out", certs); err != nil {
			return Target{}, err
		}
		args := append([]string{bin, "node", "--cloud", cloudAddr, "--cert", certs, "--dns", nodeResolver, "--upstream", nodeUpstream, "--mtu", nodeMTU}, nodeArgs...)
		procs[i] = h.Start(args...)
	}

	// The responder's VIP, as each initiator's resolver answers it; the
	// query is also what asks NMS for the tunnel.
	var vip netip.Addr
	for _, h := range topo.Initiators() {
		var got netip.Addr
		if err := poll(ctx, 50, func() error {
			for i, p := range procs {
				select {
				case <-p.Done():
					return fmt.Errorf("perf: cyphonic node on %s exited: %s", hosts[i].Name(), tail([]byte(p.Output()), 1000))
				default:
				}
			}
			var err error
			got, err = resolve4(ctx, topo.Bed, h, fqdn(topo.Responder))
			return err
		}); err != nil {
			return Target{}, err
		}
		if vip.IsValid() && got != vip {
			return Target{}, fmt.Errorf("perf: %s resolves %s to %s, %s to %s", topo.Idle.Name(), fqdn(topo.Responder), vip, h.Name(), got)
		}
		vip = got
	}
	for _, h := range topo.Initiators() {
		if err := reach(ctx, topo.Bed, h, vip); err != nil {
			return Target{}, err
		}
	}
	return Target{Addr: vip, PID: procs[0].Pid(), Pprof: "http://" + node.DefaultDebugAddr + "/debug/pprof",
		Sojourn: "http://" + node.DefaultDebugAddr + node.PathSojourn, Status: "http://" + node.DefaultDebugAddr + node.PathStatus}, nil
}

// resolve4 asks h's resolver (through its resolv.conf) for name's IPv4.
func resolve4(ctx context.Context, bed *testbed.Bed, h *testbed.Host, name string) (netip.Addr, error) {
	out, err := bed.ExecContext(ctx, h.NS(), "getent", "ahostsv4", name)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("perf: resolve %s on %s: %w", name, h.Name(), err)
	}
	f := strings.Fields(firstLine(out))
	if len(f) == 0 {
		return netip.Addr{}, fmt.Errorf("perf: resolve %s on %s: empty answer", name, h.Name())
	}
	a, err := netip.ParseAddr(f[0])
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("%w: resolve %s on %s: %q", ErrParse, name, h.Name(), f[0])
	}
	return a, nil
}
