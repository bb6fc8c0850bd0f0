package messages

import (
	"net/netip"

	"github.com/vmihailenco/msgpack/v5"
)

// Bodies of the tunnel establishment, relay and mobility flows.

// TunnelRequest (node -> NMS): "I want to talk to PeerFQDN".
//
//	[peer]
type TunnelRequest struct {
	PeerFQDN string
}

func (TunnelRequest) MsgType() MsgType { return MsgTunnelRequest }

func (m TunnelRequest) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(1)
	w.str(m.PeerFQDN)
	return w.err
}

func (m *TunnelRequest) DecodeMsgpack(d *msgpack.Decoder) error {
	r := rd{d: d, msg: "TunnelRequest"}
	r.arrayLen(1)
	m.PeerFQDN = r.fqdn("peer")
	return r.err
}

// TunnelByVIP (node -> NMS): "I want to talk to whoever holds VIP" — a
// packet for that overlay address met no tunnel. NMS answers as it does a
// TunnelRequest for the holder's FQDN (a Path, which names it), or with
// CodeUnknownFQDN when no node holds the VIP.
//
//	[vip]
type TunnelByVIP struct {
	VIP netip.Addr
}

func (TunnelByVIP) MsgType() MsgType { return MsgTunnelByVIP }

func (m TunnelByVIP) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(1)
	w.addr(m.VIP)
	return w.err
}

func (m *TunnelByVIP) DecodeMsgpack(d *msgpack.Decoder) error {
	r := rd{d: d, msg: "TunnelByVIP"}
	r.arrayLen(1)
	m.VIP = r.addr("vip")
	r.check("vip", m.VIP.IsValid() && !m.VIP.Is4In6())
	return r.err
}

// VIPLookup (node -> NMS): "who holds VIP?" — a lookup only, for a PTR
// query on the node's resolver: NMS answers VIPHolder, or CodeUnknownFQDN
// when no node holds the VIP (CodeCertRevoked when its holder is revoked),
// and sets nothing up (a TunnelByVIP would open a tunnel). It tells the
// asker nothing a TunnelByVIP or a name lookup would not.
//
//	[vip]
type VIPLookup struct {
	VIP netip.Addr
}

func (VIPLookup) MsgType() MsgType { return MsgVIPLookup }

func (m VIPLookup) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(1)
	w.addr(m.VIP)
	return w.err
}

func (m *VIPLookup) DecodeMsgpack(d *msgpack.Decoder) error {
	r := rd{d: d, msg: "VIPLookup"}
	r.arrayLen(1)
	m.VIP = r.addr("vip")
	r.check("vip", m.VIP.IsValid() && !m.VIP.Is4In6())
	return r.err
}

// VIPHolder (NMS -> node): the answer to a VIPLookup, naming the VIP it
// was asked about and the node that holds it.
//
//	[vip, fqdn]
type VIPHolder struct {
	VIP  netip.Addr
	FQDN string
}

func (VIPHolder) MsgType() MsgType { return MsgVIPHolder }

func (m VIPHolder) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(2)
	w.addr(m.VIP)
	w.str(m.FQDN)
	return w.err
}

func (m *VIPHolder) DecodeMsgpack(d *msgpack.Decoder) error {
	r := rd{d: d, msg: "VIPHolder"}
	r.arrayLen(2)
	m.VIP = r.addr("vip")
	r.check("vip", m.VIP.IsValid() && !m.VIP.Is4In6())
	m.FQDN = r.fqdn("fqdn")
	return r.err
}

// PathInfo is what NMS tells each side of a tunnel: Direction to the peer
// that was asked for, Path to the node that asked. Both sides get the same
// TunnelID.
//
//	[peer, vip6, vip4, kind, endpoints ([]addrport), relay (nil or RelayTicket), initiator, tunnel (bin 16)]
type PathInfo struct {
	PeerFQDN  string
	PeerVIP6  netip.Addr
	PeerVIP4  netip.Addr
	Kind      PathKind
	Endpoints []netip.AddrPort // the peer's candidate endpoints, best first
	Relay     *RelayTicket     // required when Kind is PathRelay
	Initiator bool             // this side sends the handshake init
	TunnelID  MsgID
}

func (m *PathInfo) encode(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(8)
	w.str(m.PeerFQDN)
	w.addr(m.PeerVIP6)
	w.addr(m.PeerVIP4)
	w.uint(uint64(m.Kind))
	w.addrPorts(m.Endpoints)
	if m.Relay == nil {
		w.nil()
	} else {
		m.Relay.encode(&w)
	}
	w.bool(m.Initiator)
	w.bin(m.TunnelID[:])
	return w.err
}

func (m *PathInfo) decode(d *msgpack.Decoder, msg string) error {
	r := rd{d: d, msg: msg}
	r.arrayLen(8)
	m.PeerFQDN = r.fqdn("peer")
	m.PeerVIP6 = r.addr("vip6")
	r.check("vip6", is6(m.PeerVIP6))
	m.PeerVIP4 = r.addr("vip4")
	r.check("vip4", is4(m.PeerVIP4))
	m.Kind = PathKind(r.u8("kind"))
	r.check("kind", m.Kind.Valid())
	m.Endpoints = r.addrPorts("endpoints")
	m.Relay = nil
	if r.err == nil && !r.isNil("relay") && r.err == nil {
		m.Relay = new(RelayTicket)
		m.Relay.decode(&r)
	}
	r.check("relay", m.Kind != PathRelay || m.Relay != nil)
	m.Initiator = r.bool("initiator")
	r.fixed("tunnel", m.TunnelID[:])
	r.check("tunnel", !m.TunnelID.IsZero())
	if r.err != nil {
		m.Relay = nil
	}
	return r.err
}

// Direction (NMS -> the peer that was asked for): expect a tunnel.
// It is answered with a DirectionAck.
type Direction PathInfo

func (Direction) MsgType() MsgType                         { return MsgDirection }
func (m Direction) EncodeMsgpack(e *msgpack.Encoder) error { return (*PathInfo)(&m).encode(e) }
func (m *Direction) DecodeMsgpack(d *msgpack.Decoder) error {
	return (*PathInfo)(m).decode(d, "Direction")
}

// Path (NMS -> the node that asked): the path to its peer.
type Path PathInfo

func (Path) MsgType() MsgType                          { return MsgPath }
func (m Path) EncodeMsgpack(e *msgpack.Encoder) error  { return (*PathInfo)(&m).encode(e) }
func (m *Path) DecodeMsgpack(d *msgpack.Decoder) error { return (*PathInfo)(m).decode(d, "Path") }

// DirectionAck (peer -> NMS).
//
//	[tunnel (bin 16), ok, endpoints ([]addrport)]
type DirectionAck struct {
	TunnelID  MsgID
	OK        bool
	Endpoints []netip.AddrPort // the peer's current endpoints, if it knows better than NMS
}

func (DirectionAck) MsgType() MsgType { return MsgDirectionAck }

func (m DirectionAck) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(3)
	w.bin(m.TunnelID[:])
	w.bool(m.OK)
	w.addrPorts(m.Endpoints)
	return w.err
}

func (m *DirectionAck) DecodeMsgpack(d *msgpack.Decoder) error {
	r := rd{d: d, msg: "DirectionAck"}
	r.arrayLen(3)
	r.fixed("tunnel", m.TunnelID[:])
	r.check("tunnel", !m.TunnelID.IsZero())
	m.OK = r.bool("ok")
	m.Endpoints = r.addrPorts("endpoints")
	return r.err
}

// RelayTicket lets a node use one side of a relay session: it sends relay
// packets with Token to TRS at TRS4 or TRS6 (whichever its IP version
// reaches; at least one is set), and binds its endpoint there with
// RelayBind packets MACed under BindKey. The ticket travels only inside
// sealed signaling: BindKey is a secret.
//
//	[trs4 (addrport), trs6 (addrport), token (bin 16), expires, bindkey (bin 32)]
type RelayTicket struct {
	TRS4    netip.AddrPort // IPv4 address of TRS, or zero
	TRS6    netip.AddrPort // IPv6 address of TRS, or zero
	Token   RelayToken
	Expires int64 // unix nanoseconds
	BindKey RelayBindKey
}

// RelayBindKey authenticates one side's RelayBind packets. NMS makes one
// per side of every relay session and gives it only to that side's node
// and to TRS, so neither node can move the other's endpoint.
type RelayBindKey [32]byte

// IsZero reports whether k is unset.
func (k *RelayBindKey) IsZero() bool { return *k == RelayBindKey{} }

func (t *RelayTicket) encode(w *wr) {
	w.arrayLen(5)
	w.addrPort(t.TRS4)
	w.addrPort(t.TRS6)
	w.bin(t.Token[:])
	w.int(t.Expires)
	w.bin(t.BindKey[:])
}

func (t *RelayTicket) decode(r *rd) {
	r.arrayLen(5)
	t.TRS4 = r.addrPort("relay.trs4")
	r.check("relay.trs4", is4(t.TRS4.Addr()))
	t.TRS6 = r.addrPort("relay.trs6")
	r.check("relay.trs6", is6(t.TRS6.Addr()))
	r.check("relay", t.TRS4.IsValid() || t.TRS6.IsValid())
	r.fixed("relay.token", t.Token[:])
	t.Expires = r.int("relay.expires")
	r.fixed("relay.bindkey", t.BindKey[:])
	r.check("relay.bindkey", !t.BindKey.IsZero())
}

// RelayAlloc (NMS -> TRS) allocates a relay session joining two sides.
// KeyA and KeyB are the sides' bind keys (secret: the gateway between cloud
// processes carries it over mutual TLS).
//
//	[session (bin 16), tokena (bin 16), tokenb (bin 16), fqdna, fqdnb, expires, keya (bin 32), keyb (bin 32)]
type RelayAlloc struct {
	Session        MsgID // names the relay session (the tunnel's ID)
	TokenA, TokenB RelayToken
	FQDNA, FQDNB   string // for logs and metrics
	Expires        int64  // unix nanoseconds
	KeyA, KeyB     RelayBindKey
}

func (RelayAlloc) MsgType() MsgType { return MsgRelayAlloc }

func (m RelayAlloc) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(8)
	w.bin(m.Session[:])
	w.bin(m.TokenA[:])
	w.bin(m.TokenB[:])
	w.str(m.FQDNA)
	w.str(m.FQDNB)
	w.int(m.Expires)
	w.bin(m.KeyA[:])
	w.bin(m.KeyB[:])
	return w.err
}

func (m *RelayAlloc) DecodeMsgpack(d *msgpack.Decoder) error {
	r := rd{d: d, msg: "RelayAlloc"}
	r.arrayLen(8)
	r.fixed("session", m.Session[:])
	r.check("session", !m.Session.IsZero())
	r.fixed("tokena", m.TokenA[:])
	r.fixed("tokenb", m.TokenB[:])
	r.check("tokenb", m.TokenA != m.TokenB)
	m.FQDNA = r.fqdn("fqdna")
	m.FQDNB = r.fqdn("fqdnb")
	m.Expires = r.int("expires")
	r.fixed("keya", m.KeyA[:])
	r.check("keya", !m.KeyA.IsZero())
	r.fixed("keyb", m.KeyB[:])
	r.check("keyb", !m.KeyB.IsZero() && m.KeyA != m.KeyB)
	return r.err
}

// RelayAllocReply (TRS -> NMS).
//
//	[session (bin 16), ok]
type RelayAllocReply struct {
	Session MsgID
	OK      bool
}

func (RelayAllocReply) MsgType() MsgType { return MsgRelayAllocReply }

func (m RelayAllocReply) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(2)
	w.bin(m.Session[:])
	w.bool(m.OK)
	return w.err
}

func (m *RelayAllocReply) DecodeMsgpack(d *msgpack.Decoder) error {
	r := rd{d: d, msg: "RelayAllocReply"}
	r.arrayLen(2)
	r.fixed("session", m.Session[:])
	r.check("session", !m.Session.IsZero())
	m.OK = r.bool("ok")
	return r.err
}

// PeerUpdate (NMS -> node): PeerFQDN moved; its endpoints are now these.
// Answered with PeerUpdateAck.
//
//	[peer, endpoints ([]addrport)]
type PeerUpdate struct {
	PeerFQDN  string
	Endpoints []netip.AddrPort
}

func (PeerUpdate) MsgType() MsgType { return MsgPeerUpdate }

func (m PeerUpdate) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(2)
	w.str(m.PeerFQDN)
	w.addrPorts(m.Endpoints)
	return w.err
}

func (m *PeerUpdate) DecodeMsgpack(d *msgpack.Decoder) error {
	r := rd{d: d, msg: "PeerUpdate"}
	r.arrayLen(2)
	m.PeerFQDN = r.fqdn("peer")
	m.Endpoints = r.addrPorts("endpoints")
	return r.err
}

// PeerUpdateAck (node -> NMS).
//
//	[]
type PeerUpdateAck struct{}

func (PeerUpdateAck) MsgType() MsgType                        { return MsgPeerUpdateAck }
func (PeerUpdateAck) EncodeMsgpack(e *msgpack.Encoder) error  { return encodeEmpty(e) }
func (*PeerUpdateAck) DecodeMsgpack(d *msgpack.Decoder) error { return decodeEmpty(d, "PeerUpdateAck") }

// RelayKey (NMS -> TRS in another process) asks for the key the TRS opens
// its stateless relay tickets under (cloud/relay/ticket.go), so that the
// NMS mints them itself and a tunnel setup needs no RelayAlloc. Added in
// session 6 (issue 14); a TRS that does not know it drops it, and the NMS
// goes on allocating.
//
//	[]
type RelayKey struct{}

func (RelayKey) MsgType() MsgType { return MsgRelayKey }

func (m RelayKey) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(0)
	return w.err
}

func (m *RelayKey) DecodeMsgpack(d *msgpack.Decoder) error {
	r := rd{d: d, msg: "RelayKey"}
	r.arrayLen(0)
	return r.err
}

// RelayKeyReply (TRS -> NMS): the ticket key. Secret, like RelayAlloc's
// bind keys: the gateway between cloud processes carries it over mutual
// TLS, and only an NMS may ask (svc.Rules).
//
//	[key (bin 32)]
type RelayKeyReply struct {
	Key [32]byte
}

func (RelayKeyReply) MsgType() MsgType { return MsgRelayKeyReply }

func (m RelayKeyReply) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(1)
	w.bin(m.Key[:])
	return w.err
}

func (m *RelayKeyReply) DecodeMsgpack(d *msgpack.Decoder) error {
	r := rd{d: d, msg: "RelayKeyReply"}
	r.arrayLen(1)
	r.fixed("key", m.Key[:])
	r.check("key", m.Key != [32]byte{})
	return r.err
}
