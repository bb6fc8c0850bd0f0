package seal

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

var suites = []Suite{AES256GCM, ChaCha20Poly1305}

func key(b byte) (k [32]byte) {
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

// pair returns the two ends of one session: a's send key is b's receive key.
func pair(t testing.TB, s Suite) (a, b *Keypair) {
	t.Helper()
	now := time.Unix(1700000000, 0)
	a, err := NewKeypair(s, key(1), key(2), 0xa1, 0xb2, true, now)
	if err != nil {
		t.Fatal(err)
	}
	b, err = NewKeypair(s, key(2), key(1), 0xb2, 0xa1, false, now)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

// sealInPlace seals msg the way the data path does: the inner packet already
// sits at buf[HeaderLen:].
func sealInPlace(t testing.TB, k *Keypair, counter uint64, msg []byte) []byte {
	t.Helper()
	buf := make([]byte, SealedLen(len(msg)))
	copy(buf[HeaderLen:], msg)
	pkt, err := k.Seal(buf, 0, counter, buf[HeaderLen:HeaderLen+len(msg)])
	if err != nil {
		t.Fatal(err)
	}
	return pkt
}

func TestRoundTrip(t *testing.T) {
	for _, s := range suites {
		t.Run(s.String(), func(t *testing.T) {
			a, b := pair(t, s)
			for _, size := range []int{0, 1, 20, 1400, 65535} {
				msg := bytes.Repeat([]byte{byte(size)}, size)
				c, ok := a.NextCounter()
				if !ok {
					t.Fatal("counter exhausted")
				}
				pkt := sealInPlace(t, a, c, msg)
				if len(pkt) != SealedLen(size) {
					t.Fatalf("len %d, want %d", len(pkt), SealedLen(size))
				}
				h, err := ParseHeader(pkt)
				if err != nil || h.ReceiverIndex != 0xb2 || h.Counter != c || pkt[0] != TypeData {
					t.Fatalf("header %+v, %v", h, err)
				}
				got, gotCounter, err := b.Open(pkt)
				if err != nil {
					t.Fatalf("size %d: %v", size, err)
				}
				if gotCounter != c || !bytes.Equal(got, msg) {
					t.Fatalf("size %d: got counter %d, payload equal %v", size, gotCounter, bytes.Equal(got, msg))
				}
				if !b.Replay.Accept(gotCounter) || b.Replay.Accept(gotCounter) {
					t.Fatal("replay window did not accept once then refuse")
				}
			}
			// The reverse direction uses the other key.
			pkt := sealInPlace(t, b, 0, []byte("pong"))
			if got, _, err := a.Open(pkt); err != nil || string(got) != "pong" {
				t.Fatalf("reverse: %q %v", got, err)
			}
		})
	}
}

func TestSealSeparateBuffers(t *testing.T) {
	a, b := pair(t, ChaCha20Poly1305)
	msg := []byte("hello, separate buffer")
	dst := make([]byte, 0, 128)
	pkt, err := a.Seal(dst, 0x5, 9, msg)
	if err != nil {
		t.Fatal(err)
	}
	if string(msg) != "hello, separate buffer" {
		t.Fatal("Seal modified a separate plaintext")
	}
	if h, _ := ParseHeader(pkt); h.Flags != 0x5 {
		t.Fatalf("flags %x", h.Flags)
	}
	if got, c, err := b.Open(pkt); err != nil || c != 9 || !bytes.Equal(got, msg) {
		t.Fatalf("%q %d %v", got, c, err)
	}
}

func TestSealErrors(t *testing.T) {
	a, _ := pair(t, AES256GCM)
	buf := make([]byte, 100)
	tests := []struct {
		name    string
		dst     []byte
		counter uint64
		pt      []byte
		want    error
	}{
		{"short buffer", make([]byte, 10), 0, []byte("abc"), ErrShortBuffer},
		{"counter limit", make([]byte, 64), RejectAfterMessages, []byte("abc"), ErrCounterLimit},
		{"plaintext over header", buf, 0, buf[:10], ErrOverlap},
		{"plaintext shifted by one", buf, 0, buf[HeaderLen+1 : HeaderLen+11], ErrOverlap},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := a.Seal(tt.dst, 0, tt.counter, tt.pt); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestOpenRejects(t *testing.T) {
	for _, s := range suites {
		t.Run(s.String(), func(t *testing.T) {
			a, b := pair(t, s)
			msg := []byte("an inner IP packet, more or less")
			good := sealInPlace(t, a, 7, msg)

			// Flipping any single byte — header (AAD), ciphertext or tag — must
			// fail. Header bytes that route the packet fail earlier checks.
			for i := range good {
				pkt := bytes.Clone(good)
				pkt[i] ^= 0x40
				_, _, err := b.Open(pkt)
				switch {
				case i == 0:
					if !errors.Is(err, ErrBadType) {
						t.Fatalf("byte %d: %v, want ErrBadType", i, err)
					}
				case i >= 4 && i < 8:
					if !errors.Is(err, ErrWrongIndex) {
						t.Fatalf("byte %d: %v, want ErrWrongIndex", i, err)
					}
				default:
					if !errors.Is(err, ErrAuth) {
						t.Fatalf("byte %d: %v, want ErrAuth", i, err)
					}
				}
			}
			for n := range HeaderLen + Overhead {
				if _, _, err := b.Open(bytes.Clone(good[:n])); !errors.Is(err, ErrTruncated) {
					t.Fatalf("len %d: %v, want ErrTruncated", n, err)
				}
			}
			if _, _, err := b.Open(bytes.Clone(good[:len(good)-1])); !errors.Is(err, ErrAuth) {
				t.Fatalf("one byte short: %v, want ErrAuth", err)
			}
			// Wrong key: a session with different keys but the same indices.
			wrong, _ := NewKeypair(s, key(9), key(9), 0xb2, 0xa1, false, time.Now())
			if _, _, err := wrong.Open(bytes.Clone(good)); !errors.Is(err, ErrAuth) {
				t.Fatalf("wrong key: %v, want ErrAuth", err)
			}
			// Its own packets are not meant for it (receiver index is the peer's).
			if _, _, err := a.Open(bytes.Clone(good)); !errors.Is(err, ErrWrongIndex) {
				t.Fatalf("own packet: %v, want ErrWrongIndex", err)
			}
			if _, _, err := b.Open(good); err != nil {
				t.Fatalf("untouched packet: %v", err)
			}
		})
	}
}

func TestOpenCounterLimit(t *testing.T) {
	a, b := pair(t, ChaCha20Poly1305)
	pkt := sealInPlace(t, a, 1, []byte("x"))
	pkt[8] = 0xff // counter = 0xff....01 (past the limit); checked before the tag
	for i := 9; i < 16; i++ {
		pkt[i] = 0xff
	}
	if _, _, err := b.Open(pkt); !errors.Is(err, ErrCounterLimit) {
		t.Fatalf("%v, want ErrCounterLimit", err)
	}
}

func TestCountersAndLifetime(t *testing.T) {
	a, b := pair(t, AES256GCM)
	for want := range uint64(3) {
		if c, ok := a.NextCounter(); !ok || c != want {
			t.Fatalf("NextCounter = %d %v, want %d", c, ok, want)
		}
	}
	pkt := sealInPlace(t, a, 3, make([]byte, 100))
	if _, _, err := b.Open(pkt); err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.SentPackets != 3 || st.SentBytes != uint64(SealedLen(100)) {
		t.Fatalf("sender stats %+v", st)
	}
	if st := b.Stats(); st.RecvPackets != 1 || st.RecvBytes != uint64(SealedLen(100)) {
		t.Fatalf("receiver stats %+v", st)
	}

	created := a.Created()
	tests := []struct {
		name           string
		k              *Keypair
		age            time.Duration
		rekey, expired bool
	}{
		{"fresh initiator", a, 0, false, false},
		{"initiator at rekey age", a, RekeyAfterTime, true, false},
		{"responder never rekeys on age", b, RekeyAfterTime, false, false},
		{"initiator at reject age", a, RejectAfterTime, true, true},
		{"responder at reject age", b, RejectAfterTime, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := created.Add(tt.age)
			if got := tt.k.NeedsRekey(now); got != tt.rekey {
				t.Errorf("NeedsRekey = %v, want %v", got, tt.rekey)
			}
			if got := tt.k.Expired(now); got != tt.expired {
				t.Errorf("Expired = %v, want %v", got, tt.expired)
			}
		})
	}

	b.sendCounter.Store(RekeyAfterMessages)
	if !b.NeedsRekey(created) || b.Expired(created) {
		t.Fatal("at RekeyAfterMessages: want rekey, not expired")
	}
	b.sendCounter.Store(RejectAfterMessages - 1)
	if c, ok := b.NextCounter(); !ok || c != RejectAfterMessages-1 {
		t.Fatalf("last counter = %d %v", c, ok)
	}
	for range 3 {
		if _, ok := b.NextCounter(); ok {
			t.Fatal("counter handed out past RejectAfterMessages")
		}
	}
	if !b.Expired(created) {
		t.Fatal("exhausted keypair not expired")
	}
}

func TestNewKeypairUnknownSuite(t *testing.T) {
	if _, err := NewKeypair(Suite(0), key(1), key(2), 1, 2, true, time.Now()); !errors.Is(err, ErrUnknownSuite) {
		t.Fatalf("%v, want ErrUnknownSuite", err)
	}
}

func TestNegotiate(t *testing.T) {
	A, C := AES256GCM, ChaCha20Poly1305
	tests := []struct {
		name string
		a, b []Suite
		want Suite
		err  error
	}{
		{"both prefer AES", []Suite{A, C}, []Suite{A, C}, A, nil},
		{"both prefer ChaCha", []Suite{C, A}, []Suite{C, A}, C, nil},
		{"split preference ties to ChaCha", []Suite{A, C}, []Suite{C, A}, C, nil},
		{"only AES in common", []Suite{A}, []Suite{C, A}, A, nil},
		{"only ChaCha in common", []Suite{A, C}, []Suite{C}, C, nil},
		{"unknown entries ignored", []Suite{9, 0, A}, []Suite{A, 200}, A, nil},
		{"duplicates ignored", []Suite{A, A, A, C}, []Suite{A, C}, A, nil},
		{"nothing in common", []Suite{A}, []Suite{C}, 0, ErrNoCommonSuite},
		{"empty", nil, []Suite{C}, 0, ErrNoCommonSuite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, order := range [][2][]Suite{{tt.a, tt.b}, {tt.b, tt.a}} {
				got, err := Negotiate(order[0], order[1])
				if got != tt.want || !errors.Is(err, tt.err) {
					t.Fatalf("Negotiate(%v, %v) = %v, %v; want %v, %v", order[0], order[1], got, err, tt.want, tt.err)
				}
			}
		})
	}
}

func TestPreferredSuite(t *testing.T) {
	p := PreferredSuite()
	if !p.Valid() {
		t.Fatalf("PreferredSuite %v not valid", p)
	}
	if l := LocalPreference(); len(l) != 2 || l[0] != p {
		t.Fatalf("LocalPreference %v does not start with %v", l, p)
	}
	if p == AES256GCM != hasAESHardware() {
		t.Fatal("PreferredSuite disagrees with the CPU")
	}
}

func FuzzOpen(f *testing.F) {
	a, _ := pair(f, ChaCha20Poly1305)
	f.Add(sealInPlace(f, a, 0, []byte("seed packet")))
	f.Add([]byte{TypeData})
	f.Add(make([]byte, HeaderLen+Overhead))
	_, b := pair(f, ChaCha20Poly1305)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		orig := bytes.Clone(pkt)
		pt, c, err := b.Open(pkt)
		if err != nil {
			return
		}
		// Only an authentic packet opens; re-sealing it must reproduce it.
		again, err := a.Seal(make([]byte, 0, len(orig)), orig[1], c, bytes.Clone(pt))
		if err != nil || !bytes.Equal(again, orig) {
			t.Fatalf("opened a packet that does not re-seal to itself: %v", err)
		}
	})
}

func benchmarkSeal(b *testing.B, s Suite) {
	a, _ := pair(b, s)
	buf := make([]byte, SealedLen(1400))
	b.SetBytes(1400)
	b.ReportAllocs()
	for i := range uint64(b.N) {
		if _, err := a.Seal(buf, 0, i, buf[HeaderLen:HeaderLen+1400]); err != nil {
			b.Fatal(err)
		}
	}
}

func benchmarkOpen(b *testing.B, s Suite) {
	a, r := pair(b, s)
	pkt := sealInPlace(b, a, 1, make([]byte, 1400))
	work := make([]byte, len(pkt))
	b.SetBytes(1400)
	b.ReportAllocs()
	for b.Loop() {
		copy(work, pkt) // Open decrypts in place
		if _, _, err := r.Open(work); err != nil {
			b.Fatal(err)
		}
	}
}

func benchmarkSealParallel(b *testing.B, s Suite) {
	a, _ := pair(b, s)
	b.SetBytes(1400)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, SealedLen(1400))
		for pb.Next() {
			c, _ := a.NextCounter()
			if _, err := a.Seal(buf, 0, c, buf[HeaderLen:HeaderLen+1400]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkSeal(b *testing.B) {
	for _, s := range suites {
		b.Run(s.String(), func(b *testing.B) { benchmarkSeal(b, s) })
	}
}

func BenchmarkOpen(b *testing.B) {
	for _, s := range suites {
		b.Run(s.String(), func(b *testing.B) { benchmarkOpen(b, s) })
	}
}

func BenchmarkSealParallel(b *testing.B) {
	for _, s := range suites {
		b.Run(s.String(), func(b *testing.B) { benchmarkSealParallel(b, s) })
	}
}

// TestSealWithOpenWith: the batch forms use the caller's nonce buffer,
// whatever it held before, agree with Seal and Open on the wire, and leave
// the counting to CountSent and CountRecv (which rekey-after-bytes reads).
func TestSealWithOpenWith(t *testing.T) {
	for _, s := range suites {
		t.Run(s.String(), func(t *testing.T) {
			a, b := pair(t, s)
			var garbage Nonce
			for i := range garbage {
				garbage[i] = 0xa5
			}
			msg := bytes.Repeat([]byte{7}, 1400)
			buf := make([]byte, SealedLen(len(msg)))
			copy(buf[HeaderLen:], msg)
			n := garbage
			pkt, err := a.SealWith(&n, buf, 0, 5, buf[HeaderLen:HeaderLen+len(msg)])
			if err != nil {
				t.Fatal(err)
			}
			if want := sealInPlace(t, a, 5, msg); !bytes.Equal(pkt, want) {
				t.Fatal("SealWith and Seal differ on the wire")
			}
			if st := a.Stats(); st.SentBytes != uint64(len(pkt)) {
				t.Fatalf("SentBytes %d after Seal alone, want %d (SealWith counts nothing)", st.SentBytes, len(pkt))
			}
			a.CountSent(len(pkt))
			if st := a.Stats(); st.SentBytes != 2*uint64(len(pkt)) {
				t.Fatalf("SentBytes %d after CountSent", st.SentBytes)
			}
			n = garbage
			got, c, err := b.OpenWith(&n, bytes.Clone(pkt))
			if err != nil || c != 5 || !bytes.Equal(got, msg) {
				t.Fatalf("OpenWith: counter %d, equal %v, %v", c, bytes.Equal(got, msg), err)
			}
			if st := b.Stats(); st.RecvPackets != 0 {
				t.Fatalf("OpenWith counted %d packets", st.RecvPackets)
			}
			b.CountRecv(3, 300)
			if st := b.Stats(); st.RecvPackets != 3 || st.RecvBytes != 300 {
				t.Fatalf("after CountRecv: %+v", st)
			}
			tampered := bytes.Clone(pkt)
			tampered[len(tampered)-1] ^= 1
			if _, _, err := b.OpenWith(&n, tampered); !errors.Is(err, ErrAuth) {
				t.Fatalf("tampered: %v, want ErrAuth", err)
			}
			a.CountSent(int(RekeyAfterBytes))
			if !a.NeedsRekey(a.Created()) {
				t.Fatal("bytes counted with CountSent do not trigger rekey")
			}
		})
	}
}
