package messages

import (
	"bytes"
	"reflect"
	"testing"
	"time"
)

// Every decoder has a fuzz target. Each asserts that the decoder never
// panics, that it returns only this package's errors, and that anything it
// accepts re-encodes to something it decodes to the same value.

func checkErr(t *testing.T, err error) {
	t.Helper()
	if err != nil && !isOurs(err) {
		t.Fatalf("error %v wraps none of the sentinels", err)
	}
}

func FuzzPeekType(f *testing.F) {
	f.Add([]byte{byte(TypeData)})
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		pt, err := PeekType(b)
		checkErr(t, err)
		if err == nil && (!pt.Valid() || byte(pt) != b[0]) {
			t.Fatalf("PeekType(%x) = %v", b, pt)
		}
	})
}

func FuzzParseDataHeader(f *testing.F) {
	seed := make([]byte, DataHeaderLen+AEADOverhead+4)
	DataHeader{Type: TypeData, Flags: 1, Receiver: 2, Counter: 3}.Put(seed)
	f.Add(seed)
	seed = bytes.Clone(seed[:DataHeaderLen+AEADOverhead])
	DataHeader{Type: TypeKeepalive, Receiver: 1 << 31, Counter: 1 << 63}.Put(seed)
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseDataHeader(b)
		checkErr(t, err)
		if err != nil {
			return
		}
		out := make([]byte, DataHeaderLen)
		h.Put(out)
		if !bytes.Equal(out, b[:DataHeaderLen]) {
			t.Fatalf("re-encoded %x, input %x", out, b[:DataHeaderLen])
		}
	})
}

func FuzzParseHandshake(f *testing.F) {
	for _, h := range []HandshakeHeader{{Type: TypeHandshakeInit, Sender: 1}, {Type: TypeHandshakeResp, Sender: 2, Receiver: 3}} {
		b := make([]byte, h.Len()+32)
		h.Put(b)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, msg, err := ParseHandshake(b)
		checkErr(t, err)
		if err != nil {
			return
		}
		out := make([]byte, h.Len()+len(msg))
		copy(out[h.Put(out):], msg)
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoded %x, input %x", out, b)
		}
	})
}

func FuzzParseRelay(f *testing.F) {
	hdr := make([]byte, RelayHeaderLen)
	PutRelayHeader(hdr, RelayToken{7})
	f.Add(bytes.Clone(hdr))
	f.Add(append(bytes.Clone(hdr), byte(TypeData), 0, 0, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, inner, err := ParseRelay(b)
		checkErr(t, err)
		if err != nil {
			return
		}
		out := make([]byte, RelayHeaderLen+len(inner))
		copy(out[PutRelayHeader(out, tok):], inner)
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoded %x, input %x", out, b)
		}
	})
}

func FuzzParseRelayBind(f *testing.F) {
	b := make([]byte, RelayBindLen)
	PutRelayBindHeader(b, RelayToken{7}, 42)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseRelayBind(b)
		checkErr(t, err)
		if err != nil {
			return
		}
		out := make([]byte, RelayBindLen)
		copy(out[PutRelayBindHeader(out, m.Token, m.Counter):], m.MAC[:])
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoded %x, input %x", out, b)
		}
	})
}

func FuzzParseProbe(f *testing.F) {
	b := make([]byte, ProbeLen)
	Probe{ID: 1, Sender: 2}.Put(b)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseProbe(b)
		checkErr(t, err)
		if err != nil {
			return
		}
		out := make([]byte, ProbeLen)
		p.Put(out)
		if got, err := ParseProbe(out); err != nil || got != p {
			t.Fatalf("re-parse = %+v, %v; want %+v", got, err, p)
		}
	})
}

func FuzzParseProbeReply(f *testing.F) {
	for _, s := range []string{"192.0.2.1:1", "[2001:db8::1]:65535"} {
		b := make([]byte, ProbeReplyLen)
		ProbeReply{ID: 5, Observed: mustAddrPort(s)}.Put(b)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseProbeReply(b)
		checkErr(t, err)
		if err != nil {
			return
		}
		out := make([]byte, ProbeReplyLen)
		r.Put(out)
		if got, err := ParseProbeReply(out); err != nil || got != r {
			t.Fatalf("re-parse = %+v, %v; want %+v", got, err, r)
		}
	})
}

func FuzzParseAddrPort(f *testing.F) {
	b := make([]byte, AddrPortLen)
	PutAddrPort(b, mustAddrPort("[2001:db8::1]:443"))
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		ap, err := ParseAddrPort(b)
		checkErr(t, err)
		if err != nil {
			return
		}
		out := make([]byte, AddrPortLen)
		PutAddrPort(out, ap)
		if got, err := ParseAddrPort(out); err != nil || got != ap {
			t.Fatalf("re-parse = %v, %v; want %v", got, err, ap)
		}
	})
}

func FuzzParseSignaling(f *testing.F) {
	b := make([]byte, SignalingHeaderLen+AEADOverhead+8)
	SignalingHeader{SessionID: 9, Nonce: [24]byte{1, 2, 3}}.Put(b)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, ct, err := ParseSignaling(b)
		checkErr(t, err)
		if err != nil {
			return
		}
		out := make([]byte, SignalingHeaderLen+len(ct))
		copy(out[h.Put(out):], ct)
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoded %x, input %x", out, b)
		}
	})
}

func FuzzParseLogin(f *testing.F) {
	f.Add(append([]byte{byte(TypeLogin), 1, 2, 3}, make([]byte, LoginTrailerLen)...))
	f.Add([]byte{byte(TypeLoginReply), 1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, parse := range []func([]byte) ([]byte, error){ParseLogin, ParseLoginReply} {
			msg, err := parse(b)
			checkErr(t, err)
			if err != nil {
				continue
			}
			want := b[LoginHeaderLen:]
			if PacketType(b[0]) == TypeLogin {
				want = want[:len(want)-LoginTrailerLen]
			}
			if len(msg) == 0 || !bytes.Equal(msg, want) {
				t.Fatalf("message %x from %x", msg, b)
			}
		}
	})
}

func FuzzUnmarshal(f *testing.F) {
	for _, body := range samples() {
		env, err := NewEnvelope(testID, "alice.example.cyphonic", time.Unix(1, 2), body)
		if err != nil {
			f.Fatal(err)
		}
		wire, err := Marshal(env)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := Unmarshal(b)
		checkErr(t, err)
		if err != nil {
			return
		}
		wire, err := Marshal(env)
		if err != nil {
			t.Fatalf("Marshal of decoded envelope: %v", err)
		}
		env2, err := Unmarshal(wire)
		if err != nil {
			t.Fatalf("Unmarshal(Marshal(x)): %v", err)
		}
		if !reflect.DeepEqual(env, env2) {
			t.Fatalf("unstable: %+v then %+v", env, env2)
		}
		body, err := DecodeAny(env)
		checkErr(t, err)
		if err == nil {
			checkBodyStable(t, body)
		}
	})
}

// fuzzBody is the body of the per-type fuzz targets below.
func fuzzBody[T any, PT bodyPtr[T]](f *testing.F) {
	mt := PT(new(T)).MsgType()
	for _, s := range samples() {
		if s.MsgType() == mt {
			raw, err := EncodeBody(s)
			if err != nil {
				f.Fatal(err)
			}
			f.Add([]byte(raw))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeBody[T, PT](Envelope{Type: mt, Body: b})
		checkErr(t, err)
		if err == nil {
			checkBodyStable(t, PT(&v))
		}
	})
}

// checkBodyStable asserts decode(encode(v)) == v and that the encoding is a
// fixed point.
func checkBodyStable(t *testing.T, v Body) {
	t.Helper()
	raw, err := EncodeBody(v)
	if err != nil {
		t.Fatalf("EncodeBody(%+v): %v", v, err)
	}
	env := Envelope{Type: v.MsgType(), Body: raw}
	again, err := DecodeAny(env)
	if err != nil {
		t.Fatalf("decode(encode(%+v)): %v", v, err)
	}
	if !reflect.DeepEqual(again, v) {
		t.Fatalf("unstable: %+v then %+v", v, again)
	}
	raw2, _ := EncodeBody(again)
	if !bytes.Equal(raw, raw2) {
		t.Fatalf("encoding not a fixed point: %x then %x", raw, raw2)
	}
}

func FuzzLoginRequest(f *testing.F)    { fuzzBody[LoginRequest](f) }
func FuzzLoginReply(f *testing.F)      { fuzzBody[LoginReply](f) }
func FuzzLoginChallenge(f *testing.F)  { fuzzBody[LoginChallenge](f) }
func FuzzLoginConfirm(f *testing.F)    { fuzzBody[LoginConfirm](f) }
func FuzzKeyHandover(f *testing.F)     { fuzzBody[KeyHandover](f) }
func FuzzKeyHandoverAck(f *testing.F)  { fuzzBody[KeyHandoverAck](f) }
func FuzzRegister(f *testing.F)        { fuzzBody[Register](f) }
func FuzzRegisterReply(f *testing.F)   { fuzzBody[RegisterReply](f) }
func FuzzTunnelRequest(f *testing.F)   { fuzzBody[TunnelRequest](f) }
func FuzzTunnelByVIP(f *testing.F)     { fuzzBody[TunnelByVIP](f) }
func FuzzVIPLookup(f *testing.F)       { fuzzBody[VIPLookup](f) }
func FuzzVIPHolder(f *testing.F)       { fuzzBody[VIPHolder](f) }
func FuzzDirection(f *testing.F)       { fuzzBody[Direction](f) }
func FuzzDirectionAck(f *testing.F)    { fuzzBody[DirectionAck](f) }
func FuzzPath(f *testing.F)            { fuzzBody[Path](f) }
func FuzzRelayAlloc(f *testing.F)      { fuzzBody[RelayAlloc](f) }
func FuzzRelayAllocReply(f *testing.F) { fuzzBody[RelayAllocReply](f) }
func FuzzRelayKeyReply(f *testing.F)   { fuzzBody[RelayKeyReply](f) }
func FuzzKeepalive(f *testing.F)       { fuzzBody[Keepalive](f) }
func FuzzKeepaliveAck(f *testing.F)    { fuzzBody[KeepaliveAck](f) }
func FuzzLogout(f *testing.F)          { fuzzBody[Logout](f) }
func FuzzLogoutAck(f *testing.F)       { fuzzBody[LogoutAck](f) }
func FuzzPeerUpdate(f *testing.F)      { fuzzBody[PeerUpdate](f) }
func FuzzPeerUpdateAck(f *testing.F)   { fuzzBody[PeerUpdateAck](f) }
func FuzzDenyList(f *testing.F)        { fuzzBody[DenyList](f) }
func FuzzDenyListAck(f *testing.F)     { fuzzBody[DenyListAck](f) }
func FuzzError(f *testing.F)           { fuzzBody[Error](f) }

func FuzzParseCookieReply(f *testing.F) {
	b := make([]byte, CookieReplyLen)
	PutCookieReplyHeader(b, 7)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		rcv, body, err := ParseCookieReply(b)
		checkErr(t, err)
		if err != nil {
			return
		}
		out := make([]byte, CookieReplyLen)
		copy(out[PutCookieReplyHeader(out, rcv):], body)
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoded %x, input %x", out, b)
		}
	})
}

func FuzzSplitInitTrailer(f *testing.F) {
	f.Add(make([]byte, HandshakeInitHeaderLen+HandshakeTrailerLen+1))
	f.Fuzz(func(t *testing.T, b []byte) {
		pkt, tr, err := SplitInitTrailer(b)
		checkErr(t, err)
		if err != nil {
			return
		}
		if len(tr) != HandshakeTrailerLen || len(pkt) <= HandshakeInitHeaderLen || !bytes.Equal(append(bytes.Clone(pkt), tr...), b) {
			t.Fatalf("split %x into %x | %x", b, pkt, tr)
		}
	})
}

func FuzzParseUnknownIndex(f *testing.F) {
	seed := make([]byte, UnknownIndexLen)
	UnknownIndex{Receiver: 7, Counter: 1 << 40}.Put(seed)
	f.Add(seed)
	f.Add(seed[:UnknownIndexLen-1])
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := ParseUnknownIndex(b)
		checkErr(t, err)
		if err != nil {
			return
		}
		out := make([]byte, UnknownIndexLen)
		u.Put(out)
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoded %x, input %x", out, b)
		}
	})
}

func FuzzParseLoginCookie(f *testing.F) {
	b := make([]byte, LoginCookieLen)
	PutLoginCookieHeader(b)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		body, err := ParseLoginCookie(b)
		checkErr(t, err)
		if err != nil {
			return
		}
		out := make([]byte, LoginCookieLen)
		copy(out[PutLoginCookieHeader(out):], body)
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoded %x, input %x", out, b)
		}
	})
}
