package trs

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/cloud/relay"
	"github.com/cyphonic/cyphonic-go/cloud/server/svc"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/udp"
)

// Config is what a TRS needs.
type Config struct {
	Listen      []string // e.g. "127.0.0.1:7403", "[::1]:7403"
	IdleTimeout time.Duration
	MaxSessions int
	// TicketKeyFile, if set, keeps the ticket key across restarts
	// (relay.LoadTickets): the next process accepts the tickets minted
	// under this one's key, by the NMS of its process and by remote NMSs
	// that fetched it (they mint under it for up to their poll period
	// after a restart), and relayed tunnels survive a restart. Empty: a
	// key for this process's life only.
	TicketKeyFile string
	// MaxPerOwner bounds the bound sides one node's stateless tickets may
	// hold (relay.Config.MaxPerOwner; zero: its default).
	MaxPerOwner int
	// Link answers the NMS's RelayAlloc, in this process or another.
	Link   *svc.Link
	Logger *slog.Logger
}

// Service is a running TRS.
type Service struct {
	sys   *supervise.System
	link  *svc.Link
	table *relay.Table
	// tickets is the key NMS mints this TRS's stateless tickets under
	// (relay/ticket.go): from Config.TicketKeyFile, or made at start.
	tickets *relay.Tickets
	conns   []*udp.Conn
	addrs   []netip.AddrPort
	pid     *actor.PID
	log     *slog.Logger
	wg      sync.WaitGroup
}

// Start opens the sockets, starts the forwarders and spawns the root actor.
func Start(sys *supervise.System, cfg Config) (*Service, error) {
	if cfg.Link == nil {
		return nil, errors.New("trs: config needs a Link")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Service{sys: sys, link: cfg.Link, log: cfg.Logger.With("service", "trs")}
	for _, a := range cfg.Listen {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			s.closeConns()
			return nil, fmt.Errorf("trs: listen %q: %w", a, err)
		}
		network := "udp6"
		if ap.Addr().Is4() {
			network = "udp4"
		}
		c, err := udp.Listen(network, a)
		if err != nil {
			s.closeConns()
			return nil, fmt.Errorf("trs: %w", err)
		}
		s.conns = append(s.conns, c)
		s.addrs = append(s.addrs, c.LocalAddr())
	}
	var err error
	if cfg.TicketKeyFile != "" {
		s.tickets, err = relay.LoadTickets(cfg.TicketKeyFile)
	} else {
		s.tickets, err = relay.NewRandomTickets()
	}
	if err != nil {
		s.closeConns()
		return nil, fmt.Errorf("trs: %w", err)
	}
	s.table = relay.NewTable(relay.Config{IdleTimeout: cfg.IdleTimeout, MaxSessions: cfg.MaxSessions,
		MaxPerOwner: cfg.MaxPerOwner, Tickets: s.tickets, Self: s.addrs})
	// Each sweep looks at a bounded batch of sessions, so sweep often
	// enough that a full table is walked well within the idle timeout.
	sweep := min(max(s.table.IdleTimeout()/8, 10*time.Millisecond), time.Second)
	pid, err := sys.Spawn(nil, "trs", "trs", actor.PropsFromProducer(func() actor.Actor {
		return &root{s: s, sweep: sweep}
	}))
	if err != nil {
		s.closeConns()
		return nil, err
	}
	s.pid = pid
	for _, c := range s.conns {
		s.wg.Add(1)
		go s.forward(c)
	}
	return s, nil
}

func (s *Service) closeConns() {
	for _, c := range s.conns {
		c.Close()
	}
}

// Addrs are the relay sockets' addresses.
func (s *Service) Addrs() []netip.AddrPort { return s.addrs }

// PID is the root actor, svc.RootOf(addr, svc.TRS) to the NMS's Link.
func (s *Service) PID() *actor.PID { return s.pid }

// Tickets is the key this TRS opens stateless tickets under, for the NMS
// of its process to mint them with (nms.Config.RelayTickets): a tunnel
// setup then costs the TRS nothing, and a session exists only once a side
// has bound.
func (s *Service) Tickets() *relay.Tickets { return s.tickets }

// Table exposes the relay table's counters (Stats, Sessions) for metrics.
func (s *Service) Table() *relay.Table { return s.table }

// Close stops forwarding and the root actor.
func (s *Service) Close() {
	s.closeConns()
	s.wg.Wait()
	s.sys.Root().Stop(s.pid)
}

// forward is one socket's reader: read a batch, relay it, write it.
func (s *Service) forward(in *udp.Conn) {
	defer s.wg.Done()
	bufs := make([][]byte, udp.MaxBatch)
	for i := range bufs {
		bufs[i] = make([]byte, messages.MaxPacket)
	}
	sizes := make([]int, udp.MaxBatch)
	eps := make([]netip.AddrPort, udp.MaxBatch)
	// Outgoing batches, one per output socket.
	outBufs := make([][][]byte, len(s.conns))
	outEps := make([][]netip.AddrPort, len(s.conns))
	for i := range s.conns {
		outBufs[i] = make([][]byte, 0, udp.MaxBatch)
		outEps[i] = make([]netip.AddrPort, 0, udp.MaxBatch)
	}
	for {
		n, err := in.ReadBatch(bufs, sizes, eps)
		if err != nil {
			if errors.Is(err, udp.ErrClosed) {
				return
			}
			s.log.Debug("trs: read", "err", err)
			if n == 0 {
				continue
			}
		}
		now := time.Now()
		for i := range n {
			pkt := bufs[i][:sizes[i]]
			if len(pkt) > 0 && messages.PacketType(pkt[0]) == messages.TypeRelayBind {
				s.table.Bind(pkt, eps[i], now) // never answered; refusals counted by the table
				continue
			}
			tok, inner, err := messages.ParseRelay(pkt)
			if err != nil {
				s.table.CountDrop(relay.DropMalformed)
				continue
			}
			to, peer, ok, _ := s.table.Forward(tok, eps[i], len(inner), now)
			if !ok {
				continue // dropped, counted by the table
			}
			o := s.outFor(to)
			if o < 0 {
				continue
			}
			messages.PutRelayHeader(pkt, peer)
			outBufs[o] = append(outBufs[o], pkt)
			outEps[o] = append(outEps[o], to)
		}
		for o, c := range s.conns {
			if len(outBufs[o]) > 0 {
				_, _ = c.WriteBatch(outBufs[o], outEps[o])
				outBufs[o], outEps[o] = outBufs[o][:0], outEps[o][:0]
			}
		}
	}
}

// outFor picks the socket of to's address family.
func (s *Service) outFor(to netip.AddrPort) int {
	for i, c := range s.conns {
		if s.addrs[i].Addr().Is4() == to.Addr().Is4() {
			return i
		}
		_ = c
	}
	return -1
}

type tick struct{}

type root struct {
	s      *Service
	sweep  time.Duration
	cancel func()
	// refusals since the last warning, and when that was: a full table
	// refuses every allocation (thousands a second at a busy NMS), so
	// they are logged once a second with their count.
	refused    int
	lastWarned time.Time
}

func (r *root) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		r.cancel = supervise.Every(ctx, r.sweep, tick{})
	case *actor.Stopping, *actor.Restarting:
		// A restart runs Started again, which starts a new ticker.
		if r.cancel != nil {
			r.cancel()
		}
	case tick:
		if n := r.s.table.Expire(time.Now()); n > 0 {
			r.s.log.Debug("trs: expired relay sessions", "n", n)
		}
	default:
		f, ok, err := svc.DecodeFrame(m)
		if !ok {
			return
		}
		if err == nil && f.Envelope.Type == messages.MsgRelayKey {
			// An NMS in another process mints this TRS's tickets (svc.Rules:
			// only an NMS may ask).
			if reply, err := svc.NewFrame("", f.Envelope.ID, "trs", time.Now(), messages.RelayKeyReply{Key: r.s.tickets.Key()}); err == nil {
				if err := r.s.link.Reply(f, reply); err != nil {
					r.s.log.Debug("trs: answer relay key", "to", f.ReplyTo.String(), "err", err)
				}
			}
			return
		}
		if err != nil || f.Envelope.Type != messages.MsgRelayAlloc {
			r.s.log.Warn("trs: unexpected service message", "type", f.Envelope.Type, "err", err)
			return
		}
		a, err := messages.DecodeBody[messages.RelayAlloc](f.Envelope)
		ok = err == nil
		if ok {
			err = r.s.table.Allocate(a.Session,
				relay.Side{Token: a.TokenA, Key: a.KeyA, FQDN: a.FQDNA},
				relay.Side{Token: a.TokenB, Key: a.KeyB, FQDN: a.FQDNB},
				time.Unix(0, a.Expires))
			ok = err == nil
		}
		if err != nil {
			r.refused++
			if now := time.Now(); now.Sub(r.lastWarned) >= time.Second {
				r.s.log.Warn("trs: relay allocation refused", "err", err, "refused", r.refused)
				r.refused, r.lastWarned = 0, now
			}
		} else {
			// Debug: one per tunnel set up (most are a direct path's
			// fallback, never bound).
			r.s.log.Debug("trs: relay session", "a", a.FQDNA, "b", a.FQDNB)
		}
		if reply, err := svc.NewFrame("", f.Envelope.ID, "trs", time.Now(), messages.RelayAllocReply{Session: a.Session, OK: ok}); err == nil {
			if err := r.s.link.Reply(f, reply); err != nil {
				r.s.log.Warn("trs: answer relay allocation", "to", f.ReplyTo.String(), "err", err)
			}
		}
	}
}
