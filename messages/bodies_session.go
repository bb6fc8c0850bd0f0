package messages

import (
	"log/slog"
	"net/netip"

	"github.com/vmihailenco/msgpack/v5"
)

// Bodies of the login, registration and session-keeping flows. Each is a
// positional msgpack array; the field order below is the wire order, and the
// names in the comments are the ones FieldError reports.

// LoginRequest (node -> AS) is the payload of the login Noise message 1.
// The node's FQDN comes from the certificate. Pad is zeros that make the
// login packet at least LoginMinLen long, so that the AS never answers a
// (possibly spoofed) login with more bytes than it received.
//
//	[cert (bin, 1..MaxCertLen), software (str), pad (bin, 0..MaxPadLen)]
type LoginRequest struct {
	CertDER  []byte // the node's X.509 certificate, DER
	Software string // e.g. "cyphonic-go/0.1 linux/amd64", for logs
	Pad      []byte
}

func (LoginRequest) MsgType() MsgType { return MsgLoginRequest }

func (m LoginRequest) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(3)
	w.bin(m.CertDER)
	w.str(m.Software)
	w.bin(m.Pad)
	return w.err
}

func (m *LoginRequest) DecodeMsgpack(d *msgpack.Decoder) error {
	r := rd{d: d, msg: "LoginRequest"}
	r.arrayLen(3)
	m.CertDER = r.bytes("cert", MaxCertLen)
	if r.err == nil && len(m.CertDER) == 0 {
		r.fail("cert", ErrInvalid)
	}
	m.Software = r.text("software", MaxTextLen)
	m.Pad = r.bytes("pad", MaxPadLen)
	return r.err
}

// LoginChallenge (AS -> node) is the payload of the login Noise message 2
// when the AS accepts the certificate: nothing is committed yet. The node
// proves it holds its static key by answering with a LoginConfirm sealed
// on the new session (only the key's holder can read message 2 and so
// derive the session keys); SessionID goes in that packet's header.
//
//	[session]
type LoginChallenge struct {
	SessionID uint32
}

func (LoginChallenge) MsgType() MsgType { return MsgLoginChallenge }

func (m LoginChallenge) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(1)
	w.uint(uint64(m.SessionID))
	return w.err
}

func (m *LoginChallenge) DecodeMsgpack(d *msgpack.Decoder) error {
	r := rd{d: d, msg: "LoginChallenge"}
	r.arrayLen(1)
	m.SessionID = r.u32("session")
	r.check("session", m.SessionID != 0)
	return r.err
}

// LoginConfirm (node -> AS) is sealed on the session a LoginChallenge
// named, under the login's message ID; it is what makes the AS commit the
// login. Pad makes the packet at least as long as the sealed LoginReply
// that answers it.
//
//	[pad (bin, 0..MaxPadLen)]
type LoginConfirm struct {
	Pad []byte
}

func (LoginConfirm) MsgType() MsgType { return MsgLoginConfirm }

func (m LoginConfirm) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(1)
	w.bin(m.Pad)
	return w.err
}

func (m *LoginConfirm) DecodeMsgpack(d *msgpack.Decoder) error {
	r := rd{d: d, msg: "LoginConfirm"}
	r.arrayLen(1)
	m.Pad = r.bytes("pad", MaxPadLen)
	return r.err
}

// LoginReply (AS -> node) answers a LoginConfirm, sealed on the new session.
//
//	[session, fqdn, vip6, vip4, prefix6, prefix4, nms ([]addrport), natprobe ([]addrport), ttl]
//
// In an active-active cloud nms and natprobe list the AS's own process's
// addresses first and then, in one run per process and in the same order
// in both lists, up to two of each other live process's (each at most
// MaxAddrs in all). A node uses the first of its family, and moves its
// session to the next process's on losing its own, with a registration
// instead of a login (the session is in the store the processes share).
// The format is unchanged: a node that knows only the first entries just
// never moves.
type LoginReply struct {
	SessionID  uint32 // goes in every sealed signaling packet's header
	FQDN       string // the node's name, from its certificate
	VIP6       netip.Addr
	VIP4       netip.Addr
	Prefix6    netip.Prefix     // the overlay's IPv6 prefix (route it to the TUN)
	Prefix4    netip.Prefix     // the overlay's IPv4 prefix
	NMS        []netip.AddrPort // where to send signaling, in order of preference
	NATProbe   []netip.AddrPort // the second observation point for NAT discovery
	SessionTTL uint32           // seconds; log in again before it runs out
}

func (LoginReply) MsgType() MsgType { return MsgLoginReply }

func (m LoginReply) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(9)
	w.uint(uint64(m.SessionID))
	w.str(m.FQDN)
	w.addr(m.VIP6)
	w.addr(m.VIP4)
	w.prefix(m.Prefix6)
	w.prefix(m.Prefix4)
	w.addrPorts(m.NMS)
	w.addrPorts(m.NATProbe)
	w.uint(uint64(m.SessionTTL))
	return w.err
}

func (m *LoginReply) DecodeMsgpack(d *msgpack.Decoder) error {
	r := rd{d: d, msg: "LoginReply"}
	r.arrayLen(9)
	m.SessionID = r.u32("session")
	m.FQDN = r.fqdn("fqdn")
	m.VIP6 = r.addr("vip6")
	r.check("vip6", is6(m.VIP6))
	m.VIP4 = r.addr("vip4")
	r.check("vip4", is4(m.VIP4))
	m.Prefix6 = r.prefix("prefix6")
	r.check("prefix6", is6(m.Prefix6.Addr()))
	m.Prefix4 = r.prefix("prefix4")
	r.check("prefix4", is4(m.Prefix4.Addr()))
	m.NMS = r.addrPorts("nms")
	m.NATProbe = r.addrPorts("natprobe")
	m.SessionTTL = r.u32("ttl")
	return r.err
}

// KeyHandover (AS -> NMS) gives NMS the node's signaling session keys. It
// travels only between cloud services. LogValue hides the keys.
//
//	[session, fqdn, serial, n2c (bin 32), c2n (bin 32), expires]
type KeyHandover struct {
	SessionID   uint32
	FQDN        string
	CertSerial  string // for revocation checks at tunnel setup
	NodeToCloud [32]byte
	CloudToNode [32]byte
	Expires     int64 // unix nanoseconds
}

func (KeyHandover) MsgType() MsgType { return MsgKeyHandover }

// LogValue keeps the keys out of logs.
func (m KeyHandover) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Any("session", m.SessionID),
		slog.String("fqdn", m.FQDN),
		slog.String("serial", m.CertSerial),
		slog.Int64("expires", m.Expires),
	)
}

func (m KeyHandover) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(6)
	w.uint(uint64(m.SessionID))
	w.str(m.FQDN)
	w.str(m.CertSerial)
	w.bin(m.NodeToCloud[:])
	w.bin(m.CloudToNode[:])
	w.int(m.Expires)
	return w.err
}

func (m *KeyHandover) DecodeMsgpack(d *msgpack.Decoder) error {
	r := rd{d: d, msg: "KeyHandover"}
	r.arrayLen(6)
	m.SessionID = r.u32("session")
	m.FQDN = r.fqdn("fqdn")
	m.CertSerial = r.text("serial", MaxTextLen)
	r.fixed("n2c", m.NodeToCloud[:])
	r.fixed("c2n", m.CloudToNode[:])
	m.Expires = r.int("expires")
	return r.err
}

// KeyHandoverAck (NMS -> AS): NMS holds the keys; AS may answer the node.
//
//	[session]
type KeyHandoverAck struct {
	SessionID uint32
}

func (KeyHandoverAck) MsgType() MsgType { return MsgKeyHandoverAck }

func (m KeyHandoverAck) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(1)
	w.uint(uint64(m.SessionID))
	return w.err
}

func (m *KeyHandoverAck) DecodeMsgpack(d *msgpack.Decoder) error {
	r := rd{d: d, msg: "KeyHandoverAck"}
	r.arrayLen(1)
	m.SessionID = r.u32("session")
	return r.err
}

// Register (node -> NMS) records the node's locator. NMS takes the public
// mapping from the packet's source address, not from the body.
//
//	[locals ([]addrport), ipv4, ipv6, port, observed ([]addrport)]
type Register struct {
	Locals        []netip.AddrPort // the node's own addresses and ports
	IPv4, IPv6    bool             // which IP versions the node has
	Port          uint16           // the node's UDP port
	ProbeObserved []netip.AddrPort // what the second observation point saw
}

func (Register) MsgType() MsgType { return MsgRegister }

func (m Register) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(5)
	w.addrPorts(m.Locals)
	w.bool(m.IPv4)
	w.bool(m.IPv6)
	w.uint(uint64(m.Port))
	w.addrPorts(m.ProbeObserved)
	return w.err
}

func (m *Register) DecodeMsgpack(d *msgpack.Decoder) error {
	r := rd{d: d, msg: "Register"}
	r.arrayLen(5)
	m.Locals = r.addrPorts("locals")
	m.IPv4 = r.bool("ipv4")
	m.IPv6 = r.bool("ipv6")
	m.Port = r.u16("port")
	m.ProbeObserved = r.addrPorts("observed")
	return r.err
}

// RegisterReply (NMS -> node).
//
//	[observed (addrport), nat, vip6, vip4]
type RegisterReply struct {
	Observed netip.AddrPort // the source address NMS saw
	NAT      NATType
	VIP6     netip.Addr
	VIP4     netip.Addr
}

func (RegisterReply) MsgType() MsgType { return MsgRegisterReply }

func (m RegisterReply) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(4)
	w.addrPort(m.Observed)
	w.uint(uint64(m.NAT))
	w.addr(m.VIP6)
	w.addr(m.VIP4)
	return w.err
}

func (m *RegisterReply) DecodeMsgpack(d *msgpack.Decoder) error {
	r := rd{d: d, msg: "RegisterReply"}
	r.arrayLen(4)
	m.Observed = r.addrPort("observed")
	m.NAT = NATType(r.u8("nat"))
	r.check("nat", m.NAT.Valid())
	m.VIP6 = r.addr("vip6")
	r.check("vip6", is6(m.VIP6))
	m.VIP4 = r.addr("vip4")
	r.check("vip4", is4(m.VIP4))
	return r.err
}

// Keepalive (node -> NMS) holds the NAT mapping towards the cloud open.
//
//	[]
type Keepalive struct{}

func (Keepalive) MsgType() MsgType                        { return MsgKeepalive }
func (Keepalive) EncodeMsgpack(e *msgpack.Encoder) error  { return encodeEmpty(e) }
func (*Keepalive) DecodeMsgpack(d *msgpack.Decoder) error { return decodeEmpty(d, "Keepalive") }

// KeepaliveAck (NMS -> node) tells the node its current public mapping, so
// it notices when the mapping moves.
//
//	[observed (addrport)]
type KeepaliveAck struct {
	Observed netip.AddrPort
}

func (KeepaliveAck) MsgType() MsgType { return MsgKeepaliveAck }

func (m KeepaliveAck) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(1)
	w.addrPort(m.Observed)
	return w.err
}

func (m *KeepaliveAck) DecodeMsgpack(d *msgpack.Decoder) error {
	r := rd{d: d, msg: "KeepaliveAck"}
	r.arrayLen(1)
	m.Observed = r.addrPort("observed")
	return r.err
}

// Logout (node -> cloud) ends the session.
//
//	[]
type Logout struct{}

func (Logout) MsgType() MsgType                        { return MsgLogout }
func (Logout) EncodeMsgpack(e *msgpack.Encoder) error  { return encodeEmpty(e) }
func (*Logout) DecodeMsgpack(d *msgpack.Decoder) error { return decodeEmpty(d, "Logout") }

// LogoutAck (cloud -> node).
//
//	[]
type LogoutAck struct{}

func (LogoutAck) MsgType() MsgType                        { return MsgLogoutAck }
func (LogoutAck) EncodeMsgpack(e *msgpack.Encoder) error  { return encodeEmpty(e) }
func (*LogoutAck) DecodeMsgpack(d *msgpack.Decoder) error { return decodeEmpty(d, "LogoutAck") }

// Error answers any request that failed; it carries the request's ID. It
// implements error so callers can return it and errors.As it.
//
//	[code, message, retry]
type Error struct {
	Code    ErrorCode
	Message string // human-readable detail, for logs
	Retry   bool   // the request may succeed if repeated later
}

func (Error) MsgType() MsgType { return MsgError }

func (m *Error) Error() string {
	if m.Message == "" {
		return "cyphonic: " + m.Code.String()
	}
	return "cyphonic: " + m.Code.String() + ": " + m.Message
}

func (m Error) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(3)
	w.uint(uint64(m.Code))
	w.str(m.Message)
	w.bool(m.Retry)
	return w.err
}

func (m *Error) DecodeMsgpack(d *msgpack.Decoder) error {
	r := rd{d: d, msg: "Error"}
	r.arrayLen(3)
	m.Code = ErrorCode(r.u16("code"))
	m.Message = r.text("message", MaxTextLen)
	m.Retry = r.bool("retry")
	return r.err
}

func encodeEmpty(e *msgpack.Encoder) error { return e.EncodeArrayLen(0) }

func decodeEmpty(d *msgpack.Decoder, msg string) error {
	r := rd{d: d, msg: msg}
	r.arrayLen(0)
	return r.err
}

// check fails field with ErrInvalid unless ok.
func (r *rd) check(field string, ok bool) {
	if r.err == nil && !ok {
		r.fail(field, ErrInvalid)
	}
}

// is6 accepts the zero Addr or an IPv6 (not IPv4-mapped) address.
func is6(a netip.Addr) bool { return !a.IsValid() || a.Is6() && !a.Is4In6() }

// is4 accepts the zero Addr or an IPv4 address.
func is4(a netip.Addr) bool { return !a.IsValid() || a.Is4() }
