package resolver

import (
	"fmt"
	"net"

	"github.com/miekg/dns"
)

// ResolvConf is where UpstreamFromResolvConf looks by default.
const ResolvConf = "/etc/resolv.conf"

// UpstreamFromResolvConf returns the first nameserver of a resolv.conf file
// as host:port, for Config.Upstream. It skips self, the resolver's own
// address, so that a resolv.conf pointing at us does not make a loop.
func UpstreamFromResolvConf(path, self string) (string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return "", fmt.Errorf("resolver: read %s: %w", path, err)
	}
	for _, srv := range cc.Servers {
		addr := net.JoinHostPort(srv, cc.Port)
		if addr != self {
			return addr, nil
		}
	}
	return "", fmt.Errorf("resolver: %s: no usable nameserver", path)
}
