package debug

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// allowedHost reports whether a request's Host header names this server:
// "localhost", a loopback address, or the address it listens on (any IP
// literal when it listens on all addresses). Anything else is a name some
// DNS server made point here: a page in a local browser that rebinds its
// own domain to 127.0.0.1 would otherwise read the actor tree, the node's
// status and pprof. A rebinding needs a DNS name, which is never an IP
// literal, so refusing every name but localhost closes it.
func allowedHost(host string, listen netip.Addr) bool {
	if host == "" {
		return false // HTTP/1.0 without Host: nothing says who it was meant for
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1] // "[::1]" without a port
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" {
		return false
	}
	ip, listen = ip.Unmap(), listen.Unmap()
	return ip.IsLoopback() || ip == listen || listen.IsUnspecified()
}

// hostGuard refuses requests whose Host is not allowedHost with 403.
func hostGuard(next http.Handler, listen netip.Addr) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowedHost(r.Host, listen) {
			http.Error(w, "debug: Host not allowed (use the listen address or localhost)", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}
