package perf

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cyphonic/cyphonic-go/test/testbed"
)

// The wireguard-go overlay: 100.96.0.0/24, inside the namespaces only.
var (
	wgOverlay   = netip.MustParsePrefix("100.96.0.0/24")
	wgResponder = netip.MustParseAddr("100.96.0.1")
)

const wgListenPort = 51820

// wgKey is one WireGuard key pair; the private key lives in a file (0600)
// because wg reads it from one.
type wgKey struct {
	privFile, pub string
}

// newWGKey makes a key pair with wg genkey and wg pubkey (no network, so
// outside the namespaces).
func newWGKey(ctx context.Context, dir, name string) (wgKey, error) {
	priv, err := command(ctx, "", nil, "wg", "genkey")
	if err != nil {
		return wgKey{}, err
	}
	cmd := exec.CommandContext(ctx, "wg", "pubkey")
	cmd.Stdin = strings.NewReader(string(priv))
	pub, err := cmd.Output()
	if err != nil {
		return wgKey{}, fmt.Errorf("perf: wg pubkey: %w", err)
	}
	k := wgKey{privFile: filepath.Join(dir, name+".key"), pub: strings.TrimSpace(string(pub))}
	if err := os.WriteFile(k.privFile, priv, 0o600); err != nil {
		return wgKey{}, fmt.Errorf("perf: write %s key: %w", name, err)
	}
	return k, nil
}

// wgIfname names a host's interface uniquely on the machine, not just in
// its namespace: wireguard-go's control socket is a file in
// /var/run/wireguard/NAME.sock, which network namespaces do not separate.
func wgIfname(bed *testbed.Bed, h *testbed.Host) string {
	return "wg" + strings.TrimPrefix(bed.Prefix(), "cy") + "-" + h.Name() // at most 15 bytes
}

// SetupWireGuard runs wireguard-go (bin) in userspace on every host of
// topo, the responder listening and every initiator peered with it, and
// waits until each initiator reaches the responder through its tunnel.
// Keys go to dir.
func SetupWireGuard(ctx context.Context, topo *Topology, bin, dir string) (Target, error) {
	bed := topo.Bed
	hosts := append([]*testbed.Host{topo.Responder}, topo.Initiators()...)
	if len(hosts) > 250 {
		return Target{}, fmt.Errorf("perf: %d hosts do not fit %s", len(hosts), wgOverlay)
	}
	keys := make([]wgKey, len(hosts))
	procs := make([]*testbed.Proc, len(hosts))
	for i, h := range hosts {
		var err error
		if keys[i], err = newWGKey(ctx, dir, h.Name()); err != nil {
			return Target{}, err
		}
		ifname := wgIfname(bed, h)
		procs[i] = h.Start("env", "WG_PROCESS_FOREGROUND=1", "LOG_LEVEL=error", bin, ifname)
		sock := "/var/run/wireguard/" + ifname + ".sock"
		if err := poll(ctx, 50, func() error {
			select {
			case <-procs[i].Done():
				return fmt.Errorf("perf: wireguard-go exited on %s: %s", h.Name(), tail([]byte(procs[i].Output()), 500))
			default:
			}
			_, err := os.Stat(sock)
			return err
		}); err != nil {
			return Target{}, fmt.Errorf("perf: wireguard-go on %s: %w", h.Name(), err)
		}
	}

	// The responder knows every initiator; each initiator knows the responder.
	args := []string{"wg", "set", wgIfname(bed, topo.Responder), "listen-port", strconv.Itoa(wgListenPort), "private-key", keys[0].privFile}
	for i := 1; i < len(hosts); i++ {
		args = append(args, "peer", keys[i].pub, "allowed-ips", netip.PrefixFrom(wgAddr(i), 32).String())
	}
	if err := wgConfigure(ctx, bed, topo.Responder, args, wgResponder); err != nil {
		return Target{}, err
	}
	endpoint := netip.AddrPortFrom(topo.Responder.IPv4(), wgListenPort).String()
	for i := 1; i < len(hosts); i++ {
		args := []string{"wg", "set", wgIfname(bed, hosts[i]), "private-key", keys[i].privFile,
			"peer", keys[0].pub, "endpoint", endpoint, "allowed-ips", netip.PrefixFrom(wgResponder, 32).String()}
		if err := wgConfigure(ctx, bed, hosts[i], args, wgAddr(i)); err != nil {
			return Target{}, err
		}
	}
	for _, h := range topo.Initiators() {
		if err := reach(ctx, bed, h, wgResponder); err != nil {
			return Target{}, err
		}
	}
	pid := procs[0].Pid()
	if name := processName(pid); name != filepath.Base(bin) {
		return Target{}, fmt.Errorf("perf: responder pid %d is %q, not wireguard-go", pid, name)
	}
	return Target{Addr: wgResponder, PID: pid}, nil
}

// wgAddr is host i's overlay address (the responder is host 0).
func wgAddr(i int) netip.Addr {
	a := wgOverlay.Addr().As4()
	a[3] = byte(i + 1)
	return netip.AddrFrom4(a)
}

// wgConfigure applies a wg set command and gives the interface its address.
func wgConfigure(ctx context.Context, bed *testbed.Bed, h *testbed.Host, wgSet []string, addr netip.Addr) error {
	ifname := wgSet[2]
	for _, argv := range [][]string{
		wgSet,
		{"ip", "addr", "add", netip.PrefixFrom(addr, wgOverlay.Bits()).String(), "dev", ifname},
		{"ip", "link", "set", ifname, "up"},
	} {
		if _, err := bed.ExecContext(ctx, h.NS(), argv...); err != nil {
			return fmt.Errorf("perf: configure wireguard on %s: %w", h.Name(), err)
		}
	}
	return nil
}
