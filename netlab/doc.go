// Package netlab builds throw-away network topologies out of Linux network
// namespaces: a dual-stack "internet" segment, global hosts on it, and
// sites behind NAPT routers (nftables masquerade for endpoint-independent
// mapping, masquerade fully-random for symmetric NAT), IPv4-only and
// IPv6-only sites, and a resolv.conf per namespace. The internet namespace
// is a router, not only a switch: global hosts share its bridge, but each
// site's router has a routed link of its own to it, so two sites are a
// router hop apart and a packet's TTL or hop limit counts hops as on the
// internet. `cyphonic demo` runs
// on it; the tests reach it through test/testbed, which turns its errors
// into test failures.
//
// Every namespace, /etc/netns directory and process a Bed creates is
// removed by Bed.Close. Namespaces are named "cyXXXX-name" with a random
// per-Bed prefix, so two runs on one machine cannot collide; namespaces of
// runs that died without closing (killed, timed out) are swept by the next
// New once stale.
//
// The public side uses documentation ranges only (198.51.100.0/24,
// 203.0.113.0/24, 2001:db8::/32); site LANs use 10.0.0.0/8 and fd00::/8.
// Nothing is routed outside the namespaces the Bed creates.
//
// It needs root, iproute2 ("ip") and nftables ("nft"); see Available.
package netlab
