package perf

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/cyphonic/cyphonic-go/test/testbed"
)

// Nebula, built from the module proxy like wireguard-go. v1.11.0 builds
// with Go 1.26.
const (
	NebulaModule  = "github.com/slackhq/nebula"
	NebulaVersion = "v1.11.0"
)

// The Nebula overlay: 100.97.0.0/24, inside the namespaces only. The
// responder is also the lighthouse: every initiator talks to it directly,
// as with the other two systems.
var (
	nebulaOverlay   = netip.MustParsePrefix("100.97.0.0/24")
	nebulaResponder = netip.MustParseAddr("100.97.0.1")
)

const nebulaListenPort = 4242

// InstallNebula builds nebula and nebula-cert from the module proxy into
// dir and returns their paths and nebula's version line. Like
// InstallWireGuardGo it runs outside any module.
func InstallNebula(ctx context.Context, dir string) (bin, certBin, version string, err error) {
	for _, cmd := range []string{"nebula", "nebula-cert"} {
		spec := NebulaModule + "/cmd/" + cmd + "@" + NebulaVersion
		if _, err := command(ctx, dir, []string{"GOBIN=" + dir, "GOFLAGS="}, "go", "install", spec); err != nil {
			return "", "", "", fmt.Errorf("%w: go install %s: %v", ErrNotReady, spec, err)
		}
	}
	bin, certBin = filepath.Join(dir, "nebula"), filepath.Join(dir, "nebula-cert")
	out, err := command(ctx, "", nil, bin, "-version")
	if err != nil {
		return "", "", "", fmt.Errorf("perf: nebula -version: %w", err)
	}
	return bin, certBin, "nebula " + strings.TrimPrefix(firstLine(out), "Version: ") + ", module " + NebulaModule + "@" + NebulaVersion, nil
}

// SetupNebula runs nebula (bin) on every host of topo with certificates
// from nebula-cert (certBin), the responder as lighthouse, and waits until
// each initiator reaches the responder through its tunnel. Keys and
// configs go to dir.
func SetupNebula(ctx context.Context, topo *Topology, bin, certBin, dir string) (Target, error) {
	bed := topo.Bed
	hosts := append([]*testbed.Host{topo.Responder}, topo.Initiators()...)
	if len(hosts) > 250 {
		return Target{}, fmt.Errorf("perf: %d hosts do not fit %s", len(hosts), nebulaOverlay)
	}
	ca, caKey := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if _, err := command(ctx, dir, nil, certBin, "ca", "-name", "cyphonic perf", "-out-crt", ca, "-out-key", caKey); err != nil {
		return Target{}, fmt.Errorf("perf: nebula-cert ca: %w", err)
	}
	endpoint := netip.AddrPortFrom(topo.Responder.IPv4(), nebulaListenPort).String()
	procs := make([]*testbed.Proc, len(hosts))
	for i, h := range hosts {
		name := h.Name()
		crt, key := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		if _, err := command(ctx, dir, nil, certBin, "sign", "-name", name, "-networks", netip.PrefixFrom(nebulaAddr(i), nebulaOverlay.Bits()).String(),
			"-ca-crt", ca, "-ca-key", caKey, "-out-crt", crt, "-out-key", key); err != nil {
			return Target{}, fmt.Errorf("perf: nebula-cert sign %s: %w", name, err)
		}
		conf := filepath.Join(dir, name+".yml")
		if err := os.WriteFile(conf, []byte(nebulaConfig(ca, crt, key, i == 0, endpoint)), 0o600); err != nil {
			return Target{}, fmt.Errorf("perf: nebula config for %s: %w", name, err)
		}
		procs[i] = h.Start(bin, "-config", conf)
	}
	for i, h := range topo.Initiators() {
		p := procs[i+1]
		if err := reach(ctx, bed, h, nebulaResponder); err != nil {
			select {
			case <-p.Done():
				return Target{}, fmt.Errorf("perf: nebula exited on %s: %s", h.Name(), tail([]byte(p.Output()), 500))
			default:
			}
			return Target{}, err
		}
	}
	pid := procs[0].Pid()
	if name := processName(pid); name != filepath.Base(bin) {
		return Target{}, fmt.Errorf("perf: responder pid %d is %q, not nebula", pid, name)
	}
	return Target{Addr: nebulaResponder, PID: pid}, nil
}

// nebulaAddr is host i's overlay address (the responder is host 0).
func nebulaAddr(i int) netip.Addr {
	a := nebulaOverlay.Addr().As4()
	a[3] = byte(i + 1)
	return netip.AddrFrom4(a)
}

// nebulaConfig is one host's config: the MTU every system gets (1420),
// every packet allowed, logging at errors only. The lighthouse listens on
// nebulaListenPort; the others on a random port, finding it by the static
// host map.
func nebulaConfig(ca, crt, key string, lighthouse bool, endpoint string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pki:\n  ca: %s\n  cert: %s\n  key: %s\n", ca, crt, key)
	port := 0
	if lighthouse {
		port = nebulaListenPort
		b.WriteString("lighthouse:\n  am_lighthouse: true\n")
	} else {
		fmt.Fprintf(&b, "static_host_map:\n  %q: [%q]\n", nebulaResponder.String(), endpoint)
		fmt.Fprintf(&b, "lighthouse:\n  am_lighthouse: false\n  interval: 60\n  hosts:\n    - %q\n", nebulaResponder.String())
	}
	fmt.Fprintf(&b, "listen:\n  host: 0.0.0.0\n  port: %d\n", port)
	b.WriteString("punchy:\n  punch: true\n")
	b.WriteString("tun:\n  dev: nebula1\n  mtu: 1420\n")
	b.WriteString("logging:\n  level: error\n")
	b.WriteString("firewall:\n  outbound:\n    - port: any\n      proto: any\n      host: any\n  inbound:\n    - port: any\n      proto: any\n      host: any\n")
	return b.String()
}
