package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/transport/udp"
)

// PortFile, in the identity directory, keeps the UDP ports the node chose
// when --listen4/--listen6 left the port to the kernel (port 0), so that a
// restarted node listens where it did before. Its peers' sessions then
// still lead to it, and they notice the restart from its unknown-index
// answers within half a second, instead of from their SilenceAfter (2 s)
// and a new path from NMS.
const PortFile = "udp-ports"

// savedPorts reads PortFile: one "udp4 PORT" or "udp6 PORT" line per
// family. A missing file is no ports; a malformed one is an error (the
// node then picks new ports and rewrites it).
func savedPorts(dir string) (map[string]uint16, error) {
	b, err := os.ReadFile(filepath.Join(dir, PortFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ports := make(map[string]uint16)
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		network, port, ok := strings.Cut(strings.TrimSpace(line), " ")
		p, err := strconv.ParseUint(port, 10, 16)
		if !ok || (network != "udp4" && network != "udp6") || err != nil || p == 0 {
			return nil, fmt.Errorf("%s: bad line %q", PortFile, line)
		}
		ports[network] = uint16(p)
	}
	return ports, nil
}

// formatPorts is savedPorts' inverse, for the bound sockets of b.
func formatPorts(b *udp.Bind) string {
	var s strings.Builder
	for _, c := range []struct {
		network string
		conn    *udp.Conn
	}{{"udp4", b.V4}, {"udp6", b.V6}} {
		if c.conn != nil {
			fmt.Fprintf(&s, "%s %d\n", c.network, c.conn.LocalAddr().Port())
		}
	}
	return s.String()
}

// withPort returns addr with port p if addr asks for any port (port 0).
func withPort(addr string, p uint16) (string, bool) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || ap.Port() != 0 || p == 0 {
		return addr, false
	}
	return netip.AddrPortFrom(ap.Addr(), p).String(), true
}

// listen opens the node's UDP sockets. A family given port 0 gets the
// port it had at the last start (PortFile in dir) if that port is free,
// and a new one, with a log line saying so, if not. The ports bound are
// saved for the next start.
func listen(dir, listen4, listen6 string, log *slog.Logger) (*udp.Bind, error) {
	ports, err := savedPorts(dir)
	if err != nil {
		log.Warn("ignoring the saved UDP ports", "err", err)
	}
	addr4, reuse4 := withPort(listen4, ports["udp4"])
	addr6, reuse6 := withPort(listen6, ports["udp6"])
	b, err := udp.ListenBind(addr4, addr6)
	if err != nil && (reuse4 || reuse6) {
		// Only the families whose saved port failed take a new one.
		for _, le := range listenErrors(err) {
			switch {
			case le.Network == "udp4" && reuse4:
				log.Warn("the saved UDP port is taken: listening on a new one (peers find this node again only after their silence timer)", "addr", addr4, "err", le.Err)
				addr4, reuse4 = listen4, false
			case le.Network == "udp6" && reuse6:
				log.Warn("the saved UDP port is taken: listening on a new one (peers find this node again only after their silence timer)", "addr", addr6, "err", le.Err)
				addr6, reuse6 = listen6, false
			}
		}
		b, err = udp.ListenBind(addr4, addr6)
	}
	if err != nil {
		return nil, err
	}
	if reuse4 || reuse6 {
		log.Info("listening on the UDP ports of the last start", "udp4", addr4, "udp6", addr6)
	}
	if s := formatPorts(b); s != "" {
		if err := pki.ReplaceFile(filepath.Join(dir, PortFile), []byte(s), 0o644); err != nil {
			log.Warn("the UDP ports are not saved for the next start", "err", err)
		}
	}
	return b, nil
}

// listenErrors are the per-family errors in udp.ListenBind's err.
func listenErrors(err error) []*udp.ListenError {
	var les []*udp.ListenError
	var walk func(error)
	walk = func(e error) {
		if le, ok := e.(*udp.ListenError); ok {
			les = append(les, le)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			if x := u.Unwrap(); x != nil {
				walk(x)
			}
		}
	}
	walk(err)
	return les
}
