// Package relaybind authenticates relay binds: the packets with which a
// node tells TRS where one side of a relay session is (messages.RelayBind).
//
// A bind carries a keyed BLAKE2s-128 MAC (the construction WireGuard uses
// for its mac1) under the side's bind key, over the bind's type, token and
// counter. NMS makes a fresh random key per side of every relay session and
// hands it to that side's node inside sealed signaling and to TRS in the
// allocation, so the key never crosses the network in clear. The token,
// which every packet of the session carries in clear, only names the side;
// without the key nobody can make a bind, and a recorded bind is useless
// once TRS has accepted it or any later one, because TRS accepts only a
// counter above the last it accepted for that side.
//
// What a bind does not prove is where it came from: the node does not know
// its own NAT mapping, so the MAC cannot cover the source address. An
// on-path attacker who catches a bind before TRS does can deliver it from
// its own address first and so redirect that side until the node's next
// bind (one keepalive period); it could as well drop the packets, and
// what it gets redirected is ciphertext.
//
// Everything here is pure and allocation-free after NewMAC, so TRS can
// verify binds on its forwarding goroutines.
package relaybind

import (
	"crypto/subtle"
	"fmt"
	"hash"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/blake2s"

	"github.com/cyphonic/cyphonic-go/messages"
)

// MAC makes and checks the MACs of one bind key. It is not safe for
// concurrent use: TRS keeps one per session side, under that session's
// lock.
type MAC struct {
	h   hash.Hash
	sum [blake2s.Size]byte
}

// NewMAC returns the MAC for key.
func NewMAC(key messages.RelayBindKey) (*MAC, error) {
	h, err := blake2s.New128(key[:])
	if err != nil {
		return nil, fmt.Errorf("relaybind: %w", err)
	}
	return &MAC{h: h}, nil
}

// tag computes the MAC of a bind's first RelayBindMACOffset bytes into m.sum.
func (m *MAC) tag(bind []byte) []byte {
	m.h.Reset()
	m.h.Write(bind[:messages.RelayBindMACOffset])
	return m.h.Sum(m.sum[:0])[:messages.RelayBindMACLen]
}

// Put writes a complete bind for token and counter into b, which must hold
// messages.RelayBindLen bytes, and returns its length.
func (m *MAC) Put(b []byte, token messages.RelayToken, counter uint64) int {
	n := messages.PutRelayBindHeader(b, token, counter)
	copy(b[n:], m.tag(b))
	return messages.RelayBindLen
}

// Verify reports whether bind is a well-formed bind whose MAC is right
// under this key. It checks nothing else: the token and the counter's
// freshness are the caller's.
func (m *MAC) Verify(bind []byte) bool {
	if len(bind) != messages.RelayBindLen || messages.PacketType(bind[0]) != messages.TypeRelayBind {
		return false
	}
	return subtle.ConstantTimeCompare(m.tag(bind), bind[messages.RelayBindMACOffset:]) == 1
}

// Seal builds a bind under key: the node side, which binds once a
// keepalive period and can afford NewMAC each time.
func Seal(key messages.RelayBindKey, token messages.RelayToken, counter uint64) ([]byte, error) {
	m, err := NewMAC(key)
	if err != nil {
		return nil, err
	}
	b := make([]byte, messages.RelayBindLen)
	m.Put(b, token, counter)
	return b, nil
}

// Counter hands out a node's bind counters: strictly increasing, and
// seeded from the wall clock (unix nanoseconds) so that they keep
// increasing across restarts without stored state. A clock that steps
// back does not make them go back. The zero value is ready; it is safe for
// concurrent use.
type Counter struct{ last atomic.Uint64 }

// Next returns a counter above every one returned before.
func (c *Counter) Next(now time.Time) uint64 {
	wall := uint64(max(now.UnixNano(), 0))
	for {
		last := c.last.Load()
		next := max(wall, last+1)
		if c.last.CompareAndSwap(last, next) {
			return next
		}
	}
}

// Fresh is TRS's replay rule: a bind's counter must be above the last one
// accepted for its side.
func Fresh(counter, lastAccepted uint64) bool { return counter > lastAccepted }
