// Package seal is the data-plane AEAD: it seals inner IP packets into data
// packets and opens them again, in place and without allocating, with the keys
// a node↔node handshake produced.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/sys/cpu"
)

// Suite names a data-plane AEAD. The values travel in handshake payloads, so
// they must never be renumbered.
type Suite uint8

const (
	AES256GCM        Suite = 1
	ChaCha20Poly1305 Suite = 2
)

// ErrNoCommonSuite is returned by Negotiate when the two lists share no suite.
var ErrNoCommonSuite = errors.New("seal: no common cipher suite")

func (s Suite) String() string {
	switch s {
	case AES256GCM:
		return "AES-256-GCM"
	case ChaCha20Poly1305:
		return "ChaCha20-Poly1305"
	}
	return fmt.Sprintf("Suite(%d)", uint8(s))
}

// Valid reports whether s is a suite this package implements.
func (s Suite) Valid() bool { return s == AES256GCM || s == ChaCha20Poly1305 }

// newAEAD builds the AEAD for s. Both constructions are safe for concurrent
// Seal/Open calls, which is what lets parallel crypto workers share one key.
func (s Suite) newAEAD(key [32]byte) (cipher.AEAD, error) {
	switch s {
	case AES256GCM:
		block, err := aes.NewCipher(key[:])
		if err != nil {
			return nil, fmt.Errorf("seal: %v: %w", s, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("seal: %v: %w", s, err)
		}
		return aead, nil
	case ChaCha20Poly1305:
		aead, err := chacha20poly1305.New(key[:])
		if err != nil {
			return nil, fmt.Errorf("seal: %v: %w", s, err)
		}
		return aead, nil
	}
	return nil, fmt.Errorf("seal: %w: %v", ErrUnknownSuite, s)
}

// hasAESHardware reports whether AES-GCM runs in constant-time hardware here.
// Without it Go's AES-GCM is several times slower than ChaCha20-Poly1305.
func hasAESHardware() bool {
	switch {
	case cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ:
		return true
	case cpu.ARM64.HasAES && cpu.ARM64.HasPMULL:
		return true
	case cpu.S390X.HasAES && cpu.S390X.HasAESGCM:
		return true
	}
	return false
}

// PreferredSuite is the faster suite on this CPU: AES-256-GCM where the CPU
// has AES and carry-less multiply instructions, ChaCha20-Poly1305 otherwise.
func PreferredSuite() Suite {
	if hasAESHardware() {
		return AES256GCM
	}
	return ChaCha20Poly1305
}

// LocalPreference is this node's suite list for handshakes, best first.
func LocalPreference() []Suite {
	if hasAESHardware() {
		return []Suite{AES256GCM, ChaCha20Poly1305}
	}
	return []Suite{ChaCha20Poly1305, AES256GCM}
}

// Negotiate picks the suite for a session from two preference lists (best
// first). It is symmetric — Negotiate(a, b) == Negotiate(b, a) — so both ends
// compute the same answer from the lists exchanged in the handshake without a
// further round trip. The suite with the lowest summed rank wins; a tie (one
// side prefers AES, the other lacks AES hardware) goes to ChaCha20-Poly1305,
// which is fast on every CPU while software AES is not. Unknown suites and
// duplicates in either list are ignored.
func Negotiate(a, b []Suite) (Suite, error) {
	best, bestRank := Suite(0), -1
	for _, s := range []Suite{ChaCha20Poly1305, AES256GCM} { // tie order
		ra, rb := rank(a, s), rank(b, s)
		if ra < 0 || rb < 0 {
			continue
		}
		if r := ra + rb; bestRank < 0 || r < bestRank {
			best, bestRank = s, r
		}
	}
	if bestRank < 0 {
		return 0, ErrNoCommonSuite
	}
	return best, nil
}

// rank is the position of s among the valid, first-seen entries of list, or -1.
func rank(list []Suite, s Suite) int {
	r := 0
	for i, x := range list {
		if !x.Valid() || firstIndex(list, x) != i {
			continue
		}
		if x == s {
			return r
		}
		r++
	}
	return -1
}

func firstIndex(list []Suite, s Suite) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}
