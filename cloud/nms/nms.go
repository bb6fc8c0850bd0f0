package nms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cyphonic/cyphonic-go/actors/retransmit"
	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/actors/txstore"
	"github.com/cyphonic/cyphonic-go/cloud/relay"
	"github.com/cyphonic/cyphonic-go/cloud/server/svc"
	"github.com/cyphonic/cyphonic-go/cloud/shrink"
	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

// Config is what an NMS needs.
type Config struct {
	Store     store.Store
	Listen    []string // signaling sockets, e.g. "127.0.0.1:7400", "[::1]:7400"
	AltListen []string // second observation point for NAT discovery (probes)
	// Link carries the NMS's frames to the TRS and to other NMSes, and
	// answers the AS and other NMSes.
	Link *svc.Link
	// TRS is the TRS root actor, in this process or another; zero means no
	// relay.
	TRS svc.Ref
	// TRSAddrs are the TRS's UDP addresses, put in relay tickets.
	TRSAddrs []netip.AddrPort
	// RelayTickets, when the TRS runs in this process, is its ticket key
	// (trs.Service.Tickets): NMS then mints each tunnel's relay tickets
	// itself (relay/ticket.go) instead of asking the TRS for a session,
	// so a setup costs the TRS nothing and its table holds only the
	// sessions nodes bind. Nil: NMS asks the TRS for its key (RelayKey,
	// every relayKeyEvery) and allocates with RelayAlloc until it has it.
	RelayTickets *relay.Tickets
	// Home is this NMS's process address (Link.Addr(): where other NMSes
	// reach it); recorded in node records as HomeNMS.
	Home string
	// Revoked reports whether a certificate serial (hex) is on the deny
	// list. With DenyList set, a tunnel request checks its two nodes
	// against one read of DenyList instead (revokedAny): both must say the
	// same.
	Revoked func(serial string) bool
	// DenyList returns the newest CA-signed deny list the cloud holds (nil:
	// none), e.g. (*pki.DenyListFile).CRL. NMS polls it every
	// DenyListPoll; a newer list ends the sessions of the nodes it revokes
	// at once and is pushed to every other node, which end their tunnels
	// to them. NMS only carries the list: it cannot sign one, and nodes keep
	// the newest valid list they have seen.
	DenyList     func() *pki.CRL
	DenyListPoll time.Duration // default 1 s
	// SessionIdle removes a session not refreshed for this long (default 3 min).
	SessionIdle time.Duration
	// Retry is the schedule for messages NMS sends to nodes (default
	// signaling.DefaultRetry()). Nodes retransmit on the same schedule
	// (actors/session's default), so it also sets the dedup window: a
	// reply is kept for the schedule's whole span plus slack, and a request
	// older than that is refused as a replay (guard.go). A node configured
	// with a longer schedule than the cloud's would see its last
	// retransmissions refused.
	Retry signaling.Retry
	// StoreWorkers bounds the store calls in flight (default 16); requests
	// beyond StoreWorkers+StoreQueue waiting for the store are dropped and
	// the nodes' retransmissions retry them.
	StoreWorkers, StoreQueue int
	// DedupEntries is the reply cache's capacity (default 1<<19). Only
	// requests that change something are cached (keepalives are not), each
	// for the dedup window (the nodes' retry schedule, ~13.5 s by
	// default), so size it as the peak rate of registrations, tunnel
	// requests and logouts times the window: the default holds ~38k/s.
	DedupEntries int
	// DedupPerNode bounds the cached transactions one session may start
	// per dedup window (default 256), so that one node cannot fill the
	// cache; beyond it its requests are dropped (and retransmitted).
	DedupPerNode int
	// SweepInterval is how often NMS reads the store's records to end the
	// sessions nobody holds any more: absolutely expired ones, and ones
	// homed here that this process has not seen (left by a crash). Default
	// the larger of 2*SessionIdle and 10 min: each sweep reads every record
	// (store.EachNode) and keeps 24 bytes per session for the workers to judge.
	SweepInterval time.Duration
	// Workers is the number of worker actors that open sealed packets and
	// run transactions, sharded by session ID (default GOMAXPROCS; see
	// shard.go). WorkerQueue bounds the packets waiting for one worker
	// (default 4096); beyond it they are dropped, counted per worker, and
	// the nodes retransmit.
	Workers, WorkerQueue int
	Logger               *slog.Logger

	// Lookups of sessions this NMS does not hold, made before anything
	// about the packet is authenticated (lookup.go). LookupRate bounds
	// them a second, over all workers (default 5000: a restart with 100k
	// nodes keepaliving every 15 s needs ~6.7k/s, so their retransmissions
	// catch up within seconds). LookupsInFlight bounds those waiting for
	// the store at once (default StoreQueue/4): the rest of the store
	// queue stays for authenticated work. UnknownSessionTTL is how long an
	// ID the store did not know is not looked up again; default, and at
	// most, Retry.Initial, so a node whose ID was cached as unknown just
	// before its login was written loses no more than its first copy.
	LookupRate        float64
	LookupsInFlight   int
	UnknownSessionTTL time.Duration
}

// Counters count what NMS did.
type Counters struct {
	Registered, Keepalives, Tunnels, TunnelErrors, Logouts, Expired atomic.Uint64
	Duplicates, Garbage, Probes, Delivered, DeliverFailed           atomic.Uint64
	// SessionExpired counts requests answered with CodeSessionExpired;
	// Busy those dropped because the store workers were saturated.
	SessionExpired, Busy atomic.Uint64
	// Stale counts requests dropped because they came in on a session
	// the node had already replaced by logging in again.
	Stale atomic.Uint64
	// Upgrades counts relayed pairs told to try a direct path after a
	// locator change.
	Upgrades atomic.Uint64
	// Revoked counts sessions ended because the deny list names the
	// node's certificate; DenyListPushes the deny lists sent to nodes.
	Revoked, DenyListPushes atomic.Uint64
	// Ended counts sessions the operator ended (EndSession).
	Ended atomic.Uint64
	// VIPLookups counts TunnelByVIP requests (a node's first packet to an
	// overlay address it had no tunnel for).
	VIPLookups atomic.Uint64
	// ReverseLookups counts VIPLookup requests (PTR queries for a VIP;
	// nothing set up).
	ReverseLookups atomic.Uint64
	// Requests refused before any work, by reason: CacheFull (the reply
	// cache did not take the entry), NodeLimit (the session started
	// DedupPerNode transactions this window), Replayed (older than any
	// retransmission of it could be).
	CacheFull, NodeLimit, Replayed atomic.Uint64
	// SessionsDeleted counts sessions removed from the store after they
	// ended here; Swept those the sweep found and removed; DeleteRetries
	// store deletions that failed or were refused and were queued again.
	SessionsDeleted, Swept, DeleteRetries atomic.Uint64
	// Adopted counts tunnel requests whose peer's home NMS had lost its
	// lease (its process died), so this NMS became the peer's home (home.go).
	Adopted atomic.Uint64
	// Packets of sessions this NMS does not hold, dropped before or instead
	// of a store lookup (lookup.go), by reason: UnknownSession (the store
	// did not know the ID, now or within UnknownSessionTTL), LookupRate
	// (the worker's lookups a second spent), LookupInFlight (its lookups in
	// flight at their bound, or this ID's already running).
	UnknownSession, LookupRate, LookupInFlight atomic.Uint64
	// The store lookups of such sessions, by answer: found, unknown (no
	// such session), failed (the read failed).
	LookupsFound, LookupsUnknown, LookupsFailed atomic.Uint64
}

// Service is a running NMS.
type Service struct {
	cfg          Config
	sys          *supervise.System
	replies      *txstore.Store[*replyState]
	delivers     *txstore.Store[*delivery] // by message ID: what NMS sent a node, awaiting its ack (tunnel.go)
	workers      *svc.Workers              // store I/O, off the actors' run loops
	listener     *svc.Listener
	alt          *svc.Listener
	conns        []*net.UDPConn // the signaling sockets (listener's)
	pid          *actor.PID
	shards       []*actor.PID         // nms/worker-<i>: fixed names, good across restarts
	shardSlots   []*supervise.Limiter // per worker: its packet queue's bound
	index        *fqdnIndex           // fqdn -> current session ID (which worker)
	held         *heldSet             // the sessions the workers hold, for the readers (held.go)
	unknownReads *readerBucket        // the readers' rate for packets of sessions not held (held.go)
	tunnels      *tunnelMap
	addrs        []netip.AddrPort
	altAddrs     []netip.AddrPort
	log          *slog.Logger
	Counters     Counters
	// KeepaliveTime is the keepalives' service time (katime.go), for the
	// process's /metrics.
	KeepaliveTime prometheus.Histogram
	sessCount     atomic.Int64
	// Gauges for metrics: deletions waiting for the store, entries in the
	// tunnels map.
	pendingDeletes, tunnelNodes atomic.Int64
	started                     time.Time
	window                      time.Duration // dedup window
	endedFor                    time.Duration // endedTTL(cfg.Retry)
	pollStop                    chan struct{} // ends pollDenyList
	pollDone                    chan struct{}
	pollOnce                    sync.Once
	leaseStop, leaseDone        chan struct{} // end renewLease (nil: no lease)
	leases                      leaseView     // other NMSes' leases, as last read (home.go)
	// leaseEpoch counts the times this NMS's lease may have lapsed: a
	// session's known mapping holds only within one epoch (ka.go).
	leaseEpoch atomic.Uint64
	// others: the other live processes' addresses (home.go, OtherClouds).
	others atomic.Pointer[[]store.LeaseInfo]
	// relayTickets: the TRS's ticket key, Config.RelayTickets or, with
	// the TRS in another process, as it last answered a RelayKey (nil
	// until then: the workers allocate with RelayAlloc).
	relayTickets atomic.Pointer[relay.Tickets]
	listGiven    bool // Config.DenyList was set (revokedAny reads it)
}

type replyState struct{ reply atomic.Pointer[[]byte] }

const dedupTTL = 2*signaling.MaxClockSkew + time.Minute

// Start opens the sockets and spawns the root actor.
func Start(sys *supervise.System, cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Link == nil {
		return nil, errors.New("nms: config needs a Store and a Link")
	}
	if cfg.SessionIdle <= 0 {
		cfg.SessionIdle = 3 * time.Minute
	}
	if cfg.Retry.Attempts == 0 {
		cfg.Retry = signaling.DefaultRetry()
	}
	if cfg.Revoked == nil {
		cfg.Revoked = func(string) bool { return false }
	}
	listGiven := cfg.DenyList != nil
	if cfg.DenyList == nil {
		cfg.DenyList = func() *pki.CRL { return nil }
	}
	if cfg.DenyListPoll <= 0 {
		cfg.DenyListPoll = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StoreWorkers <= 0 {
		cfg.StoreWorkers = 16
	}
	if cfg.StoreQueue <= 0 {
		cfg.StoreQueue = 1024
	}
	if cfg.DedupEntries <= 0 {
		cfg.DedupEntries = 1 << 19
	}
	if cfg.DedupPerNode <= 0 {
		cfg.DedupPerNode = 256
	}
	cfg.DedupPerNode = min(cfg.DedupPerNode, math.MaxUint16)
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = max(2*cfg.SessionIdle, 10*time.Minute)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.WorkerQueue <= 0 {
		cfg.WorkerQueue = 4096
	}
	if cfg.LookupRate <= 0 {
		cfg.LookupRate = 5000
	}
	if cfg.LookupsInFlight <= 0 {
		cfg.LookupsInFlight = max(1, cfg.StoreQueue/4)
	}
	if cfg.UnknownSessionTTL <= 0 || cfg.UnknownSessionTTL > cfg.Retry.Initial {
		cfg.UnknownSessionTTL = cfg.Retry.Initial
	}
	s := &Service{cfg: cfg, sys: sys, log: cfg.Logger.With("service", "nms"), started: time.Now(), window: dedupWindow(cfg.Retry),
		endedFor: endedTTL(cfg.Retry),
		index:    newFQDNIndex(), listGiven: listGiven, KeepaliveTime: newKeepaliveTime(),
		held: newHeldSet(), unknownReads: newReaderBucket(readerUnknownFactor * cfg.LookupRate)}
	s.tunnels = newTunnelMap(&s.tunnelNodes)
	s.relayTickets.Store(cfg.RelayTickets)
	for i := range cfg.Workers {
		// The IDs supervise.Spawn gives the root's children: a PID
		// resolves by ID, so these reach a restarted worker too.
		s.shards = append(s.shards, sys.Actors().NewLocalPID(fmt.Sprintf("nms/worker-%d", i)))
		s.shardSlots = append(s.shardSlots, supervise.NewLimiter(cfg.WorkerQueue))
	}
	var err error
	if s.replies, err = txstore.New[*replyState](txstore.Config{MaxEntries: int64(cfg.DedupEntries)}); err != nil {
		return nil, err
	}
	if s.delivers, err = txstore.New[*delivery](txstore.Config{}); err != nil {
		s.replies.Close()
		return nil, err
	}
	conns, err := svc.ListenUDP(cfg.Listen)
	if err != nil {
		s.closeStores()
		return nil, fmt.Errorf("nms: listen: %w", err)
	}
	alt, err := svc.ListenUDP(cfg.AltListen)
	if err != nil {
		for _, c := range conns {
			c.Close()
		}
		s.closeStores()
		return nil, fmt.Errorf("nms: listen alt: %w", err)
	}
	s.addrs, s.altAddrs, s.conns = svc.LocalAddrs(conns), svc.LocalAddrs(alt), conns
	s.workers = svc.NewWorkers(sys.Root(), cfg.StoreWorkers, cfg.StoreQueue)
	ready, once := make(chan struct{}), new(sync.Once)
	pid, err := sys.Spawn(nil, "nms", "nms", actor.PropsFromProducer(func() actor.Actor {
		return &root{s: s, ready: ready, readyOnce: once}
	}))
	if err == nil {
		select { // the workers exist before a packet is sent to them
		case <-ready:
		case <-time.After(10 * time.Second):
			sys.Root().Stop(pid)
			err = errors.New("nms: workers did not start")
		}
	}
	if err != nil {
		for _, c := range append(conns, alt...) {
			c.Close()
		}
		s.workers.Close()
		s.closeStores()
		return nil, err
	}
	s.pid = pid
	// Both listeners feed the same per-worker bounds: a worker's queue
	// bound covers everything sent to it.
	s.listener = svc.ServeSharded(sys.Root(), s.shards, s.shardSlots, route, conns, s.admitSealed, s.log)
	s.alt = svc.ServeSharded(sys.Root(), s.shards, s.shardSlots, route, alt, s.admitSealed, s.log)
	s.pollStop, s.pollDone = make(chan struct{}), make(chan struct{})
	go s.pollDenyList()
	if l, ok := cfg.Store.(store.Leases); ok && cfg.Home != "" {
		s.leaseStop, s.leaseDone = make(chan struct{}), make(chan struct{})
		go s.renewLease(l)
	}
	return s, nil
}

// mono is the monotonic time since Start, in nanoseconds.
func (s *Service) mono() int64 { return int64(time.Since(s.started)) }

// connFor is the signaling socket of to's address family, or nil.
func (s *Service) connFor(to netip.AddrPort) *net.UDPConn {
	if !to.IsValid() {
		return nil
	}
	for i, a := range s.addrs {
		if a.Addr().Unmap().Is4() == to.Addr().Unmap().Is4() {
			return s.conns[i]
		}
	}
	return nil
}

// pollDenyList reads the deny list (a file stat, sometimes a read and a
// signature check) off the actors and hands each newer list to every
// worker.
func (s *Service) pollDenyList() {
	defer close(s.pollDone)
	t := time.NewTicker(s.cfg.DenyListPoll)
	defer t.Stop()
	var last uint64
	for {
		if c := s.cfg.DenyList(); c != nil && c.Number > last {
			last = c.Number
			for _, w := range s.shards {
				s.sys.Root().Send(w, crlLoaded{c})
			}
		}
		select {
		case <-t.C:
		case <-s.pollStop:
			return
		}
	}
}

func (s *Service) closeStores() {
	s.replies.Close()
	s.delivers.Close()
}

// Addrs are the signaling sockets' addresses; AltAddrs the probe port's.
func (s *Service) Addrs() []netip.AddrPort    { return s.addrs }
func (s *Service) AltAddrs() []netip.AddrPort { return s.altAddrs }

// PID is the root actor, svc.RootOf(addr, svc.NMS) to other services'
// Links (the AS sends KeyHandover here).
func (s *Service) PID() *actor.PID { return s.pid }

// Dedup reports the reply cache: its counters, entries held and
// capacity.
func (s *Service) Dedup() (st txstore.Stats, entries, capacity int64) {
	return s.replies.Stats(), s.replies.Len(), s.replies.Cap()
}

// StoreQueue is the store jobs waiting for a worker, and the queue's size.
func (s *Service) StoreQueue() (queued, capacity int) { return s.workers.Queued(), s.workers.Cap() }

// StoreJobs is the number of store jobs NMS has queued since it started.
func (s *Service) StoreJobs() uint64 { return s.workers.Accepted() }

// PendingDeletes is the ended sessions still to be removed from the store.
func (s *Service) PendingDeletes() int { return int(s.pendingDeletes.Load()) }

// TunnelNodes is the number of nodes in NMS's tunnels map (nodes with a
// tunnel NMS set up, and their peers).
func (s *Service) TunnelNodes() int { return int(s.tunnelNodes.Load()) }

// Sessions is the number of live sessions.
func (s *Service) Sessions() int { return int(s.sessCount.Load()) }

// Close stops the listeners and the root actor and waits for the store
// calls in flight.
func (s *Service) Close() {
	s.pollOnce.Do(func() {
		close(s.pollStop)
		if s.leaseStop != nil {
			close(s.leaseStop)
		}
	})
	<-s.pollDone
	if s.leaseDone != nil {
		<-s.leaseDone
	}
	s.listener.Close()
	s.alt.Close()
	s.sys.Root().Stop(s.pid)
	s.workers.Close()
	s.closeStores()
}

// session is a node's signaling session as this NMS knows it. Only the
// worker holding it (shardOf its ID) touches it.
type session struct {
	id     uint32
	fqdn   string
	serial string
	sess   *signaling.Session
	from   netip.AddrPort // where its last authenticated packet came from
	conn   *net.UDPConn   // the socket it came in on
	// Times are Unix nanoseconds: a million sessions, so 8 bytes each
	// instead of a time.Time's 24.
	expires, lastSeen int64
	// crlHeld is the deny list number the node last acknowledged holding;
	// crlSent when NMS last pushed it one, crlSentNum which.
	crlHeld    uint64
	crlSent    int64
	crlSentNum uint64
	guard      reqGuard // replay and per-node dedup bounds (guard.go)
	// The observed mappings the store holds for the node, homed here, as
	// this worker last wrote or read them (locKnown); locJobs counts its
	// register and keepalive store jobs in flight, locOverlap that some
	// overlapped (ka.go).
	obs4, obs6           netip.AddrPort
	locEpoch             uint64 // Service.leaseEpoch when they were learnt
	locJobs              uint16
	locKnown, locOverlap bool
	push                 *denyPush // the deny-list push to it running, if any (tunnel.go)
}

// Messages between the NMS's actors.
type (
	tick      struct{}
	crlLoaded struct{ c *pki.CRL }
	// sessionFound: the store's answer about a session this NMS did not
	// hold (err is set when it has none), with the packet that asked.
	sessionFound struct {
		id   uint32
		node store.Node
		err  error
		pkt  *svc.Packet
		// epoch is Service.leaseEpoch before the lookup (ka.go).
		epoch uint64
	}
	// dropSession: a newer session of the same node replaced session id.
	dropSession struct{ id uint32 }
	// deleted: a batch of session deletions is done; failed are to retry.
	deleted struct {
		done   int
		failed []uint32
	}
	// swept: the sweep's read of the store, the sessions it holds.
	swept struct {
		sessions []storedSession
		err      error
	}
)

// storedSession is what the sweep needs of a record (times in Unix ns:
// the sweep holds one per session in the registry).
type storedSession struct {
	id               uint32
	home             bool // HomeNMS is this NMS
	expires, updated int64
}

// endedSession keeps an ended session's key for a while, so that a node
// still using it is told (sealed, so it can believe it) that its session
// expired and logs in again, instead of meeting silence until its failover
// timer fires, and so that a retransmitted Logout gets its ack again.
// Bounded by maxEnded per worker; kept for endedTTL.
type endedSession struct {
	fqdn  string
	sess  *signaling.Session
	until time.Time
}

const maxEnded = 1 << 16

// endedTTL is how long an ended session's key is kept: as long as a
// request sent before the end can still be retransmitted (the node's whole
// retry schedule and its last wait, plus slack for delay), as the reply
// cache keeps replies (guard.go). Longer would serve only a node that sent
// nothing for SessionIdle and then speaks again (a laptop waking up): it
// would be told at once instead of after its FailoverAfter (a few seconds,
// then it moves on or logs in again by itself), and for that the entries of
// every vanished node were kept ten minutes (up to 65,536 per worker, ~250 B
// each), past any churn's drain: the heap stayed up after churn.
func endedTTL(r signaling.Retry) time.Duration { return retransmit.Lifetime(r) + dedupSlack }

// worker is one of the NMS's worker actors (nms/worker-<i>): it holds the
// sessions whose IDs shard to it, opens their packets and runs their
// transactions (shard.go).
type worker struct {
	s        *Service
	idx      int
	sessions map[uint32]*session
	ended    map[uint32]endedSession // recently expired or logged out
	// deletes are the ended sessions still to be removed from the store;
	// deleting is set while a batch of them is on the store workers.
	deletes  map[uint32]struct{}
	deleting bool
	// Peaks of the maps above since each was last rebuilt (shrink.Map:
	// a Go map keeps the buckets of its largest size).
	sessionsPeak, endedPeak, deletesPeak shrink.Peak
	lookups                              *lookupGate // store lookups of sessions not held (lookup.go)
	ackBuf                               []byte      // keepalive acks are sealed here: sent at once, never kept (ka.go)
	cancel                               func()
	crl                                  *pki.CRL // the newest deny list acted on
	scratch                              []byte
	enc                                  messages.Encoder
	// relayWait: tunnel requests waiting for the TRS, by tunnel ID
	// (tunnel.go). crlChunks: crl cut into chunks; pushes: deny-list
	// pushes running.
	relayWait map[messages.MsgID]*tunnelTx
	crlChunks []messages.DenyList
	pushes    int
}

func newWorker(s *Service, idx int) *worker {
	n := float64(s.cfg.Workers)
	gate := newLookupGate(s.cfg.LookupRate/n, max(1, s.cfg.LookupsInFlight/s.cfg.Workers), s.cfg.UnknownSessionTTL)
	return &worker{s: s, idx: idx, sessions: map[uint32]*session{}, ended: map[uint32]endedSession{}, deletes: map[uint32]struct{}{},
		lookups: gate, relayWait: map[messages.MsgID]*tunnelTx{}}
}

func (w *worker) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		w.cancel = supervise.Every(ctx, tickInterval(w.s.cfg.SessionIdle), tick{})
	case *actor.Stopping, *actor.Restarting:
		// A restart runs Started again, which starts a new ticker.
		if w.cancel != nil {
			w.cancel()
		}
	case *svc.Packet:
		defer m.Done() // even if the worker panics on it (then it restarts)
		w.onPacket(ctx, m)
	case sessionFound:
		w.onSessionFound(ctx, m)
	case locatorStored:
		w.onLocatorStored(m)
	case tick:
		now := time.Now()
		w.expire(ctx, now)
		w.lookups.expire(w.s.mono())
		w.flushDeletes(ctx)
	case deleted:
		w.onDeleted(ctx, m)
	case swept:
		w.onSwept(ctx, m, time.Now())
	case crlLoaded:
		w.checkDenyList(ctx, m.c, time.Now())
	case adoptSession:
		w.adoptSession(m.node)
	case dropSession:
		// Replaced by a newer session of the same node on another worker.
		if se := w.sessions[m.id]; se != nil {
			w.removeSession(se)
		}
	case handover:
		w.onHandover(m)
	case deliverReq:
		w.deliver(ctx, m)
	case tunnelLoaded:
		w.onTunnelLoaded(ctx, m)
	case relayWaitOver:
		w.onRelayWaitOver(m)
	case deliverLocal:
		w.startDelivery(ctx, m.d)
	case redeliver:
		w.onRedeliver(ctx, m)
	default:
		if f, ok, err := svc.DecodeFrame(m); ok {
			// The TRS's answer to a relay allocation (tunnel.go).
			if err == nil && f.Envelope.Type == messages.MsgRelayAllocReply {
				w.onRelayReply(ctx, f.Envelope)
			}
			return
		}
		w.onAdmin(ctx, m)
	}
}

// addSession makes se its node's session here. A session it replaces (the
// node logged in again) ends with its tunnels, wherever it is held.
func (w *worker) addSession(se *session) {
	if old, had := w.s.index.swap(se.fqdn, se.id); had && old != se.id {
		w.s.tunnels.unlinkAll(se.fqdn)
		if o := w.sessions[old]; o != nil {
			w.removeSession(o)
		} else {
			w.s.sys.Root().Send(w.s.shard(old), dropSession{id: old})
		}
	}
	delete(w.ended, se.id)
	w.lookups.known(se.id)
	if _, ok := w.sessions[se.id]; !ok {
		w.s.sessCount.Add(1)
	}
	w.sessions[se.id] = se
	w.s.held.add(se.id)
	w.sessionsPeak.Grew(len(w.sessions))
}

func (w *worker) removeSession(se *session) {
	if _, ok := w.sessions[se.id]; ok {
		w.s.sessCount.Add(-1)
	}
	delete(w.sessions, se.id)
	w.s.held.remove(se.id)
	if w.s.index.remove(se.fqdn, se.id) {
		w.s.tunnels.unlinkAll(se.fqdn)
	}
}

// endSession forgets se but keeps its key in ended (see endedSession).
func (w *worker) endSession(se *session, now time.Time) {
	w.removeSession(se)
	if len(w.ended) < maxEnded {
		w.ended[se.id] = endedSession{fqdn: se.fqdn, sess: se.sess, until: now.Add(w.s.endedFor)}
		w.endedPeak.Grew(len(w.ended))
	}
}

func (w *worker) expire(ctx actor.Context, now time.Time) {
	for id, e := range w.ended {
		if now.After(e.until) {
			delete(w.ended, id)
		}
	}
	// Rebuilt here, on the tick, never inside a loop over them; amortised
	// (shrink).
	w.ended = shrink.Map(w.ended, &w.endedPeak)
	for _, se := range w.sessions {
		if now.UnixNano()-se.lastSeen > int64(w.s.cfg.SessionIdle) || now.UnixNano() > se.expires {
			w.endSession(se, now)
			w.s.Counters.Expired.Add(1)
			w.s.log.Info("nms: session expired", "fqdn", se.fqdn, "session", se.id)
			w.deleteSession(se.id)
		}
	}
	w.sessions = shrink.Map(w.sessions, &w.sessionsPeak)
}

func (w *worker) onPacket(ctx actor.Context, p *svc.Packet) {
	switch t, _ := messages.PeekType(p.Data); t {
	case messages.TypeProbe:
		defer p.Done()
		pr, err := messages.ParseProbe(p.Data)
		if err != nil {
			w.s.Counters.Garbage.Add(1)
			return
		}
		w.s.Counters.Probes.Add(1)
		var b [messages.ProbeReplyLen]byte
		messages.ProbeReply{ID: pr.ID, Observed: p.From}.Put(b[:])
		_, _ = p.Conn.WriteToUDPAddrPort(b[:], p.From)
	case messages.TypeSignaling:
		id, err := signaling.PeekSession(p.Data)
		if err != nil {
			p.Done()
			w.s.Counters.Garbage.Add(1)
			return
		}
		if se := w.sessions[id]; se != nil {
			w.onSealed(ctx, p, se)
			return
		}
		if e, ok := w.ended[id]; ok {
			w.onEnded(p, id, e.fqdn, e.sess)
			return
		}
		// A session this NMS has not seen (handed to another NMS process, or
		// from before a restart): its keys are in the shared store. Look it
		// up on the store workers, within the worker's bounds on such
		// lookups (lookup.go); the packet waits in the answer.
		w.lookupSession(ctx, p, id)
	default:
		p.Done()
		w.s.Counters.Garbage.Add(1)
	}
}

// lookupSession asks the store for session id, which this worker does not
// hold, if the worker's lookup bounds allow (lookup.go); else p is dropped,
// counted by reason.
func (w *worker) lookupSession(ctx actor.Context, p *svc.Packet, id uint32) {
	switch w.lookups.admit(id, w.s.mono()) {
	case lookupUnknown:
		p.Done()
		w.s.Counters.UnknownSession.Add(1)
		return
	case lookupInFlight:
		p.Done()
		w.s.Counters.LookupInFlight.Add(1)
		return
	case lookupRate:
		p.Done()
		w.s.Counters.LookupRate.Add(1)
		return
	}
	st, epoch := w.s.cfg.Store, w.s.leaseEpoch.Load()
	err := w.s.workers.Do(ctx.Self(), func(bg context.Context) any {
		n, err := st.LookupSession(bg, id)
		return sessionFound{id: id, node: n, err: err, pkt: p, epoch: epoch}
	})
	if err != nil {
		w.lookups.done(id, false, w.s.mono())
		p.Done()
		w.s.Counters.Busy.Add(1)
	}
}

func (w *worker) onSessionFound(ctx actor.Context, m sessionFound) {
	p, n := m.pkt, m.node
	unknown := errors.Is(m.err, store.ErrNotFound)
	w.lookups.done(m.id, unknown, w.s.mono())
	switch {
	case unknown:
		w.s.Counters.LookupsUnknown.Add(1)
	case m.err != nil:
		w.s.Counters.LookupsFailed.Add(1)
	default:
		w.s.Counters.LookupsFound.Add(1)
	}
	if se := w.sessions[m.id]; se != nil { // another packet, or a handover, brought it meanwhile
		w.onSealed(ctx, p, se)
		return
	}
	if m.err != nil {
		p.Done()
		if unknown {
			w.s.Counters.UnknownSession.Add(1) // nothing to answer with
		} else {
			w.s.Counters.Busy.Add(1)
			w.s.log.Debug("nms: session lookup", "session", m.id, "err", m.err)
		}
		return
	}
	if _, ended := w.deletes[m.id]; ended {
		// Ended here, its store deletion still queued: not revived.
		p.Done()
		w.s.Counters.Garbage.Add(1)
		return
	}
	se, err := newSession(n.FQDN, n.CertSerial, m.id, signaling.Keys{NodeToCloud: n.Session.NodeToCloud, CloudToNode: n.Session.CloudToNode}, n.Session.Expires)
	if err != nil {
		p.Done()
		w.s.Counters.Garbage.Add(1)
		return
	}
	if _, err := se.sess.Open(w.scratch[:0], p.Data); err != nil {
		// Not sealed under the session it names (a forged ID that hit a
		// real session): no state for it.
		p.Done()
		w.s.Counters.Garbage.Add(1)
		return
	}
	if time.Now().UnixNano() > se.expires || w.isRevoked(se) {
		w.onEnded(p, m.id, se.fqdn, se.sess)
		return
	}
	se.lastSeen = time.Now().UnixNano()
	if n.HomeNMS == w.s.cfg.Home {
		se.obs4, se.obs6, se.locKnown, se.locEpoch = n.Locator.Observed4, n.Locator.Observed6, true, m.epoch
	}
	w.addSession(se)
	w.onSealed(ctx, p, se)
}

// onEnded answers a request sealed with a session that has ended: a
// retransmission gets its cached reply (a Logout's ack, say), anything
// else CodeSessionExpired, sealed with the old key so the node can trust
// it. Acks and garbage get nothing.
func (w *worker) onEnded(p *svc.Packet, id uint32, fqdn string, ss *signaling.Session) {
	defer p.Done()
	env, err := ss.OpenEnvelope(w.scratch, p.Data, time.Now())
	if err != nil || env.Sender != fqdn {
		w.s.Counters.Garbage.Add(1)
		return
	}
	switch env.Type {
	case messages.MsgRegister, messages.MsgKeepalive, messages.MsgTunnelRequest, messages.MsgLogout, messages.MsgTunnelByVIP, messages.MsgVIPLookup:
	default:
		return
	}
	if st, ok := w.s.replies.Get(env.ID); ok {
		if reply := st.reply.Load(); reply != nil {
			w.s.Counters.Duplicates.Add(1)
			_, _ = p.Conn.WriteToUDPAddrPort(*reply, p.From)
		}
		return
	}
	pkt, err := ss.SealMessage(nil, &w.enc, env.ID, "nms", time.Now(), messages.Error{Code: messages.CodeSessionExpired, Message: "session expired: log in again"})
	if err != nil {
		return
	}
	w.s.Counters.SessionExpired.Add(1)
	w.s.log.Debug("nms: request on an ended session", "fqdn", fqdn, "session", id, "type", env.Type)
	_, _ = p.Conn.WriteToUDPAddrPort(pkt, p.From)
}

func newSession(fqdn, serial string, id uint32, k signaling.Keys, expires time.Time) (*session, error) {
	ss, err := signaling.NewCloudSession(id, k)
	if err != nil {
		return nil, err
	}
	return &session{id: id, fqdn: fqdn, serial: serial, sess: ss, expires: expires.UnixNano()}, nil
}

// onSealed opens a packet of a known session and starts (or answers from
// cache) its transaction.
func (w *worker) onSealed(ctx actor.Context, p *svc.Packet, se *session) {
	now := time.Now()
	if w.isRevoked(se) {
		// Revoked since it logged in (and before the poll noticed): end
		// it now, and tell the node so under its old key.
		w.revoke(se, now)
		w.onEnded(p, se.id, se.fqdn, se.sess)
		return
	}
	defer p.Done()
	env, err := se.sess.OpenEnvelope(w.scratch, p.Data, now)
	if err != nil {
		w.s.Counters.Garbage.Add(1)
		w.s.log.Debug("nms: dropped sealed packet", "session", se.id, "from", p.From, "err", err)
		return
	}
	if env.Sender != se.fqdn {
		w.s.Counters.Garbage.Add(1)
		return
	}
	switch env.Type {
	case messages.MsgDenyListAck:
		se.from, se.conn, se.lastSeen = p.From, p.Conn, now.UnixNano()
		if ack, err := messages.DecodeBody[messages.DenyListAck](env); err == nil {
			se.crlHeld = max(se.crlHeld, ack.Number)
		}
		if d, ok := w.s.delivers.Get(env.ID); ok {
			w.onDeliveryAck(ctx, d, se, env)
		}
		return
	case messages.MsgDirectionAck, messages.MsgPeerUpdateAck, messages.MsgError:
		// An answer to something NMS delivered: its delivery, found by
		// message ID, ends (tunnel.go).
		se.from, se.conn, se.lastSeen = p.From, p.Conn, now.UnixNano()
		if d, ok := w.s.delivers.Get(env.ID); ok {
			w.onDeliveryAck(ctx, d, se, env)
		}
		return
	case messages.MsgRegister, messages.MsgKeepalive, messages.MsgTunnelRequest, messages.MsgLogout, messages.MsgTunnelByVIP, messages.MsgVIPLookup:
	default:
		w.s.Counters.Garbage.Add(1)
		return
	}
	if !se.guard.fresh(now.UnixNano(), env.Timestamp, w.s.window) {
		w.s.Counters.Replayed.Add(1)
		w.s.log.Debug("nms: request older than any retransmission, dropped", "fqdn", se.fqdn, "type", env.Type, "id", env.ID)
		return
	}
	var st *replyState
	local := false // a keepalive from the mapping the store holds (ka.go)
	if env.Type == messages.MsgKeepalive {
		// Idempotent: never cached (see guard.go).
		v := se.guard.keepalive(env.Timestamp)
		if v == kaOld {
			w.s.Counters.Replayed.Add(1)
			return
		}
		// Only a request that passed the guard moves the session's
		// address or keeps it alive: a replay must do neither.
		se.from, se.conn, se.lastSeen = p.From, p.Conn, now.UnixNano()
		if v == kaRepeat {
			w.s.Counters.Duplicates.Add(1)
			w.answer(p, se, env.ID, messages.KeepaliveAck{Observed: p.From})
			return
		}
		local = se.knownMapping(p.From, w.s.leaseEpoch.Load())
		if q, c := w.s.workers.Queued(), w.s.workers.Cap(); !local && q >= c {
			// Its store job would be refused: drop it unrecorded, so the
			// retransmission runs it rather than getting an ack for a
			// keepalive whose mapping was never written. (The queue can
			// still fill between here and the job: then the node's next
			// keepalive, one period later, writes it.)
			w.s.Counters.Busy.Add(1)
			return
		}
		se.guard.ran(env.Timestamp)
	} else {
		se.from, se.conn, se.lastSeen = p.From, p.Conn, now.UnixNano()
		var ok bool
		if st, ok = w.dedup(p, se, env, now); !ok {
			return
		}
	}
	switch env.Type {
	case messages.MsgLogout:
		w.logout(ctx, p, se, env, st, now)
		return
	case messages.MsgRegister, messages.MsgKeepalive:
		// A node that missed a push (or logged in since) gets the list
		// with its next keepalive after the retransmissions gave up.
		w.offerDenyList(ctx, se, now)
		w.onLocatorRequest(ctx, p, se, env, st, local)
		return
	}
	w.startRequest(ctx, p, se, env, st)
}

// dedup claims env's message ID in the reply cache: ok for a first copy
// (st is where its reply goes); a duplicate is answered from the cache.
// A first copy beyond the session's share of the cache, or one the cache
// does not take, is dropped unanswered and counted: the node retransmits.
func (w *worker) dedup(p *svc.Packet, se *session, env messages.Envelope, now time.Time) (st *replyState, ok bool) {
	if cur, found := w.s.replies.Get(env.ID); found {
		w.s.Counters.Duplicates.Add(1)
		if reply := cur.reply.Load(); reply != nil {
			_, _ = p.Conn.WriteToUDPAddrPort(*reply, p.From)
		}
		return nil, false
	}
	if !se.guard.admit(now.UnixNano(), w.s.window, w.s.cfg.DedupPerNode) {
		w.s.Counters.NodeLimit.Add(1)
		w.s.log.Debug("nms: node over its share of the reply cache, dropping request", "fqdn", se.fqdn, "type", env.Type)
		return nil, false
	}
	st = &replyState{}
	cur, loaded, err := w.s.replies.PutIfAbsent(env.ID, st, w.s.window)
	if err != nil {
		w.s.Counters.CacheFull.Add(1)
		w.s.log.Warn("nms: reply cache full, dropping request", "id", env.ID, "err", err)
		return nil, false
	}
	if loaded { // a session's IDs are put by its worker alone: only if Get missed a fresh entry
		w.s.Counters.Duplicates.Add(1)
		if reply := cur.reply.Load(); reply != nil {
			_, _ = p.Conn.WriteToUDPAddrPort(*reply, p.From)
		}
		return nil, false
	}
	return st, true
}

// answer seals body as the reply to request id and sends it, from the
// worker: for answers that need no store work.
func (w *worker) answer(p *svc.Packet, se *session, id messages.MsgID, body messages.Body) []byte {
	pkt, err := se.sess.SealMessage(nil, &w.enc, id, "nms", time.Now(), body)
	if err != nil {
		w.s.log.Warn("nms: seal reply", "err", err)
		return nil
	}
	_, _ = p.Conn.WriteToUDPAddrPort(pkt, p.From)
	return pkt
}

// logout ends the session here at once and queues its store deletion,
// which is retried until it is done (deleteSession): the ack does not wait
// for the store, and a busy store cannot lose the deletion.
func (w *worker) logout(ctx actor.Context, p *svc.Packet, se *session, env messages.Envelope, st *replyState, now time.Time) {
	w.s.Counters.Logouts.Add(1)
	w.endSession(se, now)
	w.deleteSession(se.id)
	w.flushDeletes(ctx)
	if pkt := w.answer(p, se, env.ID, messages.LogoutAck{}); pkt != nil {
		st.reply.Store(&pkt) // a retransmission finds it through onEnded
	} else {
		w.s.replies.Delete(env.ID)
	}
}

// onHandover takes a session's keys from the AS (through the root, which
// routed the KeyHandover here by its session ID) and acknowledges them.
func (w *worker) onHandover(m handover) {
	f, kh := m.f, m.kh
	if w.isRevoked(&session{serial: kh.CertSerial}) {
		// Revoked between AS's check and now: no session, no ack (AS
		// refuses the login when the ack does not come).
		w.s.log.Warn("nms: key handover for a revoked certificate refused", "fqdn", kh.FQDN)
		return
	}
	se, err := newSession(kh.FQDN, kh.CertSerial, kh.SessionID, signaling.Keys{NodeToCloud: kh.NodeToCloud, CloudToNode: kh.CloudToNode}, time.Unix(0, kh.Expires))
	if err != nil {
		w.s.log.Warn("nms: key handover", "fqdn", kh.FQDN, "err", err)
		return
	}
	se.lastSeen = time.Now().UnixNano()
	w.addSession(se)
	ack, err := svc.NewFrame("", f.Envelope.ID, "nms", time.Now(), messages.KeyHandoverAck{SessionID: kh.SessionID})
	if err == nil {
		if err := w.s.cfg.Link.Reply(f, ack); err != nil {
			w.s.log.Warn("nms: acknowledge key handover", "to", f.ReplyTo.String(), "err", err)
		}
	}
}

// checkDenyList acts on a newer deny list: the sessions of nodes it revokes
// end at once (and leave the store, so no NMS revives them), and every
// other node is sent the list, so its tunnels to the revoked end within a
// tick of its peers'.
func (w *worker) checkDenyList(ctx actor.Context, c *pki.CRL, now time.Time) {
	if c == nil || w.crl != nil && c.Number <= w.crl.Number {
		return
	}
	w.crl = c
	if w.idx == 0 { // once, not once per worker
		w.s.log.Info("nms: deny list loaded", "number", c.Number, "revoked", c.DenyList().Len())
	}
	for _, se := range w.sessions {
		if w.isRevoked(se) {
			w.revoke(se, now)
			continue
		}
		w.offerDenyList(ctx, se, now)
	}
}

// revoke ends a revoked node's session here and in the store.
func (w *worker) revoke(se *session, now time.Time) {
	w.endSession(se, now)
	w.s.Counters.Revoked.Add(1)
	w.s.log.Warn("nms: session of a revoked certificate ended", "fqdn", se.fqdn, "session", se.id, "serial", se.serial)
	w.deleteSession(se.id)
}

// offerDenyList pushes the deny list to se's node unless it holds it, or
// a push is still being retransmitted.
func (w *worker) offerDenyList(ctx actor.Context, se *session, now time.Time) {
	if w.crl == nil || se.crlHeld >= w.crl.Number || se.conn == nil {
		return
	}
	if se.crlSentNum == w.crl.Number && now.UnixNano()-se.crlSent < int64(retransmit.Lifetime(w.s.cfg.Retry)) {
		return // this list's push is still being retransmitted
	}
	if se.push != nil && se.push.number == w.crl.Number || !w.startPush(ctx, se, now) {
		return // a push is running, or the worker's pushes are all busy: next keepalive
	}
	se.crlSent, se.crlSentNum = now.UnixNano(), w.crl.Number
	w.s.Counters.DenyListPushes.Add(1)
}

// isRevoked checks se against the deny list the actor holds (no file
// access per packet: the poll keeps w.crl current), by the serial as
// written: no parse or allocation per packet.
func (w *worker) isRevoked(se *session) bool {
	return w.crl.DenyList().ContainsSerial(se.serial)
}
