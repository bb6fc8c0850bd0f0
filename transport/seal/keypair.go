package seal

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cyphonic/cyphonic-go/transport/replay"
)

// Session lifetime limits, WireGuard's values (whitepaper §6.1) plus a byte
// budget. The peer actor checks them: NeedsRekey starts a new handshake while
// the old keys still work; Expired means the keys must no longer be used.
const (
	// RekeyAfterMessages: start a new handshake after this many packets sent.
	RekeyAfterMessages uint64 = 1 << 60
	// RejectAfterMessages: never send or accept a counter at or above this.
	RejectAfterMessages = replay.RejectAfterMessages
	// RekeyAfterBytes bounds the data under one AES-GCM key well inside the
	// ~2^38 bytes TLS 1.3 (RFC 8446 §5.5) allows; applied to both suites so
	// the rule does not depend on the negotiation.
	RekeyAfterBytes uint64 = 1 << 36
	// RekeyAfterTime: the initiator of a session rekeys after this age.
	RekeyAfterTime = 120 * time.Second
	// RejectAfterTime: a session older than this is dead in both directions.
	RejectAfterTime = 180 * time.Second
)

// Keypair is one direction-pair of data keys from one handshake. Seal and Open
// are safe for concurrent use by parallel crypto workers. Replay is not: it
// belongs to the peer's sequential receive stage (see package replay).
type Keypair struct {
	send, recv  cipher.AEAD
	suite       Suite
	localIndex  uint32 // the index peers put in packets they send us
	remoteIndex uint32 // the index we put in packets we send the peer
	created     time.Time
	initiator   bool

	nonces sync.Pool // *Nonce for Seal and Open; a nonce passed to an interface escapes

	sendCounter atomic.Uint64 // next counter to hand out
	sentBytes   atomic.Uint64
	recvPackets atomic.Uint64
	recvBytes   atomic.Uint64

	// Replay is this session's receive window. Only the sequential stage
	// touches it, after Open has authenticated the packet.
	Replay replay.Window
}

// Stats is a snapshot of a keypair's traffic counters.
type Stats struct {
	SentPackets, SentBytes uint64
	RecvPackets, RecvBytes uint64
}

// NewKeypair builds a keypair. sendKey/recvKey come from the handshake;
// localIndex is ours (the receiver index in packets to us) and remoteIndex the
// peer's; initiator says which end started the handshake (only it rekeys on
// age, so both ends do not race to rekey); created stamps the session's age.
func NewKeypair(suite Suite, sendKey, recvKey [32]byte, localIndex, remoteIndex uint32, initiator bool, created time.Time) (*Keypair, error) {
	send, err := suite.newAEAD(sendKey)
	if err != nil {
		return nil, err
	}
	recv, err := suite.newAEAD(recvKey)
	if err != nil {
		return nil, err
	}
	return &Keypair{
		send:        send,
		recv:        recv,
		suite:       suite,
		localIndex:  localIndex,
		remoteIndex: remoteIndex,
		created:     created,
		initiator:   initiator,
		nonces:      sync.Pool{New: func() any { return new(Nonce) }},
	}, nil
}

func (k *Keypair) Suite() Suite        { return k.suite }
func (k *Keypair) LocalIndex() uint32  { return k.localIndex }
func (k *Keypair) RemoteIndex() uint32 { return k.remoteIndex }
func (k *Keypair) Created() time.Time  { return k.created }
func (k *Keypair) Initiator() bool     { return k.initiator }

// NextCounter hands out the next send counter. It returns false once the
// session has used all its counters: the caller must drop the packet and rekey.
// The peer stage calls it in packet order so sequence and nonce order agree.
func (k *Keypair) NextCounter() (uint64, bool) {
	c := k.sendCounter.Add(1) - 1
	if c >= RejectAfterMessages {
		k.sendCounter.Store(RejectAfterMessages) // stop the counter short of wrapping
		return 0, false
	}
	return c, true
}

// SealedLen is the length of the data packet that carries n plaintext bytes.
func SealedLen(n int) int { return HeaderLen + n + Overhead }

// Seal writes a data packet for plaintext under counter into dst[:SealedLen]
// and returns that slice. dst needs capacity SealedLen(len(plaintext)).
// Sealing in place is supported and is the intended use: put the inner packet
// at dst[HeaderLen:] and pass that as plaintext. Any other partial overlap is
// refused with ErrOverlap. flags go into the header and are authenticated.
func (k *Keypair) Seal(dst []byte, flags uint8, counter uint64, plaintext []byte) ([]byte, error) {
	nonce := k.nonces.Get().(*Nonce)
	out, err := k.SealWith(nonce, dst, flags, counter, plaintext)
	k.nonces.Put(nonce)
	if err == nil {
		k.CountSent(len(out))
	}
	return out, err
}

// Nonce is a nonce buffer a caller keeps for SealWith and OpenWith: one
// per batch or goroutine, on the heap (the AEAD interface makes a nonce
// escape), so a packet costs neither an allocation nor a pool round trip.
type Nonce [NonceLen]byte

// CountSent adds bytes sent under the keys (for rekey-after-bytes and
// Stats): SealWith leaves it to the caller, once per batch, so parallel
// workers do not contend on the counter once per packet.
func (k *Keypair) CountSent(bytes int) { k.sentBytes.Add(uint64(bytes)) }

// CountRecv adds packets and bytes opened under the keys (Stats): OpenWith
// leaves it to the caller, once per batch.
func (k *Keypair) CountRecv(packets, bytes int) {
	k.recvPackets.Add(uint64(packets))
	k.recvBytes.Add(uint64(bytes))
}

// SealWith is Seal with the caller's nonce buffer, without counting the
// bytes: the caller calls CountSent with what it sealed.
func (k *Keypair) SealWith(nonce *Nonce, dst []byte, flags uint8, counter uint64, plaintext []byte) ([]byte, error) {
	n := SealedLen(len(plaintext))
	if cap(dst) < n {
		return nil, fmt.Errorf("%w: need %d, have %d", ErrShortBuffer, n, cap(dst))
	}
	if counter >= RejectAfterMessages {
		return nil, ErrCounterLimit
	}
	dst = dst[:n]
	body := dst[HeaderLen:HeaderLen]
	// cipher.AEAD panics on partial overlap; in place means exactly at body.
	if overlaps(dst, plaintext) && start(plaintext) != start(dst[HeaderLen:]) {
		return nil, ErrOverlap
	}
	putHeader(dst, flags, k.remoteIndex, counter)

	*nonce = Nonce{}
	binary.BigEndian.PutUint64(nonce[4:], counter)
	k.send.Seal(body, nonce[:], plaintext, dst[:HeaderLen])
	return dst, nil
}

// Open authenticates and decrypts a data packet in place. plaintext aliases
// pkt. It does not consult the replay window: the sequential stage must call
// k.Replay.Accept(counter) and drop the packet if that returns false.
func (k *Keypair) Open(pkt []byte) (plaintext []byte, counter uint64, err error) {
	nonce := k.nonces.Get().(*Nonce)
	plaintext, counter, err = k.OpenWith(nonce, pkt)
	k.nonces.Put(nonce)
	if err == nil {
		k.CountRecv(1, len(pkt))
	}
	return plaintext, counter, err
}

// OpenWith is Open with the caller's nonce buffer, without counting: the
// caller calls CountRecv with what it opened.
func (k *Keypair) OpenWith(nonce *Nonce, pkt []byte) (plaintext []byte, counter uint64, err error) {
	h, err := ParseHeader(pkt)
	if err != nil {
		return nil, 0, err
	}
	if h.ReceiverIndex != k.localIndex {
		return nil, 0, ErrWrongIndex
	}
	if h.Counter >= RejectAfterMessages {
		return nil, 0, ErrCounterLimit
	}

	*nonce = Nonce{}
	binary.BigEndian.PutUint64(nonce[4:], h.Counter)
	plaintext, err = k.recv.Open(pkt[HeaderLen:HeaderLen], nonce[:], pkt[HeaderLen:], pkt[:HeaderLen])
	if err != nil {
		return nil, 0, ErrAuth
	}
	return plaintext, h.Counter, nil
}

// Stats returns the traffic counters. SentPackets counts counters handed out.
func (k *Keypair) Stats() Stats {
	return Stats{
		SentPackets: min(k.sendCounter.Load(), RejectAfterMessages),
		SentBytes:   k.sentBytes.Load(),
		RecvPackets: k.recvPackets.Load(),
		RecvBytes:   k.recvBytes.Load(),
	}
}

// NeedsRekey reports whether a new handshake should start: too many packets
// or bytes sent, or (for the session's initiator) too old.
func (k *Keypair) NeedsRekey(now time.Time) bool {
	if k.sendCounter.Load() >= RekeyAfterMessages || k.sentBytes.Load() >= RekeyAfterBytes {
		return true
	}
	return k.initiator && now.Sub(k.created) >= RekeyAfterTime
}

// Expired reports whether the keys must no longer be used in either direction.
func (k *Keypair) Expired(now time.Time) bool {
	return now.Sub(k.created) >= RejectAfterTime || k.sendCounter.Load() >= RejectAfterMessages
}
