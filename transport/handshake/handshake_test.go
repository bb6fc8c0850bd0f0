package handshake

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/transport/seal"
)

const (
	alice = "alice.example.cyphonic"
	bob   = "bob.example.cyphonic"
)

var t0 = time.Unix(1700000000, 0)

// run performs a whole handshake from alice (initiator) to bob.
func run(t testing.TB, a, b Config) (ra, rb *Result) {
	t.Helper()
	i, err := NewInitiator(a, bob, 0x1111)
	if err != nil {
		t.Fatal(err)
	}
	msg1, err := i.Start([]byte("hello from alice"), t0)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ReadInit(b, msg1)
	if err != nil {
		t.Fatal(err)
	}
	msg2, rb, err := r.Reply(0x2222, []byte("hello from bob"), t0)
	if err != nil {
		t.Fatal(err)
	}
	ra, err = i.Finish(msg2)
	if err != nil {
		t.Fatal(err)
	}
	return ra, rb
}

func TestHandshake(t *testing.T) {
	A, C := seal.AES256GCM, seal.ChaCha20Poly1305
	tests := []struct {
		name       string
		alice, bob []seal.Suite
		want       seal.Suite
	}{
		{"AES-GCM", []seal.Suite{A}, []seal.Suite{A, C}, A},
		{"ChaCha20", []seal.Suite{C}, []seal.Suite{A, C}, C},
		{"split preference", []seal.Suite{A, C}, []seal.Suite{C, A}, C},
		{"local default", nil, nil, seal.PreferredSuite()},
	}
	ca := newTestCA(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newNode(t, ca, alice), newNode(t, ca, bob)
			a.Suites, b.Suites = tt.alice, tt.bob
			ra, rb := run(t, a, b)

			if ra.PeerIdentity != bob || rb.PeerIdentity != alice {
				t.Fatalf("identities %q %q", ra.PeerIdentity, rb.PeerIdentity)
			}
			if ra.PeerStatic != b.Static.Public || rb.PeerStatic != a.Static.Public {
				t.Fatal("peer statics are not the peers' keys")
			}
			if ra.Suite != tt.want || rb.Suite != tt.want {
				t.Fatalf("suites %v %v, want %v", ra.Suite, rb.Suite, tt.want)
			}
			if ra.LocalIndex != 0x1111 || ra.PeerIndex != 0x2222 || rb.LocalIndex != 0x2222 || rb.PeerIndex != 0x1111 {
				t.Fatalf("indices a=%x/%x b=%x/%x", ra.LocalIndex, ra.PeerIndex, rb.LocalIndex, rb.PeerIndex)
			}
			if string(ra.PeerPayload) != "hello from bob" || string(rb.PeerPayload) != "hello from alice" {
				t.Fatalf("payloads %q %q", ra.PeerPayload, rb.PeerPayload)
			}
			if !rb.PeerTimestamp.Equal(t0) {
				t.Fatalf("timestamp %v", rb.PeerTimestamp)
			}
			if ra.SendKey != rb.RecvKey || ra.RecvKey != rb.SendKey || ra.SendKey == ra.RecvKey {
				t.Fatal("keys do not pair up")
			}
			if len(ra.HandshakeHash) != 32 || !bytes.Equal(ra.HandshakeHash, rb.HandshakeHash) {
				t.Fatal("handshake hashes differ")
			}

			// The keys work for data both ways.
			ka, err := ra.Keypair(t0)
			if err != nil {
				t.Fatal(err)
			}
			kb, err := rb.Keypair(t0)
			if err != nil {
				t.Fatal(err)
			}
			if !ka.Initiator() || kb.Initiator() {
				t.Fatal("initiator flags wrong")
			}
			for _, dir := range [][2]*seal.Keypair{{ka, kb}, {kb, ka}} {
				pkt, err := dir[0].Seal(make([]byte, 0, 64), 0, 0, []byte("ip packet"))
				if err != nil {
					t.Fatal(err)
				}
				if got, _, err := dir[1].Open(pkt); err != nil || string(got) != "ip packet" {
					t.Fatalf("data: %q %v", got, err)
				}
			}
			ra.Wipe()
			if ra.SendKey != ([32]byte{}) || ra.RecvKey != ([32]byte{}) {
				t.Fatal("Wipe left keys")
			}
		})
	}
}

func TestHandshakeRefusals(t *testing.T) {
	ca, rogue := newTestCA(t), newTestCA(t)
	other, err := GenerateStaticKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(a, b *Config) // alice is the initiator, bob the responder
		atInit bool               // refused by ReadInit (else by Finish)
		want   error
	}{
		{"initiator cert from another CA", func(a, b *Config) { a.CertDER = rogue.issue(t, alice, a.Static.Public) }, true, ErrVerify},
		{"responder cert from another CA", func(a, b *Config) { b.CertDER = rogue.issue(t, bob, b.Static.Public) }, false, ErrVerify},
		{"initiator cert binds another key", func(a, b *Config) { a.CertDER = ca.issue(t, alice, other.Public) }, true, ErrStaticMismatch},
		{"responder cert binds another key", func(a, b *Config) { b.CertDER = ca.issue(t, bob, other.Public) }, false, ErrStaticMismatch},
		{"responder is not who we asked for", func(a, b *Config) { b.CertDER = ca.issue(t, "mallory.example.cyphonic", b.Static.Public) }, false, ErrWrongPeer},
		{"no common suite", func(a, b *Config) {
			a.Suites = []seal.Suite{seal.AES256GCM}
			b.Suites = []seal.Suite{seal.ChaCha20Poly1305}
		}, true, seal.ErrNoCommonSuite},
		{"login message to node handshake", func(a, b *Config) { a.Prologue = PrologueLogin }, false, ErrDecrypt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newNode(t, ca, alice), newNode(t, ca, bob)
			tt.mutate(&a, &b)
			i, err := NewInitiator(a, bob, 1)
			if err != nil {
				t.Fatal(err)
			}
			msg1, err := i.Start(nil, t0)
			if err != nil {
				t.Fatal(err)
			}
			r, err := ReadInit(b, msg1)
			if tt.atInit {
				if !errors.Is(err, tt.want) {
					t.Fatalf("ReadInit: %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadInit: %v", err)
			}
			msg2, _, err := r.Reply(2, nil, t0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := i.Finish(msg2); !errors.Is(err, tt.want) {
				t.Fatalf("Finish: %v, want %v", err, tt.want)
			}
			// An authenticated but unacceptable msg2 ends the handshake.
			if _, err := i.Finish(msg2); !errors.Is(err, ErrState) && !errors.Is(err, ErrDecrypt) {
				t.Fatalf("second Finish: %v", err)
			}
		})
	}
}

func TestTamperedMessages(t *testing.T) {
	ca := newTestCA(t)
	a, b := newNode(t, ca, alice), newNode(t, ca, bob)

	i, err := NewInitiator(a, bob, 1)
	if err != nil {
		t.Fatal(err)
	}
	msg1, err := i.Start([]byte("app"), t0)
	if err != nil {
		t.Fatal(err)
	}

	// msg1 is cleartext in IX, so a changed byte may pass ReadInit; but the
	// transcripts then differ and the initiator cannot open the reply.
	for n := range msg1 {
		bad := bytes.Clone(msg1)
		bad[n] ^= 0x01
		r, err := ReadInit(b, bad)
		if err != nil {
			continue
		}
		msg2, _, err := r.Reply(2, nil, t0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := i.Finish(msg2); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("msg1 byte %d tampered: Finish %v, want ErrDecrypt", n, err)
		}
	}

	r, err := ReadInit(b, msg1)
	if err != nil {
		t.Fatal(err)
	}
	msg2, rb, err := r.Reply(2, []byte("reply"), t0)
	if err != nil {
		t.Fatal(err)
	}
	for n := range msg2 {
		bad := bytes.Clone(msg2)
		bad[n] ^= 0x80
		if _, err := i.Finish(bad); err == nil {
			t.Fatalf("msg2 byte %d tampered: accepted", n)
		}
	}
	for _, n := range []int{0, 1, minMsg2Len - 1, len(msg2) - 1} {
		if _, err := i.Finish(msg2[:n]); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrDecrypt) {
			t.Fatalf("msg2 cut to %d: %v", n, err)
		}
	}
	// None of that spoiled the handshake: the genuine msg2 still completes it.
	ra, err := i.Finish(msg2)
	if err != nil {
		t.Fatalf("genuine msg2 after garbage: %v", err)
	}
	if ra.SendKey != rb.RecvKey {
		t.Fatal("keys differ")
	}
}

func TestReplayedInit(t *testing.T) {
	ca := newTestCA(t)
	a, b := newNode(t, ca, alice), newNode(t, ca, bob)
	guard := NewReplayGuard(16)

	// respond runs the responder's side as a peer actor would.
	respond := func(msg1 []byte) (*Result, error) {
		r, err := ReadInit(b, msg1)
		if err != nil {
			return nil, err
		}
		if err := guard.Check(r.PeerIdentity, r.PeerTimestamp); err != nil {
			return nil, err
		}
		_, res, err := r.Reply(2, nil, t0)
		return res, err
	}
	start := func(ts time.Time) []byte {
		i, err := NewInitiator(a, bob, 1)
		if err != nil {
			t.Fatal(err)
		}
		msg1, err := i.Start(nil, ts)
		if err != nil {
			t.Fatal(err)
		}
		return msg1
	}

	old := start(t0)
	res, err := respond(old)
	if err != nil {
		t.Fatal(err)
	}
	// Replays before confirmation are still answered (nothing is committed),
	// but they cannot lead anywhere: the attacker lacks the ephemeral key.
	if _, err := respond(old); err != nil {
		t.Fatalf("unconfirmed replay: %v", err)
	}
	guard.Commit(res.PeerIdentity, res.PeerTimestamp) // first data packet opened

	if _, err := respond(old); !errors.Is(err, ErrReplay) {
		t.Fatalf("replayed msg1: %v, want ErrReplay", err)
	}
	if _, err := respond(start(t0)); !errors.Is(err, ErrReplay) {
		t.Fatalf("same timestamp: %v, want ErrReplay", err)
	}
	if _, err := respond(start(t0.Add(-time.Second))); !errors.Is(err, ErrReplay) {
		t.Fatalf("older timestamp: %v, want ErrReplay", err)
	}
	if _, err := respond(start(t0.Add(time.Millisecond))); err != nil {
		t.Fatalf("newer timestamp: %v", err)
	}
}

func TestReplayGuardBounded(t *testing.T) {
	g := NewReplayGuard(2)
	g.Commit("a", t0)
	g.Commit("b", t0.Add(2*time.Second))
	g.Commit("a", t0.Add(-time.Hour)) // never moves backwards
	if err := g.Check("a", t0); !errors.Is(err, ErrReplay) {
		t.Fatalf("a: %v", err)
	}
	g.Commit("c", t0.Add(time.Second)) // full: forgets a (oldest)
	if err := g.Check("a", t0); err != nil {
		t.Fatalf("evicted a still remembered: %v", err)
	}
	for _, id := range []string{"b", "c"} {
		if err := g.Check(id, t0); !errors.Is(err, ErrReplay) {
			t.Fatalf("%s forgotten: %v", id, err)
		}
	}
}

func TestMisuseAndGarbage(t *testing.T) {
	ca := newTestCA(t)
	a, b := newNode(t, ca, alice), newNode(t, ca, bob)

	if _, err := NewInitiator(Config{CertDER: a.CertDER}, bob, 1); err == nil {
		t.Fatal("config without VerifyFunc accepted")
	}
	if _, err := ReadInit(Config{Verify: ca.verify}, nil); err == nil {
		t.Fatal("config without certificate accepted")
	}

	i, _ := NewInitiator(a, bob, 1)
	if _, err := i.Finish(make([]byte, 200)); !errors.Is(err, ErrState) {
		t.Fatalf("Finish before Start: %v", err)
	}
	if _, err := i.Start(make([]byte, MaxAppPayloadLen+1), t0); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized app payload: %v", err)
	}
	msg1, err := i.Start(nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := i.Start(nil, t0); !errors.Is(err, ErrState) {
		t.Fatalf("second Start: %v", err)
	}
	r, err := ReadInit(b, msg1)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Reply(2, nil, t0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Reply(2, nil, t0); !errors.Is(err, ErrState) {
		t.Fatalf("second Reply: %v", err)
	}

	rng := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		junk := make([]byte, rng.IntN(MaxMessageLen+64))
		for k := range junk {
			junk[k] = byte(rng.Uint32())
		}
		if _, err := ReadInit(b, junk); err == nil {
			t.Fatal("random msg1 accepted")
		}
		if _, err := i.Finish(junk); err == nil {
			t.Fatal("random msg2 accepted")
		}
	}
	if _, err := ReadInit(b, make([]byte, MaxMessageLen+1)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("oversized msg1: %v", err)
	}
}

func TestPayloadCodec(t *testing.T) {
	p := payload{index: 7, timestamp: t0, suites: []seal.Suite{1, 2}, cert: []byte("cert"), app: []byte("app")}
	raw, err := p.encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodePayload(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got.index != 7 || !got.timestamp.Equal(t0) || len(got.suites) != 2 || string(got.cert) != "cert" || string(got.app) != "app" {
		t.Fatalf("round trip: %+v", got)
	}
	tests := []struct {
		name string
		raw  []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"version", append([]byte{9}, raw[1:]...), ErrVersion},
		{"trailing", append(bytes.Clone(raw), 0), ErrMalformed},
		{"truncated", raw[:len(raw)-1], ErrMalformed},
		{"no suites", append(append(bytes.Clone(raw[:13]), 0), raw[16:]...), ErrMalformed},
		{"cert too long", append(bytes.Clone(raw[:16]), 0xff, 0xff), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodePayload(tt.raw); !errors.Is(err, tt.want) {
				t.Fatalf("%v, want %v", err, tt.want)
			}
		})
	}
}

func FuzzDecodePayload(f *testing.F) {
	raw, _ := (&payload{index: 1, timestamp: t0, suites: []seal.Suite{1, 2}, cert: []byte("c"), app: []byte("a")}).encode()
	f.Add(raw)
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePayload(b)
		if err != nil {
			return
		}
		again, err := p.encode()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("decoded payload does not re-encode to its input: %v", err)
		}
	})
}

func FuzzReadInit(f *testing.F) {
	ca := newTestCA(f)
	a, b := newNode(f, ca, alice), newNode(f, ca, bob)
	i, _ := NewInitiator(a, bob, 1)
	msg1, err := i.Start([]byte("x"), t0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(msg1)
	f.Add(make([]byte, minMsg1Len))
	f.Fuzz(func(t *testing.T, msg []byte) {
		r, err := ReadInit(b, msg)
		if err != nil {
			return
		}
		// Whatever passed carried a certificate our CA signed for that key.
		if r.PeerIdentity != alice || r.PeerStatic != a.Static.Public {
			t.Fatalf("accepted %q with a key the CA did not bind", r.PeerIdentity)
		}
	})
}

func FuzzFinish(f *testing.F) {
	ca := newTestCA(f)
	a, b := newNode(f, ca, alice), newNode(f, ca, bob)
	i, _ := NewInitiator(a, bob, 1)
	msg1, err := i.Start(nil, t0)
	if err != nil {
		f.Fatal(err)
	}
	r, err := ReadInit(b, msg1)
	if err != nil {
		f.Fatal(err)
	}
	msg2, _, err := r.Reply(2, nil, t0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(msg2)
	f.Add(make([]byte, minMsg2Len))
	f.Fuzz(func(t *testing.T, msg []byte) {
		// A fresh initiator per input with the same msg1, so one lucky input
		// does not spend the handshake for the others.
		i2 := *i
		res, err := i2.Finish(msg)
		if err != nil {
			return
		}
		if res.PeerIdentity != bob || res.PeerStatic != b.Static.Public {
			t.Fatalf("accepted %q with a key the CA did not bind", res.PeerIdentity)
		}
	})
}

func BenchmarkHandshake(b *testing.B) {
	ca := newTestCA(b)
	a, r := newNode(b, ca, alice), newNode(b, ca, bob)
	b.ReportAllocs()
	for b.Loop() {
		run(b, a, r)
	}
}
