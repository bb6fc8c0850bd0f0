package signaling

import (
	"bytes"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/pki"
	"github.com/cyphonic/cyphonic-go/messages"
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
}

// pkiEnv is a CA with an AS identity and node identities.
type pkiEnv struct {
	ca *pki.CA
	as *pki.Identity
	v  *pki.Verifier // node side: accepts only the AS
}

func newPKI(t testing.TB) *pkiEnv {
	t.Helper()
	ca, err := pki.InitCA(t.TempDir(), "test overlay", time.Hour)
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
	a, err := ReadLogin(p.asConfig(), l.Packet())
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
	reply := messages.LoginReply{SessionID: 42, FQDN: fqdn, SessionTTL: 60}
	pkt, cloudKeys, err := a.Accept(reply, "as", now)
	if err != nil {
		t.Fatal(err)
	}
	res, err := l.Finish(pkt)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reply.SessionID != 42 || res.Reply.FQDN != fqdn || res.Keys != cloudKeys {
		t.Fatalf("result %+v", res.Reply)
	}
	cloud, err := NewCloudSession(42, cloudKeys)
	if err != nil {
		t.Fatal(err)
	}
	var enc messages.Encoder
	sealed, err := res.Session.SealMessage(nil, &enc, messages.NewMsgID(), fqdn, now, messages.Keepalive{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cloud.OpenEnvelope(nil, sealed, now); err != nil {
		t.Fatalf("cloud cannot open the node's first packet: %v", err)
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
	_, err = l.Finish(pkt)
	var e *messages.Error
	if !errors.As(err, &e) || e.Code != messages.CodeCertRevoked {
		t.Fatalf("Finish = %v, want a cert-revoked *messages.Error", err)
	}
}

func TestLoginFinishRejectsGarbage(t *testing.T) {
	p := newPKI(t)
	const fqdn = "carol.example.cyphonic"
	l, err := StartLogin(p.nodeConfig(t, fqdn), pki.RoleAS.ServiceFQDN(), fqdn, messages.LoginRequest{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, junk := range [][]byte{nil, {byte(messages.TypeLoginReply)}, append([]byte{byte(messages.TypeLoginReply)}, make([]byte, 300)...)} {
		if _, err := l.Finish(junk); err == nil {
			t.Fatalf("garbage reply accepted: %x", junk)
		}
	}
	// The genuine reply still works after garbage.
	a, err := ReadLogin(p.asConfig(), l.Packet())
	if err != nil {
		t.Fatal(err)
	}
	pkt, _, err := a.Accept(messages.LoginReply{SessionID: 9, FQDN: fqdn}, "as", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Finish(pkt); err != nil {
		t.Fatal(err)
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
