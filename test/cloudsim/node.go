// Package cloudsim simulates nodes against a real cloud over UDP on
// loopback: each simulated node is a transport/signaling client and a UDP
// socket. Tests and benchmarks drive many of them at once.
package cloudsim

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/pki"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/handshake"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

// ErrTimeout: no reply within the retransmission schedule.
var ErrTimeout = errors.New("cloudsim: no reply")

// Node is one simulated node.
type Node struct {
	FQDN  string
	Reply messages.LoginReply
	conn  *net.UDPConn
	cfg   handshake.Config
	retry signaling.Retry

	mu         sync.Mutex
	sess       *signaling.Session
	login      chan []byte
	pending    map[messages.MsgID]chan messages.Envelope
	directions []messages.Direction
	updates    []messages.PeerUpdate
	enc        messages.Encoder
	done       chan struct{}
}

// NewNode makes a node with a certificate from ca (valid now, for an hour)
// and a UDP socket on 127.0.0.1.
func NewNode(ca *pki.CA, fqdn string) (*Node, error) {
	id, err := ca.Issue(pki.RoleNode, fqdn, time.Hour)
	if err != nil {
		return nil, err
	}
	return NewNodeWithIdentity(ca, id)
}

// NewNodeWithIdentity uses a given identity (e.g. an expired one).
func NewNodeWithIdentity(ca *pki.CA, id *pki.Identity) (*Node, error) {
	v, err := pki.NewVerifier(ca.Cert, pki.RoleAS)
	if err != nil {
		return nil, err
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	n := &Node{
		FQDN: id.FQDN, conn: conn,
		cfg: handshake.Config{
			Static:  handshake.StaticKey{Private: id.NoiseStatic.Private, Public: id.NoiseStatic.Public},
			CertDER: id.CertDER,
			Verify: func(der []byte) (string, [32]byte, error) {
				p, err := v.Verify(der, pki.RoleAS.ServiceFQDN(), time.Now())
				if err != nil {
					return "", [32]byte{}, err
				}
				return p.FQDN, p.NoiseStatic, nil
			},
		},
		retry:   signaling.Retry{Initial: 200 * time.Millisecond, Max: time.Second, Attempts: 8},
		login:   make(chan []byte, 4),
		pending: map[messages.MsgID]chan messages.Envelope{},
		done:    make(chan struct{}),
	}
	go n.read()
	return n, nil
}

// Addr is the node's socket address.
func (n *Node) Addr() netip.AddrPort { return n.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Close closes the socket and waits for the reader.
func (n *Node) Close() {
	n.conn.Close()
	<-n.done
}

// Send writes raw bytes (garbage, replays) to addr.
func (n *Node) Send(addr netip.AddrPort, b []byte) error {
	_, err := n.conn.WriteToUDPAddrPort(b, addr)
	return err
}

func (n *Node) read() {
	defer close(n.done)
	buf := make([]byte, messages.MaxPacket)
	for {
		sz, from, err := n.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		pkt := append([]byte(nil), buf[:sz]...)
		switch messages.PacketType(pkt[0]) {
		case messages.TypeLoginReply:
			select {
			case n.login <- pkt:
			default:
			}
		case messages.TypeSignaling:
			n.onSealed(pkt, from)
		}
	}
}

func (n *Node) onSealed(pkt []byte, from netip.AddrPort) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.sess == nil {
		return
	}
	env, err := n.sess.OpenEnvelope(nil, pkt, time.Now())
	if err != nil {
		return
	}
	switch env.Type {
	case messages.MsgDirection:
		d, err := messages.DecodeBody[messages.Direction](env)
		if err != nil {
			return
		}
		n.directions = append(n.directions, d)
		n.answer(env, messages.DirectionAck{TunnelID: d.TunnelID, OK: true}, from)
	case messages.MsgPeerUpdate:
		u, err := messages.DecodeBody[messages.PeerUpdate](env)
		if err != nil {
			return
		}
		n.updates = append(n.updates, u)
		n.answer(env, messages.PeerUpdateAck{}, from)
	default:
		if ch := n.pending[env.ID]; ch != nil {
			select {
			case ch <- env:
			default:
			}
		}
	}
}

func (n *Node) answer(req messages.Envelope, body messages.Body, to netip.AddrPort) {
	pkt, err := n.sess.SealMessage(nil, &n.enc, req.ID, n.FQDN, time.Now(), body)
	if err == nil {
		_, _ = n.conn.WriteToUDPAddrPort(pkt, to)
	}
}

// Directions returns the Directions received so far.
func (n *Node) Directions() []messages.Direction {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]messages.Direction(nil), n.directions...)
}

// Updates returns the PeerUpdates received so far.
func (n *Node) Updates() []messages.PeerUpdate {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]messages.PeerUpdate(nil), n.updates...)
}

// Login logs in at the AS, retransmitting the same packet until the reply
// comes. dup sends every packet twice (a duplicating network). A refusal is
// a *messages.Error.
func (n *Node) Login(asAddr netip.AddrPort, dup bool) (*messages.LoginReply, error) {
	l, err := signaling.StartLogin(n.cfg, pki.RoleAS.ServiceFQDN(), n.FQDN, messages.LoginRequest{Software: "cloudsim"}, time.Now())
	if err != nil {
		return nil, err
	}
	for sent := 1; ; sent++ {
		n.Send(asAddr, l.Packet())
		if dup {
			n.Send(asAddr, l.Packet())
		}
		wait, ok := n.retry.Delay(sent)
		if !ok {
			return nil, fmt.Errorf("cloudsim: login %s: %w", n.FQDN, ErrTimeout)
		}
		timer := time.NewTimer(wait)
		select {
		case pkt := <-n.login:
			timer.Stop()
			res, err := l.Finish(pkt)
			if err != nil {
				return nil, err
			}
			n.mu.Lock()
			n.sess, n.Reply = res.Session, res.Reply
			n.mu.Unlock()
			return &res.Reply, nil
		case <-timer.C:
		}
	}
}

// Request sends body to NMS (retransmitting; dup sends each copy twice) and
// returns the reply envelope. A refusal is returned as a *messages.Error.
func (n *Node) Request(to netip.AddrPort, body messages.Body, dup bool) (messages.Envelope, error) {
	id := messages.NewMsgID()
	ch := make(chan messages.Envelope, 1)
	n.mu.Lock()
	if n.sess == nil {
		n.mu.Unlock()
		return messages.Envelope{}, errors.New("cloudsim: not logged in")
	}
	n.pending[id] = ch
	pkt, err := n.sess.SealMessage(nil, &n.enc, id, n.FQDN, time.Now(), body)
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.pending, id)
		n.mu.Unlock()
	}()
	if err != nil {
		return messages.Envelope{}, err
	}
	for sent := 1; ; sent++ {
		n.Send(to, pkt)
		if dup {
			n.Send(to, pkt)
		}
		wait, ok := n.retry.Delay(sent)
		if !ok {
			return messages.Envelope{}, fmt.Errorf("cloudsim: %s %s: %w", n.FQDN, body.MsgType(), ErrTimeout)
		}
		timer := time.NewTimer(wait)
		select {
		case env := <-ch:
			timer.Stop()
			if env.Type == messages.MsgError {
				e, err := messages.DecodeBody[messages.Error](env)
				if err != nil {
					return env, err
				}
				return env, &e
			}
			return env, nil
		case <-timer.C:
		}
	}
}

// Register registers the node's socket with NMS, after probing the alt
// port for the second observation.
func (n *Node) Register(dup bool) (messages.RegisterReply, error) {
	var observed []netip.AddrPort
	if len(n.Reply.NATProbe) > 0 {
		if o, err := n.probe(n.Reply.NATProbe[0]); err == nil {
			observed = append(observed, o)
		}
	}
	env, err := n.Request(n.Reply.NMS[0], messages.Register{
		Locals: []netip.AddrPort{n.Addr()}, IPv4: true, Port: n.Addr().Port(), ProbeObserved: observed,
	}, dup)
	if err != nil {
		return messages.RegisterReply{}, err
	}
	return messages.DecodeBody[messages.RegisterReply](env)
}

// probe asks a cloud observation point what it sees. It uses a second
// socket read: the node's reader ignores probe replies, so this dials.
func (n *Node) probe(to netip.AddrPort) (netip.AddrPort, error) {
	// Send from the node's own socket so the mapping is the node's; the
	// reply is read by a short-lived socket-level wait on a channel.
	var b [messages.ProbeLen]byte
	messages.Probe{ID: 1}.Put(b[:])
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer c.Close()
	// Loopback has no NAT: the probe socket's own address stands in for
	// the node's mapping as seen from the second point.
	if _, err := c.Write(b[:]); err != nil {
		return netip.AddrPort{}, err
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 64)
	sz, err := c.Read(buf)
	if err != nil {
		return netip.AddrPort{}, err
	}
	r, err := messages.ParseProbeReply(buf[:sz])
	if err != nil {
		return netip.AddrPort{}, err
	}
	return r.Observed, nil
}

// Tunnel asks NMS for a tunnel to peer and returns the Path.
func (n *Node) Tunnel(peer string, dup bool) (messages.Path, error) {
	env, err := n.Request(n.Reply.NMS[0], messages.TunnelRequest{PeerFQDN: peer}, dup)
	if err != nil {
		return messages.Path{}, err
	}
	return messages.DecodeBody[messages.Path](env)
}
