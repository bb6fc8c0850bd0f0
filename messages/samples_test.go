package messages

import "net/netip"

// samples returns one fully populated value of every body type, plus a few
// edge cases. Tests and fuzz seeds share them.
func samples() []Body {
	ap4 := netip.MustParseAddrPort("198.51.100.7:41641")
	ap6 := netip.MustParseAddrPort("[2001:db8::7]:41641")
	id := MsgID{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	ticket := &RelayTicket{
		TRS4:    netip.MustParseAddrPort("203.0.113.1:3478"),
		TRS6:    netip.MustParseAddrPort("[2001:db8:ffff::1]:3478"),
		Token:   RelayToken{9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 1},
		Expires: 1_700_000_000_000_000_000,
		BindKey: RelayBindKey{5, 31: 5},
	}
	path := PathInfo{
		PeerFQDN:  "bob.example.cyphonic",
		PeerVIP6:  netip.MustParseAddr("fd7a:115c:a1e0::2"),
		PeerVIP4:  netip.MustParseAddr("100.64.0.2"),
		Kind:      PathRelay,
		Endpoints: []netip.AddrPort{ap6, ap4},
		Relay:     ticket,
		Initiator: true,
		TunnelID:  id,
	}
	direct := path
	direct.Kind, direct.Relay, direct.Initiator = PathDirect, nil, false
	key := [32]byte{1, 2, 3, 31: 0xff}
	return []Body{
		&LoginRequest{CertDER: []byte{0x30, 0x82, 0x01, 0x0a, 0xff}, Software: "cyphonic-go/0.1 linux/amd64"},
		&LoginRequest{CertDER: make([]byte, MaxCertLen)},
		&LoginReply{
			SessionID:  0xfeedface,
			FQDN:       "alice.example.cyphonic",
			VIP6:       netip.MustParseAddr("fd7a:115c:a1e0::1"),
			VIP4:       netip.MustParseAddr("100.64.0.1"),
			Prefix6:    netip.MustParsePrefix("fd7a:115c:a1e0::/48"),
			Prefix4:    netip.MustParsePrefix("100.64.0.0/10"),
			NMS:        []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:7000"), netip.MustParseAddrPort("[::1]:7000")},
			NATProbe:   []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:7001")},
			SessionTTL: 3600,
		},
		&LoginReply{SessionID: 1, FQDN: "a"},
		&KeyHandover{SessionID: 7, FQDN: "alice.example.cyphonic", CertSerial: "0a:1b", NodeToCloud: key, CloudToNode: [32]byte{5: 5}, Expires: -1},
		&KeyHandoverAck{SessionID: 1<<32 - 1},
		&Register{
			Locals:        []netip.AddrPort{netip.MustParseAddrPort("192.168.1.20:41641"), netip.MustParseAddrPort("[fe80::1]:41641"), netip.MustParseAddrPort("[::ffff:10.0.0.1]:1")},
			IPv4:          true,
			IPv6:          true,
			Port:          41641,
			ProbeObserved: []netip.AddrPort{ap4},
		},
		&Register{},
		&RegisterReply{Observed: ap4, NAT: NATSymmetric, VIP6: netip.MustParseAddr("fd7a:115c:a1e0::1"), VIP4: netip.MustParseAddr("100.64.0.1")},
		&RegisterReply{NAT: NATUnknown},
		&TunnelRequest{PeerFQDN: "bob.example.cyphonic"},
		(*Direction)(&path),
		(*Path)(&direct),
		&DirectionAck{TunnelID: id, OK: true, Endpoints: []netip.AddrPort{ap6}},
		&DirectionAck{TunnelID: id},
		&RelayAlloc{Session: id, TokenA: RelayToken{1}, TokenB: RelayToken{2}, FQDNA: "alice.example.cyphonic", FQDNB: "bob.example.cyphonic", Expires: 123,
			KeyA: RelayBindKey{0xa, 31: 1}, KeyB: RelayBindKey{0xb, 31: 2}},
		&RelayAllocReply{Session: id, OK: true},
		&RelayKey{},
		&RelayKeyReply{Key: [32]byte{7, 31: 9}},
		&Keepalive{},
		&KeepaliveAck{Observed: ap6},
		&Logout{},
		&LogoutAck{},
		&PeerUpdate{PeerFQDN: "bob.example.cyphonic", Endpoints: []netip.AddrPort{ap4, ap6}},
		&PeerUpdateAck{},
		&DenyList{Number: 7, Offset: 0, Total: 5, Chunk: []byte{0x30, 0x03, 1, 2, 3}},
		&DenyList{Number: 7, Offset: DenyListChunk, Total: DenyListChunk + 3, Chunk: []byte{1, 2, 3}},
		&DenyListAck{Number: 7},
		&DenyListAck{},
		&Error{Code: CodeCertRevoked, Message: "serial 0a:1b is revoked", Retry: false},
		&Error{Code: 999, Retry: true},
		&LoginRequest{CertDER: []byte{0x30}, Pad: make([]byte, MaxPadLen)},
		&LoginChallenge{SessionID: 0xfeedface},
		&LoginConfirm{},
		&LoginConfirm{Pad: make([]byte, 700)},
		&TunnelByVIP{VIP: netip.MustParseAddr("100.64.0.2")},
		&TunnelByVIP{VIP: netip.MustParseAddr("fd7a:115c:a1e0::2")},
		&VIPLookup{VIP: netip.MustParseAddr("100.64.0.2")},
		&VIPLookup{VIP: netip.MustParseAddr("fd7a:115c:a1e0::2")},
		&VIPHolder{VIP: netip.MustParseAddr("100.64.0.2"), FQDN: "bob.example.cyphonic"},
	}
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
