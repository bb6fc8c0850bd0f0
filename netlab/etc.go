package netlab

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// writeEtc replaces /etc/netns/NS/file atomically, so a process starting
// meanwhile sees the old or the new file, never half of one.
func writeEtc(ns, file string, data []byte) error {
	dir := filepath.Join(etcNetnsDir, ns)
	tmp, err := os.CreateTemp(dir, "."+file+".*")
	if err != nil {
		return fmt.Errorf("netlab: write %s for %s: %w", file, ns, err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp.Name(), 0o644)
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), filepath.Join(dir, file))
	}
	if werr != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("netlab: write %s for %s: %w", file, ns, werr)
	}
	return nil
}

// resolvConf renders a resolv.conf; no servers means the namespace's own
// loopback. Short timeouts keep a test with no resolver from stalling.
func resolvConf(servers []netip.Addr) []byte {
	if len(servers) == 0 {
		servers = []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1})}
	}
	var b strings.Builder
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	b.WriteString("options timeout:1 attempts:2\n")
	return []byte(b.String())
}

// hostsFile renders /etc/hosts: localhost, the namespace's own name on
// loopback, then extra entries sorted by name for stable output.
func hostsFile(self string, extra map[string]netip.Addr) []byte {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost\n")
	fmt.Fprintf(&b, "127.0.1.1\t%s\n", self)
	names := make([]string, 0, len(extra))
	for n := range extra {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(&b, "%s\t%s\n", extra[n], n)
	}
	return []byte(b.String())
}

// setSysctls writes key/value pairs (dotted names) inside namespace ns.
// /proc/sys/net resolves against the writing thread's namespace.
func setSysctls(ns string, kv ...string) error {
	return doIn(ns, func() error {
		for i := 0; i+1 < len(kv); i += 2 {
			path := "/proc/sys/" + strings.ReplaceAll(kv[i], ".", "/")
			if err := os.WriteFile(path, []byte(kv[i+1]), 0); err != nil {
				return fmt.Errorf("netlab: sysctl %s=%s in %s: %w", kv[i], kv[i+1], ns, err)
			}
		}
		return nil
	})
}

// setSysctlsIfChanged is setSysctls skipping keys that already hold
// their value.
func setSysctlsIfChanged(ns string, kv ...string) error {
	return doIn(ns, func() error {
		for i := 0; i+1 < len(kv); i += 2 {
			path := "/proc/sys/" + strings.ReplaceAll(kv[i], ".", "/")
			if cur, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(cur)) == kv[i+1] {
				continue
			}
			if err := os.WriteFile(path, []byte(kv[i+1]), 0); err != nil {
				return fmt.Errorf("netlab: sysctl %s=%s in %s: %w", kv[i], kv[i+1], ns, err)
			}
		}
		return nil
	})
}

func killPid(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
