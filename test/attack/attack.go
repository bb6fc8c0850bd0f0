// Package attack builds what the adversarial tests send at a node: forged
// handshake inits and floods of them. It holds no assertions; the tests in
// test/dataplane and test/e2e run it against real nodes.
package attack

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/cookie"
	"github.com/cyphonic/cyphonic-go/transport/handshake"
)

// ForgedInits builds n distinct handshake inits to victim that claim to
// come from the node whose certificate (DER) and Noise static public key
// are given, without its private key: IX's msg1 carries the static key in
// clear and no Diffie-Hellman in it proves it, so anyone who has seen the
// certificate can build one. withMACs adds the trailer with a valid mac1
// (the victim's name is public); without, the init is in the format that
// had no MACs. Timestamps are in the future, so they pass a replay guard.
func ForgedInits(victim string, certDER []byte, static [32]byte, n int, withMACs bool) ([][]byte, error) {
	var junk [32]byte
	_, _ = rand.Read(junk[:])
	cfg := handshake.Config{
		Static:   handshake.StaticKey{Private: junk, Public: static},
		CertDER:  certDER,
		Verify:   func([]byte) (string, [32]byte, error) { return "", [32]byte{}, nil },
		Prologue: handshake.PrologueNode,
	}
	gen := cookie.NewGenerator(victim)
	out := make([][]byte, 0, n)
	for i := range n {
		idx := uint32(i + 1)
		ini, err := handshake.NewInitiator(cfg, victim, idx)
		if err != nil {
			return nil, fmt.Errorf("attack: %w", err)
		}
		msg1, err := ini.Start(nil, time.Now().Add(time.Hour+time.Duration(i)))
		if err != nil {
			return nil, fmt.Errorf("attack: %w", err)
		}
		hdr := messages.HandshakeHeader{Type: messages.TypeHandshakeInit, Sender: idx}
		size := hdr.Len() + len(msg1)
		if withMACs {
			size += messages.HandshakeTrailerLen
		}
		pkt := make([]byte, size)
		copy(pkt[hdr.Put(pkt):], msg1)
		if withMACs {
			if err := gen.AddMACs(pkt, time.Now()); err != nil {
				return nil, fmt.Errorf("attack: %w", err)
			}
		}
		out = append(out, pkt)
	}
	return out, nil
}

// MixedInits is the attacker's best against either version of a node:
// inits without MACs (what a node without mac1 runs) alternating with
// inits with a valid mac1.
func MixedInits(victim string, certDER []byte, static [32]byte, n int) ([][]byte, error) {
	a, err := ForgedInits(victim, certDER, static, n/2, false)
	if err != nil {
		return nil, err
	}
	b, err := ForgedInits(victim, certDER, static, n/2, true)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for i := range a {
		out = append(out, a[i], b[i])
	}
	return out, nil
}

// Flood sends pkts round-robin from c to to, from one goroutine (one
// core), until max packets or dur, whichever comes first, or ctx ends.
// every is the pace (0: as fast as it can). It returns how many it sent.
func Flood(ctx context.Context, c *net.UDPConn, to netip.AddrPort, pkts [][]byte, max uint64, dur, every time.Duration) uint64 {
	ua := net.UDPAddrFromAddrPort(to)
	start := time.Now()
	end := start.Add(dur)
	var sent uint64
	for i := uint64(0); i < max; i++ {
		if i%64 == 0 {
			if time.Now().After(end) || ctx.Err() != nil {
				break
			}
			if every > 0 { // keep to the rate, 64 packets at a time
				time.Sleep(time.Until(start.Add(time.Duration(i) * every)))
			}
		}
		if _, err := c.WriteToUDP(pkts[i%uint64(len(pkts))], ua); err == nil {
			sent++
		}
	}
	return sent
}
