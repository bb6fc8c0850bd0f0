package svc

import (
	"fmt"
	"net"
	"strconv"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
)

// startRemote makes sys reachable over gRPC at hostport ("127.0.0.1:0"
// picks a port), configured by opts, and returns the remote and the address other systems use in
// PIDs. remote.Start panics when it cannot listen; the port is probed first
// so a taken port is an error instead.
func startRemote(sys *actor.ActorSystem, hostport string, opts ...remote.ConfigOption) (*remote.Remote, string, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, "", fmt.Errorf("svc: remote address %q: %w", hostport, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, "", fmt.Errorf("svc: remote address %q: %w", hostport, err)
	}
	if port == 0 {
		// Pick a free port ourselves: remote.Start does not report one it picked
		// other than through the process registry.
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, "", fmt.Errorf("svc: remote listen %s: %w", hostport, err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	} else {
		l, err := net.Listen("tcp", hostport)
		if err != nil {
			return nil, "", fmt.Errorf("svc: remote listen %s: %w", hostport, err)
		}
		l.Close()
	}
	r := remote.NewRemote(sys, remote.Configure(host, port, opts...))
	var startErr error
	func() {
		defer func() {
			if p := recover(); p != nil {
				startErr = fmt.Errorf("svc: remote start %s:%d: %v", host, port, p)
			}
		}()
		r.Start()
	}()
	if startErr != nil {
		return nil, "", startErr
	}
	return r, sys.ProcessRegistry.Address, nil
}
