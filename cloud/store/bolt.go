package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var (
	bucketNodes    = []byte("nodes")    // fqdn -> record
	bucketSessions = []byte("sessions") // session ID (4 bytes, big endian) -> fqdn
	// Files from before VIPs were the CA's may also hold "vips" and "meta"
	// buckets (the store's own allocations): nothing reads them.
	bucketByVIP = []byte("byvip") // VIP (4 or 16 bytes) -> fqdn of the record naming it
)

// openTimeout bounds the wait for bbolt's file lock: a second process on
// the same file gets an error instead of hanging (share through Redis).
const openTimeout = 2 * time.Second

// batchDelay is how long a write waits for others to share its commit.
const batchDelay = time.Millisecond

// BoltStore is the Store in one bbolt file, for a single cloud process.
// Every operation is one bbolt transaction, so it is atomic and durable;
// concurrent writes share commits (see update).
type BoltStore struct {
	db *bolt.DB
}

var (
	_ Store      = (*BoltStore)(nil)
	_ PairGetter = (*BoltStore)(nil)
)

// OpenBolt opens (creating if needed) the bbolt store at path.
func OpenBolt(path string) (*BoltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: openTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("store: open %s: in use by another process: %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketNodes, bucketSessions} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return indexVIPsOnce(tx)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// bbolt's default 10 ms batch window is tuned for slow disks; a commit
	// here is a few hundred microseconds, and every login waits for three
	// writes in a row, so a long window costs more latency than it saves.
	db.MaxBatchDelay = batchDelay
	return &BoltStore{db: db}, nil
}

func sessionKey(id SessionID) []byte { return binary.BigEndian.AppendUint32(nil, id) }

// vipKey is a VIP's index key: its 4 or 16 bytes.
func vipKey(a netip.Addr) []byte { return a.Unmap().AsSlice() }

// indexVIPsOnce creates the VIP index, filling it from the records when a
// store written before the index existed is first opened.
func indexVIPsOnce(tx *bolt.Tx) error {
	if tx.Bucket(bucketByVIP) != nil {
		return nil
	}
	idx, err := tx.CreateBucket(bucketByVIP)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketNodes).ForEach(func(k, v []byte) error {
		n, err := decodeNode(v)
		if err != nil {
			return nil // unreadable: not indexed, as it cannot be served anyway
		}
		return putVIPs(idx, nil, &n)
	})
}

// putVIPs moves the index entries of a record from old's VIPs (nil: none)
// to n's. An entry another record has claimed since is left alone.
func putVIPs(idx *bolt.Bucket, old, n *Node) error {
	if old != nil {
		for _, a := range []netip.Addr{old.VIP6, old.VIP4} {
			if a.IsValid() && a != n.VIP6 && a != n.VIP4 && string(idx.Get(vipKey(a))) == n.FQDN {
				if err := idx.Delete(vipKey(a)); err != nil {
					return err
				}
			}
		}
	}
	for _, a := range []netip.Addr{n.VIP6, n.VIP4} {
		if a.IsValid() {
			if err := idx.Put(vipKey(a), []byte(n.FQDN)); err != nil {
				return err
			}
		}
	}
	return nil
}

// update runs fn in a write transaction, after checking ctx: bbolt
// transactions are short and local, so they are not interrupted midway.
//
// Writes go through DB.Batch: each bbolt commit is an fsync (milliseconds),
// and concurrent writers (the cloud's store workers) share one commit
// instead of queueing for one each. A batched write is as durable as an
// Update: Batch returns only after the commit. fn may run more than once
// (Batch retries the others when one fails), so every fn here only touches
// the transaction and variables it sets afresh on each run.
func (s *BoltStore) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Batch(fn)
}

func (s *BoltStore) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(fn)
}

func (s *BoltStore) PutNode(ctx context.Context, n Node) error {
	if err := checkNode(&n); err != nil {
		return err
	}
	rec, err := encodeNode(&n)
	if err != nil {
		return err
	}
	err = s.update(ctx, func(tx *bolt.Tx) error {
		nodes, sessions := tx.Bucket(bucketNodes), tx.Bucket(bucketSessions)
		var prev *Node
		if id := n.Session.ID; id != 0 {
			if owner := sessions.Get(sessionKey(id)); owner != nil && string(owner) != n.FQDN {
				return fmt.Errorf("%w: session %d", ErrSessionInUse, id)
			}
		}
		if old := nodes.Get([]byte(n.FQDN)); old != nil {
			// An unreadable old record only loses its session index.
			o, err := decodeNode(old)
			if err == nil {
				prev = &o
			}
			if err == nil && o.Session.ID != 0 && o.Session.ID != n.Session.ID {
				if string(sessions.Get(sessionKey(o.Session.ID))) == n.FQDN {
					if err := sessions.Delete(sessionKey(o.Session.ID)); err != nil {
						return err
					}
				}
			}
		}
		if err := nodes.Put([]byte(n.FQDN), rec); err != nil {
			return err
		}
		if err := putVIPs(tx.Bucket(bucketByVIP), prev, &n); err != nil {
			return err
		}
		if n.Session.ID != 0 {
			return sessions.Put(sessionKey(n.Session.ID), []byte(n.FQDN))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: put %q: %w", n.FQDN, err)
	}
	return nil
}

func (s *BoltStore) GetNode(ctx context.Context, fqdn string) (Node, error) {
	var n Node
	err := s.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketNodes).Get([]byte(fqdn))
		if v == nil {
			return ErrNotFound
		}
		var err error
		n, err = decodeNode(v)
		return err
	})
	if err != nil {
		return Node{}, fmt.Errorf("store: get %q: %w", fqdn, err)
	}
	return n, nil
}

// GetNodePair reads both records in one read transaction (PairGetter).
func (s *BoltStore) GetNodePair(ctx context.Context, a, b string) (na Node, errA error, nb Node, errB error) {
	get := func(nodes *bolt.Bucket, fqdn string) (Node, error) {
		v := nodes.Get([]byte(fqdn))
		if v == nil {
			return Node{}, fmt.Errorf("store: get %q: %w", fqdn, ErrNotFound)
		}
		n, err := decodeNode(v)
		if err != nil {
			return Node{}, fmt.Errorf("store: get %q: %w", fqdn, err)
		}
		return n, nil
	}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		nodes := tx.Bucket(bucketNodes)
		na, errA = get(nodes, a)
		nb, errB = get(nodes, b)
		return nil
	})
	if err != nil {
		err = fmt.Errorf("store: get %q and %q: %w", a, b, err)
		return Node{}, err, Node{}, err
	}
	return na, errA, nb, errB
}

// FreeSessionIDs returns the IDs among ids that no session holds, read in
// one transaction (the AS checks its candidates before a challenge names one).
func (s *BoltStore) FreeSessionIDs(ctx context.Context, ids []SessionID) ([]SessionID, error) {
	free := make([]SessionID, 0, len(ids))
	err := s.view(ctx, func(tx *bolt.Tx) error {
		sessions := tx.Bucket(bucketSessions)
		for _, id := range ids {
			if id != 0 && sessions.Get(sessionKey(id)) == nil {
				free = append(free, id)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: check %d session IDs: %w", len(ids), err)
	}
	return free, nil
}

// CountSessions counts the session index's keys (bbolt's bucket stats walk
// its pages, without decoding a record).
func (s *BoltStore) CountSessions(ctx context.Context) (int, error) {
	var n int
	err := s.view(ctx, func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketSessions).Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: count sessions: %w", err)
	}
	return n, nil
}

func (s *BoltStore) LookupSession(ctx context.Context, id SessionID) (Node, error) {
	var n Node
	err := s.view(ctx, func(tx *bolt.Tx) error {
		owner := tx.Bucket(bucketSessions).Get(sessionKey(id))
		if owner == nil {
			return ErrNotFound
		}
		v := tx.Bucket(bucketNodes).Get(owner)
		if v == nil {
			return ErrNotFound
		}
		var err error
		n, err = decodeNode(v)
		return err
	})
	if err != nil {
		return Node{}, fmt.Errorf("store: lookup session %d: %w", id, err)
	}
	return n, nil
}

func (s *BoltStore) LookupVIP(ctx context.Context, vip netip.Addr) (Node, error) {
	var n Node
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if !vip.IsValid() {
			return ErrNotFound
		}
		owner := tx.Bucket(bucketByVIP).Get(vipKey(vip))
		if owner == nil {
			return ErrNotFound
		}
		v := tx.Bucket(bucketNodes).Get(owner)
		if v == nil {
			return ErrNotFound
		}
		var err error
		if n, err = decodeNode(v); err != nil {
			return err
		}
		if !n.HasVIP(vip) {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return Node{}, fmt.Errorf("store: lookup VIP %s: %w", vip, err)
	}
	return n, nil
}

func (s *BoltStore) DeleteSession(ctx context.Context, id SessionID) error {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		nodes, sessions := tx.Bucket(bucketNodes), tx.Bucket(bucketSessions)
		owner := sessions.Get(sessionKey(id))
		if owner == nil {
			return nil
		}
		owner = append([]byte(nil), owner...) // valid only until the Delete
		if err := sessions.Delete(sessionKey(id)); err != nil {
			return err
		}
		v := nodes.Get(owner)
		if v == nil {
			return nil
		}
		n, err := decodeNode(v)
		if err != nil || n.Session.ID != id {
			return nil
		}
		n.Session = Session{}
		rec, err := encodeNode(&n)
		if err != nil {
			return err
		}
		return nodes.Put(owner, rec)
	})
	if err != nil {
		return fmt.Errorf("store: delete session %d: %w", id, err)
	}
	return nil
}

func (s *BoltStore) UpdateLocator(ctx context.Context, fqdn string, session SessionID, u LocatorUpdate) error {
	if err := checkLocatorUpdate(fqdn, &u); err != nil {
		return err
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		nodes := tx.Bucket(bucketNodes)
		v := nodes.Get([]byte(fqdn))
		if v == nil {
			return ErrNotFound
		}
		n, err := decodeNode(v)
		if err != nil {
			return err
		}
		if n.Session.ID != session {
			return fmt.Errorf("%w: holds %d, update for %d", ErrSessionChanged, n.Session.ID, session)
		}
		u.apply(&n)
		rec, err := encodeNode(&n)
		if err != nil {
			return err
		}
		return nodes.Put([]byte(fqdn), rec)
	})
	if err != nil {
		return fmt.Errorf("store: update locator of %q: %w", fqdn, err)
	}
	return nil
}

func (s *BoltStore) ListNodes(ctx context.Context) ([]Node, error) {
	var out []Node
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNodes).ForEach(func(k, v []byte) error {
			n, err := decodeNode(v)
			if err != nil {
				return fmt.Errorf("%q: %w", k, err)
			}
			out = append(out, n)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: list nodes: %w", err)
	}
	return out, nil // bbolt iterates in key order: already sorted by FQDN
}

func (s *BoltStore) EachNode(ctx context.Context, fn func(Node) error) error {
	var fnErr error
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNodes).ForEach(func(k, v []byte) error {
			n, err := decodeNode(v)
			if err != nil {
				return fmt.Errorf("%q: %w", k, err)
			}
			if err := fn(n); err != nil {
				fnErr = err
				return err
			}
			return nil
		})
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("store: each node: %w", err)
	}
	return nil
}

func (s *BoltStore) Close() error { return s.db.Close() }
