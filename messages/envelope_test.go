package messages

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

var testID = MsgID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

func TestEveryMsgTypeHasSample(t *testing.T) {
	seen := map[MsgType]bool{}
	for _, b := range samples() {
		seen[b.MsgType()] = true
	}
	for mt := MsgType(0); mt < 255; mt++ {
		if mt.Valid() != seen[mt] {
			t.Errorf("%v: valid=%v but sampled=%v", mt, mt.Valid(), seen[mt])
		}
	}
}

// TestBodyRoundTrip sends every sample through the whole path: envelope,
// encode, decode, DecodeAny.
func TestBodyRoundTrip(t *testing.T) {
	now := time.Unix(1_700_000_000, 123)
	for _, body := range samples() {
		t.Run(body.MsgType().String(), func(t *testing.T) {
			env, err := NewEnvelope(testID, "alice.example.cyphonic", now, body)
			if err != nil {
				t.Fatalf("NewEnvelope: %v", err)
			}
			wire, err := Marshal(env)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			got, err := Unmarshal(wire)
			if err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !reflect.DeepEqual(got, env) {
				t.Fatalf("envelope = %+v, want %+v", got, env)
			}
			if !got.Time().Equal(now) {
				t.Errorf("Time() = %v, want %v", got.Time(), now)
			}
			decoded, err := DecodeAny(got)
			if err != nil {
				t.Fatalf("DecodeAny: %v", err)
			}
			if !reflect.DeepEqual(decoded, body) {
				t.Errorf("body = %+v, want %+v", decoded, body)
			}
			// The in-place encoder produces the same bytes.
			var enc Encoder
			inPlace, err := enc.EncodeMessage(testID, "alice.example.cyphonic", now.UnixNano(), body)
			if err != nil || !bytes.Equal(inPlace, wire) {
				t.Errorf("EncodeMessage = %x, %v; want %x", inPlace, err, wire)
			}
		})
	}
}

func TestDecodeBodyTyped(t *testing.T) {
	want := Register{Locals: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:1")}, IPv4: true, Port: 1}
	env, err := NewEnvelope(testID, "", time.Unix(0, 0), want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeBody[Register](env)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("DecodeBody = %+v, %v", got, err)
	}
	if _, err := DecodeBody[KeepaliveAck](env); !errors.Is(err, ErrWrongBody) {
		t.Errorf("DecodeBody wrong type err = %v, want ErrWrongBody", err)
	}
	// Empty bodies decode from an empty Body.
	if _, err := DecodeBody[Keepalive](Envelope{Type: MsgKeepalive}); err != nil {
		t.Errorf("empty keepalive: %v", err)
	}
	if _, err := DecodeBody[KeepaliveAck](Envelope{Type: MsgKeepaliveAck}); err == nil {
		t.Error("empty KeepaliveAck decoded")
	}
	// Trailing bytes after the body are rejected.
	env.Body = append(bytes.Clone(env.Body), 0x01)
	if _, err := DecodeBody[Register](env); !errors.Is(err, ErrMalformed) {
		t.Errorf("trailing err = %v, want ErrMalformed", err)
	}
}

func TestReplyKeepsID(t *testing.T) {
	req, err := NewEnvelope(NewMsgID(), "alice.example.cyphonic", time.Now(), TunnelRequest{PeerFQDN: "bob.example.cyphonic"})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := req.Reply("nms", time.Now(), &Error{Code: CodeUnknownFQDN})
	if err != nil {
		t.Fatal(err)
	}
	if resp.ID != req.ID || resp.Type != MsgError || resp.Sender != "nms" {
		t.Errorf("reply = %+v", resp)
	}
	body, err := DecodeAny(resp)
	if err != nil {
		t.Fatal(err)
	}
	var e *Error
	if err := error(body.(*Error)); !errors.As(err, &e) || e.Code != CodeUnknownFQDN {
		t.Errorf("error body = %v", body)
	}
}

func TestMsgID(t *testing.T) {
	a, b := NewMsgID(), NewMsgID()
	if a == b || a.IsZero() {
		t.Errorf("NewMsgID not random: %v %v", a, b)
	}
	if got := testID.String(); got != "0102030405060708090a0b0c0d0e0f10" {
		t.Errorf("String() = %q", got)
	}
}

func TestEnumStrings(t *testing.T) {
	tests := []struct {
		s    interface{ String() string }
		want string
	}{
		{MsgRegister, "register"}, {MsgError, "error"}, {MsgType(0), "MsgType(0)"}, {MsgType(200), "MsgType(200)"},
		{NATSymmetric, "symmetric"}, {NATType(9), "NATType(9)"},
		{PathHolePunch, "hole-punch"}, {PathKind(0), "PathKind(0)"},
		{CodeRateLimited, "rate-limited"}, {CodeCertFQDNMismatch, "cert-fqdn-mismatch"}, {ErrorCode(77), "ErrorCode(77)"},
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

// rawEnvelope encodes an envelope with arbitrary header values, bypassing
// the checks a well-behaved sender would make.
func rawEnvelope(t *testing.T, fields ...any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestUnmarshalRejects(t *testing.T) {
	id := testID[:]
	body := []byte{0x90}
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"not array", []byte{0x01}, ErrMalformed},
		{"5 fields", rawEnvelope(t, 1, 13, id, "a", 0), ErrMalformed},
		{"7 fields", rawEnvelope(t, 1, 13, id, "a", 0, msgpack.RawMessage(body), 1), ErrMalformed},
		{"version 2", rawEnvelope(t, 2, 13, id, "a", 0, msgpack.RawMessage(body)), ErrVersion},
		{"negative version", rawEnvelope(t, -1, 13, id, "a", 0, msgpack.RawMessage(body)), ErrInvalid},
		{"type 0", rawEnvelope(t, 1, 0, id, "a", 0, msgpack.RawMessage(body)), ErrUnknownMsgType},
		{"type 300", rawEnvelope(t, 1, 300, id, "a", 0, msgpack.RawMessage(body)), ErrInvalid},
		{"short id", rawEnvelope(t, 1, 13, id[:15], "a", 0, msgpack.RawMessage(body)), ErrInvalid},
		{"zero id", rawEnvelope(t, 1, 13, make([]byte, 16), "a", 0, msgpack.RawMessage(body)), ErrInvalid},
		{"id as string", rawEnvelope(t, 1, 13, string(id), "a", 0, msgpack.RawMessage(body)), ErrMalformed},
		{"sender as bin", rawEnvelope(t, 1, 13, id, []byte("a"), 0, msgpack.RawMessage(body)), ErrMalformed},
		{"bad sender", rawEnvelope(t, 1, 13, id, "a..b", 0, msgpack.RawMessage(body)), ErrInvalid},
		{"long sender", rawEnvelope(t, 1, 13, id, strings.Repeat("a", 254), 0, msgpack.RawMessage(body)), ErrTooLarge},
		{"no body", rawEnvelope(t, 1, 13, id, "a", 0, msgpack.RawMessage{0x92}), ErrTruncated},
		{"trailing", append(rawEnvelope(t, 1, 13, id, "a", 0, msgpack.RawMessage(body)), 0), ErrMalformed},
		{"too large", make([]byte, MaxEnvelopeLen+1), ErrTooLarge},
		// A str header claiming 4 GiB in a short input must fail before allocating.
		{"huge string", append(rawEnvelope(t, 1, 13, id)[:0], 0x96, 1, 13, 0xc4, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0xdb, 0xff, 0xff, 0xff, 0xff), ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Unmarshal(tt.b)
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			var fe *FieldError
			if err != nil && !errors.As(err, &fe) {
				t.Errorf("err %T is not a *FieldError", err)
			}
		})
	}
}

func TestUnmarshalEveryTruncation(t *testing.T) {
	for _, body := range samples() {
		env, err := NewEnvelope(testID, "alice.example.cyphonic", time.Unix(1, 0), body)
		if err != nil {
			t.Fatal(err)
		}
		wire, _ := Marshal(env)
		for n := range len(wire) {
			got, err := Unmarshal(wire[:n])
			if err == nil {
				// A prefix can only parse if the body parses as a shorter body.
				if _, err := DecodeAny(got); err == nil && n < len(wire) {
					t.Errorf("%v: prefix %d/%d decoded", body.MsgType(), n, len(wire))
				}
			}
		}
	}
}

// bodyEnv wraps a raw body (built with msgpack.Marshal of a slice) in an
// envelope of type mt.
func bodyEnv(t *testing.T, mt MsgType, fields ...any) Envelope {
	t.Helper()
	b, err := msgpack.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return Envelope{Version: Version, Type: mt, ID: testID, Body: b}
}

func TestBodyRejects(t *testing.T) {
	v4 := []byte{10, 0, 0, 1}
	v6 := netip.MustParseAddr("2001:db8::1").AsSlice()
	ap4 := []byte{10, 0, 0, 1, 0, 80}
	id := testID[:]
	id2 := append([]byte{0xff}, testID[1:]...)
	key := bytes.Repeat([]byte{7}, 32)
	key2 := bytes.Repeat([]byte{8}, 32)
	tooMany := make([]any, MaxAddrs+1)
	for i := range tooMany {
		tooMany[i] = ap4
	}
	tests := []struct {
		name string
		env  Envelope
		want error
	}{
		{"login empty cert", bodyEnv(t, MsgLoginRequest, []byte{}, "x", nil), ErrInvalid},
		{"login cert too big", bodyEnv(t, MsgLoginRequest, make([]byte, MaxCertLen+1), "x", nil), ErrTooLarge},
		{"login software utf8", bodyEnv(t, MsgLoginRequest, []byte{1}, "\xff", nil), ErrInvalid},
		{"login software long", bodyEnv(t, MsgLoginRequest, []byte{1}, strings.Repeat("x", MaxTextLen+1), nil), ErrTooLarge},
		{"reply vip6 is v4", bodyEnv(t, MsgLoginReply, 1, "a", v4, nil, nil, nil, nil, nil, 1), ErrInvalid},
		{"reply vip4 is v6", bodyEnv(t, MsgLoginReply, 1, "a", nil, v6, nil, nil, nil, nil, 1), ErrInvalid},
		{"reply vip 5 bytes", bodyEnv(t, MsgLoginReply, 1, "a", nil, []byte{1, 2, 3, 4, 5}, nil, nil, nil, nil, 1), ErrInvalid},
		{"reply prefix bits", bodyEnv(t, MsgLoginReply, 1, "a", nil, nil, nil, []byte{100, 64, 0, 0, 33}, nil, nil, 1), ErrInvalid},
		{"reply prefix host bits", bodyEnv(t, MsgLoginReply, 1, "a", nil, nil, nil, []byte{100, 64, 0, 1, 10}, nil, nil, 1), ErrInvalid},
		{"reply no fqdn", bodyEnv(t, MsgLoginReply, 1, "", nil, nil, nil, nil, nil, nil, 1), ErrInvalid},
		{"reply session overflow", bodyEnv(t, MsgLoginReply, uint64(1)<<32, "a", nil, nil, nil, nil, nil, nil, 1), ErrInvalid},
		{"reply session negative", bodyEnv(t, MsgLoginReply, -1, "a", nil, nil, nil, nil, nil, nil, 1), ErrInvalid},
		{"handover short key", bodyEnv(t, MsgKeyHandover, 1, "a", "s", make([]byte, 31), make([]byte, 32), 0), ErrInvalid},
		{"register too many", bodyEnv(t, MsgRegister, tooMany, true, true, 1, nil), ErrTooLarge},
		{"register huge list", Envelope{Type: MsgRegister, ID: testID, Body: []byte{0x95, 0xdd, 0xff, 0xff, 0xff, 0xff}}, ErrTooLarge},
		{"register zero addr", bodyEnv(t, MsgRegister, []any{[]byte{}}, true, true, 1, nil), ErrInvalid},
		{"register port zero", bodyEnv(t, MsgRegister, []any{[]byte{10, 0, 0, 1, 0, 0}}, true, true, 1, nil), ErrInvalid},
		{"register port overflow", bodyEnv(t, MsgRegister, nil, true, true, 70000, nil), ErrInvalid},
		{"register bool as int", bodyEnv(t, MsgRegister, nil, 1, true, 1, nil), ErrMalformed},
		{"register 4 fields", bodyEnv(t, MsgRegister, nil, true, true, 1), ErrMalformed},
		{"reply bad nat", bodyEnv(t, MsgRegisterReply, nil, 4, nil, nil), ErrInvalid},
		{"tunnel bad fqdn", bodyEnv(t, MsgTunnelRequest, "-bob"), ErrInvalid},
		{"tunnel empty fqdn", bodyEnv(t, MsgTunnelRequest, ""), ErrInvalid},
		{"by-vip no vip", bodyEnv(t, MsgTunnelByVIP, nil), ErrInvalid},
		{"by-vip 5 bytes", bodyEnv(t, MsgTunnelByVIP, []byte{100, 64, 0, 1, 1}), ErrInvalid},
		{"by-vip mapped v4", bodyEnv(t, MsgTunnelByVIP, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 100, 64, 0, 1}), ErrInvalid},
		{"by-vip 2 fields", bodyEnv(t, MsgTunnelByVIP, v4, v4), ErrMalformed},
		{"path kind 0", bodyEnv(t, MsgPath, "b", nil, nil, 0, nil, nil, false, id), ErrInvalid},
		{"path relay no ticket", bodyEnv(t, MsgPath, "b", nil, nil, 3, nil, nil, false, id), ErrInvalid},
		{"path zero tunnel", bodyEnv(t, MsgPath, "b", nil, nil, 1, nil, nil, false, make([]byte, 16)), ErrInvalid},
		{"ticket no trs", bodyEnv(t, MsgDirection, "b", nil, nil, 3, nil, []any{nil, nil, id, 0, key}, false, id), ErrInvalid},
		{"ticket trs4 is v6", bodyEnv(t, MsgDirection, "b", nil, nil, 3, nil, []any{append(v6, 0, 1), nil, id, 0, key}, false, id), ErrInvalid},
		{"ticket without bind key", bodyEnv(t, MsgDirection, "b", nil, nil, 3, nil, []any{nil, append(v6, 0, 1), id, 0}, false, id), ErrMalformed},
		{"ticket zero bind key", bodyEnv(t, MsgDirection, "b", nil, nil, 3, nil, []any{nil, append(v6, 0, 1), id, 0, make([]byte, 32)}, false, id), ErrInvalid},
		{"ticket short bind key", bodyEnv(t, MsgDirection, "b", nil, nil, 3, nil, []any{nil, append(v6, 0, 1), id, 0, key[:31]}, false, id), ErrInvalid},
		{"alloc same tokens", bodyEnv(t, MsgRelayAlloc, id, id, id, "a", "b", 0, key, key2), ErrInvalid},
		{"alloc without keys", bodyEnv(t, MsgRelayAlloc, id, id, id2, "a", "b", 0), ErrMalformed},
		{"alloc zero key", bodyEnv(t, MsgRelayAlloc, id, id, id2, "a", "b", 0, make([]byte, 32), key2), ErrInvalid},
		{"alloc same keys", bodyEnv(t, MsgRelayAlloc, id, id, id2, "a", "b", 0, key, key), ErrInvalid},
		{"keepalive not empty", bodyEnv(t, MsgKeepalive, 1), ErrMalformed},
		{"ack addr 7 bytes", bodyEnv(t, MsgKeepaliveAck, []byte{1, 2, 3, 4, 5, 6, 7}), ErrInvalid},
		{"error code overflow", bodyEnv(t, MsgError, 70000, "", false), ErrInvalid},
		{"nested too deep garbage", Envelope{Type: MsgPeerUpdate, ID: testID, Body: bytes.Repeat([]byte{0x91}, 1000)}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeAny(tt.env)
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"alice.example.cyphonic", true},
		{"nms", true},
		{"as-1", true},
		{"_srv.x", true},
		{"A.B", true},
		{strings.Repeat("a", 63) + ".b", true},
		{strings.Repeat("a.", 126) + "a", true}, // 253 bytes
		{"", false},
		{".a", false},
		{"a.", false},
		{"a..b", false},
		{"-a", false},
		{"a-", false},
		{"a-.b", false},
		{"a b", false},
		{"a/b", false},
		{strings.Repeat("a", 64), false},
		{strings.Repeat("a.", 127), false},
		{"ü.example", false},
	}
	for _, tt := range tests {
		if got := ValidName(tt.s); got != tt.want {
			t.Errorf("ValidName(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

func TestFieldErrorMessage(t *testing.T) {
	_, err := DecodeAny(bodyEnv(t, MsgTunnelRequest, "-bob"))
	if got, want := err.Error(), "messages: TunnelRequest.peer: invalid value"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// TestLibraryEntryPoints checks the codecs also work when msgpack itself
// drives them (msgpack.Marshal/Unmarshal, and a reader that is not a
// *bytes.Reader, which takes the copying read path).
func TestLibraryEntryPoints(t *testing.T) {
	env, err := NewEnvelope(testID, "nms", time.Unix(5, 0), samples()[11]) // Direction with a relay ticket
	if err != nil {
		t.Fatal(err)
	}
	wire, err := msgpack.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	ours, _ := Marshal(env)
	if !bytes.Equal(wire, ours) {
		t.Errorf("msgpack.Marshal = %x, Marshal = %x", wire, ours)
	}
	var got Envelope
	if err := msgpack.Unmarshal(wire, &got); err != nil || !reflect.DeepEqual(got, env) {
		t.Fatalf("msgpack.Unmarshal = %+v, %v", got, err)
	}
	var dir Direction
	d := msgpack.NewDecoder(iotest.OneByteReader(bytes.NewReader(env.Body)))
	if err := d.Decode(&dir); err != nil || !reflect.DeepEqual(&dir, samples()[11]) {
		t.Errorf("slow-reader decode = %+v, %v", dir, err)
	}
}
