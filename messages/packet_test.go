package messages

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

func TestPacketTypeString(t *testing.T) {
	tests := []struct {
		t    PacketType
		want string
	}{
		{TypeSignaling, "signaling"},
		{TypeLogin, "login"},
		{TypeLoginReply, "login-reply"},
		{TypeHandshakeInit, "handshake-init"},
		{TypeHandshakeResp, "handshake-resp"},
		{TypeData, "data"},
		{TypeRelay, "relay"},
		{TypeProbe, "probe"},
		{TypeProbeReply, "probe-reply"},
		{TypeKeepalive, "keepalive"},
		{TypeRelayBind, "relay-bind"},
		{TypeCookieReply, "cookie-reply"},
		{TypeLoginCookie, "login-cookie"},
		{TypeUnknownIndex, "unknown-index"},
		{0, "PacketType(0)"},
		{200, "PacketType(200)"},
		{255, "PacketType(255)"},
	}
	for _, tt := range tests {
		if got := tt.t.String(); got != tt.want {
			t.Errorf("PacketType(%d).String() = %q, want %q", uint8(tt.t), got, tt.want)
		}
	}
}

func TestPeekType(t *testing.T) {
	if _, err := PeekType(nil); !errors.Is(err, ErrTruncated) {
		t.Errorf("PeekType(nil) err = %v, want ErrTruncated", err)
	}
	if _, err := PeekType([]byte{0}); !errors.Is(err, ErrBadType) {
		t.Errorf("PeekType(0) err = %v, want ErrBadType", err)
	}
	if got, err := PeekType([]byte{byte(TypeData), 1, 2}); err != nil || got != TypeData {
		t.Errorf("PeekType(data) = %v, %v", got, err)
	}
}

func TestDataHeaderRoundTrip(t *testing.T) {
	tests := []DataHeader{
		{Type: TypeData, Receiver: 1, Counter: 0},
		{Type: TypeData, Flags: 0x80, Receiver: 0xdeadbeef, Counter: 1<<64 - 1},
		{Type: TypeKeepalive, Receiver: 42, Counter: 7},
	}
	for _, h := range tests {
		b := make([]byte, DataHeaderLen+AEADOverhead)
		h.Put(b)
		got, err := ParseDataHeader(b)
		if err != nil {
			t.Fatalf("ParseDataHeader(%+v): %v", h, err)
		}
		if got != h {
			t.Errorf("round trip = %+v, want %+v", got, h)
		}
	}
}

func TestDataHeaderWire(t *testing.T) {
	b := make([]byte, DataHeaderLen)
	DataHeader{Type: TypeData, Flags: 3, Receiver: 0x01020304, Counter: 0x05060708090a0b0c}.Put(b)
	want := []byte{6, 3, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	if !bytes.Equal(b, want) {
		t.Errorf("wire = %x, want %x", b, want)
	}
}

func TestParseDataHeaderErrors(t *testing.T) {
	valid := make([]byte, DataHeaderLen+AEADOverhead)
	DataHeader{Type: TypeData, Receiver: 9}.Put(valid)
	with := func(i int, v byte) []byte {
		b := bytes.Clone(valid)
		b[i] = v
		return b
	}
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"header only", valid[:DataHeaderLen], ErrTruncated},
		{"short tag", valid[:DataHeaderLen+AEADOverhead-1], ErrTruncated},
		{"too large", make([]byte, MaxPacket+1), ErrTooLarge},
		{"handshake type", with(0, byte(TypeHandshakeInit)), ErrBadType},
		{"zero type", with(0, 0), ErrBadType},
		{"reserved 2", with(2, 1), ErrReserved},
		{"reserved 3", with(3, 0x80), ErrReserved},
	}
	for _, tt := range tests {
		if _, err := ParseDataHeader(tt.b); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestHandshakeRoundTrip(t *testing.T) {
	noise := []byte("noise message bytes")
	tests := []HandshakeHeader{
		{Type: TypeHandshakeInit, Sender: 0xabcdef01},
		{Type: TypeHandshakeResp, Sender: 5, Receiver: 0xabcdef01},
	}
	for _, h := range tests {
		b := make([]byte, h.Len()+len(noise))
		n := h.Put(b)
		copy(b[n:], noise)
		got, msg, err := ParseHandshake(b)
		if err != nil {
			t.Fatalf("ParseHandshake(%+v): %v", h, err)
		}
		if got != h || !bytes.Equal(msg, noise) {
			t.Errorf("round trip = %+v %q, want %+v %q", got, msg, h, noise)
		}
	}
}

func TestParseHandshakeErrors(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"init no noise", []byte{4, 0, 0, 0, 1, 2, 3, 4}, ErrTruncated},
		{"resp no noise", []byte{5, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}, ErrTruncated},
		{"resp short", []byte{5, 0, 0, 0, 1, 2, 3, 4, 5}, ErrTruncated},
		{"data type", []byte{6, 0, 0, 0, 1, 2, 3, 4, 5}, ErrBadType},
		{"reserved", []byte{4, 0, 1, 0, 1, 2, 3, 4, 5}, ErrReserved},
		{"too large", append([]byte{4}, make([]byte, MaxPacket)...), ErrTooLarge},
	}
	for _, tt := range tests {
		if _, _, err := ParseHandshake(tt.b); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestRelayRoundTrip(t *testing.T) {
	token := RelayToken{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	data := make([]byte, DataHeaderLen+AEADOverhead)
	DataHeader{Type: TypeData, Receiver: 1}.Put(data)
	for _, inner := range [][]byte{nil, data, {byte(TypeHandshakeInit), 0}, {byte(TypeProbe)}} {
		b := make([]byte, RelayHeaderLen+len(inner))
		n := PutRelayHeader(b, token)
		copy(b[n:], inner)
		gotTok, gotInner, err := ParseRelay(b)
		if err != nil {
			t.Fatalf("ParseRelay: %v", err)
		}
		if gotTok != token || !bytes.Equal(gotInner, inner) {
			t.Errorf("round trip = %x %x, want %x %x", gotTok, gotInner, token, inner)
		}
	}
}

func TestParseRelayErrors(t *testing.T) {
	hdr := make([]byte, RelayHeaderLen)
	PutRelayHeader(hdr, RelayToken{1})
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"short token", hdr[:RelayHeaderLen-1], ErrTruncated},
		{"wrong type", append([]byte{byte(TypeData)}, hdr[1:]...), ErrBadType},
		{"nested relay", append(bytes.Clone(hdr), hdr...), ErrBadType},
		{"inner signaling", append(bytes.Clone(hdr), byte(TypeSignaling)), ErrBadType},
		{"inner login", append(bytes.Clone(hdr), byte(TypeLogin)), ErrBadType},
		{"inner garbage", append(bytes.Clone(hdr), 0xff), ErrBadType},
		{"too large", append(bytes.Clone(hdr), make([]byte, MaxPacket)...), ErrTooLarge},
	}
	for _, tt := range tests {
		if _, _, err := ParseRelay(tt.b); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestRelayBind(t *testing.T) {
	token := RelayToken{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	b := make([]byte, RelayBindLen)
	if n := PutRelayBindHeader(b, token, 0x0102030405060708); n != RelayBindMACOffset {
		t.Fatalf("PutRelayBindHeader = %d, want %d", n, RelayBindMACOffset)
	}
	copy(b[RelayBindMACOffset:], bytes.Repeat([]byte{0xee}, RelayBindMACLen))
	want := append([]byte{byte(TypeRelayBind)}, token[:]...)
	want = append(want, 1, 2, 3, 4, 5, 6, 7, 8)
	want = append(want, bytes.Repeat([]byte{0xee}, RelayBindMACLen)...)
	if !bytes.Equal(b, want) {
		t.Fatalf("bind %x, want %x", b, want)
	}
	m, err := ParseRelayBind(b)
	if err != nil || m.Token != token || m.Counter != 0x0102030405060708 || m.MAC != [RelayBindMACLen]byte(bytes.Repeat([]byte{0xee}, RelayBindMACLen)) {
		t.Fatalf("ParseRelayBind = %+v, %v", m, err)
	}
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"no mac", b[:RelayBindMACOffset], ErrTruncated},
		{"one byte short", b[:RelayBindLen-1], ErrTruncated},
		{"trailing byte", append(bytes.Clone(b), 0), ErrTooLarge},
		{"relay frame", append([]byte{byte(TypeRelay)}, b[1:]...), ErrBadType},
	}
	for _, tt := range tests {
		if _, err := ParseRelayBind(tt.b); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, _, err := ParseRelay(b); !errors.Is(err, ErrBadType) {
		t.Errorf("ParseRelay accepted a bind: %v", err)
	}
}

func TestProbeRoundTrip(t *testing.T) {
	p := Probe{ID: 0x0102030405060708, Sender: 77}
	b := make([]byte, ProbeLen)
	for i := range b {
		b[i] = 0xee // Put must clear the padding
	}
	if n := p.Put(b); n != ProbeLen {
		t.Fatalf("Put = %d, want %d", n, ProbeLen)
	}
	if !bytes.Equal(b[13:], make([]byte, ProbeLen-13)) {
		t.Errorf("padding not zero: %x", b[13:])
	}
	got, err := ParseProbe(b)
	if err != nil || got != p {
		t.Errorf("ParseProbe = %+v, %v; want %+v", got, err, p)
	}
	// Longer (padded) probes are accepted.
	if got, err := ParseProbe(append(b, make([]byte, 100)...)); err != nil || got != p {
		t.Errorf("padded ParseProbe = %+v, %v", got, err)
	}
	if _, err := ParseProbe(b[:13]); !errors.Is(err, ErrTruncated) {
		t.Errorf("unpadded probe err = %v, want ErrTruncated (no amplification)", err)
	}
	b[0] = byte(TypeProbeReply)
	if _, err := ParseProbe(b); !errors.Is(err, ErrBadType) {
		t.Errorf("wrong type err = %v, want ErrBadType", err)
	}
}

func TestProbeReplyRoundTrip(t *testing.T) {
	for _, s := range []string{"192.0.2.1:4500", "[2001:db8::1]:65535", "[fe80::1]:1"} {
		r := ProbeReply{ID: 99, Observed: netip.MustParseAddrPort(s)}
		b := make([]byte, ProbeReplyLen)
		r.Put(b)
		got, err := ParseProbeReply(b)
		if err != nil || got != r {
			t.Errorf("%s: ParseProbeReply = %+v, %v; want %+v", s, got, err, r)
		}
	}
}

func TestParseProbeReplyErrors(t *testing.T) {
	good := make([]byte, ProbeReplyLen)
	ProbeReply{ID: 1, Observed: netip.MustParseAddrPort("192.0.2.1:1")}.Put(good)
	zeroPort := make([]byte, ProbeReplyLen)
	ProbeReply{ID: 1, Observed: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), 0)}.Put(zeroPort)
	unspec := make([]byte, ProbeReplyLen)
	ProbeReply{ID: 1, Observed: netip.MustParseAddrPort("[::]:5")}.Put(unspec)
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"short", good[:ProbeReplyLen-1], ErrTruncated},
		{"long", append(bytes.Clone(good), 0), ErrTooLarge},
		{"type", append([]byte{byte(TypeProbe)}, good[1:]...), ErrBadType},
		{"port zero", zeroPort, ErrInvalid},
		{"unspecified", unspec, ErrInvalid},
	}
	for _, tt := range tests {
		if _, err := ParseProbeReply(tt.b); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestSignalingRoundTrip(t *testing.T) {
	h := SignalingHeader{SessionID: 0x11223344}
	for i := range h.Nonce {
		h.Nonce[i] = byte(i)
	}
	ct := bytes.Repeat([]byte{0xaa}, AEADOverhead+10)
	b := make([]byte, SignalingHeaderLen+len(ct))
	n := h.Put(b)
	copy(b[n:], ct)
	if b[0] != byte(TypeSignaling) || b[1] != 0x11 || b[4] != 0x44 {
		t.Errorf("AAD bytes = %x", b[:SignalingAADLen])
	}
	got, gotCT, err := ParseSignaling(b)
	if err != nil || got != h || !bytes.Equal(gotCT, ct) {
		t.Errorf("ParseSignaling = %+v %x %v", got, gotCT, err)
	}
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"no tag", b[:SignalingHeaderLen+AEADOverhead-1], ErrTruncated},
		{"type", append([]byte{byte(TypeData)}, b[1:]...), ErrBadType},
		{"too large", make([]byte, MaxSignalingPacket+1), ErrTooLarge},
	}
	for _, tt := range tests {
		if _, _, err := ParseSignaling(tt.b); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestLoginFraming(t *testing.T) {
	login := append([]byte{byte(TypeLogin), 1, 2, 3}, make([]byte, LoginTrailerLen)...)
	msg, err := ParseLogin(login)
	if err != nil || !bytes.Equal(msg, []byte{1, 2, 3}) {
		t.Errorf("ParseLogin = %x, %v", msg, err)
	}
	if _, err := ParseLogin(login[:1+LoginTrailerLen]); !errors.Is(err, ErrTruncated) {
		t.Errorf("login of only a trailer: err = %v", err)
	}
	msg, err = ParseLoginReply([]byte{byte(TypeLoginReply), 9})
	if err != nil || !bytes.Equal(msg, []byte{9}) {
		t.Errorf("ParseLoginReply = %x, %v", msg, err)
	}
	if _, err := ParseLogin([]byte{byte(TypeLogin)}); !errors.Is(err, ErrTruncated) {
		t.Errorf("empty login err = %v", err)
	}
	if _, err := ParseLogin([]byte{byte(TypeLoginReply), 1}); !errors.Is(err, ErrBadType) {
		t.Errorf("reply as login err = %v", err)
	}
	if _, err := ParseLoginReply([]byte{byte(TypeLogin), 1}); !errors.Is(err, ErrBadType) {
		t.Errorf("login as reply err = %v", err)
	}
}

func TestAddrPort18(t *testing.T) {
	b := make([]byte, AddrPortLen)
	PutAddrPort(b, netip.MustParseAddrPort("10.1.2.3:258"))
	want := []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3, 1, 2}
	if !bytes.Equal(b, want) {
		t.Errorf("wire = %x, want %x", b, want)
	}
	if _, err := ParseAddrPort(b[:17]); !errors.Is(err, ErrTruncated) {
		t.Errorf("short err = %v", err)
	}
}

func TestLoginCookieFraming(t *testing.T) {
	b := make([]byte, LoginCookieLen)
	n := PutLoginCookieHeader(b)
	for i := range b[n:] {
		b[n+i] = byte(i)
	}
	body, err := ParseLoginCookie(b)
	if err != nil || !bytes.Equal(body, b[LoginCookieHeaderLen:]) || len(body) != LoginCookieBodyLen {
		t.Fatalf("ParseLoginCookie = %x, %v", body, err)
	}
	reserved := bytes.Clone(b)
	reserved[2] = 1
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"short", b[:LoginCookieLen-1], ErrTruncated},
		{"long", append(bytes.Clone(b), 0), ErrTooLarge},
		{"reserved", reserved, ErrReserved},
		{"wrong type", append([]byte{byte(TypeCookieReply)}, b[1:]...), ErrBadType},
	}
	for _, tt := range tests {
		if _, err := ParseLoginCookie(tt.b); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
}
