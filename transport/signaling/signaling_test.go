package signaling

import (
	"bytes"
	"crypto/x509"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/rootca"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/transport/cookie"
	"github.com/cyphonic/cyphonic-go/transport/handshake"
)

func testKeys() Keys {
	var k Keys
	for i := range k.NodeToCloud {
		k.NodeToCloud[i] = byte(i)
		k.CloudToNode[i] = byte(100 + i)
	}
	return k
}

func pair(t testing.TB, id uint32) (node, cloud *Session) {
	t.Helper()
	n, err := NewNodeSession(id, testKeys())
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCloudSession(id, testKeys())
	if err != nil {
		t.Fatal(err)
	}
	return n, c
}

func TestSessionRoundTrip(t *testing.T) {
	node, cloud := pair(t, 7)
	now := time.Now()
	var enc messages.Encoder
	id := messages.NewMsgID()
	pkt, err := node.SealMessage(nil, &enc, id, "alice.example.cyphonic", now, messages.TunnelRequest{PeerFQDN: "bob.example.cyphonic"})
	if err != nil {
		t.Fatal(err)
	}
	if sid, err := PeekSession(pkt); err != nil || sid != 7 {
		t.Fatalf("PeekSession = %d, %v", sid, err)
	}
	env, err := cloud.OpenEnvelope(nil, pkt, now)
	if err != nil {
		t.Fatal(err)
	}
	if env.ID != id || env.Type != messages.MsgTunnelRequest {
		t.Fatalf("got %s %s", env.Type, env.ID)
	}
	req, err := messages.DecodeBody[messages.TunnelRequest](env)
	if err != nil || req.PeerFQDN != "bob.example.cyphonic" {
		t.Fatalf("body %+v, %v", req, err)
	}
	// A node cannot open what it sealed itself: the directions use different keys.
	if _, err := node.Open(nil, pkt); !errors.Is(err, ErrOpen) {
		t.Fatalf("node opened its own packet: %v", err)
	}
	// Random nonces: sealing the same envelope twice gives different packets.
	pkt2, _ := node.SealMessage(nil, &enc, id, "alice.example.cyphonic", now, messages.TunnelRequest{PeerFQDN: "bob.example.cyphonic"})
	if bytes.Equal(pkt, pkt2) {
		t.Fatal("two seals of one envelope are identical")
	}
}

func TestSessionRejects(t *testing.T) {
	node, cloud := pair(t, 7)
	other, _ := pair(t, 8)
	now := time.Now()
	var enc messages.Encoder
	good, err := node.SealMessage(nil, &enc, messages.NewMsgID(), "a.example", now, messages.Keepalive{})
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 1; return b }
	otherPkt, _ := other.SealMessage(nil, &enc, messages.NewMsgID(), "a.example", now, messages.Keepalive{})
	stale, _ := node.SealMessage(nil, &enc, messages.NewMsgID(), "a.example", now.Add(-3*time.Minute), messages.Keepalive{})
	future, _ := node.SealMessage(nil, &enc, messages.NewMsgID(), "a.example", now.Add(3*time.Minute), messages.Keepalive{})
	tests := []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, messages.ErrTruncated},
		{"short", good[:messages.SignalingHeaderLen+3], messages.ErrTruncated},
		{"wrong type", flip(0), messages.ErrBadType},
		{"session byte flipped", flip(4), ErrWrongSession},
		{"nonce flipped", flip(10), ErrOpen},
		{"ciphertext flipped", flip(len(good) - 20), ErrOpen},
		{"tag flipped", flip(len(good) - 1), ErrOpen},
		{"other session's key", append([]byte{good[0], 0, 0, 0, 7}, otherPkt[5:]...), ErrOpen},
		{"stale", stale, ErrStale},
		{"future", future, ErrStale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := cloud.OpenEnvelope(nil, tt.pkt, now); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestNewSessionRejectsZeroID(t *testing.T) {
	if _, err := NewNodeSession(0, testKeys()); err == nil {
		t.Fatal("session ID 0 accepted")
	}
}

func TestRetryDelay(t *testing.T) {
	r := Retry{Initial: time.Second, Max: 5 * time.Second, Attempts: 5}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second}
	for i, w := range want {
		d, ok := r.Delay(i + 1)
		if !ok || d != w {
			t.Fatalf("Delay(%d) = %v, %v; want %v", i+1, d, ok, w)
		}
	}
	if _, ok := r.Delay(5); ok {
		t.Fatal("Delay after the last attempt")
	}
	if _, ok := (Retry{}).Delay(0); ok {
		t.Fatal("zero Retry retries")
	}
	if got := r.Total(); got != 12*time.Second {
		t.Errorf("Total = %v, want 12s (1+2+4+5)", got)
	}
	if got := DefaultRetry().Total(); got != 11500*time.Millisecond {
		t.Errorf("DefaultRetry().Total = %v, want 11.5s, as its comment says", got)
	}
	if got := (Retry{}).Total(); got != 0 {
		t.Errorf("zero Retry Total = %v", got)
	}
}

// pkiEnv is a CA with an AS identity and node identities.
type pkiEnv struct {
	ca *rootca.CA
	as *pki.Identity
	v  *pki.Verifier // node side: accepts only the AS
}

func newPKI(t testing.TB) *pkiEnv {
	t.Helper()
	ca, err := rootca.Init(t.TempDir(), "test overlay", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	as, err := ca.Issue(pki.RoleAS, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	v, err := pki.NewVerifier(ca.Cert, pki.RoleAS)
	if err != nil {
		t.Fatal(err)
	}
	return &pkiEnv{ca: ca, as: as, v: v}
}

func (p *pkiEnv) nodeConfig(t testing.TB, fqdn string) handshake.Config {
	t.Helper()
	id, err := p.ca.Issue(pki.RoleNode, fqdn, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return handshake.Config{
		Static:  handshake.StaticKey{Private: id.NoiseStatic.Private, Public: id.NoiseStatic.Public},
		CertDER: id.CertDER,
		Verify: func(der []byte) (string, [32]byte, error) {
			peer, err := p.v.Verify(der, pki.RoleAS.ServiceFQDN(), time.Now())
			if err != nil {
				return "", [32]byte{}, err
			}
			return peer.FQDN, peer.NoiseStatic, nil
		},
	}
}

// asConfig extracts the identity without policy, as the package comment advises.
func (p *pkiEnv) asConfig() handshake.Config {
	return handshake.Config{
		Static:  handshake.StaticKey{Private: p.as.NoiseStatic.Private, Public: p.as.NoiseStatic.Public},
		CertDER: p.as.CertDER,
		Verify: func(der []byte) (string, [32]byte, error) {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return "", [32]byte{}, err
			}
			var k [32]byte
			for _, e := range c.Extensions {
				if e.Id.Equal(pki.OIDNoiseStatic) && len(e.Value) == 34 {
					copy(k[:], e.Value[2:])
				}
			}
			return c.Subject.CommonName, k, nil
		},
	}
}

func TestLoginAccept(t *testing.T) {
	p := newPKI(t)
	const fqdn = "alice.example.cyphonic"
	now := time.Now()
	l, err := StartLogin(p.nodeConfig(t, fqdn), pki.RoleAS.ServiceFQDN(), fqdn, messages.LoginRequest{Software: "test"}, now)
	if err != nil {
		t.Fatal(err)
	}
	msg1 := l.Packet()
	if len(msg1) < messages.LoginMinLen {
		t.Fatalf("login packet of %d bytes, want at least %d", len(msg1), messages.LoginMinLen)
	}
	a, err := ReadLogin(p.asConfig(), msg1)
	if err != nil {
		t.Fatal(err)
	}
	if a.Envelope.ID != l.ID() || a.Envelope.Sender != fqdn || a.Identity != fqdn || !bytes.Equal(a.Request.CertDER, a.CertDER) {
		t.Fatalf("attempt %+v", a.Envelope)
	}
	// A retransmission reads as the same request.
	again, err := ReadLogin(p.asConfig(), l.Packet())
	if err != nil || again.Envelope.ID != l.ID() {
		t.Fatalf("retransmission: %v", err)
	}
	if _, err := l.Finish(msg1, now); !errors.Is(err, ErrLoginState) {
		t.Fatalf("Finish before the challenge: %v", err)
	}
	msg2, cloudKeys, err := a.Challenge(42, "as", now)
	if err != nil {
		t.Fatal(err)
	}
	if len(msg2) > len(msg1) {
		t.Fatalf("challenge of %d bytes answers a login of %d", len(msg2), len(msg1))
	}
	confirm, err := l.Confirm(msg2, now)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Confirmed() || !bytes.Equal(l.Packet(), confirm) || len(confirm) < messages.LoginMinLen {
		t.Fatalf("confirmation of %d bytes, Packet switched: %v", len(confirm), bytes.Equal(l.Packet(), confirm))
	}
	cloud, err := NewCloudSession(42, cloudKeys)
	if err != nil {
		t.Fatal(err)
	}
	if err := OpenConfirm(cloud, nil, confirm, l.ID(), now); err != nil {
		t.Fatalf("AS cannot open the confirmation: %v", err)
	}
	if err := OpenConfirm(cloud, nil, confirm, messages.NewMsgID(), now); !errors.Is(err, ErrNotLogin) {
		t.Fatalf("confirmation accepted for another login: %v", err)
	}
	reply := messages.LoginReply{SessionID: 42, FQDN: fqdn, SessionTTL: 60,
		VIP6: netip.MustParseAddr("fd00::1"), VIP4: netip.MustParseAddr("100.64.0.1"),
		Prefix6: netip.MustParsePrefix("fd00::/48"), Prefix4: netip.MustParsePrefix("100.64.0.0/10")}
	sealed, err := cloud.SealMessage(nil, messages.NewEncoder(), l.ID(), "as", now, reply)
	if err != nil {
		t.Fatal(err)
	}
	res, err := l.Finish(sealed, now)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reply.SessionID != 42 || res.Reply.FQDN != fqdn || res.Keys != cloudKeys {
		t.Fatalf("result %+v", res.Reply)
	}
	var enc messages.Encoder
	pkt, err := res.Session.SealMessage(nil, &enc, messages.NewMsgID(), fqdn, now, messages.Keepalive{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cloud.OpenEnvelope(nil, pkt, now); err != nil {
		t.Fatalf("cloud cannot open the node's packet: %v", err)
	}
}

// TestLoginReplyFitsConfirm: the largest LoginReply the AS can seal is no
// larger than the confirmation it answers, so the AS never has to choose
// between amplifying and not answering a real node.
func TestLoginReplyFitsConfirm(t *testing.T) {
	node, cloud := pair(t, 7)
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61)
	var aps []netip.AddrPort
	for i := range messages.MaxAddrs {
		aps = append(aps, netip.AddrPortFrom(netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:ff00").Next(), uint16(65535-i)))
	}
	reply := messages.LoginReply{SessionID: 0xffffffff, FQDN: long,
		VIP6: netip.MustParseAddr("fd00:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), VIP4: netip.MustParseAddr("100.127.255.255"),
		Prefix6: netip.MustParsePrefix("fd00:ffff:ffff::/48"), Prefix4: netip.MustParsePrefix("100.64.0.0/10"),
		NMS: aps, NATProbe: aps, SessionTTL: 0xffffffff}
	sealed, err := cloud.SealMessage(nil, messages.NewEncoder(), messages.NewMsgID(), "as", time.Now(), reply)
	if err != nil {
		t.Fatal(err)
	}
	confirm, err := sealPadded(node, messages.NewMsgID(), "a.example", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed) > len(confirm) {
		t.Fatalf("largest LoginReply %d bytes, confirmation %d", len(sealed), len(confirm))
	}
}

func TestLoginRefuse(t *testing.T) {
	p := newPKI(t)
	const fqdn = "bob.example.cyphonic"
	l, err := StartLogin(p.nodeConfig(t, fqdn), pki.RoleAS.ServiceFQDN(), fqdn, messages.LoginRequest{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a, err := ReadLogin(p.asConfig(), l.Packet())
	if err != nil {
		t.Fatal(err)
	}
	pkt, err := a.Refuse(messages.Error{Code: messages.CodeCertRevoked, Message: "revoked"}, "as", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.Confirm(pkt, time.Now())
	var e *messages.Error
	if !errors.As(err, &e) || e.Code != messages.CodeCertRevoked {
		t.Fatalf("Confirm = %v, want a cert-revoked *messages.Error", err)
	}
}

func TestLoginRejectsGarbage(t *testing.T) {
	p := newPKI(t)
	const fqdn = "carol.example.cyphonic"
	now := time.Now()
	l, err := StartLogin(p.nodeConfig(t, fqdn), pki.RoleAS.ServiceFQDN(), fqdn, messages.LoginRequest{}, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, junk := range [][]byte{nil, {byte(messages.TypeLoginReply)}, append([]byte{byte(messages.TypeLoginReply)}, make([]byte, 300)...)} {
		if _, err := l.Confirm(junk, now); err == nil {
			t.Fatalf("garbage challenge accepted: %x", junk)
		}
	}
	// The genuine challenge still works after garbage, and garbage after it
	// does not end the login either.
	a, err := ReadLogin(p.asConfig(), l.Packet())
	if err != nil {
		t.Fatal(err)
	}
	msg2, keys, err := a.Challenge(9, "as", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Confirm(msg2, now); err != nil {
		t.Fatal(err)
	}
	cloud, _ := NewCloudSession(9, keys)
	var otherKeys Keys
	otherKeys.CloudToNode[0] = 1
	other, _ := NewCloudSession(9, otherKeys)
	forged, _ := other.SealMessage(nil, messages.NewEncoder(), l.ID(), "as", now, messages.LoginReply{SessionID: 9, FQDN: fqdn})
	for _, junk := range [][]byte{nil, forged, msg2} {
		if _, err := l.Finish(junk, now); err == nil {
			t.Fatalf("garbage reply accepted: %x", junk)
		}
	}
	wrong, _ := cloud.SealMessage(nil, messages.NewEncoder(), messages.NewMsgID(), "as", now, messages.Keepalive{})
	if _, err := l.Finish(wrong, now); !errors.Is(err, ErrWrongReply) {
		t.Fatalf("reply to another request: %v", err)
	}
	refusal, _ := cloud.SealMessage(nil, messages.NewEncoder(), l.ID(), "as", now, messages.Error{Code: messages.CodeVIPExhausted})
	var e *messages.Error
	if _, err := l.Finish(refusal, now); !errors.As(err, &e) || e.Code != messages.CodeVIPExhausted {
		t.Fatalf("sealed refusal: %v", err)
	}
}

func FuzzOpen(f *testing.F) {
	node, cloud := pair(f, 7)
	var enc messages.Encoder
	good, _ := node.SealMessage(nil, &enc, messages.NewMsgID(), "a.example", time.Now(), messages.Keepalive{})
	f.Add(good)
	f.Add([]byte{1, 0, 0, 0, 7})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = cloud.OpenEnvelope(nil, b, time.Now())
		_, _ = PeekSession(b)
	})
}

func FuzzReadLogin(f *testing.F) {
	p := newPKI(f)
	l, err := StartLogin(p.nodeConfig(f, "a.example.cyphonic"), pki.RoleAS.ServiceFQDN(), "a.example.cyphonic", messages.LoginRequest{}, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(l.Packet())
	f.Add([]byte{byte(messages.TypeLogin)})
	cfg := p.asConfig()
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ReadLogin(cfg, b)
		if err == nil {
			_, _ = a.Refuse(messages.Error{Code: messages.CodeBadRequest}, "as", time.Now())
		}
	})
}

func BenchmarkSealOpen(b *testing.B) {
	node, cloud := pair(b, 7)
	var enc messages.Encoder
	now := time.Now()
	env, _ := enc.EncodeMessage(messages.NewMsgID(), "alice.example.cyphonic", now.UnixNano(), messages.TunnelRequest{PeerFQDN: "bob.example.cyphonic"})
	env = bytes.Clone(env)
	pkt := make([]byte, 0, 512)
	plain := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		pkt = node.Seal(pkt[:0], env)
		var err error
		plain, err = cloud.Open(plain[:0], pkt)
		if err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzLoginAnswers feeds arbitrary packets to each step that reads network
// input during a login: the node's Confirm (a challenge) and Finish (the
// sealed reply), and the AS's OpenConfirm.
func FuzzLoginAnswers(f *testing.F) {
	p := newPKI(f)
	const fqdn = "a.example.cyphonic"
	now := time.Now()
	start := func() *Login {
		l, err := StartLogin(p.nodeConfig(f, fqdn), pki.RoleAS.ServiceFQDN(), fqdn, messages.LoginRequest{}, now)
		if err != nil {
			f.Fatal(err)
		}
		return l
	}
	l := start()
	a, err := ReadLogin(p.asConfig(), l.Packet())
	if err != nil {
		f.Fatal(err)
	}
	msg2, keys, err := a.Challenge(5, "as", now)
	if err != nil {
		f.Fatal(err)
	}
	confirm, err := l.Confirm(msg2, now)
	if err != nil {
		f.Fatal(err)
	}
	cloud, _ := NewCloudSession(5, keys)
	reply, _ := cloud.SealMessage(nil, messages.NewEncoder(), l.ID(), "as", now, messages.LoginReply{SessionID: 5, FQDN: fqdn})
	f.Add(msg2)
	f.Add(confirm)
	f.Add(reply)
	fresh := start()
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = fresh.Confirm(b, now) // leaves fresh waiting unless b is its genuine challenge
		_, _ = l.Finish(b, now)
		_ = OpenConfirm(cloud, nil, b, l.ID(), now)
	})
}

// TestLoginCookie: a loaded AS's cookie gives the login a mac2 valid for
// the node's address only; the packet before mac2 stays the same (the AS
// recognises retransmissions by it); a cookie made for another login, or a
// replay of the first, never counts as a first cookie.
func TestLoginCookie(t *testing.T) {
	p := newPKI(t)
	const fqdn = "alice.example.cyphonic"
	now := time.Now()
	l, err := StartLogin(p.nodeConfig(t, fqdn), pki.RoleAS.ServiceFQDN(), fqdn, messages.LoginRequest{Software: "test"}, now)
	if err != nil {
		t.Fatal(err)
	}
	other, err := StartLogin(p.nodeConfig(t, "bob.example.cyphonic"), pki.RoleAS.ServiceFQDN(), "bob.example.cyphonic", messages.LoginRequest{}, now)
	if err != nil {
		t.Fatal(err)
	}
	as := cookie.NewChecker(pki.RoleAS.ServiceFQDN(), nil)
	src := netip.MustParseAddrPort("192.0.2.7:4242")
	plain := l.Packet()
	if !as.CheckMAC1(plain) {
		t.Fatal("login packet without a valid mac1")
	}
	if as.CheckMAC2(plain, src, now) {
		t.Fatal("mac2 valid before any cookie")
	}
	if cookie.NewChecker("nms.cyphonic.internal", nil).CheckMAC1(plain) {
		t.Fatal("mac1 valid for a service that is not the AS")
	}
	answer := func(pkt []byte) []byte {
		b := make([]byte, messages.LoginCookieHeaderLen, messages.LoginCookieLen)
		messages.PutLoginCookieHeader(b)
		b, err := as.Reply(b, pkt, src, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != messages.LoginCookieLen {
			t.Fatalf("login cookie of %d bytes, want %d", len(b), messages.LoginCookieLen)
		}
		return b
	}
	if _, err := l.TakeCookie(answer(other.Packet()), now); err == nil {
		t.Fatal("took a cookie made for another login")
	}
	reply := answer(plain)
	first, err := l.TakeCookie(reply, now)
	if err != nil || !first {
		t.Fatalf("TakeCookie = %v, %v; want the first cookie", first, err)
	}
	cooked := l.Packet()
	if !as.CheckMAC1(cooked) || !as.CheckMAC2(cooked, src, now) {
		t.Fatal("the cookied login does not carry valid MACs")
	}
	if as.CheckMAC2(cooked, netip.MustParseAddrPort("192.0.2.8:4242"), now) {
		t.Fatal("mac2 valid for another source")
	}
	n := len(cooked) - cookie.MACLen
	if !bytes.Equal(cooked[:n], plain[:n]) || bytes.Equal(cooked, plain) {
		t.Fatal("the cookie changed more than mac2")
	}
	if plain[len(plain)-1] != 0 || !bytes.Equal(plain[n:], make([]byte, cookie.MACLen)) {
		t.Fatal("the first packet was written after it was handed out")
	}
	if first, err := l.TakeCookie(reply, now); first {
		t.Fatalf("a replayed cookie counted as the first (err %v)", err)
	}
	if a, err := ReadLogin(p.asConfig(), cooked); err != nil || a.Envelope.ID != l.ID() {
		t.Fatalf("ReadLogin of the cookied login: %v", err)
	}
	for _, bad := range [][]byte{nil, reply[:10], append(bytes.Clone(reply), 0)} {
		if _, err := l.TakeCookie(bad, now); err == nil {
			t.Fatalf("TakeCookie accepted %d bytes", len(bad))
		}
	}
}

// TestDenyListChunkFitsOnePacket: NMS's largest deny list chunk, sealed,
// stays under the size a signaling packet may have without fragmenting
// (the login's 1,200 bytes).
func TestDenyListChunkFitsOnePacket(t *testing.T) {
	s, err := NewCloudSession(7, Keys{})
	if err != nil {
		t.Fatal(err)
	}
	der := make([]byte, 3*messages.DenyListChunk)
	for _, chunk := range messages.DenyListChunks(1<<62, der) {
		pkt, err := s.SealMessage(nil, messages.NewEncoder(), messages.NewMsgID(), "nms.cyphonic.internal", time.Now(), chunk)
		if err != nil {
			t.Fatal(err)
		}
		if len(pkt) > messages.LoginMinLen {
			t.Fatalf("a sealed deny list chunk of %d bytes: want at most %d", len(pkt), messages.LoginMinLen)
		}
	}
}

// TestSealOneAllocation: sealing into a nil slice (a packet kept for
// retransmission) allocates the packet once, and into a slice with room
// not at all.
func TestSealOneAllocation(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	var k Keys
	k.NodeToCloud[0], k.CloudToNode[0] = 1, 2
	s, err := NewCloudSession(7, k)
	if err != nil {
		t.Fatal(err)
	}
	env := make([]byte, 300)
	var pkt []byte
	if n := testing.AllocsPerRun(100, func() { pkt = s.Seal(nil, env) }); n != 1 {
		t.Errorf("Seal into nil: %v allocations, want 1", n)
	}
	buf := make([]byte, 0, 2048)
	if n := testing.AllocsPerRun(100, func() { pkt = s.Seal(buf[:0], env) }); n != 0 {
		t.Errorf("Seal into a buffer with room: %v allocations, want 0", n)
	}
	node, err := NewNodeSession(7, k)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := node.Open(nil, pkt); err != nil || len(got) != len(env) {
		t.Fatalf("the node opens %d bytes, err %v", len(got), err)
	}
}
