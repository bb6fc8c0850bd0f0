// Package admin is the cloud's operator channel: HTTP with JSON over a Unix
// socket in the cloud's data directory (admin.sock), which `cyphonic cloud
// nodes`, `node` and `end-session` speak. It lists the nodes the registry
// knows, merged with the sessions the NMS of the process holds now, and
// ends a node's session.
//
// # Why a Unix socket, and how it is authenticated
//
// The kernel authenticates a Unix socket's peer; nothing travels over a
// network, so there is no token to issue, store or leak and no TLS to set
// up, and the channel is unreachable from another host or network
// namespace whatever --listen says. Two checks, each enough alone:
//
//   - the socket is mode 0600 (created under a temporary name, chmod-ed,
//     then renamed into place, so it is never reachable with looser
//     permissions) in the data directory, itself 0700: only the cloud's
//     user (and root) can connect;
//   - every connection's SO_PEERCRED uid is checked, root or the cloud's
//     own uid, so a socket made reachable by mistake (a chmod, a bind
//     mount, a looser directory) still refuses everybody else.
//
// HTTP on top, not a bespoke framing: the API is a handful of requests
// and answers, JSON is what an operator's scripts read, and `curl
// --unix-socket DATA/admin.sock http://cloud/v1/nodes` works as a fallback.
// (Tailscale's LocalAPI makes the same choice; Headscale's gRPC over a
// Unix socket is the same idea with a heavier stack.)
package admin
