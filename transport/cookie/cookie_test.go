package cookie

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
)

const responder = "bob.example.cyphonic"

// initMsg is an init-sized message with room for the trailer.
func initMsg(t testing.TB, n int) []byte {
	t.Helper()
	m := make([]byte, n+TrailerLen)
	if _, err := rand.Read(m[:n]); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMAC1(t *testing.T) {
	now := time.Now()
	g := NewGenerator(responder)
	c := NewChecker(responder, nil)
	good := initMsg(t, 500)
	if err := g.AddMACs(good, now); err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte { m := bytes.Clone(good); m[i] ^= 1; return m }
	otherName := initMsg(t, 500)
	if err := NewGenerator("carol.example.cyphonic").AddMACs(otherName, now); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		msg  []byte
		want bool
	}{
		{"valid", good, true},
		{"random garbage", initMsg(t, 500), false},
		{"body bit flipped", flip(10), false},
		{"mac1 bit flipped", flip(len(good) - TrailerLen), false},
		{"mac2 changed (not covered by mac1)", flip(len(good) - 1), true},
		{"made for another node", otherName, false},
		{"trailer only", make([]byte, TrailerLen), false},
		{"empty", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.CheckMAC1(tc.msg); got != tc.want {
				t.Fatalf("CheckMAC1 = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCookieRoundTrip(t *testing.T) {
	now := time.Now()
	src := netip.MustParseAddrPort("192.0.2.7:4242")
	g := NewGenerator(responder)
	c := NewChecker(responder, nil)

	m := initMsg(t, 480)
	if err := g.AddMACs(m, now); err != nil {
		t.Fatal(err)
	}
	if c.CheckMAC2(m, src, now) {
		t.Fatal("mac2 valid before any cookie")
	}
	if !bytes.Equal(m[len(m)-MACLen:], make([]byte, MACLen)) {
		t.Fatal("mac2 not zero without a cookie")
	}
	reply, err := c.Reply(nil, m, src, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(reply) != ReplyLen {
		t.Fatalf("reply %d bytes, want %d", len(reply), ReplyLen)
	}
	if err := g.ConsumeReply(reply, now); err != nil {
		t.Fatal(err)
	}
	if err := g.ConsumeReply(reply, now); !errors.Is(err, ErrNoInit) {
		t.Fatalf("second ConsumeReply of the same reply: %v, want ErrNoInit", err)
	}
	if !g.HasCookie(now) {
		t.Fatal("no cookie after a reply")
	}
	m2 := initMsg(t, 480)
	if err := g.AddMACs(m2, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if !c.CheckMAC1(m2) || !c.CheckMAC2(m2, src, now.Add(time.Second)) {
		t.Fatal("init with the cookie rejected")
	}
	// The cookie lapses on the initiator's side before the secret rotates.
	if g.HasCookie(now.Add(Lifetime)) {
		t.Fatal("cookie used past Lifetime")
	}
}

func TestReplyRejected(t *testing.T) {
	now := time.Now()
	src := netip.MustParseAddrPort("192.0.2.7:4242")
	c := NewChecker(responder, nil)
	sent := initMsg(t, 480)
	g := NewGenerator(responder)
	if err := g.AddMACs(sent, now); err != nil {
		t.Fatal(err)
	}
	// An attacker's init, whose reply the victim must not accept.
	other := initMsg(t, 480)
	if err := NewGenerator(responder).AddMACs(other, now); err != nil {
		t.Fatal(err)
	}
	toOther, err := c.Reply(nil, other, src, now)
	if err != nil {
		t.Fatal(err)
	}
	good, err := c.Reply(nil, sent, src, now)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(good)
	tampered[NonceLen] ^= 1
	fromOtherNode, err := NewChecker("carol.example.cyphonic", nil).Reply(nil, sent, src, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		reply []byte
		want  error
	}{
		{"reply to another init", toOther, ErrDecrypt},
		{"tampered", tampered, ErrDecrypt},
		{"under another node's key", fromOtherNode, ErrDecrypt},
		{"short", good[:ReplyLen-1], ErrBadReply},
		{"long", append(bytes.Clone(good), 0), ErrBadReply},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := g.ConsumeReply(tc.reply, now); !errors.Is(err, tc.want) {
				t.Fatalf("ConsumeReply = %v, want %v", err, tc.want)
			}
			if g.HasCookie(now) {
				t.Fatal("cookie taken from a bad reply")
			}
		})
	}
	if err := g.ConsumeReply(good, now); err != nil {
		t.Fatalf("the genuine reply after the bad ones: %v", err)
	}
}

// cookieFrom gets a generator a cookie as src.
func cookieFrom(t *testing.T, c *Checker, src netip.AddrPort, now time.Time) *Generator {
	t.Helper()
	g := NewGenerator(responder)
	m := initMsg(t, 300)
	if err := g.AddMACs(m, now); err != nil {
		t.Fatal(err)
	}
	r, err := c.Reply(nil, m, src, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.ConsumeReply(r, now); err != nil {
		t.Fatal(err)
	}
	return g
}

func TestSourceBinding(t *testing.T) {
	now := time.Now()
	src := netip.MustParseAddrPort("192.0.2.7:4242")
	c := NewChecker(responder, nil)
	g := cookieFrom(t, c, src, now)
	m := initMsg(t, 300)
	if err := g.AddMACs(m, now); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		from netip.AddrPort
		want bool
	}{
		{"same source", src, true},
		{"same source, v4-mapped", netip.MustParseAddrPort("[::ffff:192.0.2.7]:4242"), true},
		{"other port", netip.MustParseAddrPort("192.0.2.7:4243"), false},
		{"other address", netip.MustParseAddrPort("192.0.2.8:4242"), false},
		{"IPv6", netip.MustParseAddrPort("[2001:db8::7]:4242"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.CheckMAC2(m, tc.from, now); got != tc.want {
				t.Fatalf("CheckMAC2 from %v = %v, want %v", tc.from, got, tc.want)
			}
		})
	}
}

func TestSecretRotation(t *testing.T) {
	now := time.Now()
	src := netip.MustParseAddrPort("192.0.2.7:4242")
	c := NewChecker(responder, nil)
	g := cookieFrom(t, c, src, now)
	m := initMsg(t, 300)
	if err := g.AddMACs(m, now); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		after time.Duration
		want  bool
	}{
		{"fresh", 0, true},
		{"just before rotation", RotateEvery - time.Millisecond, true},
		{"at rotation", RotateEvery, false},
		{"long after", 10 * RotateEvery, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.CheckMAC2(m, src, now.Add(tc.after)); got != tc.want {
				t.Fatalf("CheckMAC2 after %v = %v, want %v", tc.after, got, tc.want)
			}
		})
	}
	// A reply after the rotation is under a new secret: the old cookie
	// stays invalid, a new one works.
	later := now.Add(RotateEvery + time.Second)
	g2 := cookieFrom(t, c, src, later)
	if c.CheckMAC2(m, src, later) {
		t.Fatal("old cookie valid under the new secret")
	}
	m2 := initMsg(t, 300)
	if err := g2.AddMACs(m2, later); err != nil {
		t.Fatal(err)
	}
	if !c.CheckMAC2(m2, src, later) {
		t.Fatal("new cookie rejected")
	}
}

// TestReplySize: the reply, with its packet header, is smaller than the
// smallest init it can answer, whatever the init's size.
func TestReplySize(t *testing.T) {
	const header = messages.CookieReplyHeaderLen
	c := NewChecker(responder, nil)
	for _, n := range []int{1, 100, 400, 2000} {
		m := initMsg(t, n)
		r, err := c.Reply(nil, m, netip.MustParseAddrPort("192.0.2.1:1"), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if len(r) != ReplyLen {
			t.Fatalf("init of %d: reply %d bytes, want %d", n, len(r), ReplyLen)
		}
	}
	// A real init is its header (8), Noise msg1 (≥ 32+32+16 plus a
	// certificate) and the trailer: compare with the smallest possible.
	if minInit := 8 + 32 + 32 + 16 + TrailerLen; header+ReplyLen > minInit {
		t.Fatalf("reply %d bytes > smallest init %d", header+ReplyLen, minInit)
	}
}

// The packet sizes messages/ documents are this package's.
func TestWireSizesMatchMessages(t *testing.T) {
	if messages.CookieReplyBodyLen != ReplyLen || messages.HandshakeTrailerLen != TrailerLen {
		t.Fatalf("messages: reply body %d, trailer %d; cookie: %d, %d",
			messages.CookieReplyBodyLen, messages.HandshakeTrailerLen, ReplyLen, TrailerLen)
	}
}
