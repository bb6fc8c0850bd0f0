// Package handshake is the authenticated key exchange between two CYPHONIC
// nodes, and between a node and the AS at login: Noise IX
// (Noise_IX_25519_ChaChaPoly_BLAKE2s, the primitives WireGuard uses, fast and
// constant-time in software on every CPU) through github.com/flynn/noise.
//
// Each side's Noise static key is the X25519 key bound into its X.509
// certificate; each handshake payload carries the sender's certificate DER,
// its data suites, its receiver index, a timestamp and opaque caller bytes.
// Certificate checking is injected (VerifyFunc), so this package does not
// depend on the PKI. After the handshake each side checks that the key bound in
// the peer's certificate is the static key the peer proved in Noise (as Nebula
// does), then derives the data keys for seal.Keypair.
//
// Properties of IX the caller must know:
//   - msg1 travels in the clear (the initiator's certificate and payload are
//     visible to an observer) and is not authenticated: anyone can replay or
//     forge one. Only the initiator's first data packet proves it holds its
//     static key. A responder therefore must not send data on a new session,
//     nor Commit msg1's timestamp to its ReplayGuard, until it has opened a
//     data packet on that session (WireGuard's rule for responders).
//   - msg2 is encrypted and authenticates the responder to the initiator.
//
// The messages returned here are the Noise bytes only; framing (packet type,
// receiver index of msg2 for routing) is the transport's job.
package handshake

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/flynn/noise"
	"golang.org/x/crypto/curve25519"

	"github.com/cyphonic/cyphonic-go/transport/seal"
)

// Prologues separate the uses of the handshake: a message made for one can
// never complete the other. Both sides must use the same one.
var (
	PrologueNode  = []byte("cyphonic/node/v1")
	PrologueLogin = []byte("cyphonic/login/v1")
)

var (
	ErrTooLarge       = errors.New("too large")
	ErrMalformed      = errors.New("malformed message")
	ErrVersion        = errors.New("unsupported payload version")
	ErrDecrypt        = errors.New("noise message rejected")
	ErrVerify         = errors.New("certificate rejected")
	ErrStaticMismatch = errors.New("certificate key does not match handshake static key")
	ErrWrongPeer      = errors.New("peer identity is not the expected one")
	ErrState          = errors.New("handshake step out of order")
	ErrReplay         = errors.New("handshake timestamp not newer than the last accepted")
)

var cipherSuite = noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashBLAKE2s)

// VerifyFunc checks a peer's certificate (chain to the overlay CA, validity,
// revocation) and returns the identity (FQDN) it certifies and the X25519
// Noise static key bound into it.
type VerifyFunc func(certDER []byte) (identity string, noiseStatic [32]byte, err error)

// StaticKey is a node's long-term X25519 Noise key pair.
type StaticKey struct {
	Private, Public [32]byte
}

// GenerateStaticKey makes a new static key from rng (crypto/rand if nil).
func GenerateStaticKey(rng io.Reader) (StaticKey, error) {
	if rng == nil {
		rng = rand.Reader
	}
	var priv [32]byte
	if _, err := io.ReadFull(rng, priv[:]); err != nil {
		return StaticKey{}, fmt.Errorf("handshake: generate static key: %w", err)
	}
	return NewStaticKey(priv)
}

// NewStaticKey derives the public half of priv.
func NewStaticKey(priv [32]byte) (StaticKey, error) {
	pub, err := curve25519.X25519(priv[:], curve25519.Basepoint)
	if err != nil {
		return StaticKey{}, fmt.Errorf("handshake: static key: %w", err)
	}
	k := StaticKey{Private: priv}
	copy(k.Public[:], pub)
	return k, nil
}

// Config is one side's long-term handshake setup; it can be shared by many
// handshakes and is never modified.
type Config struct {
	Static   StaticKey
	CertDER  []byte       // our certificate, binding Static.Public to our identity
	Suites   []seal.Suite // data suites, best first; nil means seal.LocalPreference()
	Verify   VerifyFunc   // checks the peer's certificate; required
	Prologue []byte       // PrologueNode or PrologueLogin
	Random   io.Reader    // ephemeral keys; nil means crypto/rand
}

func (c *Config) suites() []seal.Suite {
	if c.Suites == nil {
		return seal.LocalPreference()
	}
	return c.Suites
}

func (c *Config) random() io.Reader {
	if c.Random == nil {
		return rand.Reader
	}
	return c.Random
}

func (c *Config) check() error {
	if c.Verify == nil {
		return errors.New("handshake: config: no VerifyFunc")
	}
	if len(c.CertDER) == 0 || len(c.CertDER) > MaxCertLen {
		return fmt.Errorf("handshake: config: certificate of %d bytes", len(c.CertDER))
	}
	return nil
}

// newState starts a Noise IX state. rng supplies the ephemeral key.
func (c *Config) newState(initiator bool, rng io.Reader) (*noise.HandshakeState, error) {
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:   cipherSuite,
		Random:        rng,
		Pattern:       noise.HandshakeIX,
		Initiator:     initiator,
		Prologue:      c.Prologue,
		StaticKeypair: noise.DHKey{Private: c.Static.Private[:], Public: c.Static.Public[:]},
	})
	if err != nil {
		return nil, fmt.Errorf("handshake: noise state: %w", err)
	}
	return hs, nil
}

// Result is what a completed handshake yields. The keys are secret: build the
// seal.Keypair and call Wipe.
type Result struct {
	Initiator     bool
	PeerIdentity  string
	PeerStatic    [32]byte
	PeerCertDER   []byte
	PeerIndex     uint32    // put this in data packets to the peer
	LocalIndex    uint32    // the peer puts this in data packets to us
	PeerTimestamp time.Time // for the responder: msg1's timestamp (see ReplayGuard)
	PeerPayload   []byte    // the peer's opaque app bytes
	Suite         seal.Suite
	SendKey       [32]byte
	RecvKey       [32]byte
	// HandshakeHash is the Noise handshake hash, a channel binding unique to
	// this session (e.g. to tie a login request to this handshake).
	HandshakeHash []byte
}

// Keypair builds the data-plane keypair for this session.
func (r *Result) Keypair(now time.Time) (*seal.Keypair, error) {
	return seal.NewKeypair(r.Suite, r.SendKey, r.RecvKey, r.LocalIndex, r.PeerIndex, r.Initiator, now)
}

// Wipe zeroes the data keys once the keypair has been built.
func (r *Result) Wipe() {
	clear(r.SendKey[:])
	clear(r.RecvKey[:])
}

// peerInfo checks a decrypted payload against the peer's proven static key.
func (c *Config) peerInfo(hs *noise.HandshakeState, raw []byte) (payload, string, [32]byte, seal.Suite, error) {
	var static [32]byte
	p, err := decodePayload(raw)
	if err != nil {
		return p, "", static, 0, err
	}
	identity, bound, err := c.Verify(p.cert)
	if err != nil {
		return p, "", static, 0, fmt.Errorf("handshake: %w: %w", ErrVerify, err)
	}
	proven := hs.PeerStatic()
	if len(proven) != len(static) || subtle.ConstantTimeCompare(proven, bound[:]) != 1 {
		return p, "", static, 0, fmt.Errorf("handshake: %s: %w", identity, ErrStaticMismatch)
	}
	copy(static[:], proven)
	suite, err := seal.Negotiate(c.suites(), p.suites)
	if err != nil {
		return p, "", static, 0, fmt.Errorf("handshake: %s: %w", identity, err)
	}
	return p, identity, static, suite, nil
}

// Initiator runs the initiating side of one handshake.
type Initiator struct {
	cfg      Config
	expected string
	index    uint32
	started  bool
	done     bool

	// To let a garbage msg2 fail without spoiling the handshake, Finish
	// replays msg1 on a fresh Noise state from the same ephemeral key.
	ephemeral [32]byte
	payload1  []byte
	msg1      []byte
}

// NewInitiator prepares a handshake to the peer whose certificate must name
// expectedPeer; localIndex is our receiver index for the new session.
func NewInitiator(cfg Config, expectedPeer string, localIndex uint32) (*Initiator, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return &Initiator{cfg: cfg, expected: expectedPeer, index: localIndex}, nil
}

// Start returns msg1 carrying app (opaque to this package) and now as the
// replay timestamp.
func (i *Initiator) Start(app []byte, now time.Time) ([]byte, error) {
	if i.started {
		return nil, fmt.Errorf("handshake: start: %w", ErrState)
	}
	p := payload{index: i.index, timestamp: now, suites: i.cfg.suites(), cert: i.cfg.CertDER, app: app}
	raw, err := p.encode()
	if err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(i.cfg.random(), i.ephemeral[:]); err != nil {
		return nil, fmt.Errorf("handshake: ephemeral key: %w", err)
	}
	msg1, _, err := i.writeMsg1(raw)
	if err != nil {
		return nil, err
	}
	i.started, i.payload1, i.msg1 = true, raw, msg1
	return bytes.Clone(msg1), nil
}

func (i *Initiator) writeMsg1(raw []byte) ([]byte, *noise.HandshakeState, error) {
	hs, err := i.cfg.newState(true, bytes.NewReader(i.ephemeral[:]))
	if err != nil {
		return nil, nil, err
	}
	msg1, _, _, err := hs.WriteMessage(nil, raw)
	if err != nil {
		return nil, nil, fmt.Errorf("handshake: write msg1: %w", err)
	}
	return msg1, hs, nil
}

// Finish processes msg2. A msg2 that fails to decrypt or parse leaves the
// Initiator ready for the genuine one; once a msg2 authenticates, the
// Initiator is spent whether or not its contents are acceptable.
func (i *Initiator) Finish(msg2 []byte) (*Result, error) {
	if !i.started || i.done {
		return nil, fmt.Errorf("handshake: finish: %w", ErrState)
	}
	if len(msg2) < minMsg2Len || len(msg2) > MaxMessageLen {
		return nil, fmt.Errorf("handshake: msg2: %w: %d bytes", ErrMalformed, len(msg2))
	}
	msg1, hs, err := i.writeMsg1(i.payload1)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(msg1, i.msg1) {
		return nil, errors.New("handshake: internal error: msg1 not reproducible")
	}
	raw, send, recv, err := hs.ReadMessage(nil, msg2)
	if err != nil {
		return nil, fmt.Errorf("handshake: msg2: %w: %w", ErrDecrypt, err)
	}
	i.done = true // authenticated by the responder: no second msg2 is accepted
	if send == nil || recv == nil {
		return nil, errors.New("handshake: internal error: IX did not complete")
	}
	p, identity, static, suite, err := i.cfg.peerInfo(hs, raw)
	if err != nil {
		return nil, err
	}
	if identity != i.expected {
		return nil, fmt.Errorf("handshake: got %q, want %q: %w", identity, i.expected, ErrWrongPeer)
	}
	return &Result{
		Initiator:     true,
		PeerIdentity:  identity,
		PeerStatic:    static,
		PeerCertDER:   p.cert,
		PeerIndex:     p.index,
		LocalIndex:    i.index,
		PeerTimestamp: p.timestamp,
		PeerPayload:   p.app,
		Suite:         suite,
		SendKey:       send.UnsafeKey(),
		RecvKey:       recv.UnsafeKey(),
		HandshakeHash: bytes.Clone(hs.ChannelBinding()),
	}, nil
}

// Responder is the responding side of one handshake, between reading msg1 and
// replying. Its exported fields describe the (not yet authenticated, see the
// package comment) initiator so the caller can decide whether to reply:
// check ReplayGuard, the identity against policy, the app payload.
type Responder struct {
	PeerIdentity  string
	PeerStatic    [32]byte
	PeerCertDER   []byte
	PeerIndex     uint32
	PeerTimestamp time.Time
	PeerPayload   []byte
	Suite         seal.Suite

	cfg     Config
	hs      *noise.HandshakeState
	replied bool
}

// ReadInit parses and checks msg1: certificate, bound static key, a common
// data suite.
func ReadInit(cfg Config, msg1 []byte) (*Responder, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if len(msg1) < minMsg1Len || len(msg1) > MaxMessageLen {
		return nil, fmt.Errorf("handshake: msg1: %w: %d bytes", ErrMalformed, len(msg1))
	}
	hs, err := cfg.newState(false, cfg.random())
	if err != nil {
		return nil, err
	}
	raw, _, _, err := hs.ReadMessage(nil, msg1)
	if err != nil {
		return nil, fmt.Errorf("handshake: msg1: %w: %w", ErrDecrypt, err)
	}
	p, identity, static, suite, err := cfg.peerInfo(hs, raw)
	if err != nil {
		return nil, err
	}
	return &Responder{
		PeerIdentity:  identity,
		PeerStatic:    static,
		PeerCertDER:   p.cert,
		PeerIndex:     p.index,
		PeerTimestamp: p.timestamp,
		PeerPayload:   p.app,
		Suite:         suite,
		cfg:           cfg,
		hs:            hs,
	}, nil
}

// Reply returns msg2 carrying app and the session's Result. localIndex is our
// receiver index for the new session.
func (r *Responder) Reply(localIndex uint32, app []byte, now time.Time) ([]byte, *Result, error) {
	if r.replied {
		return nil, nil, fmt.Errorf("handshake: reply: %w", ErrState)
	}
	r.replied = true
	p := payload{index: localIndex, timestamp: now, suites: r.cfg.suites(), cert: r.cfg.CertDER, app: app}
	raw, err := p.encode()
	if err != nil {
		return nil, nil, err
	}
	msg2, recv, send, err := r.hs.WriteMessage(nil, raw)
	if err != nil {
		return nil, nil, fmt.Errorf("handshake: write msg2: %w", err)
	}
	if send == nil || recv == nil {
		return nil, nil, errors.New("handshake: internal error: IX did not complete")
	}
	return msg2, &Result{
		PeerIdentity:  r.PeerIdentity,
		PeerStatic:    r.PeerStatic,
		PeerCertDER:   r.PeerCertDER,
		PeerIndex:     r.PeerIndex,
		LocalIndex:    localIndex,
		PeerTimestamp: r.PeerTimestamp,
		PeerPayload:   r.PeerPayload,
		Suite:         r.Suite,
		SendKey:       send.UnsafeKey(),
		RecvKey:       recv.UnsafeKey(),
		HandshakeHash: bytes.Clone(r.hs.ChannelBinding()),
	}, nil
}
