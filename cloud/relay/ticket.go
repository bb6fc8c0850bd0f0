package relay

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/crypto/blake2s"

	"github.com/cyphonic/cyphonic-go/messages"
)

// Stateless tickets (issue 14). NMS used to ask the TRS for a relay
// session on every tunnel setup, so the table held one entry per tunnel
// set up in the last idle timeout (two minutes) whether or not anyone
// ever relayed through it; above ~550 setups/s it was full and further
// tunnels got no fallback relay. Now NMS mints both sides' tickets itself
// under a key it shares with the TRS of its process, and the TRS creates
// a session only when a side's first bind proves that side holds its
// bind key. Nothing at the TRS depends on how many tunnels were set up,
// only on how many sides actually bound.
//
// A token is
//
//	owner (4) | expiry (4, unix seconds) | nonce (7) | version<<1 | side (1)
//
// where owner is a keyed hash of the side's FQDN (so that the TRS can
// bound the sessions each node holds without knowing who it is), nonce is
// random and shared by the two sides (it, with the expiry, names the
// session), and side is 0 for A, 1 for B. A side's bind key is
// BLAKE2s-256 keyed with the ticket key over a label and the token: the
// TRS re-derives it from the token in the bind, so a token it never saw is
// as good as one it stored, and one nobody minted has a key nobody knows.
// The token is in clear on the wire and proves nothing; the bind's MAC
// under the derived key is what the TRS checks before it keeps anything.
//
// BLAKE2s keyed mode as a PRF, as WireGuard uses it for its MACs; the key
// is 32 random bytes per TRS, kept in its data directory (LoadTickets) so
// that a restarted TRS accepts the tickets minted before (NewRandomTickets
// makes one for a single process's life).

const (
	ticketVersion = 1
	// TicketKeyLen is the length of a ticket key.
	TicketKeyLen = 32
	// maxTicketLife bounds the expiry a token may claim; a token claiming
	// more was not minted here (no MAC is tried).
	maxTicketLife = 7 * 24 * time.Hour

	labelBind  = "cyphonic-go relay ticket v1: bind key\x00"
	labelOwner = "cyphonic-go relay ticket v1: owner\x00"
)

// ErrTicketKey is returned by NewTickets for a key of the wrong length.
var ErrTicketKey = errors.New("relay: ticket key must be 32 bytes")

// Tickets mints (NMS) and opens (TRS) stateless relay tickets under one
// key. It is safe for concurrent use and, after the first calls, does not
// allocate.
type Tickets struct {
	key  [TicketKeyLen]byte
	pool sync.Pool // of *prf, keyed hashes under key
	// The labels as bytes: a string converted at each Write would be
	// allocated (it escapes through hash.Hash).
	bindLabel, ownerLabel []byte
}

type prf struct {
	h   hash.Hash
	sum [blake2s.Size]byte
}

// NewTickets returns a Tickets under key (32 bytes).
func NewTickets(key []byte) (*Tickets, error) {
	if len(key) != TicketKeyLen {
		return nil, ErrTicketKey
	}
	t := &Tickets{bindLabel: []byte(labelBind), ownerLabel: []byte(labelOwner)}
	copy(t.key[:], key)
	if _, err := blake2s.New256(t.key[:]); err != nil {
		return nil, fmt.Errorf("relay: ticket key: %w", err)
	}
	t.pool.New = func() any {
		h, _ := blake2s.New256(t.key[:]) // the key was checked above
		return &prf{h: h}
	}
	return t, nil
}

// NewRandomTickets returns a Tickets under a fresh random key: a TRS's,
// for its life.
func NewRandomTickets() (*Tickets, error) {
	var k [TicketKeyLen]byte
	if _, err := rand.Read(k[:]); err != nil {
		return nil, fmt.Errorf("relay: ticket key: %w", err)
	}
	return NewTickets(k[:])
}

// LoadTickets returns a Tickets under the key kept in the file at path,
// creating the file with a fresh random key (mode 0600) if there is none.
// A TRS keeps its key there so that its next process accepts what the
// last one's NMSs minted: a remote NMS mints under the key it last
// fetched for up to its poll period after a restart, and live relayed
// tunnels rebind to the new process with their old tickets (the sessions
// come back at their first binds instead of the tunnels going silent).
// The file is as secret as the process's other keys in its data
// directory: with it one can mint sessions on this TRS, within its bounds.
func LoadTickets(path string) (*Tickets, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		var k [TicketKeyLen]byte
		if _, err := rand.Read(k[:]); err != nil {
			return nil, fmt.Errorf("relay: ticket key: %w", err)
		}
		if err := writeKeyFile(path, k[:]); err != nil {
			if !errors.Is(err, fs.ErrExist) {
				return nil, fmt.Errorf("relay: ticket key: %w", err)
			}
			// Another process made it first: use that one.
		} else {
			return NewTickets(k[:])
		}
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("relay: ticket key: %w", err)
	}
	tk, err := NewTickets(b)
	if err != nil {
		return nil, fmt.Errorf("%w (%s holds %d bytes)", err, path, len(b))
	}
	return tk, nil
}

// writeKeyFile creates path (failing if it exists) with key, synced, so a
// crash leaves either no file or the whole key.
func writeKeyFile(path string, key []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ticket-key-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(key); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// A hard link fails if path exists, unlike a rename: two processes
	// starting at once agree on one key.
	return os.Link(tmp.Name(), path)
}

// Key is the ticket key, for the TRS to hand an NMS in another process
// (messages.RelayKeyReply, over the gateway's mutual TLS). Secret.
func (t *Tickets) Key() [TicketKeyLen]byte { return t.key }

// Same reports whether o is under the same key as t.
func (t *Tickets) Same(o *Tickets) bool { return o != nil && t.key == o.key }

// mac computes the keyed hash of label|msg into out.
func (t *Tickets) mac(out []byte, label, msg []byte) {
	p := t.pool.Get().(*prf)
	p.h.Reset()
	p.h.Write(label)
	p.h.Write(msg)
	copy(out, p.h.Sum(p.sum[:0]))
	t.pool.Put(p)
}

// Owner is the 32-bit owner ID the tokens of fqdn's sides carry: a keyed
// hash, so nobody without the key can pick an FQDN that shares another
// node's ID (and its bound). Two nodes' IDs collide by chance with
// probability 2^-32 a pair; such nodes share one bound.
func (t *Tickets) Owner(fqdn string) uint32 {
	var out [blake2s.Size]byte
	t.mac(out[:], t.ownerLabel, []byte(fqdn))
	return binary.BigEndian.Uint32(out[:4])
}

// TicketSide is one side of a minted ticket.
type TicketSide struct {
	Token messages.RelayToken
	Key   messages.RelayBindKey
}

// Mint makes the two sides of a new relay session between the nodes
// fqdnA and fqdnB, valid until expires (rounded down to a second). Each
// node must be given only its own side.
func (t *Tickets) Mint(fqdnA, fqdnB string, expires time.Time) (a, b TicketSide, err error) {
	var nonce [7]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return a, b, fmt.Errorf("relay: ticket nonce: %w", err)
	}
	exp := uint32(max(expires.Unix(), 0))
	for i, s := range []*TicketSide{&a, &b} {
		fqdn := fqdnA
		if i == 1 {
			fqdn = fqdnB
		}
		tok := &s.Token
		binary.BigEndian.PutUint32(tok[0:4], t.Owner(fqdn))
		binary.BigEndian.PutUint32(tok[4:8], exp)
		copy(tok[8:15], nonce[:])
		tok[15] = ticketVersion<<1 | byte(i)
		t.mac(s.Key[:], t.bindLabel, tok[:])
	}
	return a, b, nil
}

// ticket is an opened token: what its fields say. Nothing in it is
// authenticated until a bind's MAC under key verifies.
type ticket struct {
	session [16]byte // the token without owner and side: names the session
	side    int
	owner   uint32
	expires time.Time
	key     messages.RelayBindKey
}

// tokenExpiry is the expiry a stateless token claims (its bytes 4-8).
func tokenExpiry(tok [16]byte) time.Time {
	return time.Unix(int64(binary.BigEndian.Uint32(tok[4:8])), 0)
}

// open reads a token's fields (tok: its 16 bytes) and derives its side's
// bind key. It reports DropUnknownToken for a token that is not of this
// format (or claims a life no ticket here gets) and DropExpired for one
// whose expiry has passed; both without computing anything. It does not
// allocate.
func (t *Tickets) open(tok []byte, now time.Time) (ticket, DropReason) {
	var k ticket
	if len(tok) != len(k.session) || tok[15]>>1 != ticketVersion {
		return k, DropUnknownToken
	}
	k.expires = tokenExpiry([16]byte(tok))
	switch {
	case !now.Before(k.expires):
		return k, DropExpired
	case k.expires.Sub(now) > maxTicketLife:
		return k, DropUnknownToken
	}
	k.side = int(tok[15] & 1)
	k.owner = binary.BigEndian.Uint32(tok[0:4])
	copy(k.session[4:], tok[4:])
	k.session[15] &^= 1
	t.mac(k.key[:], t.bindLabel, tok)
	return k, DropNone
}
