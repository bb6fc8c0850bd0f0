package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Split DNS with systemd-resolved: the node asks resolved to send queries
// for the overlay domain (and only those) to the node's resolver, on the
// node's TUN link, so every other name resolves as before. resolved drops
// the setting when the link goes away with the node. CAP_NET_ADMIN is
// enough for resolved to accept it.

// Values of Config.SplitDNS.
const (
	SplitDNSAuto = "auto" // when systemd-resolved runs and the node is in the host's network namespace
	SplitDNSOn   = "on"   // always try, warn if it fails
	SplitDNSOff  = "off"
)

// resolvedRunning reports whether systemd-resolved serves this network
// namespace: its runtime directory exists and we are in the namespace of
// PID 1 (a node in another namespace, as in the tests' testbeds, must not
// configure the host's resolver with its own link index).
func resolvedRunning() bool {
	if _, err := exec.LookPath("resolvectl"); err != nil {
		return false
	}
	if _, err := os.Stat("/run/systemd/resolve/stub-resolv.conf"); err != nil {
		return false
	}
	self, err1 := os.Readlink("/proc/self/ns/net")
	init, err2 := os.Readlink("/proc/1/ns/net")
	return err1 == nil && err2 == nil && self == init
}

// splitDNSCommands are the resolvectl invocations that route domain (and
// search, the node's own domain, for short names) to the resolver at addr
// on link dev.
func splitDNSCommands(dev, addr, domain, search string) [][]string {
	domains := []string{"domain", dev, "~" + strings.Trim(domain, ".")}
	if search != "" {
		domains = append(domains, search)
	}
	return [][]string{{"dns", dev, addr}, domains}
}

// registerSplitDNS runs splitDNSCommands, saying what it did or why not.
func (n *Node) registerSplitDNS(ctx context.Context, dev string) {
	mode := n.cfg.SplitDNS
	if n.dns == nil || mode == SplitDNSOff || mode == SplitDNSAuto && !resolvedRunning() {
		return
	}
	search := n.dns.Config().Search
	for _, args := range splitDNSCommands(dev, n.dns.Addr().String(), n.cfg.Domain, search) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		out, err := exec.CommandContext(cctx, "resolvectl", args...).CombinedOutput()
		cancel()
		if err != nil {
			n.log.Warn("split DNS: resolvectl failed: point the overlay domain at the resolver by hand (README)", "cmd",
				"resolvectl "+strings.Join(args, " "), "err", fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out))))
			return
		}
	}
	n.log.Info("split DNS: systemd-resolved sends the overlay domain to the resolver", "dev", dev, "domain", n.cfg.Domain,
		"search", search, "resolver", n.dns.Addr())
}
