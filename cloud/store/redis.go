package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisPrefix starts every key the Redis store writes; the URL's
// "prefix" query parameter changes it, so several overlays (or tests) can
// share one Redis database.
const DefaultRedisPrefix = "cyphonic:"

// RedisStore is the Store in Redis, shared by several cloud processes.
// Every write that must be atomic across processes is one Lua script (or
// one INCR), which Redis runs without interleaving.
//
// Keys, after the prefix:
//
//	node:<fqdn>   hash: rec (record without session), sess (session record), sid
//	session:<id>  string: the FQDN holding session id
//	vip:<addr>    string: the FQDN of the record naming that VIP (the
//	              node hash keeps the keys it claimed in vk6, vk4)
//	nodes         set of FQDNs with a record
//	config        hash: "vipindex" once the VIP index is filled
//
// (Databases from before VIPs were the CA's may also hold "vips",
// "vipseq" and the config's pool prefixes: nothing reads them.)
//
// The scripts compute key names from data (the previous session's key), so
// this layout is for one Redis server or a replicated one, not Redis
// Cluster.
type RedisStore struct {
	c      *redis.Client
	prefix string
}

var _ Store = (*RedisStore)(nil)

// OpenRedis connects to the Redis server at rawURL
// (redis://[user:password@]host:port/db[?prefix=...], or rediss:// for TLS).
func OpenRedis(ctx context.Context, rawURL string) (*RedisStore, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("store: redis URL: %w", err)
	}
	q := u.Query()
	prefix := DefaultRedisPrefix
	if q.Has("prefix") {
		prefix = q.Get("prefix")
		q.Del("prefix") // ours, not go-redis's: it rejects unknown options
		u.RawQuery = q.Encode()
	}
	opts, err := redis.ParseURL(u.String())
	if err != nil {
		return nil, fmt.Errorf("store: redis URL: %w", err)
	}
	s := &RedisStore{c: redis.NewClient(opts), prefix: prefix}
	if err := s.indexVIPsOnce(ctx); err != nil {
		s.c.Close()
		return nil, fmt.Errorf("store: open redis %s: index VIPs: %w", u.Redacted(), err)
	}
	return s, nil
}

// indexVIPsOnce fills the VIP index from the records of a database written
// before the index existed (the config hash's "vipindex" says it is done).
// Entries are only added where none exists, so a PutNode by another
// process meanwhile wins, and a lookup checks the record anyway.
func (s *RedisStore) indexVIPsOnce(ctx context.Context) error {
	cfgKey := s.prefix + "config"
	done, err := s.c.HExists(ctx, cfgKey, "vipindex").Result()
	if err != nil || done {
		return err
	}
	nodes, err := s.ListNodes(ctx)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		for _, a := range []netip.Addr{n.VIP6, n.VIP4} {
			if a.IsValid() {
				if err := s.c.SetNX(ctx, s.vipKey(a), n.FQDN, 0).Err(); err != nil {
					return err
				}
			}
		}
	}
	return s.c.HSet(ctx, cfgKey, "vipindex", "1").Err()
}

func (s *RedisStore) nodeKey(fqdn string) string { return s.prefix + "node:" + fqdn }

// vipKey is a VIP's index key, "" for no VIP.
func (s *RedisStore) vipKey(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return s.prefix + "vip:" + a.Unmap().String()
}

func (s *RedisStore) sessKey(id SessionID) string {
	return s.prefix + "session:" + strconv.FormatUint(uint64(id), 10)
}

// putNode writes a record and moves its session and VIP index entries in
// one step. KEYS: node key, new session key, nodes set. ARGV: fqdn, rec,
// sess, sid, session key prefix, VIP6 key, VIP4 key (” for none). Returns
// 0 if the session belongs to another node.
var putNode = redis.NewScript(`
local sid = ARGV[4]
if sid ~= '0' then
  local owner = redis.call('GET', KEYS[2])
  if owner and owner ~= ARGV[1] then return 0 end
end
local old = redis.call('HGET', KEYS[1], 'sid')
if old and old ~= '0' and old ~= sid then
  local okey = ARGV[5] .. old
  if redis.call('GET', okey) == ARGV[1] then redis.call('DEL', okey) end
end
for _, f in ipairs({'vk6', 'vk4'}) do
  local o = redis.call('HGET', KEYS[1], f)
  if o and o ~= '' and o ~= ARGV[6] and o ~= ARGV[7] and redis.call('GET', o) == ARGV[1] then
    redis.call('DEL', o)
  end
end
for i = 6, 7 do
  if ARGV[i] ~= '' then redis.call('SET', ARGV[i], ARGV[1]) end
end
redis.call('HSET', KEYS[1], 'rec', ARGV[2], 'sid', sid, 'vk6', ARGV[6], 'vk4', ARGV[7])
if sid ~= '0' then
  redis.call('HSET', KEYS[1], 'sess', ARGV[3])
  redis.call('SET', KEYS[2], ARGV[1])
else
  redis.call('HDEL', KEYS[1], 'sess')
end
redis.call('SADD', KEYS[3], ARGV[1])
return 1
`)

// deleteSession drops a session's index and, if the node still holds it,
// the node's session. KEYS: session key. ARGV: node key prefix, sid.
var deleteSession = redis.NewScript(`
local owner = redis.call('GET', KEYS[1])
if not owner then return 0 end
redis.call('DEL', KEYS[1])
local nk = ARGV[1] .. owner
if redis.call('HGET', nk, 'sid') == ARGV[2] then
  redis.call('HDEL', nk, 'sess')
  redis.call('HSET', nk, 'sid', '0')
end
return 1
`)

func (s *RedisStore) PutNode(ctx context.Context, n Node) error {
	if err := checkNode(&n); err != nil {
		return err
	}
	// The session is its own field so DeleteSession can drop it in Lua
	// without decoding the record.
	sess := n.Session
	n.Session = Session{}
	rec, err := encodeNode(&n)
	if err != nil {
		return err
	}
	var sessRec []byte
	if sess.ID != 0 {
		full, err := encodeNode(&Node{FQDN: n.FQDN, Session: sess})
		if err != nil {
			return err
		}
		sessRec = full
	}
	ok, err := putNode.Run(ctx, s.c,
		[]string{s.nodeKey(n.FQDN), s.sessKey(sess.ID), s.prefix + "nodes"},
		n.FQDN, rec, sessRec, strconv.FormatUint(uint64(sess.ID), 10), s.prefix+"session:",
		s.vipKey(n.VIP6), s.vipKey(n.VIP4),
	).Int()
	if err != nil {
		return fmt.Errorf("store: put %q: %w", n.FQDN, err)
	}
	if ok == 0 {
		return fmt.Errorf("store: put %q: %w: session %d", n.FQDN, ErrSessionInUse, sess.ID)
	}
	return nil
}

// readNode reads a node's hash; ok is false if it has no record.
func (s *RedisStore) readNode(ctx context.Context, fqdn string) (n Node, ok bool, err error) {
	vals, err := s.c.HMGet(ctx, s.nodeKey(fqdn), "rec", "sess").Result()
	if err != nil {
		return Node{}, false, err
	}
	return decodeNodeFields(vals)
}

func decodeNodeFields(vals []any) (Node, bool, error) {
	rec, ok := vals[0].(string)
	if !ok {
		return Node{}, false, nil
	}
	n, err := decodeNode([]byte(rec))
	if err != nil {
		return Node{}, false, err
	}
	if sess, ok := vals[1].(string); ok {
		sn, err := decodeNode([]byte(sess))
		if err != nil {
			return Node{}, false, err
		}
		n.Session = sn.Session
	}
	return n, true, nil
}

func (s *RedisStore) GetNode(ctx context.Context, fqdn string) (Node, error) {
	n, ok, err := s.readNode(ctx, fqdn)
	if err == nil && !ok {
		err = ErrNotFound
	}
	if err != nil {
		return Node{}, fmt.Errorf("store: get %q: %w", fqdn, err)
	}
	return n, nil
}

func (s *RedisStore) FreeSessionIDs(ctx context.Context, ids []SessionID) ([]SessionID, error) {
	// One round trip: a pipeline of EXISTS on the session index keys the
	// putNode script checks.
	pipe := s.c.Pipeline()
	cmds := make([]*redis.IntCmd, len(ids))
	for i, id := range ids {
		if id != 0 {
			cmds[i] = pipe.Exists(ctx, s.sessKey(id))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: check %d session IDs: %w", len(ids), err)
	}
	free := make([]SessionID, 0, len(ids))
	for i, c := range cmds {
		if c == nil {
			continue
		}
		n, err := c.Result()
		if err != nil {
			return nil, fmt.Errorf("store: check session ID %d: %w", ids[i], err)
		}
		if n == 0 {
			free = append(free, ids[i])
		}
	}
	return free, nil
}

// countChunk is the COUNT hint of CountSessions' SCAN: keys Redis looks
// at per round trip.
const countChunk = 1000

// CountSessions counts the session index's keys with SCAN, so it never
// blocks Redis the way KEYS would; the index and the records' sessions
// change together (the scripts), so this is the records' count too. A key
// written or deleted during the scan may be counted or not, and one Redis
// moves while its table shrinks mid-scan may be counted twice: the count
// is exact for a keyspace at rest, and holds no set of names (a million
// of them would be tens of MB for a metric).
func (s *RedisStore) CountSessions(ctx context.Context) (int, error) {
	match := globEscape(s.prefix+"session:") + "*"
	n := 0
	var cursor uint64
	for {
		keys, next, err := s.c.Scan(ctx, cursor, match, countChunk).Result()
		if err != nil {
			return 0, fmt.Errorf("store: count sessions: %w", err)
		}
		n += len(keys)
		if cursor = next; cursor == 0 {
			return n, nil
		}
	}
}

// globEscape quotes the characters SCAN's MATCH pattern gives a meaning
// to, so a prefix is matched literally.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (s *RedisStore) LookupSession(ctx context.Context, id SessionID) (Node, error) {
	n, err := s.lookupSession(ctx, id)
	if err != nil {
		return Node{}, fmt.Errorf("store: lookup session %d: %w", id, err)
	}
	return n, nil
}

func (s *RedisStore) lookupSession(ctx context.Context, id SessionID) (Node, error) {
	if id == 0 {
		return Node{}, ErrNotFound
	}
	owner, err := s.c.Get(ctx, s.sessKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return Node{}, ErrNotFound
	}
	if err != nil {
		return Node{}, err
	}
	n, ok, err := s.readNode(ctx, owner)
	if err != nil {
		return Node{}, err
	}
	// Two reads, not one transaction: if the session moved in between,
	// the record tells, and the answer is the truth at the second read.
	if !ok || n.Session.ID != id {
		return Node{}, ErrNotFound
	}
	return n, nil
}

func (s *RedisStore) LookupVIP(ctx context.Context, vip netip.Addr) (Node, error) {
	n, err := s.lookupVIP(ctx, vip)
	if err != nil {
		return Node{}, fmt.Errorf("store: lookup VIP %s: %w", vip, err)
	}
	return n, nil
}

func (s *RedisStore) lookupVIP(ctx context.Context, vip netip.Addr) (Node, error) {
	if !vip.IsValid() {
		return Node{}, ErrNotFound
	}
	owner, err := s.c.Get(ctx, s.vipKey(vip)).Result()
	if errors.Is(err, redis.Nil) {
		return Node{}, ErrNotFound
	}
	if err != nil {
		return Node{}, err
	}
	n, ok, err := s.readNode(ctx, owner)
	if err != nil {
		return Node{}, err
	}
	// Two reads, as in lookupSession: the record read second decides.
	if !ok || !n.HasVIP(vip) {
		return Node{}, ErrNotFound
	}
	return n, nil
}

func (s *RedisStore) DeleteSession(ctx context.Context, id SessionID) error {
	if id == 0 {
		return nil
	}
	err := deleteSession.Run(ctx, s.c, []string{s.sessKey(id)},
		s.prefix+"node:", strconv.FormatUint(uint64(id), 10)).Err()
	if err != nil {
		return fmt.Errorf("store: delete session %d: %w", id, err)
	}
	return nil
}

// swapRecord replaces a node's record (not its session) if the node still
// holds the session the caller expects and the record is still the one the
// caller read: a compare-and-swap, so the record's msgpack stays Go's to
// encode. KEYS: node key. ARGV: sid, record read, new record. Returns
// swapDone, or why not.
var swapRecord = redis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 'rec', 'sid')
if not v[1] then return 0 end
if (v[2] or '0') ~= ARGV[1] then return 1 end
if v[1] ~= ARGV[2] then return 2 end
redis.call('HSET', KEYS[1], 'rec', ARGV[3])
return 3
`)

const (
	swapNotFound = iota
	swapSessionChanged
	swapRecordChanged
	swapDone
)

// maxSwapTries bounds UpdateLocator's retries when the record changes
// under it with the session unchanged (updates racing each other for one
// node); every lost race means another update of that node went through.
const maxSwapTries = 16

var errContended = errors.New("record kept changing")

func (s *RedisStore) UpdateLocator(ctx context.Context, fqdn string, session SessionID, u LocatorUpdate) error {
	if err := checkLocatorUpdate(fqdn, &u); err != nil {
		return err
	}
	if err := s.updateLocator(ctx, fqdn, session, &u); err != nil {
		return fmt.Errorf("store: update locator of %q: %w", fqdn, err)
	}
	return nil
}

func (s *RedisStore) updateLocator(ctx context.Context, fqdn string, session SessionID, u *LocatorUpdate) error {
	key, sid := s.nodeKey(fqdn), strconv.FormatUint(uint64(session), 10)
	for range maxSwapTries {
		vals, err := s.c.HMGet(ctx, key, "rec", "sid").Result()
		if err != nil {
			return err
		}
		old, ok := vals[0].(string)
		if !ok {
			return ErrNotFound
		}
		if got, _ := vals[1].(string); got != sid && !(got == "" && sid == "0") {
			return fmt.Errorf("%w: holds %s, update for %d", ErrSessionChanged, got, session)
		}
		n, err := decodeNode([]byte(old))
		if err != nil {
			return err
		}
		u.apply(&n)
		rec, err := encodeNode(&n)
		if err != nil {
			return err
		}
		res, err := swapRecord.Run(ctx, s.c, []string{key}, sid, old, rec).Int()
		if err != nil {
			return err
		}
		switch res {
		case swapDone:
			return nil
		case swapNotFound:
			return ErrNotFound
		case swapSessionChanged:
			return fmt.Errorf("%w: update for %d", ErrSessionChanged, session)
		}
	}
	return errContended
}

func (s *RedisStore) ListNodes(ctx context.Context) ([]Node, error) {
	names, err := s.c.SMembers(ctx, s.prefix+"nodes").Result()
	if err != nil {
		return nil, fmt.Errorf("store: list nodes: %w", err)
	}
	slices.Sort(names)
	cmds := make([]*redis.SliceCmd, len(names))
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, name := range names {
			cmds[i] = p.HMGet(ctx, s.nodeKey(name), "rec", "sess")
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: list nodes: %w", err)
	}
	out := make([]Node, 0, len(names))
	for i, cmd := range cmds {
		n, ok, err := decodeNodeFields(cmd.Val())
		if err != nil {
			return nil, fmt.Errorf("store: list nodes: %q: %w", names[i], err)
		}
		if ok {
			out = append(out, n)
		}
	}
	return out, nil
}

// eachChunk is how many records EachNode asks Redis for per round trip.
const eachChunk = 512

func (s *RedisStore) EachNode(ctx context.Context, fn func(Node) error) error {
	var cursor uint64
	for {
		names, next, err := s.c.SScan(ctx, s.prefix+"nodes", cursor, "", eachChunk).Result()
		if err != nil {
			return fmt.Errorf("store: each node: %w", err)
		}
		cmds := make([]*redis.SliceCmd, len(names))
		if len(names) > 0 {
			if _, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i, name := range names {
					cmds[i] = p.HMGet(ctx, s.nodeKey(name), "rec", "sess")
				}
				return nil
			}); err != nil {
				return fmt.Errorf("store: each node: %w", err)
			}
		}
		for i, cmd := range cmds {
			n, ok, err := decodeNodeFields(cmd.Val())
			if err != nil {
				return fmt.Errorf("store: each node: %q: %w", names[i], err)
			}
			if ok {
				if err := fn(n); err != nil {
					return err
				}
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

func (s *RedisStore) Close() error { return s.c.Close() }
