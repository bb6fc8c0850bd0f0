package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/dataplane/hold"
	rt "github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/sequencer"
	"github.com/cyphonic/cyphonic-go/transport/handshake"
	"github.com/cyphonic/cyphonic-go/transport/udp"
)

// Queue bounds that are not per peer.
const (
	controlQueueDepth = 1024 // control packets waiting for the socket
	guardSize         = 4096 // identities the handshake replay guard remembers
	// minBufSize lets a whole handshake message (the largest node <-> node
	// packet besides data) and ordinary signaling fit in one buffer. Node
	// handshakes carry no application payload beyond an init's padding,
	// which only fills a certificate up to initPadTo (< MaxCertLen),
	// and the MAC trailer fits in the slack, so the payload limit is left out:
	// every batch holds maxBatch buffers, and this size sets the daemon's
	// memory under load (4.3 KB buffers cost twice the RSS of 2.3 KB ones).
	minBufSize = messages.RelayHeaderLen + messages.HandshakeRespHeaderLen + handshake.MaxMessageLen - handshake.MaxAppPayloadLen + 64
)

// Dataplane is a node's data plane. Make it with New, then Start it.
//
// It is what wireguard-go calls the device: every peer actor, crypto worker
// and I/O goroutine holds a pointer to it and reads the fields of the first
// group directly. The data path itself is send.go (TUN to socket) and
// receive.go (socket to TUN).
//
// Ownership. The first group is set by New (crypto by Start, before any
// packet moves) and never written again: read without a lock. The tables,
// the handle set, the queues, the hold queue and the counters are safe for
// concurrent use on their own (atomics, copy-on-write maps, their own
// mutexes). The last group is the API's: guarded by mu.
//
// Locks and their order: every mutex here is a leaf. d.mu, Set.mu,
// peerTables.mu (writers only), peerHandle.mu, peerSession.iniMu and the locks inside
// fairQueue, hold.Queue and ingress's limiters are each taken alone, never
// while another is held, and none is held across a send to an actor or a
// device call. The data path takes only the fairQueue locks, once per
// batch; everything else it reads is an atomic or a copy-on-write map.
type Dataplane struct {
	sys       *rt.System
	cfg       Config
	log       *slog.Logger
	self      string           // our FQDN (breaks ties when both sides initiate)
	handshake handshake.Config // our identity in node-to-node handshakes
	timing    peerTiming
	pool      *batchPool
	// inBudget and outBudget bound the packets in flight in each
	// direction over all peers (budget.go).
	inBudget, outBudget *budget
	crypto              *workerPool // the crypto workers; set by Start

	tables *peerTables            // VIP -> peer and receiver index -> session, read per packet
	set    *peerSet               // every peer's handle, by FQDN
	guard  *handshake.ReplayGuard // init timestamps, per peer identity
	out    *fairQueue             // sealed batches (per peer) and control packets for the socket writer
	in     *fairQueue             // opened batches (per peer) for the TUN writer
	global dropCounters           // drops not attributable to a peer
	hs     *ingress               // handshake admission and its workers' queue
	// respLen is the size of our handshake response (0 until the first
	// is built): respond drops smaller inits before any work.
	respLen atomic.Int64
	// sojourn: per-stage wait histograms (sojourn.go; off unless asked for).
	sojourn sojourns
	// held keeps packets waiting for a tunnel (nil: Config.Overlay or
	// OnNoRoute unset, and such packets are dropped as before).
	held      *hold.Queue
	holdStats holdCounters
	// primerTTL is the hole-punch primer's TTL per local address, learnt
	// from the path toward the cloud (primerttl.go).
	primerTTL primerTTLs

	mu      sync.Mutex
	running bool
	actors  []*actor.PID // top-level actors of the data plane, in stop order
	peers   *actor.PID
	opened  map[string]uint64 // FQDNs Open was called for and Close was not: their latest Open's number
	opens   uint64            // Opens so far (numbers them)
	done    chan struct{}     // closed by Stop: writer goroutines return
	wg      sync.WaitGroup
	closeIO sync.Once
	// siblings are the extra sockets of Config.Readers, read only; the
	// data plane opens them (startUDP, in one actor) and closes them with
	// the Bind (stopIO, maybe in another): sibMu orders the two, and a
	// sibling opened after the close is closed at once.
	sibMu     sync.Mutex
	siblings  []*udp.Conn
	sibClosed bool
}

// New checks cfg and prepares a data plane; nothing runs until Start.
func New(sys *rt.System, cfg Config) (*Dataplane, error) {
	switch {
	case sys == nil:
		return nil, fmt.Errorf("%w: no actor system", ErrBadConfig)
	case cfg.Identity == nil:
		return nil, fmt.Errorf("%w: no identity", ErrBadConfig)
	case cfg.Verify == nil:
		return nil, fmt.Errorf("%w: no Verify", ErrBadConfig)
	case cfg.Device == nil:
		return nil, fmt.Errorf("%w: no TUN device", ErrBadConfig)
	case cfg.Bind == nil || cfg.Bind.V4 == nil && cfg.Bind.V6 == nil:
		return nil, fmt.Errorf("%w: no UDP socket", ErrBadConfig)
	}
	if cfg.Logger == nil {
		cfg.Logger = sys.Logger()
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	t := timingFor(cfg)
	d := &Dataplane{
		sys:    sys,
		cfg:    cfg,
		log:    cfg.Logger.With("component", "dataplane"),
		pool:   newBatchPool(max(headroom+cfg.Device.MTU()+messages.AEADOverhead, minBufSize)),
		tables: newTables(),
		set:    newSet(),
		out:    newFairQueue(controlQueueDepth),
		in:     newFairQueue(1),
		done:   make(chan struct{}),
		opened: make(map[string]uint64),
		self:   cfg.Identity.FQDN,
		guard:  handshake.NewReplayGuard(guardSize),
		timing: t,
	}
	d.inBudget, d.outBudget = newBudget(t.InBudget), newBudget(t.OutBudget)
	if cfg.Overlay != nil && cfg.OnNoRoute != nil {
		d.held = hold.New(cfg.Hold)
	}
	d.hs = newIngress(cfg.Identity.FQDN, cfg.HandshakeRate, &d.global)
	static, err := handshake.NewStaticKey(cfg.Identity.NoiseStatic.Private)
	if err != nil {
		return nil, fmt.Errorf("dataplane: %w", err)
	}
	d.handshake = handshake.Config{
		Static: static, CertDER: cfg.Identity.CertDER, Verify: cfg.Verify, Prologue: handshake.PrologueNode,
		Suites: cfg.Suites,
	}
	return d, nil
}

// timingFor is the production timing with cfg's non-zero tuning applied.
func timingFor(cfg Config) peerTiming {
	t := defaultTiming()
	for _, o := range []struct {
		dst *time.Duration
		v   time.Duration
	}{
		{&t.HandshakeTimeout, cfg.HandshakeTimeout}, {&t.HandshakeRetry, cfg.HandshakeRetry},
		{&t.Keepalive, cfg.Keepalive}, {&t.DeadAfter, cfg.DeadAfter},
		{&t.Tick, cfg.Tick}, {&t.MaxQueueDelay, cfg.MaxQueueDelay}, {&t.GapTimeout, cfg.GapTimeout},
		{&t.RekeyAfterTime, cfg.RekeyAfterTime}, {&t.CoDelTarget, cfg.CoDelTarget},
		{&t.FallbackAfter, cfg.FallbackAfter}, {&t.PassiveKeepalive, cfg.PassiveKeepalive},
		{&t.SilenceAfter, cfg.SilenceAfter},
	} {
		if o.v > 0 {
			*o.dst = o.v
		}
	}
	if cfg.RekeyAfterMessages > 0 {
		t.RekeyAfterMessages = cfg.RekeyAfterMessages
	}
	if cfg.AuthFailLimit > 0 {
		t.AuthFailLimit = cfg.AuthFailLimit
	}
	return t
}

func (d *Dataplane) canSend(ep netip.AddrPort) bool {
	_, err := d.cfg.Bind.ConnFor(ep)
	return err == nil
}

// Start implements the contract in api.go.
func (d *Dataplane) Start(parent actor.SpawnerContext) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running {
		return errors.New("dataplane: already started")
	}
	if parent == nil {
		parent = d.sys.Root()
	}
	pool, cryptoPID, err := spawnCrypto(parent, d.cfg.Workers, d.cfg.WorkerHook)
	if err != nil {
		return fmt.Errorf("dataplane: start: %w", err)
	}
	d.crypto = pool
	spawned := []*actor.PID{cryptoPID}
	fail := func(err error) error {
		for _, pid := range spawned {
			d.sys.Root().Stop(pid)
		}
		return fmt.Errorf("dataplane: start: %w", err)
	}
	props, err := managerProps(d)
	if err != nil {
		return fail(err)
	}
	peers, err := rt.Spawn(parent, "peers", "peers", props)
	if err != nil {
		return fail(err)
	}
	spawned = append(spawned, peers)
	// The tun and udp actors own the reader and writer goroutines: they
	// start them and, when stopped, close the device or sockets (the only
	// way to unblock a reader) and wait for them.
	tunPID, err := rt.Spawn(parent, "tun", "tun", ioProps(d.startTun, d.stopIO))
	if err != nil {
		return fail(err)
	}
	spawned = append(spawned, tunPID)
	udpPID, err := rt.Spawn(parent, "udp", "udp", ioProps(d.startUDP, d.stopIO))
	if err != nil {
		return fail(err)
	}
	spawned = append(spawned, udpPID)
	// Stop order: stop reading first, then the peers, then the workers.
	d.actors = []*actor.PID{tunPID, udpPID, peers, cryptoPID}
	d.peers = peers
	d.running = true
	return nil
}

// ioProps is an actor that runs start once (not again on a restart) and
// stop when it is stopped.
func ioProps(start, stop func()) *actor.Props {
	var once sync.Once
	return actor.PropsFromFunc(func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case *actor.Started:
			once.Do(start)
		case *actor.Stopping:
			stop()
		}
	})
}

func (d *Dataplane) startTun() {
	d.wg.Add(2)
	go func() { defer d.wg.Done(); d.routineReadTUN() }()
	go func() { defer d.wg.Done(); d.routineWriteTUN() }()
}

func (d *Dataplane) startUDP() {
	for _, c := range []*udp.Conn{d.cfg.Bind.V4, d.cfg.Bind.V6} {
		if c == nil {
			continue
		}
		// Whether the kernel took the offloads: without them the
		// socket moves one datagram per message (still batched).
		d.log.Debug("udp socket", "addr", c.LocalAddr(), "gso", c.GSO(), "gro", c.GRO())
		d.wg.Add(1)
		go func() { defer d.wg.Done(); d.routineReadUDP(c) }()
		for range d.readers() - 1 {
			s, err := c.Sibling()
			if err != nil {
				d.log.Warn("one socket reader fewer", "addr", c.LocalAddr(), "err", err)
				break
			}
			if !d.addSibling(s) {
				break
			}
			d.wg.Add(1)
			go func() { defer d.wg.Done(); d.routineReadUDP(s) }()
		}
	}
	d.wg.Add(1)
	go func() { defer d.wg.Done(); d.routineWriteUDP() }()
	for range handshakeWorkers() {
		d.wg.Add(1)
		go func() { defer d.wg.Done(); d.routineHandshake() }()
	}
}

// addSibling records s for stopIO to close, or closes it if stopIO has
// run; it reports whether s is to be read.
func (d *Dataplane) addSibling(s *udp.Conn) bool {
	d.sibMu.Lock()
	defer d.sibMu.Unlock()
	if d.sibClosed {
		_ = s.Close()
		return false
	}
	d.siblings = append(d.siblings, s)
	return true
}

// DefaultReaders is Config.Readers' default.
const DefaultReaders = 2

func (d *Dataplane) readers() int {
	if d.cfg.Readers <= 0 {
		return DefaultReaders
	}
	return d.cfg.Readers
}

// handshakeWorkers is how many goroutines run handshakes: half the cores,
// so a flood of inits that pass admission leaves the rest to the tunnels.
func handshakeWorkers() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// stopIO closes the device and the sockets and ends the writers. Either
// io actor stopping ends all I/O: one without the other is useless.
func (d *Dataplane) stopIO() {
	d.closeIO.Do(func() {
		close(d.done)
		_ = d.cfg.Device.Close()
		_ = d.cfg.Bind.Close()
		d.sibMu.Lock()
		d.sibClosed = true
		for _, s := range d.siblings {
			_ = s.Close()
		}
		d.sibMu.Unlock()
	})
}

// Stop implements the contract in api.go.
func (d *Dataplane) Stop(ctx context.Context) error {
	d.mu.Lock()
	if !d.running {
		d.mu.Unlock()
		d.stopIO()
		return nil
	}
	d.running = false
	pids := d.actors
	d.mu.Unlock()
	var errs []error
	for _, pid := range pids {
		d.sys.Root().Stop(pid)
		if err := d.sys.Registry().WaitGone(ctx, pid.Id); err != nil {
			errs = append(errs, fmt.Errorf("dataplane: stop %s: %w", pid.Id, err))
		}
	}
	d.stopIO()
	waited := make(chan struct{})
	go func() { d.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("dataplane: stop: goroutines: %w", ctx.Err()))
	}
	for _, q := range []*fairQueue{d.out, d.in} {
		for _, b := range q.Close() {
			b.Release()
		}
	}
	if d.crypto != nil {
		for _, b := range d.crypto.Close() {
			b.Release()
		}
	}
	d.pool.Close()
	return errors.Join(errs...)
}

// SendControl implements the contract in api.go.
func (d *Dataplane) SendControl(pkt []byte, to netip.AddrPort) error {
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	if _, err := d.cfg.Bind.ConnFor(to); err != nil {
		return fmt.Errorf("dataplane: send control: %w", err)
	}
	if len(pkt) > messages.MaxPacket {
		return fmt.Errorf("dataplane: send control: %w", messages.ErrTooLarge)
	}
	if !d.out.PushControl(controlPkt{Pkt: append([]byte(nil), pkt...), To: to}) {
		return ErrQueueFull
	}
	// The cloud is the public address the primer's TTL is learnt toward.
	d.learnPrimerTTL(to)
	return nil
}

// PrimeNAT implements the contract in api.go.
//
// Why: a node behind a NAT that filters by address (Linux conntrack, so
// nearly every home router) receives only from addresses it has sent to.
// When the cloud process a node is homed at dies, another one adopts the
// node and directs it from its own address (cloud/nms/home.go); without a
// mapping toward that address the Direction is dropped at our NAT until
// the node notices the loss itself, up to a keepalive period later.
//
// The packet is a NAT probe (messages.Probe, a random ID) rather than
// anything sealed: should the TTL not stop it (a TTL not confirmed by the
// path, or a cloud nearer than the first public router), the NMS answers it
// as the stateless probe it is, and the session ignores the reply (an ID
// it did not ask for). Nothing reaches a worker or the store.
func (d *Dataplane) PrimeNAT(to netip.AddrPort) error {
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	if _, err := d.cfg.Bind.ConnFor(to); err != nil {
		return fmt.Errorf("dataplane: prime NAT: %w", err)
	}
	ttl, ok := d.primerHops(to)
	if !ok {
		return nil // a global address: no NAT of ours to open
	}
	pkt := make([]byte, messages.ProbeLen)
	messages.Probe{ID: rand.Uint64()}.Put(pkt)
	if !d.out.PushControl(controlPkt{Pkt: pkt, To: to, HopLimit: uint8(ttl)}) {
		return ErrQueueFull
	}
	return nil
}

func (d *Dataplane) toPeers(msg any) error {
	d.mu.Lock()
	pid, running := d.peers, d.running
	d.mu.Unlock()
	if !running {
		return ErrNotStarted
	}
	d.sys.Root().Send(pid, msg)
	return nil
}

// Open implements the contract in api.go.
func (d *Dataplane) Open(info messages.PathInfo) error { return d.open(info, nil, true) }

// OpenThen implements the contract in api.go.
func (d *Dataplane) OpenThen(info messages.PathInfo, ready func(error)) error {
	return d.open(info, ready, false)
}

func (d *Dataplane) open(info messages.PathInfo, ready func(error), answer bool) error {
	if info.PeerFQDN == "" {
		return fmt.Errorf("%w: path without peer", ErrBadConfig)
	}
	if info.Kind == messages.PathRelay && info.Relay == nil {
		return fmt.Errorf("%w: relay path without ticket", ErrBadConfig)
	}
	d.mu.Lock()
	d.opens++
	seq := d.opens
	d.mu.Unlock()
	if err := d.toPeers(&openPeer{Info: info, Ready: ready, Answer: answer, Seq: seq}); err != nil {
		return err
	}
	d.mu.Lock()
	d.opened[info.PeerFQDN] = max(d.opened[info.PeerFQDN], seq)
	d.mu.Unlock()
	return nil
}

func (d *Dataplane) isOpen(fqdn string) bool {
	_, open := d.openSeq(fqdn)
	return open
}

// openSeq returns the number of the latest Open of fqdn, if it is open.
func (d *Dataplane) openSeq(fqdn string) (uint64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	seq, open := d.opened[fqdn]
	return seq, open
}

// Close implements the contract in api.go.
func (d *Dataplane) Close(fqdn string) error {
	d.mu.Lock()
	_, known := d.opened[fqdn]
	delete(d.opened, fqdn)
	d.mu.Unlock()
	if !known {
		return ErrUnknownPeer
	}
	return d.toPeers(&closePeer{FQDN: fqdn})
}

// PeerUpdate implements the contract in api.go.
func (d *Dataplane) PeerUpdate(fqdn string, endpoints []netip.AddrPort) error {
	if !d.isOpen(fqdn) {
		return ErrUnknownPeer
	}
	return d.toPeers(&updateEndpoints{FQDN: fqdn, Endpoints: append([]netip.AddrPort(nil), endpoints...)})
}

// Rebind implements the contract in api.go.
func (d *Dataplane) Rebind() error {
	// Our mapping moved: maybe another network, another count of NATs.
	d.primerTTL.forget()
	return d.toPeers(&rebindRelays{})
}

// Status implements the contract in api.go.
func (d *Dataplane) Status() []PeerStatus {
	hs := d.set.All()
	out := make([]PeerStatus, 0, len(hs))
	for _, h := range hs {
		out = append(out, h.Status())
	}
	return out
}

// Handshakes returns the handshake ingress's counters.
func (d *Dataplane) Handshakes() HandshakeStats { return d.hs.stats() }

// Drops implements the contract in api.go.
func (d *Dataplane) Drops() map[string]uint64 { return d.global.Snapshot() }

// WaitUp implements the contract in api.go. The peer may not exist yet
// right after Open (the manager creates it): WaitUp waits for it too.
func (d *Dataplane) WaitUp(ctx context.Context, fqdn string) error {
	for {
		h := d.set.Get(fqdn)
		if seq, open := d.openSeq(fqdn); h != nil && open && h.seq.Load() < seq {
			// Close then Open (a new path) still in the manager's
			// mailbox: h is the old peer's, maybe still up, and the
			// new peer is not there yet. Wait for it.
			h = nil
		}
		if h != nil {
			err := h.WaitUp(ctx)
			switch {
			case errors.Is(err, errHandleClosed):
				if !d.isOpen(fqdn) {
					return fmt.Errorf("dataplane: %s: %w", fqdn, ErrUnknownPeer)
				}
				// Closed and opened again (Close then Open, as on a
				// new path): this handle is the old peer's, which the
				// manager closed after the new Open was made. Wait
				// for the new one.
				if d.set.Get(fqdn) == h {
					select {
					case <-ctx.Done():
						return fmt.Errorf("dataplane: wait up %s: %w", fqdn, ctx.Err())
					case <-time.After(10 * time.Millisecond):
					}
				}
				continue
			case errors.Is(err, errHandleFailed):
				if d.set.Get(fqdn) != h {
					continue // replaced by a new Open
				}
				return fmt.Errorf("dataplane: %s: %w", fqdn, ErrPeerFailed)
			}
			return err
		}
		// Open may still be in the manager's mailbox.
		if !d.isOpen(fqdn) {
			return fmt.Errorf("dataplane: %s: %w", fqdn, ErrUnknownPeer)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dataplane: wait up %s: %w", fqdn, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// LocalAddrs implements the contract in api.go.
func (d *Dataplane) LocalAddrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, c := range []*udp.Conn{d.cfg.Bind.V4, d.cfg.Bind.V6} {
		if c != nil {
			out = append(out, c.LocalAddr())
		}
	}
	return out
}

// Peer returns the PID of the live peer actor for fqdn (tests, debugging).
func (d *Dataplane) Peer(fqdn string) *actor.PID {
	h := d.set.Get(fqdn)
	if h == nil {
		return nil
	}
	if p := h.Pipe(); p != nil {
		return p.Peer
	}
	return nil
}

// SequencerStats asks the live peer actor's two sequencers for fqdn for
// their counters (tests, debugging): how many batches each released,
// dropped, skipped, and held back out of order. It blocks the caller (never
// call it from an actor) until both answer or ctx ends.
func (d *Dataplane) SequencerStats(ctx context.Context, fqdn string) (out, in sequencer.StatsReply, err error) {
	h := d.set.Get(fqdn)
	if h == nil {
		return out, in, fmt.Errorf("dataplane: sequencer stats %s: %w", fqdn, ErrUnknownPeer)
	}
	p := h.Pipe()
	if p == nil {
		return out, in, fmt.Errorf("dataplane: sequencer stats %s: %w", fqdn, ErrNotStarted)
	}
	ask := func(pid *actor.PID) (sequencer.StatsReply, error) {
		timeout := time.Second
		if dl, ok := ctx.Deadline(); ok {
			timeout = max(time.Until(dl), time.Millisecond)
		}
		r, err := d.sys.Root().RequestFuture(pid, &sequencer.StatsRequest{}, timeout).Result()
		if err != nil {
			return sequencer.StatsReply{}, fmt.Errorf("dataplane: sequencer stats %s: %w", pid.Id, err)
		}
		sr, ok := r.(*sequencer.StatsReply)
		if !ok {
			return sequencer.StatsReply{}, fmt.Errorf("dataplane: sequencer stats %s: reply %T", pid.Id, r)
		}
		return *sr, nil
	}
	if out, err = ask(p.SeqOut); err != nil {
		return out, in, err
	}
	in, err = ask(p.SeqIn)
	return out, in, err
}

// yielder lets the Go scheduler run another goroutine every
// yieldBatches batches of a reader or writer loop. Under load those loops
// never block (there is always more to read or write), and a goroutine
// that does not block keeps its P until sysmon preempts it after 10 ms,
// while the goroutines that a ping needs next (a crypto worker, a
// sequencer, the other writer) wait in its run queue. But a yield is not
// the hundred nanoseconds it looks: runtime.Gosched puts the goroutine on
// the global run queue and wakes an idle P's thread to take it (a futex
// wake, and that thread's spin and sleep), and at a slow flow's rate,
// where the loop blocks in its next read anyway, that was a wake-up per
// batch for nothing (BENCHMARKS.md, s9-push). Every yieldBatches batches
// still bounds how long a busy loop holds its P to a few batches.
type yielder struct{ n int }

// yieldBatches is how many batches a loop handles between yields.
const yieldBatches = 4

// after counts a batch and yields every yieldBatches; it reports whether
// it yielded.
func (y *yielder) after() bool {
	y.n++
	if y.n < yieldBatches {
		return false
	}
	y.n = 0
	runtime.Gosched()
	return true
}

// readErrorPause keeps a reader that hits a persistent error from spinning.
const readErrorPause = 10 * time.Millisecond

func (d *Dataplane) stopped() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// dequeueDrops is the queue-delay policy where a batch leaves its flow:
// past maxDelay the whole batch goes (a hard bound for a stalled consumer),
// otherwise the flow's CoDel picks packets to drop early. It reports
// whether anything is left to write.
func dequeueDrops(it queueItem, maxDelay time.Duration, global *dropCounters) bool {
	b, now := it.Batch, time.Now()
	if now.Sub(b.born) > maxDelay {
		b.DropAll(QueueDelay, global)
		return false
	}
	if b.pipe != nil {
		b.DropLate(&b.flow().CoDel, now, it.Backlog, global)
	}
	return true
}

// yield is runtime.Gosched, for the TUN writer's loop (see yielder).
func yield() { runtime.Gosched() }
