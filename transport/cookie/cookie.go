// Package cookie is the node <-> node handshake's defence against floods of
// handshake inits: WireGuard's MAC1/MAC2 and cookie reply (WireGuard paper
// §5.4), adapted to a Noise IX handshake whose initiator knows the
// responder's identity (FQDN) but not yet its static key.
//
// Every init carries two MACs in a trailer:
//
//	init packet | mac1 (16) | mac2 (16)
//
//	mac1 = BLAKE2s-128(key = BLAKE2s-256("cyphonic/mac1/v1" 0x00 responder FQDN), packet)
//	mac2 = BLAKE2s-128(key = cookie, packet | mac1)   (zero without a cookie)
//
// mac1 lets a responder drop, before any Diffie-Hellman, every packet that
// was not made for it by someone who knows its name: scans, garbage, inits
// meant for another node. The name is not secret, so mac1 does not stop a
// determined attacker; the cookie does. A responder under load answers an
// init that lacks a valid mac2 with a cookie reply instead of running the
// handshake:
//
//	cookie = BLAKE2s-128(key = secret, source address (16) | port (2))
//	reply  = nonce (24) | XChaCha20-Poly1305(key = BLAKE2s-256("cyphonic/cookie/v1" 0x00 responder FQDN),
//	                                         nonce, cookie, ad = the init's mac1)
//
// The secret is random and replaced every RotateEvery, so the responder keeps
// no state per initiator: a cookie is recomputed from the packet's source.
// Only someone who receives at the source address learns the cookie, so an
// attacker that spoofs its source gets no handshake run while the responder
// is busy. Binding the reply to the init's mac1 (the AEAD's associated data)
// lets an initiator accept only a reply to an init it sent. A reply (56
// bytes, 64 with its packet header) is far smaller than the init (≥ 400
// bytes with a certificate) it answers, so the node is no amplifier.
//
// Unlike WireGuard, the keys derive from the responder's name, not its
// static public key: under Noise IX the initiator learns the responder's
// static key only from msg2. The cookie reply's encryption therefore hides
// the cookie only from someone who does not know the responder's name; the
// source binding, which is what matters, does not depend on it.
package cookie

import (
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"
)

// Sizes on the wire.
const (
	MACLen     = 16
	TrailerLen = 2 * MACLen // mac1 | mac2 at the end of an init
	NonceLen   = chacha20poly1305.NonceSizeX
	// ReplyLen is the cookie reply body: nonce | sealed cookie.
	ReplyLen = NonceLen + MACLen + chacha20poly1305.Overhead
)

// Timers.
const (
	// RotateEvery is how often a responder replaces its cookie secret; a
	// cookie is valid until the secret it was made under is replaced.
	RotateEvery = 2 * time.Minute
	// Lifetime is how long an initiator uses a cookie: less than
	// RotateEvery, so it stops before the responder's secret can have
	// moved on (as WireGuard's cookie generator does).
	Lifetime = RotateEvery - 10*time.Second
)

// Errors.
var (
	ErrShort    = errors.New("cookie: message too short")
	ErrNoInit   = errors.New("cookie: no init awaits a reply")
	ErrDecrypt  = errors.New("cookie: reply does not open")
	ErrBadReply = errors.New("cookie: reply of the wrong size")
)

const (
	labelMAC1   = "cyphonic/mac1/v1"
	labelCookie = "cyphonic/cookie/v1"
)

// deriveKey is BLAKE2s-256(label 0x00 identity).
func deriveKey(label, identity string) [32]byte {
	h, _ := blake2s.New256(nil) // never fails without a key
	h.Write([]byte(label))
	h.Write([]byte{0})
	h.Write([]byte(identity))
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// mac is BLAKE2s-128 keyed by key over the parts.
func mac(key []byte, parts ...[]byte) [MACLen]byte {
	h, err := blake2s.New128(key)
	if err != nil {
		panic("cookie: BLAKE2s key: " + err.Error()) // keys here are always 16-32 bytes
	}
	for _, p := range parts {
		h.Write(p)
	}
	var m [MACLen]byte
	h.Sum(m[:0])
	return m
}

// sourceBytes is the cookie's input: a source address as 16 bytes and a port.
func sourceBytes(src netip.AddrPort) [18]byte {
	var b [18]byte
	a := src.Addr().Unmap().As16()
	copy(b[:16], a[:])
	b[16], b[17] = byte(src.Port()>>8), byte(src.Port())
	return b
}

// split returns the MAC'd parts of msg, which ends in the trailer.
func split(msg []byte) (body, mac1, mac2 []byte, err error) {
	if len(msg) <= TrailerLen {
		return nil, nil, nil, ErrShort
	}
	n := len(msg) - TrailerLen
	return msg[:n], msg[n : n+MACLen], msg[n+MACLen:], nil
}

// Checker is the responder's side. It is safe for concurrent use.
type Checker struct {
	mac1Key   [32]byte
	cookieKey [32]byte
	aead      cipher.AEAD // XChaCha20-Poly1305 under cookieKey, for replies
	rand      io.Reader

	mu       sync.RWMutex
	secret   [32]byte
	secretAt time.Time // zero: no secret yet
}

// NewChecker makes the checker of the node named identity. rng makes
// secrets and nonces (crypto/rand if nil).
func NewChecker(identity string, rng io.Reader) *Checker {
	if rng == nil {
		rng = rand.Reader
	}
	c := &Checker{mac1Key: deriveKey(labelMAC1, identity), cookieKey: deriveKey(labelCookie, identity), rand: rng}
	// Made once: a busy responder seals a reply per flood packet, and
	// the AEAD is safe for concurrent use (it holds only the key).
	aead, err := chacha20poly1305.NewX(c.cookieKey[:])
	if err != nil {
		panic("cookie: XChaCha20-Poly1305 key: " + err.Error()) // the key is always 32 bytes
	}
	c.aead = aead
	return c
}

// CheckMAC1 reports whether msg (an init with its trailer) carries a valid
// mac1. It is cheap (one BLAKE2s over the message) and runs before anything
// else looks at the message.
func (c *Checker) CheckMAC1(msg []byte) bool {
	body, m1, _, err := split(msg)
	if err != nil {
		return false
	}
	want := mac(c.mac1Key[:], body)
	return subtle.ConstantTimeCompare(want[:], m1) == 1
}

// CheckMAC2 reports whether msg carries a valid mac2 for a cookie given to
// src under the current secret. Check mac1 first.
func (c *Checker) CheckMAC2(msg []byte, src netip.AddrPort, now time.Time) bool {
	_, _, m2, err := split(msg)
	if err != nil {
		return false
	}
	var zero [MACLen]byte
	if subtle.ConstantTimeCompare(m2, zero[:]) == 1 {
		// No cookie: the sender says so, and a MAC of all zeros is as good
		// as never made. Saves a MAC over the whole packet for every one
		// of a naive flood's packets.
		return false
	}
	c.mu.RLock()
	if c.secretAt.IsZero() || now.Sub(c.secretAt) >= RotateEvery {
		c.mu.RUnlock()
		return false
	}
	s := sourceBytes(src)
	ck := mac(c.secret[:], s[:])
	c.mu.RUnlock()
	want := mac(ck[:], msg[:len(msg)-MACLen])
	return subtle.ConstantTimeCompare(want[:], m2) == 1
}

// Reply appends to dst the cookie reply (ReplyLen bytes) that answers msg,
// an init from src with a valid mac1.
func (c *Checker) Reply(dst, msg []byte, src netip.AddrPort, now time.Time) ([]byte, error) {
	_, m1, _, err := split(msg)
	if err != nil {
		return dst, err
	}
	ck, err := c.cookieFor(src, now)
	if err != nil {
		return dst, err
	}
	var nonce [NonceLen]byte
	if _, err := io.ReadFull(c.rand, nonce[:]); err != nil {
		return dst, fmt.Errorf("cookie: nonce: %w", err)
	}
	dst = append(dst, nonce[:]...)
	return c.aead.Seal(dst, nonce[:], ck[:], m1), nil
}

// cookieFor computes src's cookie, replacing the secret if it is due.
func (c *Checker) cookieFor(src netip.AddrPort, now time.Time) ([MACLen]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.secretAt.IsZero() || now.Sub(c.secretAt) >= RotateEvery {
		if _, err := io.ReadFull(c.rand, c.secret[:]); err != nil {
			return [MACLen]byte{}, fmt.Errorf("cookie: secret: %w", err)
		}
		c.secretAt = now
	}
	s := sourceBytes(src)
	return mac(c.secret[:], s[:]), nil
}

// Generator is the initiator's side toward one responder: it adds the MACs
// to our inits and takes the responder's cookie replies. It is safe for
// concurrent use.
type Generator struct {
	mac1Key   [32]byte
	cookieKey [32]byte

	mu       sync.Mutex
	lastMAC1 [MACLen]byte // of the last init sent
	awaiting bool         // lastMAC1 may still be answered
	cookie   [MACLen]byte
	cookieAt time.Time // zero: none
}

// NewGenerator makes the generator for inits to the node named peer.
func NewGenerator(peer string) *Generator {
	return &Generator{mac1Key: deriveKey(labelMAC1, peer), cookieKey: deriveKey(labelCookie, peer)}
}

// AddMACs fills the trailer, the last TrailerLen bytes of msg: mac1 always,
// mac2 if we hold a cookie younger than Lifetime (zeros otherwise).
func (g *Generator) AddMACs(msg []byte, now time.Time) error {
	body, m1, m2, err := split(msg)
	if err != nil {
		return err
	}
	mac1 := mac(g.mac1Key[:], body)
	copy(m1, mac1[:])
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lastMAC1, g.awaiting = mac1, true
	if g.cookieAt.IsZero() || now.Sub(g.cookieAt) >= Lifetime {
		clear(m2)
		return nil
	}
	mac2 := mac(g.cookie[:], msg[:len(msg)-MACLen])
	copy(m2, mac2[:])
	return nil
}

// HasCookie reports whether the next init will carry a mac2.
func (g *Generator) HasCookie(now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.cookieAt.IsZero() && now.Sub(g.cookieAt) < Lifetime
}

// ConsumeReply opens a cookie reply body (ReplyLen bytes) to the last init
// we sent and keeps its cookie. Each init's reply is taken once: copies and
// replays of it fail with ErrNoInit.
func (g *Generator) ConsumeReply(reply []byte, now time.Time) error {
	if len(reply) != ReplyLen {
		return ErrBadReply
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.awaiting {
		return ErrNoInit
	}
	aead, err := chacha20poly1305.NewX(g.cookieKey[:])
	if err != nil {
		return fmt.Errorf("cookie: %w", err)
	}
	var ck [MACLen]byte
	if _, err := aead.Open(ck[:0], reply[:NonceLen], reply[NonceLen:], g.lastMAC1[:]); err != nil {
		return ErrDecrypt
	}
	g.cookie, g.cookieAt, g.awaiting = ck, now, false
	return nil
}
